"""One ``docker build`` through the Docker SDK: streamed progress, a log file, and the tag only on success.

The image is built untagged and tagged afterwards, so a failed or interrupted build never leaves an
image under the final tag (the engine cancels a build whose client goes away; the layers it finished stay
in the build cache). On failure the error names the failing step by number, by the ``# title`` comment
the recipe puts above it, and by its instruction, after the tail of that step's output.
"""

from __future__ import annotations

import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hpcai_tf.errors import KitError
from hpcai_tf.files import display_path
from hpcai_tf.image.base import split_ref
from hpcai_tf.image.docker_engine import find_image

if TYPE_CHECKING:
    import docker

TAIL_LINES = 25
STEP_LINE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
BUILT_LINE = re.compile(r"^Successfully built ([0-9a-f]{12,64})\s*$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
"""The classic builder colours a RUN's stderr; the log and the tail are plain text."""


@dataclass(frozen=True)
class DockerfileStep:
    """One instruction of a Dockerfile and the title of the recipe step it belongs to."""

    instruction: str
    title: str


def dockerfile_steps(text: str) -> list[DockerfileStep]:
    """The instructions of a Dockerfile in build order (Docker's "Step N/M"), each with its step title.

    A title is the last ``# comment`` line seen after ``FROM``; continuation lines are joined.
    """
    steps: list[DockerfileStep] = []
    title = ""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            if line.startswith("#") and steps:
                title = line.lstrip("#").strip()
            continue
        if pending and line.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        instruction = (pending + line).strip()
        pending = ""
        if instruction.split()[0].upper() == "FROM":
            title = ""
        steps.append(DockerfileStep(instruction=instruction, title=title))
    return steps


def _short(text: str, width: int = 72) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


class _Progress:
    """Writes the build's output to the terminal and the log, and remembers the current step's tail."""

    def __init__(self, log: TextIO, out: TextIO, quiet: bool):
        self.log, self.out, self.quiet = log, out, quiet
        self.step = 0
        self.total = 0
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.partial = ""
        self.built_id = ""
        self.cached_steps: list[int] = []

    def feed(self, text: str) -> None:
        self.log.write(ANSI.sub("", text))
        self.partial += ANSI.sub("", text)
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            self._line(line)
        if not self.quiet:
            self.out.write(text)
            self.out.flush()

    def _line(self, line: str) -> None:
        match = STEP_LINE.match(line)
        if match:
            self.step, self.total = int(match[1]), int(match[2])
            self.tail.clear()
            if self.quiet:
                self.out.write(_short(line, 110) + "\n")
                self.out.flush()
        elif line.strip() == "---> Using cache":
            self.cached_steps.append(self.step)
            if self.quiet:
                self.out.write(line + "\n")
        elif BUILT_LINE.match(line):
            self.built_id = BUILT_LINE.match(line)[1]  # type: ignore[index]
        self.tail.append(line)

    def flush(self) -> None:
        if self.partial:
            self._line(self.partial)
            self.partial = ""


@dataclass(frozen=True)
class BuildResult:
    """A finished build: the tagged image, how long it took and which steps came from the cache."""

    image_id: str
    tag: str
    seconds: float
    steps: int
    cached_steps: list[int]
    log_path: Path


def _failure(progress: _Progress, steps: list[DockerfileStep], error: str, log_path: Path) -> KitError:
    """The one-line error of a failed step, after printing its output's tail to stderr."""
    print(f"---- last {len(progress.tail)} lines of step {progress.step}/{progress.total} ----", file=sys.stderr)
    for line in progress.tail:
        print(f"  {line}", file=sys.stderr)
    code = re.search(r"returned a non-zero code: (\d+)", error)
    what = f"exited with code {code[1]}" if code else _short(error, 200)
    where = f"step {progress.step}/{progress.total}" if progress.step else "before the first step"
    if 0 < progress.step <= len(steps):
        step = steps[progress.step - 1]
        title = f' "{step.title}"' if step.title else ""
        where += f"{title} ({_short(step.instruction)})"
    return KitError(f"image build failed at {where}: {what}; full log: {display_path(log_path)}")


def build_image(
    client: docker.DockerClient,
    context: Path,
    dockerfile: str,
    tag: str,
    log_path: Path,
    *,
    no_cache: bool = False,
    labels: dict[str, str] | None = None,
    platform: str | None = None,
    quiet: bool = False,
    out: TextIO | None = None,
) -> BuildResult:
    """Build ``context/dockerfile`` and tag the result ``tag``; stream progress to ``out`` (stdout)."""
    import docker

    out = out or sys.stdout
    repo, tag_name = split_ref(tag)
    steps = dockerfile_steps((context / dockerfile).read_text())
    previous = find_image(client, tag)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log_path.open("w", encoding="utf-8") as log:
        progress = _Progress(log, out, quiet)
        error = ""
        try:
            stream = client.api.build(
                path=str(context),
                dockerfile=dockerfile,
                rm=True,
                forcerm=True,
                nocache=no_cache,
                pull=False,
                labels=labels,
                platform=platform,
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    progress.feed(chunk["stream"])
                elif "status" in chunk:
                    progress.feed(f"{chunk['status']} {chunk.get('progress', '')}".rstrip() + "\n")
                if "error" in chunk:
                    error = chunk["error"]
                    progress.feed(error.rstrip("\n") + "\n")
        except KeyboardInterrupt:
            progress.flush()
            log.write(f"\ninterrupted at step {progress.step}/{progress.total}\n")
            print(
                f"\nhpcai: build interrupted at step {progress.step}/{progress.total}; nothing was tagged {tag}",
                file=sys.stderr,
            )
            raise
        except docker.errors.APIError as err:
            error = str(err.explanation or err)
        progress.flush()
    if error or not progress.built_id:
        raise _failure(progress, steps, error or "the engine ended the build without a result", log_path)
    image = client.images.get(progress.built_id)
    client.api.tag(image.id, repo, tag_name, force=True)
    if previous is not None and previous.id != image.id:
        try:  # the image this tag named before: now untagged, its layers shared with the new one stay
            client.images.remove(previous.id)
        except docker.errors.APIError:
            pass  # still used by a container or under another tag: keep it
    return BuildResult(
        image_id=image.id,
        tag=tag,
        seconds=time.monotonic() - start,
        steps=progress.total,
        cached_steps=progress.cached_steps,
        log_path=log_path,
    )
