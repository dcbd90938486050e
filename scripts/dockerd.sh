#!/usr/bin/env bash
# A private Docker daemon for the kit: start | stop | status [DIR]
#
# DIR (default .cache/docker) holds everything: data/ (images, build cache), run/ (exec root),
# docker.sock, dockerd.pid and dockerd.log. `start` does nothing when a daemon already answers at
# $DOCKER_HOST, at DIR's socket or at the socket of any dockerd running on the machine (never two
# daemons); it prints the DOCKER_HOST to export.
# `stop` ends the daemon by the PID in DIR/dockerd.pid, and only that one.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cmd="${1:-status}"
dir="${2:-$root/.cache/docker}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
sock="$dir/docker.sock"
pidfile="$dir/dockerd.pid"
log="$dir/dockerd.log"

answers() { # answers HOST: true when a Docker engine answers there
  command -v docker >/dev/null || return 1
  DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

running_hosts() { # the -H sockets of every dockerd running on this machine (default socket when none)
  local cmdline argv i
  for cmdline in /proc/[0-9]*/cmdline; do
    { mapfile -d '' -t argv < "$cmdline"; } 2>/dev/null || continue
    if [ "${#argv[@]}" -eq 0 ] || [ "$(basename -- "${argv[0]}")" != dockerd ]; then
      continue
    fi
    echo "unix:///var/run/docker.sock"
    for ((i = 1; i < ${#argv[@]}; i++)); do
      case "${argv[i]}" in
        -H | --host) echo "${argv[i + 1]:-}" ;;
        -H=* | --host=*) echo "${argv[i]#*=}" ;;
      esac
    done
  done
}

running_pid() { # the PID of this DIR's daemon, when it is alive
  [ -f "$pidfile" ] || return 1
  local pid
  pid="$(cat "$pidfile")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

case "$cmd" in
  start)
    if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
      echo "dockerd.sh: a Docker engine already answers at DOCKER_HOST=$DOCKER_HOST; not starting another" >&2
      exit 0
    fi
    if answers "unix://$sock"; then
      echo "export DOCKER_HOST=unix://$sock"
      exit 0
    fi
    for host in $(running_hosts | sort -u); do
      if answers "$host"; then
        echo "dockerd.sh: a dockerd already runs here and answers at $host; not starting another" >&2
        echo "export DOCKER_HOST=$host"
        exit 0
      fi
    done
    if ! command -v dockerd >/dev/null; then
      echo "dockerd.sh: dockerd is not installed: run scripts/install-system.sh (Debian package docker.io)" >&2
      exit 2
    fi
    if [ "$(id -u)" -ne 0 ]; then
      echo "dockerd.sh: dockerd needs root: run 'sudo $0 start'" >&2
      exit 2
    fi
    if pid="$(running_pid)"; then
      echo "dockerd.sh: dockerd $pid of $dir is running but does not answer; see $log" >&2
      exit 2
    fi
    rm -f "$sock" "$pidfile"
    mkdir -p "$dir/data" "$dir/run"
    setsid nohup dockerd --data-root "$dir/data" --exec-root "$dir/run" --pidfile "$pidfile" \
      -H "unix://$sock" >"$log" 2>&1 </dev/null &
    for _ in $(seq 1 60); do
      if answers "unix://$sock"; then
        echo "export DOCKER_HOST=unix://$sock"
        exit 0
      fi
      sleep 0.5
    done
    echo "dockerd.sh: dockerd did not answer at unix://$sock within 30 s; last lines of $log:" >&2
    tail -n 5 "$log" >&2
    exit 2
    ;;
  stop)
    if ! pid="$(running_pid)"; then
      echo "dockerd.sh: no daemon of $dir is running"
      exit 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 60); do
      kill -0 "$pid" 2>/dev/null || { echo "dockerd.sh: stopped dockerd $pid"; exit 0; }
      sleep 0.5
    done
    echo "dockerd.sh: dockerd $pid did not stop within 30 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    ;;
  status)
    if pid="$(running_pid)" && answers "unix://$sock"; then
      echo "dockerd $pid answers at unix://$sock (data: $dir/data)"
    elif [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then
      echo "a Docker engine answers at DOCKER_HOST=$DOCKER_HOST (not this kit's daemon)"
    else
      echo "no Docker engine answers; start one with: $0 start"
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 start|stop|status [DIR]" >&2
    exit 2
    ;;
esac
