#!/usr/bin/env bash
# The device check: every tiny config and combo (fp32, bf16, fp16), the tiny ADE20K and COCO runs, paper-size
# throughput of every algorithm and both MAE peers (bf16, fused attention, with and without torch.compile), the input
# pipeline with nvjpeg, FSDP on one GPU: on a single-GPU CUDA machine with no network, in at most 8 minutes
# (tools/device_check.py: the steps, their estimates and timeouts). Or its CPU twin, which CI runs.
#
#   bash tools/device_check.sh [--steps a,b] [--out DIR]   # on the GPU machine (CUDA); output in $OUT there
#   bash tools/device_check.sh --cpu [--out DIR]            # the CPU twin: this checkout's venv, smallest settings
#
# The GPU machine has its own Python (3.12) and torch (2.11, torchvision 0.26, timm, numpy 2) and no OpenMMLab
# package: what it lacks travels in .whl/ (bash tools/prepare_device_wheels.sh, on a machine with PyPI), installed
# here with pip --no-index --no-deps --target into $MIM_ZOO_DEVICE_SITE (default /tmp/mim_zoo_site), first on
# PYTHONPATH; everything else is the machine's. Through the device tool (DEVELOPERS.md, "The GPU machine"):
#   run(command="bash tools/device_check.sh", carry=[".whl"], timeout_s=540), then at once, if steps were skipped for
#   the budget: run(command="bash tools/device_check.sh --steps compile_MRMAE,compile_MixMAE --budget 170",
#   carry=[".whl"], timeout_s=200) (the last --budget wins), then give_back.
#
# Options: --cpu (the twin), --wheels / --no-wheels (install .whl/ or not; default: on the GPU machine when .whl/
# exists, never for the twin), and every option of `tools/device_check.py run` (--steps, --out, --budget, ...).
# Environment: PYTHON (default: python3 on the GPU machine, the venv's python for the twin), MIM_ZOO_VENV.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
start=$SECONDS
device=cuda
wheels=auto
args=()
while (($#)); do
    case $1 in
        --cpu) device=cpu ;;
        --wheels) wheels=yes ;;
        --no-wheels) wheels=no ;;
        *) args+=("$1") ;;
    esac
    shift
done

if [[ $device == cpu ]]; then
    venv_python=${MIM_ZOO_VENV:-$repo/.venv}/bin/python
    python=${PYTHON:-$([[ -x $venv_python ]] && echo "$venv_python" || echo python3)}
    [[ $wheels == auto ]] && wheels=no
    budget=900  # the twin's steps are small, its timeouts 4x the GPU's (a busy 2-core CI machine); this bounds a hang
else
    python=${PYTHON:-python3}
    if [[ $wheels == auto ]]; then wheels=$([[ -d .whl ]] && echo yes || echo no); fi
    budget=470  # 8 minutes with the install below, 10 s to spare
fi

if [[ $wheels == yes ]]; then
    compgen -G ".whl/*.whl" >/dev/null || {
        echo "error: no wheels in $repo/.whl: run 'bash tools/prepare_device_wheels.sh' where PyPI is reachable and" \
             "carry .whl with the checkout" >&2; exit 1; }
    site=${MIM_ZOO_DEVICE_SITE:-/tmp/mim_zoo_site}
    echo "[device_check] installing $(compgen -G '.whl/*.whl' | wc -l) wheels from .whl/ into $site" >&2
    "$python" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target "$site" .whl/*.whl
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi

exec "$python" tools/device_check.py run --device "$device" --budget $((budget - (SECONDS - start))) ${args[@]+"${args[@]}"}
