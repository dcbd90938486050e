"""The site catalog: every committed site validates; bad site files are refused in one line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

from hpcai_tf.catalog import Site, load_catalog, load_site
from hpcai_tf.errors import KitError
from hpcai_tf.paths import SITES_DIR

REPO = Path(__file__).resolve().parents[2]


def test_catalog_has_the_seven_sites():
    """hal, bridges-ai, summit, local, local-tf215 (local's 2023 stack) and the successors delta and bridges-2, each
    validated by the schema."""
    ids = ["bridges-2", "bridges-ai", "delta", "hal", "local", "local-tf215", "summit"]
    assert [s.id for s in load_catalog()] == ids


def test_local_tf215_is_local_with_the_2023_stack():
    """local-tf215 has local's machine facts and TF 2.15.1, Keras 2, NumPy 1.26.4, unpatched Horovod 0.28.1."""
    local, old = load_site("local"), load_site("local-tf215")
    for field in ("arch", "node_types", "partitions", "interconnect", "scheduler", "runtime", "mpi", "base", "env"):
        assert getattr(old, field) == getattr(local, field), field
    assert (old.stack.tensorflow, old.stack.keras, old.stack.numpy) == ("2.15.1", "keras2", "1.26.4")
    assert (old.stack.horovod, old.stack.horovod_patches) == ("0.28.1", [])
    assert (local.stack.tensorflow, local.stack.keras, local.stack.numpy) == ("2.21.0", "tf-keras", "2.4.6")
    assert local.stack.horovod_patches == ["horovod-0.28.1-no-xla-ops", "horovod-0.28.1-tf-keras-backend"]


def test_every_field_is_documented():
    """Every field of every model in the schema carries a description."""
    schema = Site.model_json_schema()
    undocumented = [
        f"{name}.{field}"
        for name, model in [("Site", schema), *schema["$defs"].items()]
        for field, spec in model.get("properties", {}).items()
        if not spec.get("description") and "$ref" not in spec
    ]
    assert undocumented == []


def test_local_site_pins_the_stack_the_host_builds():
    """The local image pins the TensorFlow/NumPy/Horovod the host venv builds, so its Horovod wheel is reused."""
    local = load_site("local")
    lock = dict(
        line.split("==")
        for line in (REPO / "requirements/lock.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert lock["tensorflow-cpu"] == local.stack.tensorflow
    assert lock["numpy"] == local.stack.numpy
    assert lock["mpi4py"] == local.stack.mpi4py
    assert lock["h5py"] == local.stack.h5py
    assert "tf-keras" not in lock and "horovod" not in lock  # setup-venv installs both, from the site's stack
    printed = subprocess.run(
        [
            "bash",
            "-c",
            'eval "$(scripts/setup-venv.sh --print-stack)"; '
            'printf "%s\\n" "$horovod_version" "$horovod_patches" "$tf_keras"',
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert printed.splitlines() == [local.stack.horovod, " ".join(local.stack.horovod_patches), local.stack.tensorflow]


def test_bridges_ai_has_two_node_types_and_gres():
    """Apollo 6500 nodes with volta16, the DGX-2 with volta32."""
    site = load_site("bridges-ai")
    assert {(n.name, n.gpus, n.gres) for n in site.node_types} == {
        ("apollo6500", 8, "gpu:volta16"),
        ("dgx2", 16, "gpu:volta32"),
    }


def test_summit_is_bind_model_with_cuda_11():
    """Spectrum MPI does not support CUDA >= 12: Summit's image stays on CUDA 11.x."""
    site = load_site("summit")
    assert site.mpi.model == "bind" and site.mpi.flavour == "spectrum-mpi"
    assert site.stack.cuda.startswith("11.")


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A private copy of the catalog that a test may break."""
    sites = tmp_path / "sites"
    shutil.copytree(SITES_DIR, sites)
    return sites


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


BAD_SITES = [
    # (site file, text to replace, replacement, expected one-line message fragment)
    ("local", 'tensorflow = "2.21.0"\n', "", "stack.tensorflow: required field is missing"),
    ("local", "cores = 2\n", 'cores = "two"\n', "node_types.0.cores: expected a valid integer, got 'two'"),
    (
        "local",
        'tensorflow = "2.21.0"',
        'tensorflow = "2.x"',
        "stack.tensorflow: expected a version like 2.15.1, got '2.x'",
    ),
    ("hal", 'channel = "open-ce"', 'channel = "pip"', "stack.channel: PyPI has no TensorFlow wheels for ppc64le"),
    (
        "bridges-ai",
        'modules = ["singularity"]',
        'modules = ["singularity; rm -rf /"]',
        "runtime.modules.0: expected a value matching",
    ),
    ("bridges-ai", 'modules = ["singularity"]', 'modules = ["singularity 3.5"]', "runtime.modules.0: expected a value"),
    (
        "local",
        'launcher = "mpirun"',
        'launcher = "aprun"',
        "scheduler.launcher: expected 'mpirun', 'srun' or 'jsrun', got 'aprun'",
    ),
    ("local", 'id = "local"', 'id = "elsewhere"', "id: expected 'local' (the file name), got 'elsewhere'"),
    ("summit", "[scheduler]", '[scheduler]\nqueue = "batch"', "scheduler.queue: unknown field"),
    ("local", 'kind = "slurm"', "kind = slurm", "local.toml: not valid TOML"),
    (
        "delta",
        ', source = "https://www.nvidia.com/en-us/data-center/a100/"',
        "",
        "interconnect.intra_node.source: required on a GPU site (a public page giving NVLink 3.0's bandwidth",
    ),
    (
        "summit",
        '"interconnect.inter_node.latency_us" =',
        '"interconnect.inter_node.rails" =',
        "unconfirmed: expected an entry for 'interconnect.inter_node.latency_us' on a GPU site",
    ),
    (
        "hal",
        'source = "https://www.infinibandta.org/infiniband-roadmap/"',
        'source = "http://www.infinibandta.org/"',
        "interconnect.inter_node.source: expected a value matching",
    ),
]


@pytest.mark.parametrize(("site", "old", "new", "message"), BAD_SITES, ids=[b[3][:40] for b in BAD_SITES])
def test_bad_site_file_is_one_line_error(hpcai, catalog: Path, tmp_path: Path, site, old, new, message):
    """`hpcai render` refuses the bad file with exit 2, one line naming file and field, and writes nothing."""
    _edit(catalog / f"{site}.toml", old, new)
    out = tmp_path / "out"
    result = hpcai("render", "--out", str(out), env={"HPCAI_CATALOG": str(catalog)})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hpcai: error: ")
    assert f"{site}.toml" in lines[0]
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_unknown_site_is_one_line_error(hpcai, tmp_path: Path):
    """An unknown site id names the known ones."""
    result = hpcai("render", "--site", "frontier", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "hpcai: error: unknown site 'frontier': no containers/sites/frontier.toml; "
        "known sites: bridges-2, bridges-ai, delta, hal, local, local-tf215, summit"
    )
    assert not (tmp_path / "out").exists()


def test_unconfirmed_must_name_a_real_field(catalog: Path):
    """A marker of an unconfirmed value must point at a field that exists."""
    _edit(catalog / "hal.toml", '"runtime.version" =', '"runtime.versoin" =')
    with pytest.raises(KitError, match=r"unconfirmed: 'runtime.versoin' is not a field of the site"):
        load_site("hal", catalog)


def test_site_files_are_plain_toml():
    """Every site file parses as TOML and names itself."""
    for path in sorted(SITES_DIR.glob("*.toml")):
        assert tomllib.loads(path.read_text())["id"] == path.stem
