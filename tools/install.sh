#!/usr/bin/env bash
# Install the tested mim_zoo stack into a virtual environment (default: .venv in the repository root).
#
#   bash tools/install.sh                 # idempotent: a no-op (an import check, ~7 s) when the stack is already in place
#
# Environment:
#   MIM_ZOO_VENV       where the virtual environment lives (default: <repo>/.venv)
#   MIM_ZOO_PYTHON     the interpreter that creates it (default: python3.11, else python3; must be CPython 3.11)
#   MIM_ZOO_WHEEL_DIR  colon-separated directories searched for a prebuilt mmcv 2.1.0 wheel (a cache only;
#                      CI passes ../shared/wheels). Wheels built here are cached in ~/.cache/mim_zoo/wheels.
#
# mmcv 2.1.0 publishes no wheel for torch 2.14, so without a cached wheel it is built from its PyPI sdist with
# compiled CPU ops (about 18 min on 2 cores). DEVELOPERS.md lists why each step is needed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MIM_ZOO_VENV:-$repo/.venv}
cache_dir=${XDG_CACHE_HOME:-$HOME/.cache}/mim_zoo/wheels
mmcv_version=2.1.0
log() { printf '[mim_zoo install] %s\n' "$*" >&2; }

stamp_inputs=("$repo/requirements/stack.txt" "$repo/requirements/tests.txt" "$repo/setup.cfg" "$repo/tools/install.sh")
stamp=$(cat "${stamp_inputs[@]}" | sha256sum | cut -d' ' -f1)

if [[ -f $venv/.mim_zoo_stamp && $(cat "$venv/.mim_zoo_stamp") == "$stamp" ]] \
   && "$venv/bin/python" -c 'import mmcv.ops, mim_zoo' >/dev/null 2>&1; then
    log "stack already installed in $venv"
    exit 0
fi

# --- 1. the virtual environment ---------------------------------------------------------------------------------
if [[ ! -x $venv/bin/python ]]; then
    py=${MIM_ZOO_PYTHON:-$(command -v python3.11 || command -v python3)}
    "$py" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || {
        log "error: $py is not CPython 3.11; set MIM_ZOO_PYTHON to a 3.11 interpreter (torch 2.14.1 and the mmcv"
        log "       wheel cache are built for cp311)"; exit 1; }
    log "creating $venv with $py"
    "$py" -m venv "$venv"
fi
pip() { "$venv/bin/python" -m pip --disable-pip-version-check "$@"; }
pip install -q --upgrade "pip>=23,<25"

# --- 2. torch first, then the pinned stack (mmcv is pinned there but installed in step 3) -----------------------
log "installing torch and the pinned stack (requirements/stack.txt)"
pip install -q torch==2.14.1 torchvision==0.29.1
grep -v '^mmcv' "$repo/requirements/stack.txt" | grep -v -E '^(mmpretrain|mmsegmentation|mmdet)' \
    > "$venv/.stack-no-mm.txt"
pip install -q -r "$venv/.stack-no-mm.txt" -r "$repo/requirements/tests.txt"

# --- 3. mmcv 2.1.0 with compiled ops: cached wheel, else build from the PyPI sdist -------------------------------
mmcv_ok() { "$venv/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$mmcv_version'" >/dev/null 2>&1; }

try_wheel() {  # $1: a wheel file; installs it and keeps it only if its compiled ops load against this torch
    log "trying cached mmcv wheel $1"
    pip install -q --no-deps --force-reinstall "$1" && mmcv_ok && return 0
    log "  $1 does not load against this torch (built for another version?); skipping it"
    pip uninstall -q -y mmcv >/dev/null 2>&1 || true
    return 1
}

build_mmcv() {
    # mmcv 2.1.0's setup.py hard-codes -std=c++14/17; torch >= 2.10 headers need C++20. Its setup.py also needs
    # setuptools < 70 and ninja in the build environment (hence --no-build-isolation), and torch present.
    local work
    work=$(mktemp -d)
    log "building mmcv $mmcv_version from source with CPU ops (about 18 min on 2 cores); log: $work/build.log"
    pip download -q --no-deps --no-binary=:all: --no-build-isolation "mmcv==$mmcv_version" -d "$work"
    tar -xzf "$work/mmcv-$mmcv_version.tar.gz" -C "$work"
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$work/mmcv-$mmcv_version/setup.py"
    pip install -q "setuptools<70" ninja wheel
    mkdir -p "$cache_dir"
    if ! MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$venv/bin/python" -m pip wheel --no-build-isolation --no-deps -w "$cache_dir" \
        "$work/mmcv-$mmcv_version" >"$work/build.log" 2>&1; then
        tail -n 30 "$work/build.log" >&2
        log "error: the mmcv build failed; the full log is $work/build.log"; exit 1
    fi
    pip install -q "setuptools>=77.0.3,<82"   # back to what torch 2.14 and pkg_resources users need
    pip install -q --no-deps --force-reinstall "$cache_dir/mmcv-$mmcv_version"-*.whl
    rm -rf "$work"
}

if ! mmcv_ok; then
    found=0
    IFS=: read -r -a dirs <<< "${MIM_ZOO_WHEEL_DIR:-}"
    for d in "${dirs[@]}" "$cache_dir"; do
        [[ -n $d && -d $d ]] || continue
        for whl in "$d"/mmcv-"$mmcv_version"-cp311-cp311-linux_*.whl; do
            [[ -f $whl ]] && try_wheel "$whl" && { found=1; break 2; }
        done
    done
    [[ $found == 1 ]] || build_mmcv
fi
mmcv_ok || { log "error: mmcv $mmcv_version with compiled ops does not import"; exit 1; }

# --- 4. the OpenMMLab toolboxes (they assert mmcv < 2.2.0) and mim_zoo itself ----------------------------------
log "installing mmpretrain, mmsegmentation, mmdet and mim_zoo (editable)"
pip install -q -r "$repo/requirements/stack.txt"
pip install -q --no-deps --no-build-isolation -e "$repo"
if "$venv/bin/python" -c 'import transformers' >/dev/null 2>&1; then
    log "error: transformers is installed in $venv; with pycocotools it breaks 'import mmpretrain'."
    log "       Remove it: $venv/bin/python -m pip uninstall transformers"; exit 1
fi
"$venv/bin/python" -m pip check >&2 || { log "error: pip check found broken requirements"; exit 1; }
"$venv/bin/python" -c 'import mim_zoo, mmcv.ops, mmseg, mmdet, mmpretrain' \
    || { log "error: the stack does not import"; exit 1; }
echo "$stamp" > "$venv/.mim_zoo_stamp"
log "done: activate with 'source $venv/bin/activate'"
