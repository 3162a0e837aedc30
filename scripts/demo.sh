#!/usr/bin/env bash
# Set up .venv and run the main job: encode and decode the example clips at several bitrates.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python examples/roundtrip.py "$@"
