#!/usr/bin/env bash
# `make bench`: every benchmark in bench/, each printing ratios measured side by side in one run.
# Benchmarks are slow (minutes each on 2 cores) and noisy on a shared machine: compare within a run.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
for bench in bench/horovod_vs_mwms.py bench/training_overheads.py bench/estimate_vs_measured.py \
             bench/bench_image_build.py; do
  echo "== $bench"
  .venv/bin/python "$bench"
done
