#!/usr/bin/env bash
# Create or update .venv with everything the kit needs (idempotent; a no-op when nothing changed).
#
# The venv follows the `local` site (containers/sites/local.toml): requirements/lock.txt pins what pip resolves,
# and the site's stack names the tf-keras release (installed --no-deps), the Horovod release and the patches
# (containers/patches/<name>.patch) applied to its sdist, as the recipe does. Horovod is built against the
# TensorFlow in the venv, once; the wheel is kept in .cache/wheels, with a sidecar recording the TensorFlow,
# Python and patches it was built with, so that a rebuilt venv reuses it only while those match.
#
# `scripts/setup-venv.sh --print-stack` prints what it takes from the site, one `name=value` a line, and exits.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

venv=.venv
wheels=.cache/wheels
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
want="$(cat "$lock" requirements/bootstrap.txt pyproject.toml "$site_file" "${patch_files[@]}" "$0" | sha256sum | cut -d' ' -f1)"

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

# The cached wheel's sidecar (<wheel>.built-against.json) records the TensorFlow and Python it was built against
# and the patches (name and sha256) applied to the sdist; Horovod links against TensorFlow's C++ ABI, so a wheel
# whose record differs from the venv's and the site's is built again.
built_against="$("$venv/bin/python" - "${patch_files[@]}" <<'PY'
import hashlib, json, platform, sys
from importlib import metadata
from pathlib import Path

for name in ("tensorflow-cpu", "tensorflow"):
    try:
        tensorflow = f"{name}=={metadata.version(name)}"
        break
    except metadata.PackageNotFoundError:
        continue
else:
    raise SystemExit("setup-venv: no tensorflow-cpu or tensorflow in the venv; requirements/lock.txt pins one")
patches = [f"{Path(p).stem} sha256:{hashlib.sha256(Path(p).read_bytes()).hexdigest()}" for p in sys.argv[1:]]
print(json.dumps({"patches": patches, "python": platform.python_version(), "tensorflow": tensorflow}, sort_keys=True))
PY
)"
tag="$("$venv/bin/python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
wheel="$wheels/horovod-$horovod_version-$tag-$tag-linux_$(uname -m).whl"
sidecar="$wheel.built-against.json"
mkdir -p "$wheels"
if [ -f "$wheel" ] && [ "$(cat "$sidecar" 2>/dev/null)" != "$built_against" ]; then
  echo "setup-venv: $wheel was built against $(cat "$sidecar" 2>/dev/null || echo 'an unrecorded TensorFlow'), the venv has $built_against: building it again"
  rm -f "$wheel" "$sidecar"
fi
if [ ! -f "$wheel" ]; then
  echo "setup-venv: building Horovod $horovod_version against $built_against (2 to 4 minutes on 2 cores)"
  source_dir="$(mktemp -d)"
  trap 'rm -rf "$source_dir"' EXIT
  "${pip[@]}" download --no-cache-dir --no-deps --no-binary=:all: --dest "$source_dir" "horovod==$horovod_version"
  tar -xzf "$source_dir/horovod-$horovod_version.tar.gz" -C "$source_dir"
  for patch_file in "${patch_files[@]}"; do
    patch --quiet -d "$source_dir/horovod-$horovod_version" -p1 < "$patch_file"
  done
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    HOROVOD_WITHOUT_GLOO=0 MAKEFLAGS="-j$(nproc)" \
    "${pip[@]}" wheel --no-cache-dir --no-build-isolation --no-deps -w "$wheels" "$source_dir/horovod-$horovod_version"
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
