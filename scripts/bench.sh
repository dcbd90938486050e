#!/usr/bin/env bash
# `make bench`: every benchmark in bench/, each printing ratios measured side by side in one run, with the load
# average at its start and end. Benchmarks are slow (minutes each on 2 cores) and noisy on a shared machine:
# compare within a run. The image benchmarks need a Docker engine; they are skipped when none answers
# (`scripts/dockerd.sh start` starts the kit's own).
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
for bench in bench/machine_drift.py bench/horovod_vs_mwms.py bench/training_overheads.py bench/estimate_vs_measured.py bench/emulated_nodes.py; do
  echo "== $bench ($(date -u +%Y-%m-%dT%H:%MZ))"
  .venv/bin/python "$bench"
done
for bench in bench/bench_image_build.py bench/tf_stacks.py; do
  echo "== $bench ($(date -u +%Y-%m-%dT%H:%MZ))"
  if scripts/dockerd.sh status >/dev/null 2>&1; then
    .venv/bin/python "$bench"
  else
    echo "skipped: no Docker engine answers (scripts/dockerd.sh status)"
  fi
done
