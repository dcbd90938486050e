"""TF_CONFIG from the launcher's environment (``hpcai_tf.train.tf_config``): srun's, mpirun's and jsrun's variables
as each launcher sets them, the TF_CONFIG text each worker gets, and the one-line refusals.

jsrun cannot run here (no LSF): its environment is tested as exact text, from the variables jsrun sets
(JSM_NAMESPACE_*) and LSF's host list with the launch node first, as on Summit.
"""

from __future__ import annotations

import json
import socket

import pytest

from hpcai_tf.errors import KitError
from hpcai_tf.train.backend_mwms import plan_workers, port_problem
from hpcai_tf.train.tf_config import (
    expand_hostlist,
    slurm_hosts_by_rank,
    tasks_per_node,
    tf_config,
    tf_config_text,
    worker_addresses,
    worker_place,
)

SRUN_2X2 = {  # srun --nodes 2 --ntasks-per-node 2, rank 3 (the second task of the second node)
    "SLURM_JOB_ID": "812",
    "SLURM_STEP_ID": "0",
    "SLURM_PROCID": "3",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "1",
    "SLURMD_NODENAME": "gpu08",
    "SLURM_STEP_NUM_TASKS": "4",
    "SLURM_STEP_NODELIST": "gpu[07-08]",
    "SLURM_STEP_TASKS_PER_NODE": "2(x2)",
}
JSRUN_SUMMIT = {  # jsrun -n4 -r2 -a1 (the kit's per-GPU layout, 2 per node here), rank 2
    "LSB_JOBID": "1234",
    "LSB_MCPU_HOSTS": "batch3 1 a01n01 42 a01n02 42",
    "JSM_NAMESPACE_RANK": "2",
    "JSM_NAMESPACE_SIZE": "4",
    "JSM_NAMESPACE_LOCAL_RANK": "0",
    "JSM_NAMESPACE_LOCAL_SIZE": "2",
}


def test_slurm_host_lists_expand_in_order():
    assert expand_hostlist("gpu[07-08,10],login1") == ["gpu07", "gpu08", "gpu10", "login1"]
    assert expand_hostlist("r[1-2]n[01-02]") == ["r1n01", "r1n02", "r2n01", "r2n02"]
    assert expand_hostlist("hal01") == ["hal01"]
    assert tasks_per_node("2(x3),1") == [2, 2, 2, 1]


def test_block_and_cyclic_layouts_place_every_task():
    assert slurm_hosts_by_rank("n[1-2]", "3,2") == ["n1", "n1", "n1", "n2", "n2"]
    assert slurm_hosts_by_rank("n[1-2]", "3,2", "cyclic:block") == ["n1", "n2", "n1", "n2", "n1"]
    with pytest.raises(KitError, match="SLURM_DISTRIBUTION='plane=2'"):
        slurm_hosts_by_rank("n[1-2]", "2(x2)", "plane=2")


def test_srun_worker_gets_its_index_and_every_worker_address():
    place = worker_place(SRUN_2X2)
    assert (place.launcher, place.rank, place.size, place.local_rank, place.local_size) == ("srun", 3, 4, 1, 2)
    config = tf_config(worker_addresses(place.hosts), 23456, place.rank)
    assert tf_config_text(config) == (
        '{"cluster":{"worker":["gpu07:23456","gpu07:23457","gpu08:23458","gpu08:23459"]},'
        '"task":{"type":"worker","index":3}}'
    )


def test_jsrun_environment_as_exact_text():
    place = worker_place(JSRUN_SUMMIT)
    assert (place.launcher, place.rank, place.size, place.hosts) == ("jsrun", 2, 4, ("a01n01",) * 2 + ("a01n02",) * 2)
    text = tf_config_text(tf_config(worker_addresses(place.hosts), 29000, place.rank))
    assert text == (
        '{"cluster":{"worker":["a01n01:29000","a01n01:29001","a01n02:29002","a01n02:29003"]},'
        '"task":{"type":"worker","index":2}}'
    )


