"""The generated job scripts, as exact text: every site, a few node counts (``tests/launch/expected/*.sh``).

A reviewer reads ``expected/hal-2n.sh`` and sees the script a HAL user gets for 2 nodes. The files change only
when a template or the catalog changes; then ``regenerate_expected.py`` rewrites them and the diff is reviewed.
Each case is the keyword arguments of one LaunchRequest (``site`` as an id); the image and, for ``--runtime
none``, the host's ``hpcai`` are explicit, so the text depends neither on the recipe digest nor on this venv.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hpcai_tf.catalog import load_site
from hpcai_tf.cli import main
from hpcai_tf.errors import KitError
from hpcai_tf.launch.job_script import LaunchRequest, render_job_script
from hpcai_tf.recipes.render import sif_name

EXPECTED = Path(__file__).parent / "expected"

HOST_HPCAI = "/opt/hpcai/venv/bin/hpcai"

CASES: dict[str, dict] = {
    # local: the one site whose script runs here (tests/launch/test_slurm_jobs.py)
    "local-1n-host": dict(site="local", nodes=1, runtime="none", host_hpcai=HOST_HPCAI, train_args=("--smoke",)),
    "local-1n-apptainer": dict(site="local", nodes=1, image="hpcai-local.sif", time="0:45"),
    # local-tf215: the same machine with the 2023 stack's image
    "local-tf215-1n-apptainer": dict(site="local-tf215", nodes=1, image="hpcai-local-tf215.sif"),
    # HAL: partitions by job size, srun --mpi=pmix (the catalog's launcher) or mpirun
    "hal-1n": dict(site="hal", nodes=1, image="/projects/hpcai/hpcai-hal.sif"),
    "hal-2n": dict(site="hal", nodes=2, image="/projects/hpcai/hpcai-hal.sif", account="bbka-hal"),
    "hal-6n-mpirun-2rpn": dict(
        site="hal", nodes=6, ranks_per_node=2, launcher="mpirun", image="/projects/hpcai/hpcai-hal.sif", time="8:00"
    ),
    # Bridges-AI: GPU-AI, volta16 on the Apollo 6500s, volta32 on the DGX-2
    "bridges-ai-1n": dict(site="bridges-ai", nodes=1, image="/pylon5/hpcai/hpcai-bridges-ai.sif"),
    "bridges-ai-4n": dict(site="bridges-ai", nodes=4, image="/pylon5/hpcai/hpcai-bridges-ai.sif", time="12:00"),
    "bridges-ai-dgx2": dict(site="bridges-ai", nodes=1, node_type="dgx2", image="/pylon5/hpcai/hpcai-bridges-ai.sif"),
    # Delta and Bridges-2: the successors, CUDA from NVIDIA's wheels; both ask for an account
    "delta-1n": dict(site="delta", nodes=1, account="bbxx-delta-gpu", image="/projects/bbxx/hpcai-delta.sif"),
    "bridges-2-1n": dict(
        site="bridges-2", nodes=1, account="cis000000p", image="/ocean/projects/cis000000p/hpcai-bridges-2.sif"
    ),
    "delta-2n": dict(site="delta", nodes=2, account="bbxx-delta-gpu", image="/projects/bbxx/hpcai-delta.sif"),
    "bridges-2-2n": dict(
        site="bridges-2", nodes=2, account="cis000000p", image="/ocean/projects/cis000000p/hpcai-bridges-2.sif"
    ),
    # Summit: LSF + jsrun; one resource set per GPU, or one per node
    "summit-2n": dict(site="summit", nodes=2, account="CSC123", image="/gpfs/alpine/csc123/hpcai-summit.sif"),
    "summit-128n-node-layout": dict(
        site="summit",
        nodes=128,
        account="CSC123",
        image="/gpfs/alpine/csc123/hpcai-summit.sif",
        jsrun_layout="node",
        cuda_aware_mpi=True,
        time="12:00",
        run_root="/gpfs/alpine/csc123/scratch",
    ),
    # --backend mwms: TensorFlow's MultiWorkerMirroredStrategy, every Slurm site and Summit; srun ends the step when
    # a task fails (--kill-on-bad-exit=1), mpirun and jsrun need nothing more
    "local-1n-host-mwms": dict(
        site="local", nodes=1, runtime="none", host_hpcai=HOST_HPCAI, train_args=("--smoke",), backend="mwms"
    ),
    "local-tf215-1n-mwms": dict(site="local-tf215", nodes=1, image="hpcai-local-tf215.sif", backend="mwms"),
    "hal-2n-mwms": dict(site="hal", nodes=2, image="/projects/hpcai/hpcai-hal.sif", account="bbka-hal", backend="mwms"),
    "bridges-ai-4n-mwms": dict(
        site="bridges-ai", nodes=4, image="/pylon5/hpcai/hpcai-bridges-ai.sif", time="12:00", backend="mwms"
    ),
    "delta-2n-mwms": dict(
        site="delta", nodes=2, account="bbxx-delta-gpu", image="/projects/bbxx/hpcai-delta.sif", backend="mwms"
    ),
    "bridges-2-2n-mwms": dict(
        site="bridges-2",
        nodes=2,
        account="cis000000p",
        image="/ocean/projects/cis000000p/hpcai-bridges-2.sif",
        backend="mwms",
    ),
    "summit-2n-mwms": dict(
        site="summit", nodes=2, account="CSC123", image="/gpfs/alpine/csc123/hpcai-summit.sif", backend="mwms"
    ),
}


def request_for(case: dict) -> LaunchRequest:
    """The LaunchRequest of a case (``site`` given by id, workload gw)."""
    values = dict(case)
    return LaunchRequest(workload="gw", site=load_site(values.pop("site")), **values)


@pytest.mark.parametrize("case", sorted(CASES))
def test_script_text(case):
    """The rendered script equals the reviewed text, byte for byte."""
    assert render_job_script(request_for(CASES[case])) == (EXPECTED / f"{case}.sh").read_text()


def test_every_site_has_cases():
    """Every site of the catalog is pinned, at more than one node count where it has more than one node."""
    from hpcai_tf.catalog import load_catalog

    for site in load_catalog():
        counts = {c["nodes"] for c in CASES.values() if c["site"] == site.id}
        assert counts, site.id
        if max(n.count for n in site.node_types) > 1:
            assert len(counts) > 1, site.id


@pytest.mark.parametrize("case", sorted(CASES))
def test_shellcheck(case):
    """Every pinned script passes shellcheck with all checks on."""
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is missing: run scripts/install-system.sh")
    result = subprocess.run(["shellcheck", str(EXPECTED / f"{case}.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_default_image_is_the_sites_sif():
    """Without --image the container runs the site's SIF named by the recipe digest."""
    site = load_site("hal")
    text = render_job_script(LaunchRequest(workload="gw", site=site, nodes=1))
    assert f"  singularity exec --nv {sif_name(site)} \\\n" in text


