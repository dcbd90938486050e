"""The l=|m|=2 mode of aligned-spin binary black hole mergers from lalsuite, in units of the total mass M.

A waveform is generated at a fixed total mass (it scales out: time is in M, the amplitude is normalised),
sampled every ``dt_M``, cut to a window of ``length`` samples that ends ``after_peak_M`` after the amplitude
peak, and normalised so that the peak sample is 1 + 0i (unit amplitude, zero phase at the peak).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

DISTANCE_MPC = 100.0  # scales out with the normalisation
LOW_FREQUENCY_CUTOFF_HZ = 10.0  # below it the analytic aLIGO PSD is treated as infinite


@dataclass(frozen=True)
class WaveformSpec:
    """How waveforms are sampled and cut; stored as attributes of the HDF5 file."""

    dt_M: float = 1.0
    length: int = 4096
    after_peak_M: float = 100.0
    total_mass_msun: float = 60.0
    approximant: str = "IMRPhenomXAS"

    @property
    def window_M(self) -> float:
        return self.dt_M * self.length

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _lal():
    import lal
    import lalsimulation

    return lal, lalsimulation


def start_frequency_hz(q: float, spec: WaveformSpec) -> float:
    """A start frequency whose leading-order time to merger exceeds the window by 30 % (plus 500 M)."""
    lal, _ = _lal()
    eta = q / (1.0 + q) ** 2
    tau_M = 1.3 * (spec.window_M - spec.after_peak_M) + 500.0
    mf = (tau_M * 256.0 * eta / 5.0) ** (-3.0 / 8.0) / math.pi
    return mf / (spec.total_mass_msun * lal.MTSUN_SI)


def generate_h22(q: float, s1z: float, s2z: float, spec: WaveformSpec) -> np.ndarray:
    """The normalised complex h22 = h+ - i hx seen face-on, as ``spec.length`` complex64 samples."""
    lal, lalsimulation = _lal()
    approximant = lalsimulation.GetApproximantFromString(spec.approximant)
    total = spec.total_mass_msun
    m1, m2 = total * q / (1.0 + q), total / (1.0 + q)
    delta_t = spec.dt_M * total * lal.MTSUN_SI
    n_after = round(spec.after_peak_M / spec.dt_M)
    n_before = spec.length - n_after
    f_start = start_frequency_hz(q, spec)
    for _attempt in range(4):
        hp, hc = lalsimulation.SimInspiralChooseTDWaveform(
            m1 * lal.MSUN_SI, m2 * lal.MSUN_SI, 0.0, 0.0, s1z, 0.0, 0.0, s2z,
            DISTANCE_MPC * 1e6 * lal.PC_SI, 0.0, 0.0, 0.0, 0.0, 0.0,
            delta_t, f_start, f_start, lal.CreateDict(), approximant,
        )  # fmt: skip
        h = hp.data.data - 1j * hc.data.data
        peak = int(np.argmax(np.abs(h)))
        if peak >= n_before:
            break
        f_start *= 0.8  # the waveform was shorter than the window: start earlier
    else:  # pragma: no cover - the chirp-time estimate is conservative
        raise RuntimeError(f"waveform q={q} s1z={s1z} s2z={s2z} is shorter than the window")
    window = h[peak - n_before : peak + n_after]
    if len(window) < spec.length:  # the ringdown ended before the window did: pad with zeros
        window = np.concatenate([window, np.zeros(spec.length - len(window), dtype=window.dtype)])
    peak_value = window[n_before]
    return (window * (np.conj(peak_value) / abs(peak_value) ** 2)).astype(np.complex64)


@lru_cache(maxsize=8)
def _whitening_factor(spec: WaveformSpec) -> np.ndarray:
    """1 / sqrt(S_n(f) / (2 dt)) on the rfft grid of a window, zero below the low-frequency cutoff."""
    lal, lalsimulation = _lal()
    delta_t = spec.dt_M * spec.total_mass_msun * lal.MTSUN_SI
    freqs = np.fft.rfftfreq(spec.length, delta_t)
    factor = np.zeros_like(freqs)
    for i, f in enumerate(freqs):
        if f >= LOW_FREQUENCY_CUTOFF_HZ:
            factor[i] = 1.0 / math.sqrt(lalsimulation.SimNoisePSDaLIGOZeroDetHighPower(f) / (2.0 * delta_t))
    return factor


def whiten(series: np.ndarray, spec: WaveformSpec) -> np.ndarray:
    """Whiten a real series against the analytic aLIGO zero-detuned high-power PSD (Tukey-tapered start)."""
    taper = np.ones(spec.length)
    n = max(2, spec.length // 10)
    taper[:n] = 0.5 * (1.0 - np.cos(np.pi * np.arange(n) / n))
    return np.fft.irfft(np.fft.rfft(series * taper) * _whitening_factor(spec), n=spec.length)


def noisy_channels(h22: np.ndarray, spec: WaveformSpec, snr: float, rng: np.random.Generator) -> np.ndarray:
    """(length, 2) whitened Re/Im channels scaled to optimal SNR ``snr``, plus unit-variance white noise each.

    Each channel is treated as one detector that sees one polarisation; for whitened data the optimal SNR is
    the Euclidean norm, so the signal is rescaled to norm ``snr`` over both channels.
    """
    channels = np.stack([whiten(h22.real, spec), whiten(h22.imag, spec)], axis=-1)
    channels *= snr / np.linalg.norm(channels)
    return (channels + rng.standard_normal(channels.shape)).astype(np.float32)


def as_channels(h22: np.ndarray) -> np.ndarray:
    """(length, 2) float32 real and imaginary parts: the network input of the noise-free data."""
    return np.stack([h22.real, h22.imag], axis=-1).astype(np.float32)


def lalsuite_version() -> str:
    try:
        import lalsimulation

        return str(lalsimulation.__version__)
    except (ImportError, AttributeError):  # pragma: no cover
        return "unknown"
