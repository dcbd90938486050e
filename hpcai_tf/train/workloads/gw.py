"""AI-GW: regress (q, s1z, s2z) from h22 with a modified WaveNet; quality is the mean overlap between
validation waveforms and waveforms regenerated from the predicted parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hpcai_tf.errors import KitError
from hpcai_tf.train.config import Config
from hpcai_tf.train.data.fixed_prefetch import fixed_prefetch
from hpcai_tf.train.data.gw_file import GwFile, GwGeneration, generate_gw_file, open_gw_file
from hpcai_tf.train.data.gw_waveforms import WaveformSpec, generate_h22
from hpcai_tf.train.data.overlap import overlap
from hpcai_tf.train.workloads.base import RunContext, Stage, TrainingData, data_path_for, single_stage

READ_BLOCK_BATCHES = 8
MAX_Q_FOR_REGENERATION = 20.0
MAX_SPIN_FOR_REGENERATION = 0.99


def generation_from_config(config: Config, n: int | None = None, noise_snr: float | None = None) -> GwGeneration:
    """The generation settings in a config's [data] table (``hpcai data gw`` defaults, smoke data)."""
    data = config["data"]
    spec = WaveformSpec(
        dt_M=data["dt_M"],
        length=data["length"],
        after_peak_M=data["after_peak_M"],
        total_mass_msun=data["total_mass_msun"],
        approximant=data["approximant"],
    )
    return GwGeneration(
        n=data["samples"] if n is None else n,
        seed=config["seed"],
        spec=spec,
        q_min=data["q_min"],
        q_max=data["q_max"],
        spin_max=data["spin_max"],
        noise_snr=data["noise_snr"] if noise_snr is None else noise_snr,
    )


def label_scaling(gen: GwGeneration) -> tuple[list[float], list[float]]:
    """(centre, half-width) of q, s1z, s2z over the generated ranges: the network predicts in these units."""
    q_half = max((gen.q_max - gen.q_min) / 2.0, 0.5)
    spin_half = max(gen.spin_max, 0.1)
    return [(gen.q_min + gen.q_max) / 2.0, 0.0, 0.0], [q_half, spin_half, spin_half]


def physical_parameters(q: float, s1z: float, s2z: float) -> tuple[float, float, float]:
    """Predicted parameters mapped to a valid waveform: q < 1 means the labels of the two holes swap."""
    if q < 1.0:
        q, s1z, s2z = 1.0 / max(q, 1e-3), s2z, s1z
    spin = MAX_SPIN_FOR_REGENERATION
    return min(q, MAX_Q_FOR_REGENERATION), float(np.clip(s1z, -spin, spin)), float(np.clip(s2z, -spin, spin))


