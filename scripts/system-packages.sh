#!/usr/bin/env bash
# Install the Debian packages the tests and examples use: ffmpeg, sonic-pi-samples (CC0 music), alsa-utils (speech),
# chromium (the Space's browser test), fluidsynth and fluid-soundfont-gm (rvqgan.training.render_music), and any
# packages given as arguments.
set -euo pipefail
packages=(ffmpeg sonic-pi-samples alsa-utils chromium fluidsynth fluid-soundfont-gm "$@")
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
elif [ "${CI:-}" = "true" ]; then
  echo "error: missing system packages ${missing[*]} and cannot install them (needs root and apt-get)" >&2; exit 1
else
  echo "warning: missing system packages ${missing[*]}; tests that need them will be skipped" >&2
fi
