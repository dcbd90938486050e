"""One rank's training run: the backend's set-up, resume, the epochs of each stage, checkpoints, records, quality.

The flow follows what Horovod users expect, under either backend (:mod:`hpcai_tf.train.distributed`): the backend
started on every rank, the LR scaled by workers with warm-up, the gradients averaged over ranks, a broadcast of the
initial state from rank 0, metrics averaged over ranks, logging, checkpoints and TensorBoard on rank 0 only, and
``--resume`` restoring on all ranks (rank 0 reads the checkpoint, the broadcast hands it to the others).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    assign_by_name,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    variables_by_name,
)
from hpcai_tf.train.config import Config, resolve_config
from hpcai_tf.train.digest import weights_digest
from hpcai_tf.train.distributed import AgreedError, Ranks, hostname, init_ranks
from hpcai_tf.train.launcher_env import detect_launcher
from hpcai_tf.train.metrics_log import MetricsLog
from hpcai_tf.train.options import DEFAULT_COLLECTIVE_TIMEOUT, TrainOptions
from hpcai_tf.train.provenance import now_iso, provenance_record
from hpcai_tf.train.run_dir import (
    RunDirBefore,
    abandon_run_dir,
    before_run_dir,
    hold_run_dir,
    make_run_dir,
    plan_run_dir,
)
from hpcai_tf.train.schedules import lr_at_epoch
from hpcai_tf.train.signals import EXIT_PREEMPTED, PreemptionFlag
from hpcai_tf.train.summaries import write_scalar
from hpcai_tf.train.workloads import get_workload
from hpcai_tf.train.workloads.base import RunContext, Stage, TrainingData, Workload

# Keys a resumed run must share with the run that wrote the checkpoint.
RESUME_KEYS = ("workload", "seed", "batch_per_rank", "model", "validation_fraction")


PROGRESS_BAR_ENV = "HPCAI_PROGRESS_BAR"


def progress_bar_wanted() -> bool:
    """A live progress bar when the user watches a terminal; ``--ranks`` passes its own answer down, since
    mpirun gives the ranks a pseudo-terminal even when the output goes to a log file."""
    setting = os.environ.get(PROGRESS_BAR_ENV)
    return sys.stdout.isatty() if setting is None else setting == "1"


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # completed steps of the current epoch
    stage: int = 0
    epoch_in_stage: int = 0
    lr_factor: float = 1.0
    best_val_loss: float | None = None
    epochs_without_improvement: int = 0
    plateau_wait: int = 0
    finished: bool = False
    ranks: int = 1
    steps_per_epoch: int = 0

    def next_stage(self) -> None:
        self.stage += 1
        self.epoch_in_stage = 0
        self.lr_factor = 1.0
        self.best_val_loss = None
        self.epochs_without_improvement = 0
        self.plateau_wait = 0


def run_config(options: TrainOptions) -> Config:
    """The resolved configuration, with the run's flags recorded under ``run``."""
    sets = list(options.sets)
    if options.synthetic:
        if options.workload != "resnet50":
            raise KitError(f"--synthetic is for resnet50 throughput runs, not {options.workload}")
        sets.append("data.synthetic=true")
    config = resolve_config(
        options.workload,
        smoke=options.smoke,
        config_file=options.config_file,
        sets=sets,
        overrides=options.overrides,
    )
    config["run"] = {
        "smoke": options.smoke,
        "data": str(Path(options.data).absolute()) if options.data else None,
        "deterministic": options.deterministic,
        "mixed_precision": options.mixed_precision,
        "fp16_allreduce": options.fp16_allreduce,
        "timeline": options.timeline,
        "backend": options.backend,
    }
    return config


def run_rank(options: TrainOptions) -> int:
    """Train on this rank; returns the exit status (0 done, EXIT_PREEMPTED when preempted)."""
    started_at, started = time.time(), now_iso()
    flag = PreemptionFlag().install()
    try:
        try:
            config = run_config(options)
        except KitError as err:
            raise AgreedError(str(err)) from None  # every rank resolves the same configuration
        ranks = init_ranks(
            options.backend,
            deterministic=options.deterministic,
            timeline=options.timeline,
            seed=config["seed"],
            collective_timeout=(
                DEFAULT_COLLECTIVE_TIMEOUT if options.collective_timeout is None else options.collective_timeout
            ),
        )
        return Trainer(options, config, ranks, flag, started_at, started).run()
    finally:
        flag.uninstall()


