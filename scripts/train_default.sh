#!/usr/bin/env bash
# Train the default model, or resume its run: the data and the run live under RVQGAN_HOME (~/.cache/rvqgan), outside
# the checkout, so that each session resumes where the last one stopped. Extra arguments go to rvqgan.training.train
# (key=value overrides). Without a run (a new machine) it starts from the generator shipped in rvqgan/default_model.
# Usage: scripts/train_default.sh [--processes N] [key=value ...]
set -euo pipefail
cd "$(dirname "$0")/.."
home="${RVQGAN_HOME:-$HOME/.cache/rvqgan}"
processes=1
if [ "${1:-}" = "--processes" ]; then processes="$2"; shift 2; fi
# the Debian packages of rvqgan.training.make_default_data's sources
scripts/system-packages.sh espeak-ng asterisk-core-sounds-{en,fr,es}-g722 frozen-bubble-data klettres-data \
    ktuberling-data hedgewars-data wesnoth-1.16-music colobot-common-sounds nexuiz-music sound-theme-freedesktop \
    oxygen-sounds
scripts/setup.sh train
mkdir -p "$home/data"
ln -sfn "$home/data" data   # the config's data/default/... paths (data/ is git-ignored)
[ -d data/default/selection ] || .venv/bin/python -m rvqgan.training.make_default_data --out data/default
# a new machine, without the run: continue from the weights shipped in the package (fresh optimizer state), with
# the GAN recipe from the first step (the shipped weights are past the reconstruction-only warm-up); the run keeps
# these settings in continued.args for its later resumes
run="$home/runs/default"
if ! ls -d "$run/checkpoints/step-"* >/dev/null 2>&1 && [ -f rvqgan/default_model/model.safetensors ]; then
  mkdir -p "$run"
  echo "init_from=rvqgan/default_model reconstruction_steps=0" > "$run/continued.args"
  cp rvqgan/default_model/training.md "$run/continued_from.md"  # their record, for the card of what this run ships
fi
init=()
[ -f "$run/continued.args" ] && read -ra init < "$run/continued.args"
mode=(--cpu)
[ "$processes" -gt 1 ] && mode=(--multi_gpu)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(( $(nproc) / processes ))}"
exec .venv/bin/python -m accelerate.commands.launch "${mode[@]}" --num_processes "$processes" --num_machines 1 \
    --mixed_precision no --dynamo_backend no -m rvqgan.training.train --config training/configs/default.yaml --resume \
    "output_dir=$run" "${init[@]}" "$@"
