#!/usr/bin/env bash
# `make demo`: the main job on the local site, from nothing to a result.
#   1. the catalog's sites and pins;
#   2. a small AI-GW data set: IMRPhenomXAS waveforms from lalsuite, in units of the total mass;
#   3. the AI-GW WaveNet trained with 1 and then 2 Horovod ranks (mpirun on this machine);
#   4. the 1-vs-2-rank scaling report (Markdown, CSV, PNG) and the performance model's estimate beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
hpcai=.venv/bin/hpcai
out=${DEMO_OUT:-runs/demo}
rm -rf "$out"
mkdir -p "$out"

echo "== sites in the catalog"
"$hpcai" sites

echo "== AI-GW data: 640 waveforms (smoke preset) -> $out/gw.h5"
"$hpcai" data gw --smoke --n 640 --out "$out/gw.h5"

echo "== training at 1 and 2 ranks, then the scaling report"
"$hpcai" scale gw --ranks 1,2 --out "$out" -- --smoke --data "$out/gw.h5" --no-tensorboard

echo "== the performance model, from the 1-rank run's step time"
"$hpcai" estimate gw --site local --gpus 1,2 --from-run "$out/gw-1ranks" --smoke

echo "== demo done: $out/report.md, $out/report.csv, $out/scaling.png"