def test_cli_writes_the_same_text(tmp_path, capsys):
    """`hpcai launch --out FILE` writes what the API renders and prints the file name."""
    out = tmp_path / "jobs" / "hal.sh"
    args = ["gw", "--site", "hal", "--nodes", "2", "--account", "bbka-hal", "--image", "/projects/hpcai/hpcai-hal.sif"]
    code = main(["launch", *args, "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().out == f"{out}\n"
    assert out.read_text() == (EXPECTED / "hal-2n.sh").read_text()


def test_cli_prints_to_stdout_and_passes_train_args(capsys):
    """Without --out the script goes to standard output; arguments after `--` reach `hpcai train`."""
    code = main(["launch", "gw", "--site", "local", "--runtime", "none", "--", "--smoke"])
    assert code == 0
    text = capsys.readouterr().out
    assert text.startswith("#!/bin/bash\n#SBATCH --job-name=hpcai-gw\n")
    assert ' train gw --run-dir "$run_dir" --resume --smoke &\n' in text


def test_runtime_none_runs_this_environments_hpcai(capsys):
    """`--runtime none` runs the hpcai installed beside the running Python, by absolute path."""
    import sys

    assert main(["launch", "gw", "--site", "local", "--runtime", "none"]) == 0
    hpcai = Path(sys.executable).parent / "hpcai"
    assert f"  {hpcai} train gw --run-dir" in capsys.readouterr().out


def test_run_root_is_quoted(tmp_path):
    """--run-root with a space and a quote stays one word."""
    root = tmp_path / "my runs's"
    request = LaunchRequest(workload="gw", site=load_site("local"), nodes=1, runtime="none", run_root=str(root))
    text = render_job_script(request)
    assert "run_dir=" + "'" + str(root).replace("'", "'\"'\"'") + "'" + '"/runs/gw-${SLURM_JOB_ID}"\n' in text


def test_a_sites_default_backend_comes_from_its_catalog_and_launch_overrides_it(tmp_path):
    """`[training] backend` names the site's default (with its reason); `--backend` overrides it."""
    import typing

    from hpcai_tf.catalog import Training, load_site_file
    from hpcai_tf.train.options import BACKENDS

    assert typing.get_args(Training.model_fields["backend"].annotation) == BACKENDS  # one list of backends
    text = (Path(__file__).parents[2] / "containers" / "sites" / "local.toml").read_text()
    path = tmp_path / "local.toml"
    path.write_text(text + '\n[training]\nbackend = "mwms"\nreason = "Horovod does not build here"\n')
    site = load_site_file(path)
    request = LaunchRequest(workload="gw", site=site, nodes=1, runtime="none", host_hpcai=HOST_HPCAI)
    assert ' train gw --run-dir "$run_dir" --resume --backend mwms &\n' in render_job_script(request)
    horovod = render_job_script(LaunchRequest(**{**request.__dict__, "backend": "horovod"}))
    assert ' train gw --run-dir "$run_dir" --resume &\n' in horovod
    path.write_text(text + '\n[training]\nbackend = "gloo"\nreason = "x"\n')
    with pytest.raises(KitError, match=r"training\.backend"):
        load_site_file(path)
