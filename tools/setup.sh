#!/usr/bin/env bash
# Sets up a fresh Debian (bookworm) machine for nudge: npm packages, and a Vulkan
# driver where none exists. Idempotent; prints nothing but a summary when all is present.
#   bash tools/setup.sh            # everything
#   NUDGE_SKIP_APT=1 bash tools/setup.sh   # npm packages only
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "setup: $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

have_vulkan_icd() {
  # Any installed ICD manifest (a vendor driver or lavapipe) counts as a Vulkan driver. A
  # glob loop, not ls: under pipefail ls of an empty folder failed the check.
  local f
  for f in /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json; do [ -e "$f" ] && return 0; done
  return 1
}
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
mesa_is_new_enough() {
  # Dawn rejects bookworm's Mesa 22 lavapipe; backports ships 24+.
  local v; v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 24
}

apt_updated=0
apt_update() { if [ $apt_updated = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi; }

if [ "${NUDGE_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  need_pkgs=()
  have_pkg libvulkan1 || need_pkgs+=(libvulkan1)
  # The Fashion-MNIST IDX files, a real data set small enough for CPU training runs.
  have_pkg dataset-fashion-mnist || need_pkgs+=(dataset-fashion-mnist)
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    apt_update
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
  nvidia_icd=0
  for f in /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json; do [ -e "$f" ] && nvidia_icd=1; done
  if [ $nvidia_icd = 0 ] && ! mesa_is_new_enough; then
    . /etc/os-release
    codename=${VERSION_CODENAME:-bookworm}
    list=/etc/apt/sources.list.d/nudge-backports.list
    if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      log "adding ${codename}-backports for Mesa lavapipe (Debian's own Mesa 22 is rejected by Dawn)"
      echo "deb http://deb.debian.org/debian ${codename}-backports main" | as_root tee "$list" >/dev/null
      apt_updated=0
    fi
    log "installing mesa-vulkan-drivers (lavapipe) from ${codename}-backports"
    apt_update
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
      -t "${codename}-backports" mesa-vulkan-drivers >/dev/null
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  log "installing npm packages"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi
fi

log "ok ($(node --version), $(have_vulkan_icd && echo 'Vulkan driver present' || echo 'no Vulkan driver'))"
