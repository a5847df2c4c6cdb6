#!/usr/bin/env bash
# Prepare .whl/: the Python packages tools/device_check.sh needs on the GPU machine, which has its own Python (3.12),
# torch (2.11, with torchvision 0.26, timm, numpy 2, opencv, matplotlib, scipy, tensorboard), no OpenMMLab package
# and no network. The folder travels with the checkout (the device tool's `carry`, at most 64 MiB with the tree) and
# tools/device_check.sh installs it there with `pip install --no-index --no-deps --target`.
#
#   bash tools/prepare_device_wheels.sh [--out DIR] [--official-mae CHECKOUT]
#
# What it puts in DIR (default: <repo>/.whl, ignored by git):
#   * mim_zoo's OpenMMLab stack and timm at their tested versions (mim_zoo/requirements.txt): mmengine, mmpretrain,
#     mmsegmentation, mmdet, timm (the machine's timm may lie outside mim_zoo's range);
#   * mmcv 2.1.0 without compiled ops, built by tools/install.sh --mmcv-wheel (py2.py3-none-any: its ops run on the
#     machine's torchvision, CPU and CUDA, through mim_zoo.engine.mmcv_ops);
#   * their requirements that the machine's image lacks (.library/device/KINDS.md lists what it has), at the versions
#     of this venv (the tested ones): pure-Python wheels, and cp312 manylinux builds of pycocotools and shapely;
#   * turbojpeg's cp312 manylinux wheel (it bundles libjpeg-turbo 3) where mim_zoo/requirements.txt lists it;
#   * setuptools < 82 (mmseg::/mmdet:: base configs import pkg_resources, which setuptools 82 removed);
#   * with --official-mae, facebookresearch/mae's models_mae.py and util/pos_embed.py (CC BY-NC 4.0, with its
#     LICENSE), the third MAE of benchmarks/throughput.py (--official-mae); never committed.
# Every wheel comes from PyPI (`pip download --only-binary=:all:` for Python 3.12 on manylinux x86-64) except mmcv.
#
# Environment: MIM_ZOO_VENV (default <repo>/.venv), the installed stack whose versions are carried.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${MIM_ZOO_VENV:-$repo/.venv}
out=$repo/.whl
official_mae=
log() { printf '[prepare_device_wheels] %s\n' "$*" >&2; }
while (($#)); do
    case $1 in
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --official-mae) official_mae=${2:?--official-mae needs a facebookresearch/mae checkout}; shift 2 ;;
        *) log "error: unknown argument '$1' (--out DIR, --official-mae CHECKOUT)"; exit 1 ;;
    esac
done
python=$venv/bin/python
[[ -x $python ]] || { log "error: no venv at $venv; run bash tools/install.sh first (or set MIM_ZOO_VENV)"; exit 1; }

# The packages the device image lacks, beyond the OpenMMLab ones: the requirements of mmengine, mmcv, mmpretrain,
# mmsegmentation and mmdet (and theirs), plus what mmseg imports at import time (ftfy). tests/test_device_check.py
# checks that every requirement of the carried wheels is carried or on the image.
PURE=(addict termcolor yapf platformdirs mat4py modelindex model-index ordered-set importlib_metadata lazy-importer
      prettytable wcwidth ftfy terminaltables setuptools)
BINARY=(pycocotools shapely)  # compiled: cp312 manylinux wheels built against numpy 2 (the image has numpy 2)
OPENMMLAB=(timm mmengine mmpretrain mmsegmentation mmdet)

version_here() {  # the version installed in the venv
    "$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"
}
pin() { bash "$repo/tools/install.sh" --print-pins | grep -E "^$1=="; }

specs=()
for name in "${OPENMMLAB[@]}"; do specs+=("$(pin "$name")"); done
for name in "${PURE[@]}" "${BINARY[@]}"; do specs+=("$name==$(version_here "$name")"); done
# turbojpeg (the region decoder's libjpeg-turbo 3, bundled in its cp312 manylinux wheel, ~0.6 MiB): carried at the
# pin file's version where the pin file lists it; without it the pipeline decodes with OpenCV (same pixels).
turbojpeg=$(sed -nE 's/^(turbojpeg==[^ ;#]+).*/\1/p' "$repo/mim_zoo/requirements.txt")
if [[ -n $turbojpeg ]]; then specs+=("$turbojpeg"); fi

rm -rf "$out"
mkdir -p "$out"
log "downloading ${#specs[@]} wheels for CPython 3.12 on manylinux x86-64 into $out"
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$out" "${specs[@]}" 2> >(grep -v "^WARNING: Location" >&2)
MIM_ZOO_VENV=$venv bash "$repo/tools/install.sh" --mmcv-wheel "$out" >/dev/null

if [[ -n $official_mae ]]; then
    [[ -f $official_mae/models_mae.py && -f $official_mae/util/pos_embed.py ]] || {
        log "error: $official_mae is not a facebookresearch/mae checkout (no models_mae.py and util/pos_embed.py)"
        exit 1; }
    mkdir -p "$out/official_mae/util"
    cp "$official_mae/models_mae.py" "$official_mae/LICENSE" "$out/official_mae/"
    cp "$official_mae/util/pos_embed.py" "$out/official_mae/util/"
fi

count=$(find "$out" -maxdepth 1 -type f -name '*.whl' | wc -l)
[[ $count == $((${#specs[@]} + 1)) ]] || { log "error: expected $((${#specs[@]} + 1)) wheels in $out, found $count"; exit 1; }
size=$(du -sk "$out" | cut -f1)
((size < 48 * 1024)) || { log "error: $out holds $((size / 1024)) MiB; the device tool carries 64 MiB with the tree"
                          exit 1; }
log "done: $count wheels$([[ -n $official_mae ]] && echo ' and the official MAE'), $((size / 1024)) MiB in $out"
log "run on the GPU machine: the device tool's run with carry [\".whl\"] and: bash tools/device_check.sh"
