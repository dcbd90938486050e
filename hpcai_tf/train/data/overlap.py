"""The normalised overlap of two complex waveforms, maximised over time and phase shifts (white noise)."""

from __future__ import annotations

import numpy as np


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """max over time shift t and phase phi of Re<a, b(t) e^{i phi}> / (|a| |b|), in [0, 1].

    The time maximisation is the inverse FFT of the cross-spectrum, zero-padded to twice the length so that
    shifts do not wrap around; the phase maximisation is the modulus of the complex inner product.
    """
    a = np.asarray(a, dtype=np.complex128)
    b = np.asarray(b, dtype=np.complex128)
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    if norm == 0.0:
        return 0.0
    n = 2 * max(len(a), len(b))
    correlation = np.fft.ifft(np.fft.fft(a, n) * np.conj(np.fft.fft(b, n)))
    return float(np.max(np.abs(correlation)) / norm)
