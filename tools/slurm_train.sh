#!/usr/bin/env bash
# Data-parallel training on a Slurm cluster: one task per GPU, mmengine's `slurm` launcher.
#
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG GPUS [tools/train.py arguments ...]
#   GPUS_PER_NODE=8 bash tools/slurm_train.sh gpu mae_vitb configs/mae/vitb_800e.py 8 --resume
#
# Add --resume so a requeued or restarted job continues from the latest complete checkpoint of its work dir (and
# starts fresh when there is none). Checkpoints are written atomically, so a job killed while saving loses at most
# the epoch in progress.
# Environment: GPUS_PER_NODE (min(GPUS, 8)), CPUS_PER_TASK (5), SRUN_ARGS (extra srun flags), PYTHON (python).
set -euo pipefail

if [[ $# -lt 4 ]]; then
    echo "usage: bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG GPUS [tools/train.py arguments ...]" >&2
    exit 2
fi
partition=$1
job_name=$2
config=$3
gpus=$4
shift 4
gpus_per_node=${GPUS_PER_NODE:-$(( gpus < 8 ? gpus : 8 ))}
tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
read -r -a srun_args <<< "${SRUN_ARGS:-}"

exec srun -p "$partition" \
    --job-name="$job_name" \
    --gres=gpu:"$gpus_per_node" \
    --ntasks="$gpus" \
    --ntasks-per-node="$gpus_per_node" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" \
    --kill-on-bad-exit=1 \
    "${srun_args[@]}" \
    "${PYTHON:-python}" -u "$tools/train.py" "$config" --launcher slurm "$@"
