"""The kit's two backends side by side: ``hpcai train W --ranks 2`` with Horovod and with MultiWorkerMirroredStrategy.

    .venv/bin/python bench/horovod_vs_mwms.py          # prints throughputs and ratios measured in one run

For AI-GW (smoke, its own generated waveforms, 4 epochs) and small-image ResNet-50 (64x64, batch 16 per rank,
synthetic data, 3 epochs of 12 steps), each round runs, through the kit's own ``hpcai train``: one process alone
(``--ranks 1``), two such processes at once (no communication: what the 2 cores give two processes at that moment,
the ceiling), ``--ranks 2 --backend horovod`` and ``--ranks 2 --backend mwms``. Every process has one intra-op and
one inter-op thread (``TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1``), Open MPI yields when idle. Throughput
is the median global samples/s of a run's epochs after the first (which traces the graph). The setups alternate
over ``ROUNDS`` rounds and each one's best round counts (the least disturbed by other jobs of a shared machine).
Efficiency = 2-process throughput / (2 x one process alone); the last line per workload is Horovod / MWMS.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ONE_THREAD, REPO, SMALL_RESNET, bench_env, hpcai, load_average, run_throughput

sys.path.insert(0, str(REPO))

from hpcai_tf.train.backend_mwms import free_port_base

ROUNDS = 2
ENV = bench_env(**ONE_THREAD)


def train(work: Path, name: str, workload: str, args: list[str]) -> Path:
    run_dir = work / name
    hpcai("train", workload, "--run-dir", str(run_dir), "--no-tensorboard", *args, env=ENV)
    return run_dir


def independent(work: Path, name: str, workload: str, args: list[str]) -> float:
    """Two 1-rank runs at once: the sum of their throughputs."""
    runs = [work / f"{name}-{i}" for i in (0, 1)]
    command = [sys.executable, "-m", "hpcai_tf", "train", workload, "--no-tensorboard", *args]
    procs = [
        subprocess.Popen([*command, "--run-dir", str(run)], cwd=REPO, env=ENV, stdout=subprocess.DEVNULL)
        for run in runs
    ]
    if any(proc.wait() for proc in procs):
        sys.exit(f"bench: two independent {workload} runs: one failed")
    return sum(run_throughput(run) for run in runs)


def main() -> None:
    print(
        f"The kit's backends at 2 ranks: Horovod against MultiWorkerMirroredStrategy, {ROUNDS} rounds, best round; "
        f"{load_average()} at the start",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="hpcai-bench-backends-") as tmp:
        work = Path(tmp)
        data = work / "gw.h5"
        hpcai("data", "gw", "--smoke", "--out", str(data), env=ENV)
        workloads = {
            "AI-GW (smoke)": ("gw", ["--smoke", "--data", str(data), "--epochs", "4"]),
            "ResNet-50 64x64": ("resnet50", SMALL_RESNET),
        }
        for title, (workload, args) in workloads.items():
            rates: dict[str, list[float]] = {"1 process": [], "2 independent": [], "Horovod": [], "MWMS": []}
            for round_ in range(ROUNDS):  # alternate, so that a burst of load does not hit one setup only
                tag = f"{workload}-{round_}"
                rates["1 process"].append(run_throughput(train(work, f"{tag}-one", workload, args)))
                rates["2 independent"].append(independent(work, f"{tag}-ind", workload, args))
                rates["Horovod"].append(run_throughput(train(work, f"{tag}-hvd", workload, [*args, "--ranks", "2"])))
                mwms = [*args, "--ranks", "2", "--backend", "mwms", "--port-base", str(free_port_base(2))]
                rates["MWMS"].append(run_throughput(train(work, f"{tag}-mwms", workload, mwms)))
            best = {name: max(found) for name, found in rates.items()}
            single = best["1 process"]
            print(f"{title}: samples/s per round, best, efficiency (best / 2 x best 1 process)")
            for name, found in rates.items():
                shown = " ".join(f"{rate:7.1f}" for rate in found)
                efficiency = "" if name == "1 process" else f"{best[name] / (2 * single):.3f}"
                print(f"  {name:<14} {shown}  best {best[name]:7.1f}  {efficiency}")
            print(f"  Horovod / MWMS throughput at 2 ranks: {best['Horovod'] / best['MWMS']:.3f}", flush=True)
    print(f"  {load_average()} at the end")


if __name__ == "__main__":
    main()
