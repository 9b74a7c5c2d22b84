#!/usr/bin/env bash
# Headless MuJoCo rendering needs Mesa's EGL/OSMesa libraries. Installs them when missing and running as root.
set -euo pipefail
pkgs="libosmesa6 libegl1 libgl1 libglx-mesa0 libegl-mesa0"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Mesa for headless rendering:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
else
  echo "warning: Mesa packages missing ($missing) and not root; headless MuJoCo rendering may fail." >&2
fi