class Trainer:
    def __init__(
        self,
        options: TrainOptions,
        config: Config,
        ranks: Ranks,
        flag: PreemptionFlag,
        started_at: float,
        started: str,
    ):
        self.options, self.config, self.ranks, self.flag = options, config, ranks, flag
        assert ranks.backend is not None, "a training run needs a backend"
        self.backend = ranks.backend
        self.started_at, self.started = started_at, started
        self.workload: Workload = get_workload(options.workload)
        self.log: MetricsLog | None = None
        self.summary_writer = None
        self.run_dir_before: RunDirBefore | None = None
        self.epochs_recorded = 0

    # ------------------------------------------------------------------------------------------ helpers
    def say(self, text: str) -> None:
        if self.ranks.is_root:
            print(f"hpcai: {text}", flush=True)

    def elapsed(self) -> float:
        return time.time() - self.started_at

    def record(self, record: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.append(record)
            self.epochs_recorded += record.get("type") == "epoch"

    # ------------------------------------------------------------------------------------------- set-up
    def _load_resume_point(self, path: Path) -> tuple[dict[str, Any] | None, Checkpoint | None]:
        """(state, checkpoint) on rank 0, (state, None) elsewhere; (None, None): nothing to resume."""
        holder: dict[str, Checkpoint] = {}

        def load() -> dict[str, Any] | None:
            if not path.exists():
                return None
            checkpoint = load_checkpoint(path)
            if checkpoint.state["finished"]:
                return checkpoint.state
            for key in RESUME_KEYS:
                if checkpoint.config.get(key) != self.config.get(key):
                    raise KitError(
                        f"{path}: written with {key} = {checkpoint.config.get(key)!r}, this run has "
                        f"{self.config.get(key)!r}; resume with the same settings"
                    )
            if checkpoint.state["ranks"] != self.ranks.size:
                raise KitError(
                    f"{path}: written by a {checkpoint.state['ranks']}-rank run; resume it with "
                    f"{checkpoint.state['ranks']} ranks (this run has {self.ranks.size})"
                )
            holder["checkpoint"] = checkpoint
            return checkpoint.state

        state = self.ranks.on_root(load, "hpcai.resume")
        return state, holder.get("checkpoint")

    def _compile(self, model: Any, loss: Any, metrics: list[Any]) -> None:
        import tensorflow as tf

        optimizer_config = self.config["optimizer"]
        with self.backend.scope():
            if optimizer_config["name"] == "sgd":
                base = tf.keras.optimizers.legacy.SGD(
                    learning_rate=optimizer_config["lr"], momentum=optimizer_config["momentum"]
                )
            else:
                base = tf.keras.optimizers.legacy.Adam(learning_rate=optimizer_config["lr"])
            optimizer = self.backend.distributed_optimizer(base, fp16_allreduce=self.options.fp16_allreduce)
            model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
            model.optimizer._create_all_weights(model.trainable_variables)  # slots exist before the broadcast

    def _broadcast(self, model: Any) -> None:
        if self.ranks.distributed:
            self.backend.broadcast_variables([*model.variables, *model.optimizer.variables()])

    def _checkpoint(self, model: Any, state: TrainState, path: Path) -> None:
        """Average BatchNorm statistics (every rank), then rank 0 writes the checkpoint atomically."""
        self.ranks.average_non_trainable(model)
        if self.ranks.is_root:
            read = self.backend.local_value
            save_checkpoint(
                path,
                Checkpoint(
                    workload=self.workload.name,
                    config=self.config,
                    state=asdict(state),
                    model=variables_by_name(model.variables, read),
                    optimizer=variables_by_name(model.optimizer.variables(), read),
                ),
            )

    # ---------------------------------------------------------------------------------------------- run
    def run(self) -> int:
        ranks, options = self.ranks, self.options

        def choose_and_hold() -> Path:
            path = plan_run_dir(options.workload, options.run_dir, options.resume)
            self.run_dir_before = before_run_dir(path)
            path = make_run_dir(path)
            hold_run_dir(path)
            return path

        run_dir: Path = ranks.on_root(choose_and_hold, "hpcai.run_dir")
        try:
            return self._run_in(run_dir)
        except BaseException:
            if ranks.is_root and not self.epochs_recorded:  # nothing the user asked for: leave nothing behind
                if self.summary_writer is not None:
                    self.summary_writer.close()
                if self.run_dir_before is not None:
                    abandon_run_dir(run_dir, self.run_dir_before)
            raise

    def _run_in(self, run_dir: Path) -> int:
        import tensorflow as tf

        ranks, config, options = self.ranks, self.config, self.options
        checkpoint_path = run_dir / CHECKPOINT_FILE
        saved_state, checkpoint = self._load_resume_point(checkpoint_path) if options.resume else (None, None)
        if saved_state and saved_state["finished"]:
            self.say(f"{run_dir}: the run is already complete (see {checkpoint_path})")
            return 0
        if ranks.is_root:
            remove_stale_temporaries(run_dir)
            self.log = MetricsLog(run_dir)
            if options.tensorboard:
                self.summary_writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))
        if options.mixed_precision:
            policy = "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
            tf.keras.mixed_precision.set_global_policy(policy)
        data_path = Path(options.data) if options.data else None
        context = RunContext(config, ranks, run_dir, data_path, smoke=options.smoke)
        if options.deterministic:  # Dropout keyed by (seed, rank, epoch, step): a resume draws the same masks
            from hpcai_tf.train.models.seeded_dropout import StepSeed

            context.step_seed = StepSeed(config["seed"], ranks.rank)
        data = ranks.agree(lambda: self.workload.prepare_data(context), "hpcai.data")
        # The data actually read (e.g. the generated smoke data), for `hpcai evaluate` and the report.
        config["run"]["data"] = data.description.get("path")
        with self.backend.scope():  # the model, its metrics and (in _compile) its optimizer
            model = ranks.agree(lambda: self.workload.build_model(context, data), "hpcai.model")
            loss, metrics = self.workload.loss_and_metrics(context, data)
        stages = self.workload.stages(config)
        state = TrainState(**saved_state) if saved_state else TrainState()
        if state.steps_per_epoch and state.steps_per_epoch != data.steps_per_epoch:
            raise AgreedError(
                f"{checkpoint_path}: written with {state.steps_per_epoch} steps per epoch, the data now "
                f"gives {data.steps_per_epoch}; resume with the same data"
            )
        state.ranks, state.steps_per_epoch = ranks.size, data.steps_per_epoch
        hostnames = ranks.allgather_object(hostname(), "hpcai.hostnames")
        launcher = detect_launcher()
        resumed_from = {"epoch": state.epoch, "step": state.step} if saved_state else None
        if ranks.is_root:
            self.record(
                provenance_record(
                    workload=self.workload.name,
                    config=config,
                    ranks=ranks.size,
                    hostnames=hostnames,
                    started=self.started,
                    data=data.description,
                    resumed_from=resumed_from,
                    launcher=launcher.launcher if launcher else None,
                    backend=self.backend.name,
                    backend_settings=self.backend.settings(),
                )
            )
            where = f"resuming at epoch {state.epoch + 1} step {state.step}" if saved_state else "starting"
            print(
                f"hpcai: {self.workload.name} on {ranks.size} rank(s), {data.steps_per_epoch} steps/epoch of "
                f"{data.batch} per rank, {config['epochs']} epochs; {where}; run directory {run_dir}",
                flush=True,
            )
        restore = checkpoint if ranks.is_root else None
        restoring = saved_state is not None
        while state.stage < len(stages) and state.epoch < config["epochs"]:
            stage = stages[state.stage]
            if state.epoch_in_stage >= stage.epochs:
                state.next_stage()
                continue
            self.workload.apply_stage(model, stage)
            self._compile(model, loss, metrics)
            if restoring:
                if restore is not None:
                    assign_by_name(model.variables, restore.model, str(checkpoint_path), "model")
                    if state.epoch_in_stage > 0 or state.step > 0:  # the optimizer of this stage was saved
                        assign_by_name(
                            model.optimizer.variables(), restore.optimizer, str(checkpoint_path), "optimizer"
                        )
                restoring, restore = False, None
            self._broadcast(model)
            if len(stages) > 1:
                self.say(f"stage {state.stage + 1}/{len(stages)} '{stage.name}'")
            while state.epoch_in_stage < stage.epochs and state.epoch < config["epochs"]:
                first_stage = state.stage
                status = self._epoch(model, data, stage, state, checkpoint_path, context)
                if status is not None:
                    return status
                stop_after = options.stop_after_epoch
                if stop_after is not None and state.epoch == stop_after and not state.finished:
                    return self._stop(state, checkpoint_path, reason="stop-after-epoch")
                if state.stage != first_stage:
                    break
        return self._finish(model, data, state, checkpoint_path, context)

    # -------------------------------------------------------------------------------------------- epoch
    def _lr(self, state: TrainState, epoch: int, step: int, steps: int) -> float:
        return state.lr_factor * lr_at_epoch(
            epoch + step / steps,
            self.config["optimizer"],
            batch_per_rank=self.config["batch_per_rank"],
            ranks=self.ranks.size,
            total_epochs=self.config["epochs"],
        )

    def _average(self, logs: dict[str, float], name: str) -> dict[str, float]:
        keys = sorted(logs)
        values = self.ranks.allreduce_sum(np.array([float(logs[k]) for k in keys]), name) / self.ranks.size
        return dict(zip(keys, values.tolist(), strict=True))

    def _epoch(
        self, model: Any, data: TrainingData, stage: Stage, state: TrainState, path: Path, context: RunContext
    ) -> int | None:
        """Train one epoch (or its rest after a resume); returns an exit status if the run must end now."""
        import tensorflow as tf

        from hpcai_tf.train.callbacks import make_progress_bar, make_training_control

        epoch, first_step, steps = state.epoch, state.step, data.steps_per_epoch
        control = make_training_control(
            lr_for_step=lambda step: self._lr(state, epoch, step, steps),
            first_step=first_step,
            steps=steps,
            check_every=self.config["preemption_check_steps"],
            flag=self.flag,
            ranks=self.ranks,
            set_step_seed=None if context.step_seed is None else lambda step: context.step_seed.set(epoch, step),
        )
        callbacks = [*self.backend.fit_callbacks(), control]
        verbose = 0
        if self.ranks.is_root:  # a live progress bar on a terminal, one line per epoch in a log file
            callbacks.append(make_progress_bar(self.config["epochs"]))
            verbose = 1 if progress_bar_wanted() else 2
        epoch_start = time.time()
        try:
            history = model.fit(
                self.backend.dataset(lambda: data.train(epoch, first_step)),
                initial_epoch=epoch,
                epochs=epoch + 1,
                steps_per_epoch=steps - first_step,
                callbacks=callbacks,
                verbose=verbose,
            )
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as err:  # unreadable records
            raise KitError(self._data_error(data, err)) from None
        train_time = time.time() - epoch_start
        state.step = control.step
        if control.preempted and state.step < steps:
            return self._stop(state, path, reason="signal", model=model)
        logs = {key: values[-1] for key, values in history.history.items()}
        self.ranks.average_non_trainable(model)  # validate the model every rank holds, as it is checkpointed
        if data.validation is not None:
            validation = self.backend.dataset(data.validation)
            val = model.evaluate(validation, steps=data.validation_steps, verbose=0, return_dict=True)
            logs.update({f"val_{k}": v for k, v in self._average(val, "hpcai.val").items()})
        epoch_time = time.time() - epoch_start
        steps_run = state.step - first_step
        state.epoch, state.step = epoch + 1, 0
        state.epoch_in_stage += 1
        stop_stage = self._early_stopping(stage, state, logs.get("val_loss"))
        stage_name = stage.name
        if stop_stage or state.epoch_in_stage >= stage.epochs:
            if stop_stage:
                self.say(f"stage '{stage.name}': no better validation loss in {stage.patience} epochs, stopping it")
            state.next_stage()
        state.finished = state.epoch >= self.config["epochs"] or state.stage >= len(self.workload.stages(self.config))
        self._checkpoint(model, state, path)
        per_rank = data.batch * steps_run / train_time if train_time > 0 else None
        record = {
            "type": "epoch",
            "epoch": epoch + 1,
            "loss": logs.pop("loss"),
            "metrics": logs,
            "lr": control.lr,
            "samples_per_sec_per_rank": per_rank,
            "global_samples_per_sec": per_rank * self.ranks.size if per_rank else None,
            "step_time_s": control.median_step_time,
            "step_time_quantiles_s": control.step_time_quantiles,
            "epoch_time_s": epoch_time,
            "train_time_s": train_time,
            "wall_time_s": self.elapsed(),
            "ranks": self.ranks.size,
            "steps": steps_run,
            "batch_per_rank": data.batch,
            "stage": stage_name,
            "resumed_mid_epoch": first_step > 0,
        }
        if self.ranks.is_root:
            self.record(record)
            self._summaries(record)
            shown = [f"loss {record['loss']:.4g}"]
            shown += [f"{k} {v:.4g}" for k, v in record["metrics"].items() if isinstance(v, float)]
            print(
                f"hpcai: epoch {epoch + 1}/{self.config['epochs']} {' '.join(shown)} "
                f"({record['global_samples_per_sec'] or 0:.1f} samples/s over {self.ranks.size} rank(s))",
                flush=True,
            )
        if control.preempted and not state.finished:  # at an epoch's last step: the epoch is complete, stop now
            return self._stop(state, path, reason="signal")
        if control.preempted:  # at the run's last step: the work is done, so it finishes (final record, exit 0)
            self.say("a stop signal came at the last step of the last epoch: the run is complete, finishing it")
        return None

    def _early_stopping(self, stage: Stage, state: TrainState, val_loss: float | None) -> bool:
        """Track the validation loss; lower the LR on a plateau; True when the stage should stop."""
        if val_loss is None or (stage.patience <= 0 and stage.plateau_patience <= 0):
            return False
        if state.best_val_loss is None or val_loss < state.best_val_loss:
            state.best_val_loss = val_loss
            state.epochs_without_improvement = 0
            state.plateau_wait = 0
            return False
        state.epochs_without_improvement += 1
        state.plateau_wait += 1
        if stage.plateau_patience > 0 and state.plateau_wait >= stage.plateau_patience:
            state.lr_factor *= stage.plateau_factor
            state.plateau_wait = 0
            self.say(f"validation loss on a plateau: LR x {stage.plateau_factor}")
        return stage.patience > 0 and state.epochs_without_improvement >= stage.patience

    def _summaries(self, record: dict[str, Any]) -> None:
        if self.summary_writer is None:
            return
        import tensorflow as tf

        scalars = {"loss": record["loss"], "lr": record["lr"]}
        scalars.update({key: value for key, value in record["metrics"].items() if isinstance(value, float)})
        if record["global_samples_per_sec"]:
            scalars["global_samples_per_sec"] = record["global_samples_per_sec"]
        with self.summary_writer.as_default(step=record["epoch"]):
            for name, value in scalars.items():
                write_scalar(tf, name, value)
        self.summary_writer.flush()

    def _data_error(self, data: TrainingData, err: Exception) -> str:
        from hpcai_tf.train.data.tfrecords import find_bad_shard

        shards = [
            path for key in ("train_source", "val_source") if key in data.details for path in data.details[key].shards
        ]
        if shards:
            return find_bad_shard(shards)
        reason = getattr(err, "message", str(err)).split("\n")[0]
        return f"{data.description.get('path', 'the data')}: failed to read during training ({reason})"

    # -------------------------------------------------------------------------------------- end of a run
    def _stop(self, state: TrainState, path: Path, *, reason: str, model: Any = None) -> int:
        """Checkpoint (if mid-epoch), record the preemption, wait for every rank, exit EXIT_PREEMPTED."""
        received = self.ranks.allgather_object(self.flag.reason, "hpcai.stop_reasons")
        signalled = [rank for rank, why in enumerate(received) if why]
        if reason == "signal" and signalled:
            reason = str(received[signalled[0]])  # the signal another rank received
        if model is not None:
            self._checkpoint(model, state, path)
        self.record(
            {
                "type": "preempted",
                "reason": reason,
                "signalled_ranks": signalled,
                "epoch": state.epoch + 1 if state.step else state.epoch,
                "completed_epochs": state.epoch,
                "step": state.step,
                "checkpoint": str(path),
                "wall_time_s": self.elapsed(),
                "ranks": self.ranks.size,
            }
        )
        self.say(
            f"stopped ({reason}) after {state.epoch} epochs and {state.step} steps; checkpoint {path}; "
            f"rerun with --resume (exit status {EXIT_PREEMPTED})"
        )
        self.ranks.barrier("hpcai.stopped")
        return EXIT_PREEMPTED

    def _finish(self, model: Any, data: TrainingData, state: TrainState, path: Path, context: RunContext) -> int:
        plain = self.backend.plain_model(model, lambda: self.workload.build_model(context, data))
        quality = self.workload.quality(context, plain, data)
        digests = self.ranks.allgather_object(weights_digest(model.trainable_variables), "hpcai.digests")
        agree = len(set(digests)) == 1
        self.record(
            {
                "type": "final",
                "quality": quality,
                "weights_digest_per_rank": digests,
                "weights_agree": agree,
                "epochs": state.epoch,
                "checkpoint": str(path),
                "wall_time_s": self.elapsed(),
                "ranks": self.ranks.size,
                "status": "completed",
            }
        )
        value = quality.get("value")
        shown = f"{value:.4f}" if isinstance(value, float) else "n/a"
        self.say(f"done: {quality['name']} {shown}; weights agree across ranks: {agree}; {self.elapsed():.1f} s")
        if self.summary_writer is not None:
            self.summary_writer.close()
        return 0
