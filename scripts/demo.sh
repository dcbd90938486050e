#!/usr/bin/env bash
# `make demo`: the main job on the local site, from nothing to a result.
#   1. the catalog's sites and pins;
#   2. a small AI-GW data set: IMRPhenomXAS waveforms from lalsuite, in units of the total mass;
#   3. the node calibrated for the performance model (hpcai calibrate: one run alone, two at once, when each
#      gradient is ready in a 1-rank step, Horovod's collectives and the backward pass beside its allreduces
#      under mpirun; no multi-rank training run);
#   4. the AI-GW WaveNet trained with 1 and then 2 Horovod ranks (mpirun on this machine) and its scaling report;
#   5. measured beside predicted, in one table and one plot.
# Like with like: every rank runs one intra-op and one inter-op thread, so a rank is one of the node's cores (the
# model's device on a CPU node), at 1 rank as at 2.
set -euo pipefail
cd "$(dirname "$0")/.."
hpcai=.venv/bin/hpcai
out=${DEMO_OUT:-runs/demo}
rm -rf "$out"
mkdir -p "$out"
export TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
train=(--smoke --data "$out/gw.h5" --no-tensorboard)

echo "== sites in the catalog"
"$hpcai" sites

echo "== AI-GW data: 640 waveforms (smoke preset) -> $out/gw.h5"
"$hpcai" data gw --smoke --n 640 --out "$out/gw.h5"

echo "== calibrating the node for the model -> $out/calibration/local.json"
"$hpcai" calibrate gw --site local --out "$out/calibration" -- "${train[@]}"

echo "== training at 1 and 2 ranks (one thread each), then the scaling report"
"$hpcai" scale gw --ranks 1,2 --out "$out" -- "${train[@]}"

echo "== measured beside predicted (the model with the calibration)"
"$hpcai" estimate gw --site local --smoke --calibration "$out/calibration/local.json" \
    --against "$out/gw-1ranks" "$out/gw-2ranks" --out "$out"

echo "== demo done: $out/report.md, $out/scaling.png, $out/estimate.md, $out/estimate.png"
