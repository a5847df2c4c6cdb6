#!/usr/bin/env bash
# Install the tested mim_zoo stack into a virtual environment (default: .venv in the repository root).
#
#   bash tools/install.sh                 # idempotent: a no-op (an import check) when the stack is already in place
#   bash tools/install.sh --print-pins    # print what it installs (from mim_zoo/requirements.txt) and stop
#
# Environment:
#   MIM_ZOO_VENV       where the virtual environment lives (default: <repo>/.venv)
#   MIM_ZOO_PYTHON     the interpreter that creates it (default: python3.11, else python3; must be CPython 3.11)
#   MIM_ZOO_MMCV_OPS   torchvision (default): mmcv 2.1.0 built from its PyPI sdist without compiled ops (seconds, no
#                      C++/CUDA compiler); its ops come from mim_zoo.engine.mmcv_ops on torchvision's CPU and CUDA
#                      kernels, through the mmcv/_ext.py the wheel carries (tools/mmcv_ext.py).
#                      compiled: mmcv with compiled ops, from a cached wheel, else built from source (about 18 min
#                      on 2 cores for CPU ops); on a machine with a CUDA GPU, CUDA ops for that GPU's architecture.
#   MIM_ZOO_WHEEL_DIR  colon-separated directories searched for a prebuilt compiled mmcv 2.1.0 wheel (a cache for
#                      MIM_ZOO_MMCV_OPS=compiled). Wheels built here are cached in ~/.cache/mim_zoo/wheels.
#
# The versions come from mim_zoo/requirements.txt (the one pin file; setup.cfg and mim_zoo.engine.env read it too).
# DEVELOPERS.md lists why each step is needed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MIM_ZOO_VENV:-$repo/.venv}
cache_dir=${XDG_CACHE_HOME:-$HOME/.cache}/mim_zoo/wheels
pin_file=$repo/mim_zoo/requirements.txt
ops=${MIM_ZOO_MMCV_OPS:-torchvision}
log() { printf '[mim_zoo install] %s\n' "$*" >&2; }

pins() {  # one requirement per line: "name==<tested>" where the pin file names a tested version, else its range
    sed -E -e '/^[[:space:]]*(#|$)/d' \
        -e 's/^([A-Za-z0-9._-]+)[^#]*#[[:space:]]*tested[[:space:]]+([^[:space:]:]+).*/\1==\2/' \
        -e 's/[[:space:]]*#.*$//' "$pin_file"
}
pin() { pins | grep -E "^$1([=<>!~]|$)"; }  # the line of one package

