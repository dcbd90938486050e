#!/usr/bin/env bash
# `make demo`: the main job on the local site. Until the training package lands it renders and prints the
# recipes of every site; see README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/hpcai sites
.venv/bin/hpcai render --print
