"""TensorFlow 2.21 against 2.15 on the same work: the kit's training inside the two local images.

    .venv/bin/python bench/tf_stacks.py [--rounds N]   (after `make image SITE=local` and `make image SITE=local-tf215`)

AI-GW (smoke, its own generated waveforms) and small-image ResNet-50 (64x64, batch 16 per rank, synthetic data) at
1 and 2 ranks, each run a ``docker run`` of the site's image with the image's ``mpirun`` and one intra-op and one
inter-op thread per rank. The stacks alternate within every round and the best round of each side counts (a
single thread of this machine sometimes runs at half speed for minutes). Prints, per workload, samples/s of each
stack at 1 and 2 ranks, the 2.21/2.15 throughput ratio and each stack's 2-rank efficiency.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _common import ONE_THREAD, REPO, SMALL_RESNET, after_warm_up, container_env, epoch_throughputs, load_average

sys.path.insert(0, str(REPO))

from hpcai_tf.catalog import load_site
from hpcai_tf.image.docker_engine import docker_client, find_image
from hpcai_tf.recipes.render import image_tag
from hpcai_tf.train.mpirun_line import mpirun_line

STACKS = ("local-tf215", "local")
ROUNDS = 2
WORKLOADS = {
    "gw": ["--smoke", "--data", "/work/gw.h5", "--epochs", "4"],
    "resnet50": SMALL_RESNET,
}
ENV = container_env(**ONE_THREAD)


def run(client, tag: str, work: Path, argv: list[str]) -> str:
    """One container of ``tag`` with ``work`` at /work; its output, or exit on failure."""
    container = client.containers.run(
        tag, argv, detach=True, environment=ENV, shm_size="1g", volumes={str(work): {"bind": "/work", "mode": "rw"}}
    )
    try:
        code = container.wait(timeout=1800)["StatusCode"]
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    if code != 0:
        sys.exit(f"bench: {' '.join(argv)} in {tag} exited {code}:\n{output[-3000:]}")
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds of every run (default {ROUNDS})")
    rounds = parser.parse_args().rounds
    client = docker_client()
    tags = {site: image_tag(load_site(site)) for site in STACKS}
    missing = [f"make image SITE={site}" for site, tag in tags.items() if find_image(client, tag) is None]
    if missing:
        print(f"skipped: build the images first ({'; '.join(missing)})")
        return
    print(f"{', '.join(f'{s} = {t}' for s, t in tags.items())}; 1+1 threads per rank; {load_average()} at the start")
    best: dict[tuple[str, str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        work.chmod(0o777)
        run(client, tags["local"], work, ["hpcai", "data", "gw", "--smoke", "--out", "/work/gw.h5"])
        for round_ in range(rounds):
            for workload, args in WORKLOADS.items():
                for ranks in (1, 2):
                    for site in STACKS if round_ % 2 == 0 else reversed(STACKS):
                        name = f"{site}-{workload}-{ranks}-{round_}"
                        train = ["hpcai", "train", workload, *args, "--no-tensorboard", "--run-dir", f"/work/{name}"]
                        line = mpirun_line(ranks, allocated=False, forward=sorted(ONE_THREAD))  # no job in docker
                        run(client, tags[site], work, line.argv(train))
                        epochs = epoch_throughputs(work / name)
                        value = after_warm_up(epochs)
                        key = (workload, site, ranks)
                        best[key] = max(best.get(key, 0.0), value)
                        each = ", ".join(f"{e:.1f}" for e in epochs)
                        label = f"round {round_ + 1}: {workload} {site} {ranks} rank(s)"
                        print(f"{label}: {value:.1f} samples/s (epochs: {each})", flush=True)
    print()
    print("| workload | stack | 1 rank (samples/s) | 2 ranks | 2-rank efficiency |")
    print("|---|---|---|---|---|")
    for workload in WORKLOADS:
        for site in STACKS:
            one, two = best[(workload, site, 1)], best[(workload, site, 2)]
            print(f"| {workload} | {site} | {one:.1f} | {two:.1f} | {two / (2 * one):.3f} |")
    for workload in WORKLOADS:
        for ranks in (1, 2):
            ratio = best[(workload, "local", ranks)] / best[(workload, "local-tf215", ranks)]
            print(f"RATIO {workload} {ranks} rank(s): TF 2.21 / TF 2.15 throughput = {ratio:.3f}")
    print(f"{load_average()} at the end")


if __name__ == "__main__":
    main()
