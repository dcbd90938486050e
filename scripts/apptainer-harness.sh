#!/usr/bin/env bash
# Test harness, not product: a real Apptainer on a Debian 12 host, which has no Apptainer package.
#
#   scripts/apptainer-harness.sh prepare   debootstrap a Debian sid root and install `apptainer` in it (cached)
#   scripts/apptainer-harness.sh status    what the cache holds (the Apptainer version it recorded), or that it is gone
#   scripts/apptainer-harness.sh env       print `export PATH=...` that puts the `apptainer`/`singularity` wrappers first
#   scripts/apptainer-harness.sh clean     remove the cache
#   scripts/apptainer-harness.sh apptainer ARGS...   what the wrappers run (also: `shell CMD...` inside the sid root)
#   scripts/apptainer-harness.sh hydra ARGS...       MPICH's mpiexec.hydra (Debian 12's, unpacked, not installed):
#                                                    a launcher the image's Open MPI cannot talk to, for the tests
#
# The kit itself only expects `apptainer` or `singularity` on PATH, as on the clusters. The wrappers make
# `apptainer exec IMG cmd` behave as on a cluster for a caller on the host: each call enters the sid root in a
# private mount namespace (bind the root onto itself, pivot_root), with the host's /tmp, $TMPDIR, the kit and the
# working directory bound in, and runs the sid root's apptainer there; the same paths reach the container
# through APPTAINER_BIND. Network and PID namespaces stay the host's, so the ranks that the host's mpirun
# starts reach its PMIx server (Unix sockets under /tmp, OMPI_*/PMIX_* in the environment) and take signals.
# This machine's root lacks CAP_SYS_RESOURCE: `prepare` sets `root default capabilities = file` (exec, run, test)
# and the wrapper adds --fakeroot to builds (%post and %test ask for every capability).
#
# Cache: $HPCAI_APPTAINER_CACHE (default .cache/apptainer/): root/ (the sid root), bin/ (the wrappers), mpich/,
# VERSION (what was installed, when, from which mirror, how long it took; written last), history, prepare.log.
# Debian unstable moves: pin it with HPCAI_APPTAINER_MIRROR=http://snapshot.debian.org/archive/debian/<stamp>.
# HPCAI_APPTAINER_BIND=DIR:DIR... adds host directories; HPCAI_APPTAINER_HOST_TMP=no keeps the host's /tmp and
# $TMPDIR out (the container gets the sid root's own /tmp): how the tests break the PMIx rendezvous on purpose.
set -euo pipefail

kit="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
self="$kit/scripts/apptainer-harness.sh"
cache="${HPCAI_APPTAINER_CACHE:-$kit/.cache/apptainer}"
sid="$cache/root"
stamp="$cache/VERSION"
mirror="${HPCAI_APPTAINER_MIRROR:-http://deb.debian.org/debian}"
suite="${HPCAI_APPTAINER_SUITE:-sid}"

die() { echo "apptainer-harness: $*" >&2; exit 2; }

ready() { [ -f "$stamp" ] && [ -x "$sid/usr/bin/apptainer" ]; }

gone_message() {
  if [ -f "$stamp" ] || [ -d "$cache/bin" ]; then
    echo "the Apptainer cache at $cache is gone or incomplete (no $sid/usr/bin/apptainer or no VERSION);" \
      "rebuild it with: $self prepare (about 1 min, needs the Debian mirror)"
  else
    echo "no Apptainer cache at $cache; make it with: $self prepare (about 1 min, needs the Debian mirror)"
  fi
}

write_wrappers() { # bin/apptainer and bin/singularity: run the sid root's apptainer through this script
  mkdir -p "$cache/bin"
  local name tmp
  for name in apptainer singularity; do
    tmp="$cache/bin/.$name.tmp$$"
    printf '#!/bin/sh\n# written by %s prepare: Apptainer in the Debian sid root %s\n%s\nexec %q apptainer "$@"\n' \
      "$self" "$sid" "$(printf 'HPCAI_APPTAINER_CACHE=%q; export HPCAI_APPTAINER_CACHE' "$cache")" "$self" >"$tmp"
    chmod 755 "$tmp"
    mv -f "$tmp" "$cache/bin/$name"
  done
}

covered() { # covered PATH DIR...: true when PATH lies at or below one of DIR...
  local path="$1" dir
  shift
  for dir in "$@"; do
    case "$path/" in "${dir%/}/"*) return 0 ;; esac
  done
  return 1
}

