"""What the training loop needs from a workload: data, a model, a loss, fine-tuning stages, a quality."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hpcai_tf.train.config import Config
from hpcai_tf.train.distributed import Ranks


@dataclass
class RunContext:
    """One rank's view of a run."""

    config: Config
    ranks: Ranks
    run_dir: Path | None
    data_path: Path | None
    smoke: bool = False
    # --deterministic: the key of the current step for random layers (Dropout), set by the loop before each step
    step_seed: Any = None


@dataclass
class TrainingData:
    """Per-rank data of a run: epoch datasets (same batches on a resume), validation and counts."""

    description: dict[str, Any]
    batch: int
    steps_per_epoch: int
    train: Callable[[int, int], Any]  # (epoch, skip_steps) -> tf.data.Dataset of (steps - skip) batches
    validation_steps: int = 0
    validation: Callable[[], Any] | None = None  # () -> tf.data.Dataset of validation_steps batches
    details: dict[str, Any] = field(default_factory=dict)  # workload-specific (e.g. the open GW file)


@dataclass(frozen=True)
class Stage:
    """A fine-tuning stage: which layers train, for how many epochs, with what early stopping."""

    name: str
    epochs: int
    trainable_from: int | None = None  # None: the whole model
    patience: int = 0
    plateau_patience: int = 0
    plateau_factor: float = 1.0


class Workload(Protocol):
    name: str
    quality_name: str

    def prepare_data(self, context: RunContext) -> TrainingData: ...

    def build_model(self, context: RunContext, data: TrainingData) -> Any: ...

    def loss_and_metrics(self, context: RunContext, data: TrainingData) -> tuple[Any, list[Any]]: ...

    def stages(self, config: Config) -> list[Stage]: ...

    def apply_stage(self, model: Any, stage: Stage) -> None: ...

    def quality(self, context: RunContext, model: Any, data: TrainingData) -> dict[str, Any]: ...


def single_stage(config: Config) -> list[Stage]:
    """The whole model trains for ``epochs`` epochs."""
    return [Stage(name="train", epochs=config["epochs"])]


def data_path_for(context: RunContext, smoke_name: str, hint: str) -> tuple[Path, bool]:
    """(path of the data, whether the smoke preset should generate it there)."""
    from hpcai_tf.errors import KitError

    if context.data_path is not None:
        return context.data_path, False
    if context.smoke and context.run_dir is not None:
        return context.run_dir / "data" / smoke_name, True
    raise KitError(f"{context.config['workload']} needs --data ({hint}), or --smoke to generate a small set")
