"""Image build times of the local site, measured side by side in one run, printed as ratios.

    .venv/bin/python bench/bench_image_build.py [--skip-base]

1. base image: ``debootstrap --variant=minbase`` + ``docker import``, under a throwaway name (removed after).
2. cold build: ``hpcai build --site local --no-cache``: every layer above the base rebuilt, pip downloads
   included (the Horovod wheel from .cache/wheels is reused, as in CI).
3. code-only rebuild: the same build from a copy of the kit with one changed line under ``hpcai_tf/``
   (``HPCAI_ROOT``): only the kit's own layers rebuild.
4. no-change rebuild: the checkout's kit again: every layer from the cache (this also restores the image).

Every build runs through the CLI as a user would (``hpcai build --quiet``), timed by wall clock. Needs a Docker
engine at ``$DOCKER_HOST`` (``scripts/dockerd.sh start``) and root for debootstrap. Build times on a shared
2-core machine are noisy: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, load_average

sys.path.insert(0, str(REPO))

from hpcai_tf.catalog import load_site
from hpcai_tf.image.base import make_base_image
from hpcai_tf.image.docker_engine import docker_client, docker_host, human_size
from hpcai_tf.paths import WHEELS_DIR
from hpcai_tf.recipes.render import image_tag
from hpcai_tf.train.image_contract import IMAGE_PATHS


def timed_build(*args: str, root: Path | None = None) -> tuple[float, str]:
    """Wall time and output of ``hpcai build --site local --quiet ARGS``; exits on a failed build."""
    env = {**os.environ, "DOCKER_HOST": docker_host()}  # the same engine, whatever HPCAI_ROOT says
    if root is not None:
        env["HPCAI_ROOT"] = str(root)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hpcai_tf", "build", "--site", "local", "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    seconds = time.monotonic() - start
    if result.returncode != 0:
        sys.exit(f"bench: build failed:\n{result.stdout[-3000:]}{result.stderr}")
    return seconds, result.stdout


def kit_copy(tmp: Path) -> Path:
    """A copy of what staging reads, with one changed line in hpcai_tf/."""
    root = tmp / "kit"
    for name in ("containers", "requirements", "hpcai_tf"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, root / name)
    init = root / "hpcai_tf" / "__init__.py"
    init.write_text(init.read_text() + f"# bench_image_build {time.time()}\n")
    return root


def cached_steps(output: str) -> tuple[int, int]:
    """(steps from the cache, all steps) of a quiet build's output."""
    steps = [line for line in output.splitlines() if line.startswith("Step ")]
    return output.count("---> Using cache"), len(steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-base", action="store_true", help="do not time a debootstrap base image")
    args = parser.parse_args()
    site = load_site("local")
    client = docker_client()
    print(f"local site image builds; {load_average()} at the start", flush=True)
    rows: list[tuple[str, float, str]] = []

    if not args.skip_base:
        ref = f"hpcai-bench/debian:{os.getpid()}"
        start = time.monotonic()
        image_id = make_base_image(site, client, ref=ref, out=lambda line: None)
        rows.append(("base image (debootstrap + import)", time.monotonic() - start, ""))
        client.images.remove(ref)
        del image_id
    timed_build()  # the image exists and is current before the side-by-side runs

    cold, _ = timed_build("--no-cache")
    rows.append(("cold build (--no-cache)", cold, ""))
    with tempfile.TemporaryDirectory(prefix="hpcai-bench-") as tmp:
        code_only, output = timed_build("--wheels", str(WHEELS_DIR), root=kit_copy(Path(tmp)))
    hits, total = cached_steps(output)
    rows.append(("code-only rebuild (hpcai_tf/ changed)", code_only, f"{hits} of {total} steps from the cache"))
    unchanged, output = timed_build()
    hits, total = cached_steps(output)
    rows.append(("no-change rebuild", unchanged, f"{hits} of {total} steps from the cache"))

    image = client.images.get(image_tag(site))
    kit_layers = 0
    for layer in image.history():  # newest first: down to and including the COPY of the kit's source
        kit_layers += layer["Size"]
        if "COPY" in layer["CreatedBy"] and IMAGE_PATHS.kit_source in layer["CreatedBy"]:
            break
    print(f"{'what':<40} {'seconds':>8}  note")
    for name, seconds, note in rows:
        print(f"{name:<40} {seconds:8.1f}  {note}")
    print(f"cold / code-only rebuild: {cold / code_only:.1f}x")
    print(f"image {image_tag(site)}: {human_size(image.attrs['Size'])}; top layers (kit): {human_size(kit_layers)}")
    print(f"{load_average()} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
