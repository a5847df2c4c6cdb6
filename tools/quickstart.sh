#!/usr/bin/env bash
# Install the tested stack if needed (idempotent, see tools/install.sh), then pretrain MAE, BootMAE, MR-MAE and
# MixMAE on the embedded dataset (a few minutes on 2 CPU cores).    bash tools/quickstart.sh [quickstart.py args]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/tools/install.sh"
cd "$repo"
exec "${MIM_ZOO_VENV:-$repo/.venv}/bin/python" tools/quickstart.py "$@"
