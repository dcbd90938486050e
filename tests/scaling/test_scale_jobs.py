"""`hpcai scale --site S --submit`: one batch job per rank count on the real one-node Slurm, then the report.

The jobs run the host's ``hpcai`` (``--runtime none``): this machine has no Apptainer in CI; the container line of
the job script is covered by tests/launch's exact-text tests. Counts a site cannot hold are refused before
anything is written or submitted. LSF cannot run here: its ``bjobs`` output is parsed from the documented text.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from emulated_testing import run_stopping_cluster

from hpcai_tf.catalog import load_catalog
from hpcai_tf.errors import KitError
from hpcai_tf.launch.job_script import LaunchRequest, render_job_script
from hpcai_tf.launch.job_state import JobState, parse_state
from hpcai_tf.launch.scale_jobs import nodes_for
from hpcai_tf.paths import DOCS_DIR
from hpcai_tf.sitedocs.site_page import example_counts
from hpcai_tf.train.metrics_log import read_records


def scale_on_slurm(hpcai, cluster, tmp_path: Path, ranks: str, *options: str, timeout: float):
    """`hpcai scale gw --ranks RANKS --site local --submit --runtime none --out TMP/scale OPTIONS` from ``tmp_path``;
    the completed process and the output directory."""
    out = tmp_path / "scale"
    result = hpcai(
        "scale",
        "gw",
        "--ranks",
        ranks,
        "--site",
        "local",
        "--submit",
        "--runtime",
        "none",
        "--out",
        str(out),
        *options,
        env=cluster.env,
        cwd=tmp_path,
        timeout=timeout,
    )
    return result, out


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(900)
def test_scale_submits_one_job_per_count_waits_and_reports(slurm_cluster, hpcai, tmp_path: Path):
    """1 and 2 ranks as two Slurm jobs: both COMPLETED, their runs in the report, the manifest lists them."""
    result, out = scale_on_slurm(
        hpcai,
        slurm_cluster,
        tmp_path,
        "1,2",
        "--poll",
        "2",
        "--",
        "--smoke",
        "--epochs",
        "2",
        "--no-tensorboard",
        timeout=880,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    manifest = json.loads((out / "scale-jobs.json").read_text())
    assert [(j["ranks"], j["nodes"], j["ranks_per_node"]) for j in manifest["jobs"]] == [(1, 1, 1), (2, 1, 2)]
    for job in manifest["jobs"]:
        fields = slurm_cluster.job(job["job_id"])
        assert (fields["JobState"], fields["NumTasks"]) == ("COMPLETED", str(job["ranks"]))
        assert job["run_dir"] == str(out / "runs" / f"gw-{job['job_id']}")
        assert read_records(Path(job["run_dir"]) / "metrics.jsonl")[0]["ranks"] == job["ranks"]
        assert (out / f"hpcai-gw-{job['job_id']}.out").is_file()  # the scheduler's output, beside the report
        assert "#SBATCH --ntasks-per-node=" + str(job["ranks"]) in Path(job["script"]).read_text()
        assert f"hpcai scale: job {job['job_id']} ({job['ranks']} rank" in result.stdout
    rows = [line.split("|")[1:-1] for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert [int(row[3]) for row in rows[1:]] == [1, 2]  # site, image, backend, ranks
    assert rows[1][0].strip() == "local"
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_a_failed_job_ends_the_study_in_one_line(slurm_cluster, hpcai, tmp_path: Path):
    """`hpcai train` fails in the job (its data file does not exist): FAILED, named with its log, and no report.
    (Arguments the training parser refuses never reach the queue: `hpcai scale` checks them before submitting.)"""
    result, out = scale_on_slurm(
        hpcai, slurm_cluster, tmp_path, "1", "--poll", "1", "--", "--data", str(tmp_path / "absent.h5"), timeout=280
    )
    assert result.returncode == 2, result.stderr
    job_id = json.loads((out / "scale-jobs.json").read_text())["jobs"][0]["job_id"]
    assert result.stderr == (
        f"hpcai: error: scale: job {job_id} (1 rank) ended FAILED (exit 2:0); see {out}/runs/gw-{job_id}/job.log\n"
    )
    assert not (out / "report.md").exists()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(300)
def test_no_wait_submits_lists_the_jobs_and_returns(slurm_cluster, hpcai, tmp_path: Path):
    """`--no-wait`: the job is submitted and listed, the command returns at once, no report is written."""
    absent = str(tmp_path / "absent.h5")
    result, out = scale_on_slurm(hpcai, slurm_cluster, tmp_path, "2", "--no-wait", "--", "--data", absent, timeout=60)
    assert result.returncode == 0, result.stderr
    (job,) = json.loads((out / "scale-jobs.json").read_text())["jobs"]
    assert result.stdout.splitlines() == [
        f"hpcai scale: 2 rank(s) on 1 node(s): job {job['job_id']} -> {out}/runs/gw-{job['job_id']}",
        f"hpcai scale: not waiting; when the jobs have ended: hpcai report {out}/runs/* --out {out}",
    ]
    assert slurm_cluster.wait_end(job["job_id"], timeout=240)["JobState"] == "FAILED"
    assert not (out / "report.md").exists()


@pytest.fixture
def var_tmp() -> Iterator[Path]:
    """A directory under /var/tmp: the emulated nodes have their own /tmp."""
    root = Path(tempfile.mkdtemp(prefix="hpcai-test-scale-", dir="/var/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(420)
def test_emulated_study_spans_nodes_one_rank_each(hpcai, var_tmp: Path):
    """`--emulate` on Bridges-AI: 1 and 2 ranks, one per emulated node, one job after another; the 2-rank run's
    ranks on two hosts; job ids continue after a run already in OUT/runs; the report; the daemons are gone."""
    made = hpcai("data", "gw", "--smoke", "--n", "160", "--out", str(var_tmp / "gw.h5"), timeout=120)
    assert made.returncode == 0, made.stderr
    out = var_tmp / "scale"
    (out / "runs" / "gw-7").mkdir(parents=True)  # an earlier study's run: job ids go on from 8
    train = ("--smoke", "--data", str(var_tmp / "gw.h5"), "--epochs", "1", "--no-tensorboard")
    result = run_stopping_cluster(
        "scale", "gw", "--ranks", "1,2", "--site", "bridges-ai", "--submit", "--emulate", "--poll", "1",
        "--out", str(out), "--", *train, cwd=var_tmp, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = json.loads((out / "scale-jobs.json").read_text())["jobs"]
    assert [(j["ranks"], j["nodes"], j["ranks_per_node"], j["job_id"]) for j in jobs] == [
        (1, 1, 1, "8"),
        (2, 2, 1, "9"),
    ]
    hosts = [read_records(Path(j["run_dir"]) / "metrics.jsonl")[0]["hostnames"] for j in jobs]
    assert hosts == [["bridges-ai-apollo6500-1"], ["bridges-ai-apollo6500-1", "bridges-ai-apollo6500-2"]]
    assert "#SBATCH --nodes=2\n" in Path(jobs[1]["script"]).read_text()
    rows = [line.split("|")[1:-1] for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert [(row[0].strip(), int(row[3])) for row in rows[1:]] == [("bridges-ai", 1), ("bridges-ai", 2)]
    cluster = re.search(r"^hpcai scale: emulated cluster (\S+): .* daemon pids (.*)$", result.stdout, re.M)
    pids = [int(p) for p in cluster[2].replace("=", " ").split()[1::2]]
    assert len(pids) == 4 and not [pid for pid in pids if Path(f"/proc/{pid}").exists()], pids
    assert f"hpcai scale: removed the cluster directory {cluster[1]}\n" in result.stdout
    assert not Path(cluster[1]).exists()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--ranks", "4", "--site", "local", "--submit"],
            "--ranks: site local has 1 node of type cpu with 2 cores each (at most 2 ranks), got 4",
        ),
        (
            ["--ranks", "1,6", "--site", "hal", "--submit"],
            "--ranks: 6 ranks do not fill whole nodes of type ac922 (4 GPUs each); expected at most 4 or a multiple of 4",
        ),
        (
            ["--ranks", "4,128", "--site", "hal", "--submit"],
            "--ranks: site hal has 16 nodes of type ac922 with 4 GPUs each (at most 64 ranks), got 128",
        ),
        (
            ["--ranks", "1", "--site", "hal"],
            "--site and --submit: give both to run the counts as batch jobs (neither: mpirun here)",
        ),
        (["--ranks", "1", "--runtime", "none"], "--runtime: only for batch jobs (--site S --submit)"),
        (
            ["--ranks", "1", "--site", "local", "--submit", "--poll", "0"],
            "--poll: expected a positive number of seconds, got 0.0",
        ),
        (["--ranks", "1", "--site", "nowhere", "--submit"], None),
        (
            ["--ranks", "1,3", "--site", "hal", "--submit", "--ranks-per-node", "2"],
            "--ranks: 3 ranks do not fill whole nodes of type ac922 (2 ranks each); expected at most 2 or a multiple of 2",
        ),
        (
            ["--ranks", "1", "--site", "summit", "--submit", "--emulate", "--account", "A"],
            "--site: site summit runs lsf with jsrun, which cannot run here; rehearse emulates Slurm sites only "
            "(bridges-2, bridges-ai, delta, hal, local, local-tf215)",
        ),
        (
            ["--ranks", "1", "--site", "hal", "--submit", "--emulate", "--no-wait"],
            "--no-wait: the emulated cluster stops when hpcai scale ends; expected it without --emulate",
        ),
        (["--ranks", "1", "--emulate"], "--emulate: only for batch jobs (--site S --submit)"),
    ],
)
def test_counts_a_site_cannot_hold_are_refused_before_anything_is_written(hpcai, tmp_path, args, error):
    out = tmp_path / "scale"
    result = hpcai("scale", "gw", *args, "--out", str(out), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    if error:
        assert result.stderr == f"hpcai: error: {error}\n"
    else:
        assert "nowhere" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("placed", ["out", "data"])
def test_an_emulated_study_with_a_path_under_tmp_is_refused(hpcai, placed):
    """The emulated nodes have their own /tmp: runs written there, or data read from there (a train argument),
    would be invisible to them; one line naming the path, nothing written."""
    private = Path(tempfile.mkdtemp(dir="/tmp"))
    if placed == "out":
        out, named, what, train = private / "scale", private / "scale", "--out: the runs' directory", ()
    else:
        out, named = Path(tempfile.mkdtemp(dir="/var/tmp")) / "scale", private / "gw.h5"
        what, train = "scale --emulate: the training argument", ("--", "--data", named)
    try:
        args = ("--ranks", "1", "--site", "hal", "--submit", "--emulate", "--out", out, *train)
        result = hpcai("scale", "gw", *map(str, args))
        assert (result.returncode, result.stderr) == (
            2,
            f"hpcai: error: {what} {named} is under /tmp, which each emulated node replaces with its own; expected "
            "it elsewhere (e.g. under /var/tmp)\n",
        )
        assert not out.exists()
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(out.parent, ignore_errors=True)


@pytest.mark.parametrize(
    ("text", "state", "ended", "succeeded"),
    [
        ("DONE -\n", JobState("7", "DONE", "-"), True, True),
        ("EXIT 75\n", JobState("7", "EXIT", "75"), True, False),
        ("RUN -\n", JobState("7", "RUN", "-"), False, False),
        ("PEND -\n", JobState("7", "PEND", "-"), False, False),
    ],
)
def test_lsf_states_from_the_documented_bjobs_output(text, state, ended, succeeded):
    """`bjobs -noheader -o "stat exit_code" ID`, as IBM documents it (no LSF here to ask)."""
    parsed = parse_state("lsf", "7", text)
    assert (parsed, parsed.ended("lsf"), parsed.succeeded("lsf")) == (state, ended, succeeded)


def test_scheduler_output_without_a_state_is_one_line_error():
    with pytest.raises(KitError, match=r"^job 7: no JobState in the output of scontrol: 'JobId=7'$"):
        parse_state("slurm", "7", "JobId=7\n")
    with pytest.raises(KitError, match=r"^job 7: no state in the output of bjobs: 'Job <7> is not found'$"):
        parse_state("lsf", "7", "Job <7> is not found\n")


# Each site's example study, worked out by hand from its catalog node type: 1, one node, 2 and 4 nodes it has.
EXAMPLE_COUNTS = {
    "bridges-2": [1, 8, 16, 32],  # 8 V100s per node
    "bridges-ai": [1, 8, 16, 32],  # 8 V100s per node
    "delta": [1, 4, 8, 16],  # 4 A100s per node
    "hal": [1, 4, 8, 16],  # 4 V100s per node
    "local": [1, 2],  # one node of 2 cores
    "local-tf215": [1, 2],
    "summit": [1, 6, 12, 24],  # 6 V100s per node
}


def test_every_site_has_a_worked_example_count():
    assert sorted(EXAMPLE_COUNTS) == sorted(site.id for site in load_catalog())


@pytest.mark.parametrize("site", load_catalog(), ids=lambda site: site.id)
def test_every_site_page_example_count_makes_a_job_script(site):
    """docs/sites/<id>.md's `hpcai scale --ranks ...` example: each count is whole nodes the site can give."""
    node = site.node_type()
    counts = EXAMPLE_COUNTS[site.id]
    assert example_counts(node) == counts
    assert (
        f"--ranks {','.join(map(str, counts))} --site {site.id} --submit"
        in (DOCS_DIR / "sites" / f"{site.id}.md").read_text()
    )
    for ranks in counts:
        nodes, per = nodes_for(site, node, ranks)
        assert nodes * per == ranks
        account = "PROJECT" if site.scheduler.account_required else None
        render_job_script(LaunchRequest("resnet50", site, nodes, per, account=account, image="hpcai.sif"))
