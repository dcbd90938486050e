#!/usr/bin/env bash
# Install the Debian packages the kit needs on the host (idempotent; fast when all are present).
#   build of Horovod:   openmpi-bin libopenmpi-dev cmake g++ make patch (the catalog's Horovod patches)
#   image builds:       docker.io debootstrap
#   job scripts:        slurmctld slurmd slurm-client munge shellcheck
set -euo pipefail

packages=(
  openmpi-bin libopenmpi-dev cmake g++ make patch
  docker.io debootstrap
  slurmctld slurmd slurm-client munge shellcheck
)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system: missing Debian packages (${missing[*]}); run 'sudo $0'" >&2
  exit 2
fi
echo "install-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
