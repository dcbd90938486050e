"""The Keras callback that drives a rank through an epoch: LR per step, step timing, preemption agreement."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from hpcai_tf.train.distributed import Ranks
from hpcai_tf.train.signals import PreemptionFlag


def preemption_check_due(step: int, steps: int, every: int) -> bool:
    """Whether the ranks ask each other about a preemption after ``step`` of an epoch's ``steps``: every
    ``every`` steps of the epoch and after its last one (the same answer on every rank)."""
    return step % every == 0 or step >= steps


def make_training_control(
    *,
    lr_for_step: Callable[[int], float],
    first_step: int,
    steps: int,
    check_every: int,
    flag: PreemptionFlag,
    ranks: Ranks,
    set_step_seed: Callable[[int], None] | None = None,
):
    """A callback for one epoch: sets the LR before each step (a function of the step within the epoch),
    times each step, and every ``check_every`` steps (and after the last) asks every rank whether any was asked
    to stop (a tiny allreduce), so all ranks stop at the same batch boundary. ``set_step_seed`` (``--deterministic``)
    keys the step's random draws (Dropout) by the step, before it runs."""
    import tensorflow as tf

    class TrainingControl(tf.keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step = first_step
            self.step_times: list[float] = []
            self.preempted = False
            self.lr = 0.0
            self._start = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self.lr = lr_for_step(self.step)
            tf.keras.backend.set_value(self.model.optimizer.lr, self.lr)
            if set_step_seed is not None:
                set_step_seed(self.step)
            self._start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.step_times.append(time.perf_counter() - self._start)
            self.step += 1
            if preemption_check_due(self.step, steps, check_every) and ranks.any(flag.is_set, "hpcai.preempt"):
                self.preempted = True
                self.model.stop_training = True

        @property
        def median_step_time(self) -> float | None:
            return float(np.median(self.step_times)) if self.step_times else None

        @property
        def step_time_quantiles(self) -> list[float] | None:
            """This rank's step times at every 5th percentile (21 values): their spread, in a fixed size."""
            if not self.step_times:
                return None
            return [round(float(q), 6) for q in np.percentile(self.step_times, np.arange(0, 101, 5))]

    return TrainingControl()


def make_progress_bar(total_epochs: int):
    """Keras's progress bar, showing "Epoch k/total" although each fit() call runs one epoch."""
    import tensorflow as tf

    class RunProgressBar(tf.keras.callbacks.ProgbarLogger):
        def __init__(self) -> None:
            super().__init__(count_mode="steps")

        def set_params(self, params):
            super().set_params({**params, "epochs": total_epochs})

    return RunProgressBar()