host_paths() { # the host directories a job needs inside the sid root and the container, one a line
  local list=() seen=() path
  if [ "${HPCAI_APPTAINER_HOST_TMP:-yes}" != no ]; then
    list+=(/tmp)
    [ -n "${TMPDIR:-}" ] && list+=("$TMPDIR")
  fi
  list+=("$kit" "$PWD")
  if [[ "${DOCKER_HOST:-}" == unix://* ]]; then list+=("$(dirname "${DOCKER_HOST#unix://}")"); fi
  if [ -n "${HPCAI_APPTAINER_BIND:-}" ]; then
    IFS=: read -r -a extra <<<"$HPCAI_APPTAINER_BIND"
    list+=("${extra[@]}")
  fi
  for path in "${list[@]}"; do
    [ -d "$path" ] || continue
    path="$(cd "$path" && pwd -P)"
    case "$path" in /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
    covered "$path" "${seen[@]+"${seen[@]}"}" && continue
    seen+=("$path")
    echo "$path"
  done
}

has_cap_sys_resource() { # true when this process may use CAP_SYS_RESOURCE (bit 24)
  local eff
  eff="$(awk '/^CapEff:/ {print $2}' /proc/self/status)"
  (( (16#$eff >> 24) & 1 ))
}

enter() { # enter CWD CMD...: (in a private mount namespace) pivot into the sid root and exec CMD there
  local cwd="$1" path binds=() f
  shift
  mount --bind "$sid" "$sid"
  mount --rbind /proc "$sid/proc"
  mount --rbind /sys "$sid/sys"
  mount --rbind /dev "$sid/dev"
  for f in /etc/resolv.conf /etc/hosts; do
    [ -e "$sid$f" ] || : >"$sid$f"
    mount --bind "$f" "$sid$f"
  done
  while IFS= read -r path; do
    mkdir -p "$sid$path"
    mount --rbind "$path" "$sid$path"
    binds+=("$path")
  done < <(cd "$cwd" && host_paths)
  # .oldroot stays: concurrent calls (one per rank) pivot onto it in their own namespaces; removing it in one
  # would pull it from under another between its pivot_root and its umount.
  mkdir -p "$sid/.oldroot"
  cd "$sid"
  pivot_root . .oldroot
  cd /
  umount -l /.oldroot
  cd "$cwd" 2>/dev/null || cd /
  export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  if [ "${1:-}" = /usr/bin/apptainer ]; then
    case "${2:-}" in
      exec|run|shell|test|instance)
        local joined
        joined="$(IFS=,; echo "${binds[*]}")"
        export APPTAINER_BIND="${APPTAINER_BIND:+$APPTAINER_BIND,}$joined"
        ;;
      build)
        # A build's %post and %test ask for every capability, and `root default capabilities` does not apply
        # to them: without CAP_SYS_RESOURCE (this machine) root builds only as --fakeroot.
        if [ "$(id -u)" -eq 0 ] && ! has_cap_sys_resource && [[ " ${*:3} " != *" --fakeroot "* ]]; then
          set -- "$1" build --fakeroot "${@:3}"
        fi
        ;;
    esac
  fi
  exec "$@"
}

in_root() { # in_root CMD...: run CMD in the sid root (prepare's own use)
  unshare --mount --propagation private -- "$self" _enter "$PWD" "$@"
}

fetch_hydra() { # mpich/: Debian 12's mpich and libslurm38 packages unpacked with dpkg -x (host apt, no install)
  [ -x "$cache/mpich/usr/bin/mpiexec.hydra" ] && return 0
  local tmp="$cache/mpich.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp/debs"
  (cd "$tmp/debs" && apt-get download mpich libslurm38) >>"$cache/prepare.log" 2>&1 \
    || die "apt-get download mpich libslurm38 failed; see $cache/prepare.log"
  local deb
  for deb in "$tmp"/debs/*.deb; do
    dpkg -x "$deb" "$tmp"
    # shellcheck disable=SC2016  # dpkg-deb's own ${Package}
    dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb" >>"$tmp/VERSIONS"
  done
  rm -rf "$tmp/debs" "$cache/mpich"
  mv "$tmp" "$cache/mpich"
  echo "apptainer-harness: unpacked $(paste -sd, "$cache/mpich/VERSIONS" | sed 's/,/, /g') into $cache/mpich"
}

prepare() {
  if ready; then
    fetch_hydra
    write_wrappers
    echo "apptainer-harness: cached: $(head -n 1 "$stamp") ($cache)"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "prepare needs root (debootstrap, mount namespaces)"
  command -v debootstrap >/dev/null || die "debootstrap is not installed: apt-get install -y debootstrap"
  if ! command -v unshare >/dev/null || ! command -v pivot_root >/dev/null; then
    die "unshare and pivot_root (util-linux) are needed"
  fi
  echo "apptainer-harness: $(gone_message | sed 's/; make it with.*//; s/; rebuild it with.*//'): preparing it"
  mkdir -p "$cache"
  local log="$cache/prepare.log" t0 t1 t2 version
  rm -rf "$sid"
  : >"$log"
  t0=$(date +%s)
  echo "apptainer-harness: debootstrap --variant=minbase $suite $sid $mirror (log: $log)"
  if ! debootstrap --variant=minbase --include=mount "$suite" "$sid" "$mirror" >>"$log" 2>&1; then
    tail -n 5 "$log" >&2
    die "debootstrap of $suite from $mirror failed; see $log"
  fi
  t1=$(date +%s)
  echo "apptainer-harness: apt-get install apptainer in the $suite root"
  if ! in_root /bin/sh -c 'export DEBIAN_FRONTEND=noninteractive &&
      apt-get -o Acquire::Check-Valid-Until=false update &&
      apt-get install -y apptainer squashfs-tools && apt-get clean' >>"$log" 2>&1; then
    tail -n 5 "$log" >&2
    die "apt-get install apptainer in the $suite root failed; see $log"
  fi
  t2=$(date +%s)
  # This machine's capability set lacks CAP_SYS_RESOURCE: without `file`, exec and run fail.
  sed -i 's/^root default capabilities = .*/root default capabilities = file/' "$sid/etc/apptainer/apptainer.conf"
  grep -q '^root default capabilities = file$' "$sid/etc/apptainer/apptainer.conf" \
    || die "could not set 'root default capabilities = file' in $sid/etc/apptainer/apptainer.conf"
  for f in subuid subgid; do # --fakeroot builds (a .def with %post)
    grep -q '^root:' "$sid/etc/$f" 2>/dev/null || echo "root:100000:65536" >>"$sid/etc/$f"
  done
  version="$(in_root /usr/bin/apptainer --version)" || die "the installed apptainer does not run; see $log"
  local package
  # shellcheck disable=SC2016  # dpkg-query's own ${Version}
  package="$(in_root dpkg-query -W -f '${Version}' apptainer)"
  if [ -f "$cache/history" ] && ! tail -n 1 "$cache/history" | grep -qF "$package"; then
    echo "apptainer-harness: note: the cache had $(tail -n 1 "$cache/history" | cut -f2); Debian $suite now gives $package"
  fi
  printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "apptainer $package" "$suite" "$mirror" >>"$cache/history"
  printf '%s (Debian package %s)\nsuite: %s\nmirror: %s\nprepared: %s\ndebootstrap_seconds: %s\ninstall_seconds: %s\n' \
    "$version" "$package" "$suite" "$mirror" "$(date -u +%FT%TZ)" "$((t1 - t0))" "$((t2 - t1))" >"$stamp.tmp"
  mv -f "$stamp.tmp" "$stamp"
  fetch_hydra
  write_wrappers
  echo "apptainer-harness: installed $version (Debian package $package) in $((t2 - t0)) s" \
    "(debootstrap $((t1 - t0)) s, apt $((t2 - t1)) s)"
}

cmd="${1:-status}"
[ $# -gt 0 ] && shift
case "$cmd" in
  prepare) prepare ;;
  status)
    if ready; then
      echo "apptainer-harness: $cache holds:"
      sed 's/^/  /' "$stamp"
      echo "  wrappers: $cache/bin/{apptainer,singularity}"
      if [ -f "$cache/mpich/VERSIONS" ]; then
        echo "  mismatched launcher (hydra): $(paste -sd, "$cache/mpich/VERSIONS" | sed 's/,/, /g')"
      fi
    else
      gone_message
      exit 1
    fi
    ;;
  env)
    ready || die "$(gone_message)"
    echo "export PATH=$cache/bin:\$PATH"
    ;;
  clean)
    rm -rf "${cache:?}/root" "${cache:?}/bin" "${cache:?}/mpich" "$stamp"
    echo "apptainer-harness: removed $sid, $cache/bin, $cache/mpich and $stamp (history kept)"
    ;;
  apptainer | singularity)
    ready || die "$(gone_message)"
    exec unshare --mount --propagation private -- "$self" _enter "$PWD" /usr/bin/apptainer "$@"
    ;;
  hydra)
    [ -x "$cache/mpich/usr/bin/mpiexec.hydra" ] || die "no MPICH launcher in $cache/mpich; run: $self prepare"
    export LD_LIBRARY_PATH="$cache/mpich/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    exec "$cache/mpich/usr/bin/mpiexec.hydra" "$@"
    ;;
  shell)
    ready || die "$(gone_message)"
    exec unshare --mount --propagation private -- "$self" _enter "$PWD" "${@:-/bin/bash}"
    ;;
  _enter) enter "$@" ;;
  *)
    echo "usage: $0 prepare|status|env|clean|apptainer ARGS...|shell [CMD...]" >&2
    exit 2
    ;;
esac