if [[ ${1:-} == --print-pins ]]; then pins; exit 0; fi
[[ $# == 0 ]] || { log "error: unknown argument '$1' (only --print-pins)"; exit 1; }
[[ $ops == torchvision || $ops == compiled ]] || {
    log "error: MIM_ZOO_MMCV_OPS must be 'torchvision' (default, no compiler) or 'compiled', got '$ops'"; exit 1; }
mmcv_version=$(pin mmcv | sed 's/^mmcv==//')

stamp_inputs=("$pin_file" "$repo/requirements/tests.txt" "$repo/setup.cfg" "$repo/tools/install.sh"
              "$repo/tools/mmcv_ext.py")
stamp=$({ cat "${stamp_inputs[@]}"; echo "mmcv ops: $ops"; } | sha256sum | cut -d' ' -f1)
backend_is() {  # $1: torchvision|compiled; mmcv imports with its ops, and they come from there
    "$venv/bin/python" -c "import mmcv, mmcv.ops; from mim_zoo.engine.env import mmcv_ops_backend
assert mmcv.__version__ == '$mmcv_version' and mmcv_ops_backend() == '$1'" >/dev/null 2>&1
}

if [[ -f $venv/.mim_zoo_stamp && $(cat "$venv/.mim_zoo_stamp") == "$stamp" ]] && backend_is "$ops" \
   && "$venv/bin/python" -c 'import mim_zoo' >/dev/null 2>&1; then
    log "stack already installed in $venv (mmcv ops: $ops)"
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

# --- 2. torch first, then the pinned stack without the OpenMMLab packages, then mim_zoo itself (editable) ---------
log "installing torch and the pinned stack (mim_zoo/requirements.txt)"
pip install -q "$(pin torch)" "$(pin torchvision)"
pins | grep -v -E '^(torch|torchvision|mmcv|mmpretrain|mmsegmentation|mmdet)([=<>!~]|$)' > "$venv/.stack-no-mm.txt"
pip install -q -r "$venv/.stack-no-mm.txt" -r "$repo/requirements/tests.txt"
pip install -q --no-deps --no-build-isolation -e "$repo"   # the compiler-free mmcv._ext imports mim_zoo

# --- 3. mmcv, its ops compiler-free (default) or compiled -----------------------------------------------------------
mmcv_sdist() {  # $1: a work directory; downloads and unpacks mmcv's PyPI sdist there, prints the source folder
    pip download -q --no-deps --no-binary=:all: --no-build-isolation "mmcv==$mmcv_version" -d "$1"
    tar -xzf "$1/mmcv-$mmcv_version.tar.gz" -C "$1"
    echo "$1/mmcv-$mmcv_version"
}

install_mmcv_free() {
    # mmcv's setup.py names the distribution mmcv-lite when MMCV_WITH_OPS=0; mmpretrain, mmseg and mmdet require
    # "mmcv", so the name stays. The wheel carries mmcv/_ext.py (tools/mmcv_ext.py), which mmcv.ops imports.
    local work src
    work=$(mktemp -d)
    log "building mmcv $mmcv_version without compiled ops (its ops: mim_zoo.engine.mmcv_ops on torchvision)"
    src=$(mmcv_sdist "$work")
    sed -i -E "s/name='mmcv' if os.getenv\('MMCV_WITH_OPS', '1'\) == '1' else 'mmcv-lite'/name='mmcv'/" "$src/setup.py"
    grep -q "^    name='mmcv',$" "$src/setup.py" || { log "error: mmcv's setup.py changed; cannot keep its name"; exit 1; }
    cp "$repo/tools/mmcv_ext.py" "$src/mmcv/_ext.py"
    MMCV_WITH_OPS=0 pip wheel -q --no-build-isolation --no-deps -w "$work/dist" "$src" >"$work/build.log" 2>&1 || {
        tail -n 30 "$work/build.log" >&2; log "error: the mmcv build failed; the full log is $work/build.log"; exit 1; }
    pip install -q --no-deps --force-reinstall "$work/dist/mmcv-$mmcv_version"-*-none-any.whl  # py2.py3 (universal)
    rm -rf "$work"
}

cuda_build_env() {  # prints NAME=VALUE lines for a CUDA build for this machine's GPU (nothing without GPU)
    local arch site headers cuda_home
    if "$venv/bin/python" -c 'import torch; assert torch.cuda.is_available()' >/dev/null 2>&1; then
        arch=$("$venv/bin/python" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')
    elif [[ ${FORCE_CUDA:-} == 1 && -n ${TORCH_CUDA_ARCH_LIST:-} ]]; then
        arch=$TORCH_CUDA_ARCH_LIST   # building for another machine's GPU, as asked
    else
        return 0
    fi
    # torch's CUDA headers include cusparse.h & co., which the pip CUDA wheels put in site-packages/nvidia/*/include;
    # /usr/local/bin/nvcc may be a wrapper script, so torch would guess CUDA_HOME=/usr/local: name the toolkit.
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    headers=$(find "$site/nvidia" -mindepth 2 -maxdepth 2 -type d -name include 2>/dev/null | paste -sd: -)
    cuda_home=${CUDA_HOME:-}
    [[ -z $cuda_home && -x /usr/local/cuda/bin/nvcc ]] && cuda_home=/usr/local/cuda
    echo "FORCE_CUDA=1"
    echo "TORCH_CUDA_ARCH_LIST=$arch"
    [[ -n $headers ]] && echo "CPATH=$headers${CPATH:+:$CPATH}"
    [[ -n $cuda_home ]] && echo "CUDA_HOME=$cuda_home"
    return 0
}

build_mmcv_compiled() {
    # mmcv 2.1.0's setup.py hard-codes -std=c++14/17; torch >= 2.10 headers need C++20. Its setup.py also needs
    # setuptools < 70 and ninja in the build environment (hence --no-build-isolation), and torch present.
    local work src
    local -a cuda_env
    work=$(mktemp -d)
    mapfile -t cuda_env < <(cuda_build_env)
    if ((${#cuda_env[@]})); then
        log "building mmcv $mmcv_version with CPU and CUDA ops (${cuda_env[1]}); log: $work/build.log"
    else
        log "building mmcv $mmcv_version with CPU ops (no CUDA GPU here; about 18 min on 2 cores); log: $work/build.log"
    fi
    src=$(mmcv_sdist "$work")
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$src/setup.py"
    pip install -q "setuptools<70" ninja wheel
    mkdir -p "$cache_dir"
    if ! env "${cuda_env[@]}" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        "$venv/bin/python" -m pip wheel --no-build-isolation --no-deps -w "$cache_dir" "$src" >"$work/build.log" 2>&1
    then
        tail -n 30 "$work/build.log" >&2
        log "error: the mmcv build failed; the full log is $work/build.log"; exit 1
    fi
    pip install -q "$(pin setuptools)"   # back to what torch 2.14 and pkg_resources users need
    pip install -q --no-deps --force-reinstall "$cache_dir/mmcv-$mmcv_version"-*.whl
    rm -rf "$work"
}

compiled_ok() {  # compiled ops load against this torch, with CUDA kernels when there is a CUDA GPU
    backend_is compiled && "$venv/bin/python" -c "import torch, mmcv.ops
assert not torch.cuda.is_available() or mmcv.ops.get_compiling_cuda_version() != 'not available'" >/dev/null 2>&1
}

try_wheel() {  # $1: a wheel file; installs it and keeps it only if compiled_ok
    log "trying cached mmcv wheel $1"
    pip install -q --no-deps --force-reinstall "$1" && compiled_ok && return 0
    log "  $1 does not load against this torch, or has no CUDA kernels for this GPU machine; skipping it"
    pip uninstall -q -y mmcv >/dev/null 2>&1 || true
    return 1
}

install_mmcv_compiled() {
    local found=0 d whl
    local -a dirs
    IFS=: read -r -a dirs <<< "${MIM_ZOO_WHEEL_DIR:-}"
    for d in "${dirs[@]}" "$cache_dir"; do
        [[ -n $d && -d $d ]] || continue
        for whl in "$d"/mmcv-"$mmcv_version"-cp311-cp311-linux_*.whl; do
            [[ -f $whl ]] && try_wheel "$whl" && { found=1; break 2; }
        done
    done
    [[ $found == 1 ]] || build_mmcv_compiled
    compiled_ok || { log "error: mmcv $mmcv_version was installed, but its compiled ops do not load (or lack CUDA"
                     log "       kernels for this GPU machine): see DEVELOPERS.md, 'mmcv ops'"; exit 1; }
}

if ! backend_is "$ops"; then
    if [[ $ops == torchvision ]]; then install_mmcv_free; else install_mmcv_compiled; fi
fi
backend_is "$ops" || { log "error: mmcv $mmcv_version does not import with its ops from '$ops'"; exit 1; }

# --- 4. the OpenMMLab toolboxes (they assert mmcv < 2.2.0) ------------------------------------------------------
log "installing mmpretrain, mmsegmentation and mmdet"
pins > "$venv/.stack.txt"
pip install -q -r "$venv/.stack.txt"
if "$venv/bin/python" -c 'import transformers' >/dev/null 2>&1; then
    log "error: transformers is installed in $venv; with pycocotools it breaks 'import mmpretrain'."
    log "       Remove it: $venv/bin/python -m pip uninstall transformers"; exit 1
fi
"$venv/bin/python" -m pip check >&2 || { log "error: pip check found broken requirements"; exit 1; }
"$venv/bin/python" -c 'import mim_zoo, mmcv.ops, mmseg, mmdet, mmpretrain' \
    || { log "error: the stack does not import"; exit 1; }
echo "$stamp" > "$venv/.mim_zoo_stamp"
log "done (mmcv ops: $ops): activate with 'source $venv/bin/activate'"
