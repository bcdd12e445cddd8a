#!/usr/bin/env bash
# Paper Table 1, OSS-Net A (--network_config A) on BraTS 2020: batch 8, 2^14 uniformly sampled points, 50 epochs,
# validation every 5 epochs (reference §1.3). Runs from any directory.
#   scripts/train_oss_net_a_bra_ts.sh DATASET_ROOT [extra train_oss_net.py flags, e.g. --cuda_devices 0 --amp bf16]
#   BRATS_ROOT=/data/root scripts/train_oss_net_a_bra_ts.sh
# Extra flags come last, so they override the paper settings. For several GPUs launch
# train_oss_net.py through torchrun with the same flags.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -gt 0 && "$1" != -* ]]; then
    dataset_path="$1"
    shift
else
    dataset_path="${BRATS_ROOT:-}"
fi
if [[ -z "${dataset_path}" ]]; then
    echo "usage: $0 DATASET_ROOT [flags...]  (or set BRATS_ROOT)" >&2
    exit 2
fi
exec "${PYTHON:-python}" "${repo_root}/train_oss_net.py" --train --test --epochs 50 --batch_size 8 \
    --training_samples 16384 --network_config A --dataset BraTS --dataset_path "${dataset_path}" --uniform_sampling "$@"
