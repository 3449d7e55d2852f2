#!/usr/bin/env bash
# Debian packages polyglm needs: ffmpeg (audio decoding), espeak-ng (speech for training data and
# tests), chromium (the browser test). Installs the missing ones as root; otherwise prints the command.
set -euo pipefail
packages=(ffmpeg espeak-ng chromium)   # each package's command has the package's name
missing=()
for package in "${packages[@]}"; do
  command -v "$package" >/dev/null 2>&1 || missing+=("$package")
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
