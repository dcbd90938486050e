#!/usr/bin/env bash
# Create or update .venv with everything the kit needs (idempotent; a no-op when nothing changed).
#
# Horovod is built from its sdist against the TensorFlow in the venv, once; the wheel is kept in
# .cache/wheels, with a sidecar recording the TensorFlow and Python it was built against, so that a rebuilt venv
# and the local image (see containers/) reuse it only while those match.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

venv=.venv
wheels=.cache/wheels
lock=requirements/lock.txt
horovod_version=0.28.1
stamp="$venv/.hpcai-setup"
want="$(cat "$lock" requirements/bootstrap.txt pyproject.toml "$0" | sha256sum | cut -d' ' -f1)"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/hpcai" ]; then
  exit 0
fi

python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip_quiet() {  # pip, without the warnings some machines' pip.conf adds for find-links paths that do not exist
  "$venv/bin/python" -m pip --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
pip=(pip_quiet)
"${pip[@]}" install --upgrade -r requirements/bootstrap.txt
"${pip[@]}" install -r "$lock"

# The cached wheel's sidecar (<wheel>.built-against.json) records the TensorFlow and Python it was built against;
# Horovod links against TensorFlow's C++ ABI, so a wheel whose record differs from the venv's is built again.
built_against="$("$venv/bin/python" - <<'PY'
import json, platform
from importlib import metadata

for name in ("tensorflow-cpu", "tensorflow"):
    try:
        tensorflow = f"{name}=={metadata.version(name)}"
        break
    except metadata.PackageNotFoundError:
        continue
else:
    raise SystemExit("setup-venv: no tensorflow-cpu or tensorflow in the venv; requirements/lock.txt pins one")
print(json.dumps({"python": platform.python_version(), "tensorflow": tensorflow}, sort_keys=True))
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
  echo "setup-venv: building Horovod $horovod_version against $built_against (about 4 minutes on 2 cores)"
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    HOROVOD_WITHOUT_GLOO=0 MAKEFLAGS="-j$(nproc)" \
    "${pip[@]}" wheel --no-cache-dir --no-build-isolation --no-deps -w "$wheels" "horovod==$horovod_version"
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
