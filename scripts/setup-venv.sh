#!/usr/bin/env bash
# Create or update .venv with everything the kit needs (idempotent; a no-op when nothing changed).
#
# Horovod is built from its sdist against the TensorFlow in the venv, once; the wheel is kept in
# .cache/wheels so that a rebuilt venv and the local image (see containers/) reuse it.
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

if ! "$venv/bin/python" -c "import horovod.tensorflow" 2>/dev/null; then
  mkdir -p "$wheels"
  if ! ls "$wheels"/horovod-"$horovod_version"-*.whl >/dev/null 2>&1; then
    echo "setup-venv: building Horovod $horovod_version against TensorFlow (about 4 minutes on 2 cores)"
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
      HOROVOD_WITHOUT_GLOO=0 MAKEFLAGS="-j$(nproc)" \
      "${pip[@]}" wheel --no-cache-dir --no-build-isolation --no-deps -w "$wheels" "horovod==$horovod_version"
  fi
  "${pip[@]}" install --no-deps "$wheels"/horovod-"$horovod_version"-*.whl
  # Horovod's runtime dependencies (cloudpickle, psutil, pyyaml, packaging) are pinned in the lock.
fi

"${pip[@]}" install --no-deps --no-build-isolation -e .
echo "$want" > "$stamp"
