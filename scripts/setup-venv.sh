#!/usr/bin/env bash
# Create or update .venv with everything the kit needs (idempotent; a no-op when nothing changed).
#
# The venv follows the `local` site (containers/sites/local.toml): requirements/lock.txt pins what pip resolves,
# and the site's stack names the tf-keras release (installed --no-deps), the Horovod release and the patches
# (containers/patches/<name>.patch) applied to its sdist, as the recipe does. Horovod is built against the
# TensorFlow in the venv, once, with the switches the images use (hpcai_tf/recipes/horovod_build.py); the wheel is
# kept in .cache/wheels with a sidecar recording what it was built with, so that a rebuilt venv reuses it only while
# that matches, and the local image installs it instead of compiling when its own build would be the same.
#
# `scripts/setup-venv.sh --print-stack` prints what it takes from the site, one `name=value` a line, and exits.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

venv=.venv
lock=requirements/lock.txt
site_file=containers/sites/local.toml
python="${PYTHON:-python3}"

# horovod_version, horovod_patches (space-separated names), tf_keras ("" unless stack.keras = "tf-keras").
site_stack="$("$python" - "$site_file" <<'PY'
import shlex
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

with open(sys.argv[1], "rb") as handle:
    stack = tomllib.load(handle)["stack"]
print(f"horovod_version={shlex.quote(stack['horovod'])}")
print(f"horovod_patches={shlex.quote(' '.join(stack.get('horovod_patches', [])))}")
print(f"tf_keras={shlex.quote(stack['tensorflow'] if stack['keras'] == 'tf-keras' else '')}")
PY
)" || { echo "setup-venv: cannot read the stack of $site_file" >&2; exit 2; }
if [ "${1:-}" = "--print-stack" ]; then
  printf '%s\n' "$site_stack"
  exit 0
fi
horovod_version="" horovod_patches="" tf_keras=""
eval "$site_stack"
patch_files=()
for name in $horovod_patches; do
  patch_files+=("containers/patches/$name.patch")
  [ -f "containers/patches/$name.patch" ] || { echo "setup-venv: $site_file names patch $name, no containers/patches/$name.patch" >&2; exit 2; }
done

stamp="$venv/.hpcai-setup"
want="$(cat "$lock" requirements/bootstrap.txt pyproject.toml "$site_file" "${patch_files[@]}" "$0" \
  hpcai_tf/recipes/horovod_build.py | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/hpcai" ]; then
  exit 0
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip_quiet() {  # pip, without the warnings some machines' pip.conf adds for find-links paths that do not exist
  "$venv/bin/python" -m pip --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
pip=(pip_quiet)
"${pip[@]}" install --upgrade -r requirements/bootstrap.txt
"${pip[@]}" install -r "$lock"
if [ -n "$tf_keras" ]; then
  # tf.keras as Keras 2 (the kit sets TF_USE_LEGACY_KERAS=1 for it); --no-deps, else pip pulls `tensorflow`.
  "${pip[@]}" install --no-deps "tf-keras==$tf_keras"
fi

# What to build comes from the kit (hpcai_tf/recipes/horovod_build.py), the one definition the images use: the
# wheel's directory and name, the build switches, the patch files and the record of this build (Horovod, patches by
# sha256, the venv's TensorFlow, Python, platform, OS, MPI, switches). The record is kept beside the wheel
# (<wheel>.built-against.json); a wheel whose record differs is built again, and `hpcai build` stages the wheel into
# an image only when the record equals that image's own build.
horovod_build="$(HPCAI_ROOT="$root" "$venv/bin/python" -m hpcai_tf.recipes.horovod_build "$site_file")" \
  || { echo "setup-venv: python -m hpcai_tf.recipes.horovod_build $site_file failed" >&2; exit 2; }
wheels_dir="" wheel="" record="" build_switches=() patch_files=() built_against=""
eval "$horovod_build"
wheel="$wheels_dir/$wheel"
sidecar="$wheels_dir/$record"
mkdir -p "$wheels_dir"
if [ -f "$wheel" ] && [ "$(cat "$sidecar" 2>/dev/null)" != "$built_against" ]; then
  echo "setup-venv: $wheel was built with $(cat "$sidecar" 2>/dev/null || echo 'an unrecorded build'), the venv has $built_against: building it again"
  rm -f "$wheel" "$sidecar"
fi
if [ ! -f "$wheel" ]; then
  echo "setup-venv: building Horovod $horovod_version with $built_against (2 to 4 minutes on 2 cores)"
  source_dir="$(mktemp -d)"
  trap 'rm -rf "$source_dir"' EXIT
  "${pip[@]}" download --no-cache-dir --no-deps --no-binary=:all: --dest "$source_dir" "horovod==$horovod_version"
  tar -xzf "$source_dir/horovod-$horovod_version.tar.gz" -C "$source_dir"
  for patch_file in "${patch_files[@]}"; do
    patch --quiet -d "$source_dir/horovod-$horovod_version" -p1 < "$patch_file"
  done
  # MAKEFLAGS sets parallel make only (PARALLEL_MAKE in the kit); it is no build switch and not in the record.
  (export "${build_switches[@]}"; MAKEFLAGS="-j$(nproc)" \
    "${pip[@]}" wheel --no-cache-dir --no-build-isolation --no-deps -w "$wheels_dir" "$source_dir/horovod-$horovod_version")
  rm -rf "$source_dir"
  trap - EXIT
  [ -f "$wheel" ] || { echo "setup-venv: pip wheel did not write $wheel" >&2; exit 2; }
  printf '%s\n' "$built_against" > "$sidecar.tmp" && mv "$sidecar.tmp" "$sidecar"
fi
# Install it unless the venv's Horovod imports and came from this very wheel (pip records its sha256).
installed_from="$("$venv/bin/python" -c '
import json
from importlib import metadata
try:
    print(json.loads(metadata.distribution("horovod").read_text("direct_url.json") or "{}")["archive_info"]["hashes"]["sha256"])
except Exception:
    pass
')"
if [ "$installed_from" != "$(sha256sum "$wheel" | cut -d' ' -f1)" ] || ! "$venv/bin/python" -c "import horovod.tensorflow" 2>/dev/null; then
  "${pip[@]}" install --no-deps --force-reinstall "$wheel"
  # Horovod's runtime dependencies (cloudpickle, psutil, pyyaml, packaging) are pinned in the lock.
fi

"${pip[@]}" install --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
