#!/usr/bin/env bash
# Install the tested stack if needed (idempotent, see tools/install.sh) and run the whole test suite.
#   bash tools/test.sh [pytest arguments]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$repo/tools/install.sh"
cd "$repo"
exec "${MIM_ZOO_VENV:-$repo/.venv}/bin/python" -m pytest "$@"
