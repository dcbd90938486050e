"""AI-GW data files: generation into HDF5 (parallel, resumable, atomic) and validated reading.

Layout of a file written by ``hpcai data gw``:

- ``waveforms`` (N, length, 2) float32: the network input, Re and Im of h22 (whitened and noisy with --noise);
- ``labels`` (N, 3) float32: q, s1z, s2z;
- ``clean`` (N, length, 2) float32, only with --noise: the noise-free normalised h22, for the overlap figure;
- attributes: the :class:`WaveformSpec`, the parameter ranges, the noise SNR, the seed, the lalsuite version.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.atomic import atomic_path, write_text_atomic
from hpcai_tf.train.data.gw_waveforms import (
    WaveformSpec,
    as_channels,
    generate_h22,
    lalsuite_version,
    noisy_channels,
)
from hpcai_tf.train.data.parallel import my_chunks, run_chunks

FORMAT = "hpcai-gw-1"
LABELS = ("q", "s1z", "s2z")


@dataclass(frozen=True)
class GwGeneration:
    """Everything that determines the content of a generated file (the same settings give the same file)."""

    n: int
    seed: int = 1234
    spec: WaveformSpec = field(default_factory=WaveformSpec)
    q_min: float = 1.0
    q_max: float = 8.0
    spin_max: float = 0.8
    noise_snr: float = 0.0
    chunk: int = 128

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def chunks(self) -> int:
        return -(-self.n // self.chunk)


def check_generation(gen: GwGeneration) -> None:
    if gen.n < 1:
        raise KitError(f"--n must be >= 1, got {gen.n}")
    if not 1.0 <= gen.q_min <= gen.q_max:
        raise KitError(f"mass ratio range [{gen.q_min}, {gen.q_max}] must satisfy 1 <= q_min <= q_max")
    if not 0.0 <= gen.spin_max < 1.0:
        raise KitError(f"spin_max must be in [0, 1), got {gen.spin_max}")
    if gen.spec.length < 64 or gen.spec.dt_M <= 0 or not 0 <= gen.spec.after_peak_M < gen.spec.window_M:
        raise KitError("waveform window: need length >= 64, dt_M > 0 and 0 <= after_peak_M < length x dt_M")
    if gen.noise_snr < 0:
        raise KitError(f"--noise must be >= 0 (an SNR), got {gen.noise_snr}")


def draw_parameters(gen: GwGeneration) -> np.ndarray:
    """(n, 3) parameters q, s1z, s2z drawn uniformly over the ranges from the seed."""
    rng = np.random.default_rng([gen.seed, 0])
    q = rng.uniform(gen.q_min, gen.q_max, gen.n)
    spins = rng.uniform(-gen.spin_max, gen.spin_max, (gen.n, 2))
    return np.column_stack([q, spins]).astype(np.float64)


def _chunk_path(parts: Path, index: int) -> Path:
    return parts / f"chunk-{index:06d}.npz"


def _generate_chunk(job: tuple[GwGeneration, int, str]) -> int:
    gen, index, parts = job
    params = draw_parameters(gen)[index * gen.chunk : (index + 1) * gen.chunk]
    rng = np.random.default_rng([gen.seed, 1, index])
    clean = np.empty((len(params), gen.spec.length, 2), np.float32)
    inputs = np.empty_like(clean)
    for row, (q, s1z, s2z) in enumerate(params):
        h22 = generate_h22(q, s1z, s2z, gen.spec)
        clean[row] = as_channels(h22)
        inputs[row] = noisy_channels(h22, gen.spec, gen.noise_snr, rng) if gen.noise_snr > 0 else clean[row]
    arrays = {"waveforms": inputs, "labels": params.astype(np.float32)}
    if gen.noise_snr > 0:
        arrays["clean"] = clean
    with atomic_path(_chunk_path(Path(parts), index), suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return index


def _prepare_parts(out: Path, gen: GwGeneration) -> Path:
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    settings = parts / "generation.json"
    wanted = json.dumps(gen.as_dict(), sort_keys=True)
    if settings.exists():
        if settings.read_text() != wanted:
            raise KitError(f"{parts}: holds an unfinished generation with other settings; remove it or repeat them")
    else:
        write_text_atomic(settings, wanted)
    return parts


def generate_gw_file(
    out: str | Path,
    gen: GwGeneration,
    *,
    workers: int = 1,
    rank: int = 0,
    size: int = 1,
    barrier=lambda: None,
) -> Path:
    """Generate ``out`` (HDF5): chunks shared by ranks (and by ``workers`` processes each), then assembled by
    rank 0 into a temporary file that is renamed into place. Finished chunks of an interrupted run are
    kept."""
    check_generation(gen)
    out = Path(out).absolute()
    if out.exists():
        raise KitError(f"{out}: already exists; remove it or choose another --out")
    parts = _prepare_parts(out, gen)  # on every rank: identical settings, so a race writes the same file
    todo = [i for i in my_chunks(range(gen.chunks), rank, size) if not _chunk_path(parts, i).exists()]
    run_chunks(_generate_chunk, [(gen, i, str(parts)) for i in todo], workers)
    barrier()
    if rank == 0:
        _assemble(out, gen, parts)
        shutil.rmtree(parts)
    barrier()
    return out


def _assemble(out: Path, gen: GwGeneration, parts: Path) -> None:
    length = gen.spec.length
    names = ["waveforms", "labels"] + (["clean"] if gen.noise_snr > 0 else [])
    with atomic_path(out, suffix=".h5") as tmp, h5py.File(tmp, "w") as h5:
        chunk_rows = min(gen.n, 64)
        h5.create_dataset("waveforms", (gen.n, length, 2), np.float32, chunks=(chunk_rows, length, 2))
        h5.create_dataset("labels", (gen.n, 3), np.float32)
        if gen.noise_snr > 0:
            h5.create_dataset("clean", (gen.n, length, 2), np.float32, chunks=(chunk_rows, length, 2))
        for index in range(gen.chunks):
            with np.load(_chunk_path(parts, index)) as arrays:
                start = index * gen.chunk
                for name in names:
                    h5[name][start : start + len(arrays[name])] = arrays[name]
        h5.attrs["format"] = FORMAT
        h5.attrs["labels"] = json.dumps(LABELS)
        h5.attrs["generation"] = json.dumps(gen.as_dict())
        h5.attrs["lalsuite"] = lalsuite_version()
        for key, value in gen.spec.as_dict().items():
            h5.attrs[key] = value
        for key in ("q_min", "q_max", "spin_max", "noise_snr", "seed"):
            h5.attrs[key] = getattr(gen, key)


@dataclass
class GwFile:
    """A validated GW data file: its size, window and generation settings."""

    path: Path
    n: int
    length: int
    generation: GwGeneration

    @property
    def has_clean(self) -> bool:
        return self.generation.noise_snr > 0

    def read(self, indices: np.ndarray, dataset: str = "waveforms") -> np.ndarray:
        """Rows ``indices`` (any order) of ``dataset``."""
        unique, inverse = np.unique(np.asarray(indices), return_inverse=True)
        with h5py.File(self.path, "r") as h5:
            rows = h5[dataset][unique]  # h5py reads increasing, distinct indices
        return rows[inverse]


def open_gw_file(path: str | Path) -> GwFile:
    """Open and check a GW file; a missing, corrupt, truncated or mis-shaped file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise KitError(f"{path}: GW data file not found (write one with `hpcai data gw --n N --out {path}`)")
    try:
        with h5py.File(path, "r") as h5:
            for name in ("waveforms", "labels"):
                if name not in h5:
                    raise KitError(f"{path}: no '{name}' dataset (expected a file written by `hpcai data gw`)")
            waves, labels = h5["waveforms"], h5["labels"]
            if waves.ndim != 3 or waves.shape[2] != 2 or waves.shape[1] < 16:
                raise KitError(f"{path}: 'waveforms' has shape {waves.shape}, expected (N, length, 2)")
            if labels.shape != (waves.shape[0], 3):
                raise KitError(f"{path}: 'labels' has shape {labels.shape}, expected ({waves.shape[0]}, 3)")
            if waves.shape[0] < 2:
                raise KitError(f"{path}: holds {waves.shape[0]} waveforms, need at least 2")
            # Touch the last rows: a truncated file opens but fails here.
            waves[-1]
            labels[-1]
            if "clean" in h5:
                h5["clean"][-1]
            generation = json.loads(h5.attrs["generation"])
            spec = WaveformSpec(**generation.pop("spec"))
            gen = GwGeneration(spec=spec, **generation)
            if spec.length != waves.shape[1]:
                raise KitError(f"{path}: 'waveforms' length {waves.shape[1]} differs from its attribute {spec.length}")
            return GwFile(path=path.absolute(), n=int(waves.shape[0]), length=int(waves.shape[1]), generation=gen)
    except KitError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        reason = str(err).split("\n")[0]
        raise KitError(f"{path}: unreadable GW data file (truncated or corrupt HDF5: {reason})") from None