@dataclass
class GwWorkload:
    name: str = "gw"
    quality_name: str = "mean_overlap"

    def prepare_data(self, context: RunContext) -> TrainingData:
        config, ranks = context.config, context.ranks
        path, generate = data_path_for(context, "gw-smoke.h5", "an HDF5 file from `hpcai data gw`")
        if generate and not path.exists():
            if ranks.is_root:
                print(f"hpcai: generating {config['data']['samples']} smoke waveforms into {path}", flush=True)
            generate_gw_file(
                path,
                generation_from_config(config),
                rank=ranks.rank,
                size=ranks.size,
                barrier=lambda: ranks.barrier("gw.gen"),
            )
        gw = ranks.agree(lambda: open_gw_file(path), "gw.open")
        batch = config["batch_per_rank"]
        n_val = round(gw.n * config["validation_fraction"])
        n_train = gw.n - n_val
        natural_steps = (n_train // ranks.size) // batch
        if natural_steps < 1:
            raise KitError(f"{path}: {n_train} training waveforms are too few for {ranks.size} ranks x batch {batch}")
        steps = config["steps_per_epoch"] or natural_steps
        val_steps = (n_val // ranks.size) // batch
        seed = config["seed"]

        def batches(indices: np.ndarray):
            import tensorflow as tf

            # Reads of READ_BLOCK_BATCHES batches, but the first of one batch: each epoch's new iterator starts
            # training at once instead of waiting for a whole block (about 0.1 s here).
            starts = [0, *range(batch, len(indices), batch * READ_BLOCK_BATCHES)] if len(indices) else []
            ends = [*starts[1:], len(indices)] if starts else []

            def generate():
                for start, end in zip(starts, ends, strict=True):
                    rows = indices[start:end]
                    waves, labels = gw.read(rows), gw.read(rows, "labels")
                    for offset in range(0, len(rows) - batch + 1, batch):
                        yield waves[offset : offset + batch], labels[offset : offset + batch]

            signature = (
                tf.TensorSpec((batch, gw.length, 2), tf.float32),
                tf.TensorSpec((batch, 3), tf.float32),
            )
            # No tf.data autotuning: it has nothing to tune here; with it, 2 of 5 smoke epochs lost 1-2 s at the end
            # of model.fit with TF 2.15 (see fixed_prefetch).
            return fixed_prefetch(tf.data.Dataset.from_generator(generate, output_signature=signature))

        def train(epoch: int, skip: int):
            rng = np.random.default_rng([seed, epoch])
            order = np.concatenate([rng.permutation(n_train) for _ in range(-(-steps * batch * ranks.size // n_train))])
            mine = order[ranks.rank :: ranks.size][: steps * batch]
            return batches(mine[skip * batch :])

        def validation():
            return batches(np.arange(n_train, gw.n)[ranks.rank :: ranks.size][: val_steps * batch])

        return TrainingData(
            description={
                "path": str(gw.path),
                "format": "hdf5",
                "waveforms": gw.n,
                "train_samples": n_train,
                "validation_samples": n_val,
                "length": gw.length,
                "generation": gw.generation.as_dict(),
            },
            batch=batch,
            steps_per_epoch=steps,
            train=train,
            validation_steps=val_steps,
            validation=validation if val_steps > 0 else None,
            details={"file": gw, "n_train": n_train},
        )

    def build_model(self, context: RunContext, data: TrainingData):
        from hpcai_tf.train.models.wavenet import build_wavenet

        gw: GwFile = data.details["file"]
        center, scale = label_scaling(gw.generation)
        return build_wavenet(gw.length, context.config["model"], center, scale)

    def loss_and_metrics(self, context: RunContext, data: TrainingData):
        import tensorflow as tf

        gw: GwFile = data.details["file"]
        _, scale = label_scaling(gw.generation)
        scale_t = tf.constant(scale, tf.float32)
        spin_weight = context.config["loss"]["spin_penalty"]
        q_weight = context.config["loss"]["q_penalty"]

        def physics_loss(y_true, y_pred):
            y_pred = tf.cast(y_pred, tf.float32)
            regression = tf.reduce_mean(tf.square((y_pred - y_true) / scale_t), axis=-1)
            q, s1z, s2z = y_pred[:, 0], y_pred[:, 1], y_pred[:, 2]
            kerr = tf.square(tf.nn.relu(tf.abs(s1z) - 1.0)) + tf.square(tf.nn.relu(tf.abs(s2z) - 1.0))
            ordering = tf.square(tf.nn.relu(1.0 - q))
            return regression + spin_weight * kerr + q_weight * ordering

        def column_mae(column: int, name: str):
            def metric(y_true, y_pred):
                return tf.abs(tf.cast(y_pred[:, column], tf.float32) - y_true[:, column])

            metric.__name__ = name
            return metric

        return physics_loss, [column_mae(0, "q_mae"), column_mae(1, "s1z_mae"), column_mae(2, "s2z_mae")]

    def stages(self, config: Config) -> list[Stage]:
        return single_stage(config)

    def apply_stage(self, model: Any, stage: Stage) -> None:
        return None

    def quality(self, context: RunContext, model: Any, data: TrainingData) -> dict[str, Any]:
        """Mean overlap over the first validation waveforms (shared by ranks), plus q and spin errors and the
        error of always predicting the training mean, for comparison."""
        gw: GwFile = data.details["file"]
        n_train = data.details["n_train"]
        ranks = context.ranks
        count = min(context.config["evaluate"]["overlap_waveforms"], gw.n - n_train)
        if count < 1:
            return {"name": self.quality_name, "value": None, "waveforms": 0}
        mine = np.arange(n_train, n_train + count)[ranks.rank :: ranks.size]
        train_mean = gw.read(np.arange(n_train), "labels").astype(np.float64).mean(axis=0)
        sums = np.zeros(8)
        if len(mine):
            waves, labels = gw.read(mine), gw.read(mine, "labels").astype(np.float64)
            clean = gw.read(mine, "clean") if gw.has_clean else waves
            predicted = model.predict(waves, batch_size=data.batch, verbose=0).astype(np.float64)
            overlaps = [
                overlap(
                    clean[i, :, 0] + 1j * clean[i, :, 1],
                    generate_h22(*physical_parameters(*p), gw.generation.spec),
                )
                for i, p in enumerate(predicted)
            ]
            error = predicted - labels
            sums = np.array(
                [
                    np.sum(overlaps),
                    len(mine),
                    np.sum(np.abs(error[:, 0])),
                    np.sum(np.abs(labels[:, 0] - train_mean[0])),
                    np.sum(error[:, 0] ** 2),
                    np.sum((labels[:, 0] - train_mean[0]) ** 2),
                    np.sum(np.abs(error[:, 1])),
                    np.sum(np.abs(error[:, 2])),
                ]
            )
        total = ranks.allreduce_sum(sums, "gw.quality")
        n = total[1]
        return {
            "name": self.quality_name,
            "value": total[0] / n,
            "waveforms": int(n),
            "q_mae": total[2] / n,
            "q_mae_mean_predictor": total[3] / n,
            "q_rmse": float(np.sqrt(total[4] / n)),
            "q_rmse_mean_predictor": float(np.sqrt(total[5] / n)),
            "s1z_mae": total[6] / n,
            "s2z_mae": total[7] / n,
        }


WORKLOAD = GwWorkload()
