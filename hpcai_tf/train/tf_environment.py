"""The environment TensorFlow reads when it is imported: which Keras ``tf.keras`` is, and how much it logs.

Both must be set before the first ``import tensorflow`` of a process, so every command of the kit that imports it
calls :func:`prepare_tensorflow` first, and ``hpcai train --ranks N`` passes the result on to its ranks.

- ``TF_USE_LEGACY_KERAS=1`` when tf-keras is installed: the stack is then TensorFlow >= 2.16 with tf-keras
  (catalog ``stack.keras = "tf-keras"``), and tf.keras must be Keras 2 for Horovod's Keras API. The images set it
  in their environment; the host venv (which follows the ``local`` site) gets it here. On a stack without
  tf-keras (TensorFlow 2.15, where tf.keras is Keras 2 already) nothing is set.
- ``TF_CPP_MIN_LOG_LEVEL=2`` hides the C++ INFO and WARNING lines (CPU features, oneDNN notice, grappler) that
  TensorFlow logs once its logging is set up. ERROR lines still show. (``GLOG_minloglevel`` changes nothing.)
- Lines logged while TensorFlow 2.21's libraries load come before absl's logging is initialised, so no variable
  holds them back: on an AMD EPYC with AVX-512 (2026-12-02) every import printed absl's notice ("All log messages
  before absl::InitializeLog() is called are written to STDERR") and the oneDNN INFO line twice, even with
  ``TF_CPP_MIN_LOG_LEVEL=3``; on other CPUs nothing. :func:`import_tensorflow` imports it with the process's
  stderr held in a file and passes on only the lines the threshold admits.

A value the user set wins: ``TF_CPP_MIN_LOG_LEVEL=0 hpcai train ...`` shows everything.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable, Mapping, MutableMapping
from importlib import metadata
from types import ModuleType

from hpcai_tf.train.options import DEFAULT_BACKEND

QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}
"""Log threshold of TensorFlow's C++ side: 2 hides INFO and WARNING, keeps ERROR."""
QUIET_MWMS = {"TF_CPP_MIN_LOG_LEVEL": "3"}
"""Under ``--backend mwms`` ERROR lines are hidden too: when a worker is lost, every other worker's collective
runtime logs about ten of them (ring aborts, the coordination service's report) before the Python error that the
kit turns into one line (measured with TensorFlow 2.21)."""


def has_tf_keras() -> bool:
    """Whether the tf-keras distribution (tf.keras as Keras 2 on TensorFlow >= 2.16) is installed."""
    try:
        metadata.distribution("tf-keras")
    except metadata.PackageNotFoundError:
        return False
    return True


def tensorflow_environment(backend: str = DEFAULT_BACKEND) -> dict[str, str]:
    """The variables (name: default) the kit sets before TensorFlow is imported, for this Python's stack."""
    env = dict(QUIET_MWMS if backend == "mwms" else QUIET)
    if has_tf_keras():
        env["TF_USE_LEGACY_KERAS"] = "1"
    return env


def prepare_tensorflow(
    env: MutableMapping[str, str] | None = None, backend: str = DEFAULT_BACKEND
) -> Mapping[str, str]:
    """Set each of :func:`tensorflow_environment`'s variables in ``env`` (default os.environ) unless already set."""
    env = os.environ if env is None else env
    for name, value in tensorflow_environment(backend).items():
        env.setdefault(name, value)
    return env


ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
"""absl's own line before the first line it logs uninitialised."""
LOG_LINE = re.compile(r"[IWEF]\d{4} \d+:\d+:\d+\.\d+ +\d+ [^ \]]+:\d+\] ")
"""The prefix of an absl/TensorFlow C++ log line: severity, date, time, thread, file:line."""
SEVERITIES = "IWEF"
"""absl's severities in the order of ``TF_CPP_MIN_LOG_LEVEL`` (0 shows INFO and up, 2 ERROR and up)."""


def admitted_lines(lines: Iterable[str], level: int) -> list[str]:
    """The lines of ``lines`` that a C++ log threshold of ``level`` shows. A log line below it is dropped with its
    continuation lines; absl's notice goes with them (level >= 1). Any other text passes unchanged."""
    kept: list[str] = []
    dropping = False
    for line in lines:
        if line.rstrip("\n") == ABSL_NOTICE:
            dropping = level >= 1
        elif LOG_LINE.match(line):
            dropping = SEVERITIES.index(line[0]) < level
        if not dropping:
            kept.append(line)
    return kept


def _log_level(env: Mapping[str, str]) -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (0 when unset or not a number)."""
    try:
        return int(env.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def import_tensorflow() -> ModuleType:
    """``import tensorflow``, after :func:`prepare_tensorflow`, with what its libraries print to stderr while they
    load filtered by :func:`admitted_lines` at the process's ``TF_CPP_MIN_LOG_LEVEL``. Call it before any other
    import of TensorFlow in the process (later imports are Python's cached module and print nothing)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    prepare_tensorflow()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as held:
        os.dup2(held.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            text = held.read().decode(errors="replace")
            sys.stderr.write("".join(admitted_lines(text.splitlines(keepends=True), _log_level(os.environ))))
            sys.stderr.flush()
    return tensorflow
