#!/usr/bin/env bash
# Debian packages polyglm needs: ffmpeg (audio decoding), espeak-ng (speech for training data and
# tests), chromium (the browser test), fonts-noto-cjk and fonts-noto-color-emoji (Chinese text and
# emoji render in the app and in its screenshots). Installs the missing ones as root; otherwise prints
# the command.
set -euo pipefail
packages=(ffmpeg espeak-ng chromium fonts-noto-cjk fonts-noto-color-emoji)
installed() {  # a command of that name, or an installed Debian package (fonts have no command)
  command -v "$1" >/dev/null 2>&1 || dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}
missing=()
for package in "${packages[@]}"; do
  installed "$package" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "polyglm needs these Debian packages; run as root:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