def test_one_host_is_loopback_and_an_address_override_wins():
    assert worker_addresses(["vm", "vm"]) == ["127.0.0.1", "127.0.0.1"]
    assert worker_addresses(["node1", "node2"], "127.0.0.1") == ["127.0.0.1", "127.0.0.1"]
    assert worker_addresses(["node1", "node2"]) == ["node1", "node2"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        # a rank started by hand: one of Open MPI's variables, not the others
        ({"OMPI_COMM_WORLD_RANK": "1"}, "missing OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_SIZE"),
        ({"SLURM_PROCID": "1"}, "missing SLURM_STEP_ID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, SLURM_STEP_NODELIST"),
        ({**SRUN_2X2, "SLURM_STEP_NODELIST": ""}, "under srun: the environment does not name every worker; missing SLURM_STEP_NODELIST"),
        ({k: v for k, v in JSRUN_SUMMIT.items() if k != "LSB_MCPU_HOSTS"}, "under jsrun: .*missing LSB_MCPU_HOSTS"),
        ({**SRUN_2X2, "SLURMD_NODENAME": "gpu07"}, "puts rank 3 on gpu08, but it runs on gpu07"),
        ({**SRUN_2X2, "SLURM_STEP_TASKS_PER_NODE": "2,1"}, "places 3 tasks, SLURM_STEP_NUM_TASKS=4"),
        ({**JSRUN_SUMMIT, "JSM_NAMESPACE_SIZE": "6"}, "6 tasks at 2 per node do not fit the 2 compute hosts"),
        ({"PMI_RANK": "0", "PMI_SIZE": "2"}, "cannot read the workers from \\(PMI_RANK\\)"),
    ],
)  # fmt: skip
def test_a_launcher_environment_that_does_not_name_every_worker_is_refused(env, message):
    with pytest.raises(KitError, match=message) as refused:
        worker_place(env)
    assert "\n" not in str(refused.value)


def test_no_launcher_is_one_worker_and_a_batch_script_is_not_a_step():
    assert worker_place({}) is None
    assert worker_place({"SLURM_JOB_ID": "5", "SLURM_STEP_ID": "batch", "SLURM_PROCID": "0"}) is None
    plan = plan_workers({}, 23456)
    assert (plan.rank, plan.size, plan.config) == (0, 1, None)


def test_mpirun_ranks_gather_their_hosts_and_each_gets_its_config():
    env = {
        "OMPI_COMM_WORLD_RANK": "1",
        "OMPI_COMM_WORLD_SIZE": "2",
        "OMPI_COMM_WORLD_LOCAL_RANK": "0",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "1",
    }
    plan = plan_workers(env, 41000, gather=lambda mine: [("node-a", None), ("node-b", mine[1])])
    assert (plan.launcher, plan.rank, plan.size) == ("mpirun (Open MPI)", 1, 2)
    assert json.loads(env["TF_CONFIG"]) == {
        "cluster": {"worker": ["node-a:41000", "node-b:41001"]},
        "task": {"type": "worker", "index": 1},
    }


