#!/usr/bin/env bash
# Debian packages polyglm needs: ffmpeg (audio decoding for whisper/torchaudio), espeak-ng (test speech),
# chromium (the browser test). Installs the missing ones as root; otherwise prints the exact command.
set -euo pipefail
declare -A binary_of=([ffmpeg]=ffmpeg [espeak-ng]=espeak-ng [chromium]=chromium)
missing=()
for package in "${!binary_of[@]}"; do
  command -v "${binary_of[$package]}" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
IFS=$'\n' missing=($(sort <<<"${missing[*]}")); unset IFS
if [ "$(id -u)" -eq 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "polyglm needs these Debian packages; run as root:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
