#!/usr/bin/env bash
# Paper Table 1, OSS-Net B (--network_config B) on LiTS, with the paper's settings (scripts/table1.sh).
#   scripts/train_oss_net_b_lits.sh DATASET_ROOT [extra train_oss_net.py flags, e.g. --cuda_devices 0 --amp bf16]
#   LITS_ROOT=/data/root scripts/train_oss_net_b_lits.sh
# For several GPUs, launch train_oss_net.py through torchrun with the same flags: --paper makes the batch global.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/table1.sh"
run_table1 B lits "$@"