def test_a_taken_port_is_refused_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_problem(port)
        env = {**SRUN_2X2, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURMD_NODENAME": "gpu07"}
        with pytest.raises(KitError, match=f"port {port} \\(--port-base {port} \\+ rank 0\\) on .*choose another"):
            plan_workers(env, port)
        assert "TF_CONFIG" not in env
    with pytest.raises(KitError, match="--port-base 65535: the workers need ports 65535-65538"):
        plan_workers(dict(SRUN_2X2), 65535)


def test_a_tf_config_the_user_set_is_checked_and_kept():
    given = tf_config_text(tf_config(["h1", "h2"], 30000, 1))
    plan = plan_workers({"TF_CONFIG": given}, 23456)
    assert (plan.launcher, plan.rank, plan.size) == ("TF_CONFIG", 1, 2)
    with pytest.raises(KitError, match="TF_CONFIG names worker 1 of 2, srun started rank 3 of 4"):
        plan_workers({**SRUN_2X2, "TF_CONFIG": given}, 23456)
    with pytest.raises(KitError, match="TF_CONFIG: expected JSON"):
        plan_workers({"TF_CONFIG": "{not json"}, 23456)


def test_hpcai_train_refuses_a_rank_started_by_hand_before_tensorflow_starts(kit, tmp_path):
    """Open MPI's rank variable alone, as a rank started by hand would have: one line, status 2, no run directory;
    a ``tensorflow`` package that fails on import stands first on the path, so TensorFlow was never imported."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text("raise SystemExit('tensorflow was imported')\n")
    done = kit.run(
        "train", "gw", "--backend", "mwms", "--smoke", "--run-dir", str(tmp_path / "run"),
        OMPI_COMM_WORLD_RANK="1", PYTHONPATH=str(tmp_path), timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        "hpcai: error: --backend mwms under mpirun (Open MPI): the environment does not name every worker; missing "
        "OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK, OMPI_COMM_WORLD_LOCAL_SIZE (start every worker with the "
        "launcher, not by hand)"
    ]
    assert not (tmp_path / "run").exists()


def test_horovod_flags_are_refused_with_mwms_and_mwms_flags_with_horovod(kit):
    done = kit.run("train", "gw", "--backend", "mwms", "--fp16-allreduce", "--smoke", timeout=60)
    assert done.returncode == 2
    assert (
        done.stderr.strip()
        == "hpcai: error: --fp16-allreduce: only with --backend horovod, this run has --backend mwms"
    )
    done = kit.run("train", "gw", "--port-base", "30000", "--smoke", timeout=60)
    assert done.stderr.strip() == "hpcai: error: --port-base: only with --backend mwms, this run has --backend horovod"


def test_mwms_hides_tensorflows_cpp_error_lines_unless_the_user_set_a_level():
    from hpcai_tf.train.tf_environment import prepare_tensorflow

    assert prepare_tensorflow({}, backend="mwms")["TF_CPP_MIN_LOG_LEVEL"] == "3"
    assert prepare_tensorflow({}, backend="horovod")["TF_CPP_MIN_LOG_LEVEL"] == "2"
    assert prepare_tensorflow({"TF_CPP_MIN_LOG_LEVEL": "0"}, backend="mwms")["TF_CPP_MIN_LOG_LEVEL"] == "0"


def test_collective_timeout_is_seconds_or_zero_for_none():
    from hpcai_tf.train.options import TrainOptions, check_backend_options

    check_backend_options(TrainOptions("gw", backend="mwms", collective_timeout=0.0))
    with pytest.raises(KitError, match=r"--collective-timeout: expected seconds >= 0 \(0: no timeout\), got -1"):
        check_backend_options(TrainOptions("gw", backend="mwms", collective_timeout=-1.0))
    with pytest.raises(KitError, match="--backend: expected one of horovod, mwms, got 'gloo'"):
        check_backend_options(TrainOptions("gw", backend="gloo"))


def test_a_taken_port_under_mpirun_is_refused_once_by_every_rank_before_tensorflow_starts(kit, tmp_path):
    """Rank 1's port is taken: the ranks exchange their port checks over MPI and all refuse; rank 0 says so."""
    from hpcai_tf.train.backend_mwms import free_port_base

    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text("raise SystemExit('tensorflow was imported')\n")
    base = free_port_base(2)
    with socket.socket() as taken:
        taken.bind(("", base + 1))
        taken.listen()
        done = kit.run(
            "train", "gw", "--ranks", "2", "--backend", "mwms", "--smoke", "--port-base", str(base),
            "--run-dir", str(tmp_path / "run"), PYTHONPATH=str(tmp_path), timeout=120,
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"hpcai: error: --backend mwms: port {base + 1} (--port-base {base} + rank 1) on ")
    assert line.endswith("Address already in use; choose another --port-base")
    assert not (tmp_path / "run").exists()
