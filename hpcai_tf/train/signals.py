"""Preemption requests: SIGUSR1 or SIGTERM set a flag that the training loop polls at batch boundaries.

A preempted run exits with :data:`EXIT_PREEMPTED`: the job script requeues on it and reruns with --resume. This is
the one definition of that status; the job scripts (:mod:`hpcai_tf.launch.job_script`) and the help of
``hpcai train`` read it from here.
"""

from __future__ import annotations

import signal
from types import FrameType

EXIT_PREEMPTED = 75
"""Exit status of a preempted run: EX_TEMPFAIL of BSD's sysexits.h, "try again later"."""
PREEMPT_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)


class PreemptionFlag:
    """Remembers the first preemption signal this process received."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> PreemptionFlag:
        for signum in PREEMPT_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.reason is None:
            self.reason = signal.Signals(signum).name

    @property
    def is_set(self) -> bool:
        return self.reason is not None
