"""AI-GW data: lalsuite waveforms in units of M, the overlap, HDF5 generation and its errors."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from hpcai_tf.errors import KitError
from hpcai_tf.train.data.gw_file import GwGeneration, draw_parameters, generate_gw_file, open_gw_file
from hpcai_tf.train.data.gw_waveforms import WaveformSpec, generate_h22, noisy_channels
from hpcai_tf.train.data.overlap import overlap

SPEC = WaveformSpec(dt_M=2.0, length=512, after_peak_M=100.0)


def test_waveform_window_ends_after_the_peak_and_is_normalised():
    h = generate_h22(3.0, 0.5, -0.3, SPEC)
    assert h.shape == (512,) and h.dtype == np.complex64
    peak = int(np.argmax(np.abs(h)))
    assert peak == 512 - 50  # after_peak_M / dt_M samples before the end
    assert h[peak] == pytest.approx(1.0 + 0.0j)
    assert np.abs(h[-1]) < 0.05  # the ringdown has died away by the end of the window


def test_total_mass_scales_out():
    light = generate_h22(2.0, 0.1, 0.2, dataclasses.replace(SPEC, total_mass_msun=20.0))
    heavy = generate_h22(2.0, 0.1, 0.2, dataclasses.replace(SPEC, total_mass_msun=80.0))
    assert overlap(light, heavy) > 0.999


def test_overlap_is_maximised_over_time_and_phase_and_separates_parameters():
    h = generate_h22(2.0, 0.1, 0.2, SPEC).astype(np.complex128)
    shifted = np.roll(h, 7) * np.exp(1.3j)
    assert overlap(h, h) == pytest.approx(1.0)
    assert overlap(h, shifted) > 0.999
    assert overlap(h, generate_h22(7.0, -0.7, 0.6, SPEC)) < 0.8
    assert overlap(h, np.zeros_like(h)) == 0.0


def test_noise_is_whitened_at_the_requested_snr():
    h = generate_h22(2.0, 0.1, 0.2, SPEC)
    noisy = noisy_channels(h, SPEC, snr=30.0, rng=np.random.default_rng(0))
    noise = noisy_channels(h, SPEC, snr=1e-9, rng=np.random.default_rng(0))
    assert noise.std() == pytest.approx(1.0, abs=0.1)  # unit-variance white noise
    assert np.linalg.norm(noisy - noise) == pytest.approx(30.0, rel=1e-3)  # the signal's optimal SNR


def test_parameters_cover_the_ranges():
    params = draw_parameters(GwGeneration(n=2000, seed=3))
    assert params[:, 0].min() >= 1.0 and params[:, 0].max() <= 8.0 and params[:, 0].max() > 7.5
    assert np.abs(params[:, 1:]).max() <= 0.8


def test_generation_writes_labels_beside_waveforms_and_resumes(tmp_path):
    gen = GwGeneration(n=20, seed=5, spec=SPEC, chunk=8)
    out = tmp_path / "gw.h5"
    parts = tmp_path / "gw.h5.parts"
    parts.mkdir()
    (parts / "generation.json").write_text(json.dumps(gen.as_dict(), sort_keys=True))
    generate_gw_file(out, dataclasses.replace(gen, n=20))  # fills all chunks
    assert not parts.exists()
    data = open_gw_file(out)
    assert (data.n, data.length, data.generation) == (20, 512, gen)
    labels = data.read(np.arange(20), "labels")
    np.testing.assert_allclose(labels, draw_parameters(gen), rtol=1e-6)
    waves = data.read(np.array([13, 2, 2]))
    expected = generate_h22(*draw_parameters(gen)[13], SPEC)
    np.testing.assert_allclose(waves[0, :, 0] + 1j * waves[0, :, 1], expected, atol=1e-6)
    np.testing.assert_array_equal(waves[1], waves[2])


def test_interrupted_generation_keeps_finished_chunks(tmp_path):
    gen = GwGeneration(n=16, seed=5, spec=SPEC, chunk=8)
    out = tmp_path / "gw.h5"
    # "rank 0 of 2" finishes its chunk; the barrier stops the run before assembly, as a kill would.
    with pytest.raises(RuntimeError):
        generate_gw_file(out, gen, rank=1, size=2, barrier=_raise)
    chunks = sorted((tmp_path / "gw.h5.parts").glob("chunk-*"))
    assert [c.name for c in chunks] == ["chunk-000001.npz"] and not out.exists()
    with np.load(chunks[0]) as arrays:  # mark the finished chunk, to see that the rerun reuses it
        marked = {name: arrays[name] for name in arrays.files}
    marked["labels"] = np.full_like(marked["labels"], 7.5)
    with open(chunks[0], "wb") as handle:
        np.savez(handle, **marked)
    generate_gw_file(out, dataclasses.replace(gen))  # generates chunk 0 only, then assembles
    labels = open_gw_file(out).read(np.arange(16), "labels")
    assert (labels[8:] == 7.5).all()
    np.testing.assert_allclose(labels[:8], draw_parameters(gen)[:8], rtol=1e-6)
    with pytest.raises(KitError, match="already exists"):
        generate_gw_file(out, gen)


def test_changed_settings_do_not_mix_with_an_unfinished_generation(tmp_path):
    gen = GwGeneration(n=16, seed=5, spec=SPEC, chunk=8)
    with pytest.raises(RuntimeError):
        generate_gw_file(tmp_path / "gw.h5", gen, rank=1, size=2, barrier=_raise)
    with pytest.raises(KitError, match="unfinished generation with other settings"):
        generate_gw_file(tmp_path / "gw.h5", dataclasses.replace(gen, seed=6))


def _raise() -> None:
    raise RuntimeError("stopped")


def test_noisy_file_keeps_clean_waveforms_for_the_overlap(tmp_path):
    out = generate_gw_file(tmp_path / "noisy.h5", GwGeneration(n=4, seed=1, spec=SPEC, noise_snr=20.0))
    data = open_gw_file(out)
    assert data.has_clean
    clean = data.read(np.arange(4), "clean")
    assert np.abs(clean[:, :, 0] + 1j * clean[:, :, 1]).max() == pytest.approx(1.0)
    assert data.read(np.arange(4)).std() > 0.5  # noise-dominated input


@pytest.fixture()
def small_file(tmp_path):
    return generate_gw_file(tmp_path / "gw.h5", GwGeneration(n=6, seed=1, spec=SPEC))


def test_truncated_file_is_a_one_line_error_naming_it(small_file):
    data = small_file.read_bytes()
    small_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(KitError, match=r"gw\.h5: unreadable GW data file \(truncated or corrupt HDF5") as err:
        open_gw_file(small_file)
    assert "\n" not in str(err.value)


def test_garbage_and_missing_files(tmp_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(KitError, match=r"garbage\.h5: unreadable GW data file"):
        open_gw_file(garbage)
    with pytest.raises(KitError, match=r"nothere\.h5: GW data file not found"):
        open_gw_file(tmp_path / "nothere.h5")


def test_wrong_shapes_are_named(small_file, tmp_path):
    with h5py.File(small_file, "a") as h5:
        del h5["labels"]
        h5["labels"] = np.zeros((6, 2), np.float32)
    with pytest.raises(KitError, match=r"gw\.h5: 'labels' has shape \(6, 2\), expected \(6, 3\)"):
        open_gw_file(small_file)
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as h5:
        h5["waveforms"] = np.zeros((6, 512), np.float32)
        h5["labels"] = np.zeros((6, 3), np.float32)
    with pytest.raises(KitError, match=r"flat\.h5: 'waveforms' has shape \(6, 512\), expected \(N, length, 2\)"):
        open_gw_file(flat)
