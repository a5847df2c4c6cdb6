#!/usr/bin/env bash
# Data-parallel training on several processes with torchrun and mmengine's `pytorch` launcher.
#
#   bash tools/dist_train.sh CONFIG GPUS [tools/train.py arguments ...]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.1.1.1 bash tools/dist_train.sh CONFIG 8 --resume   # on every machine
#
# GPUS is the number of processes on this machine (one per GPU). The config's learning rate assumes
# num_gpus x batch_per_gpu images per step; tools/train.py warns when the launched world size differs.
# Add --resume to continue from the work dir's latest complete checkpoint (or start fresh when there is none), so
# the same command serves the first launch and every restart.
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500), PYTHON (python).
# Without CUDA the processes use gloo on the CPU (tests, debugging).
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: bash tools/dist_train.sh CONFIG GPUS [tools/train.py arguments ...]" >&2
    exit 2
fi
config=$1
gpus=$2
shift 2
tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$gpus" \
    "$tools/train.py" "$config" --launcher pytorch "$@"
