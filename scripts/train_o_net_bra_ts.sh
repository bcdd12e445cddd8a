#!/usr/bin/env bash
# Paper Table 1, O-Net (--network_config vanilla_o_net_wide) on BraTS 2020, with the paper's settings (scripts/table1.sh).
#   scripts/train_o_net_bra_ts.sh DATASET_ROOT [extra train_oss_net.py flags, e.g. --cuda_devices 0 --amp bf16]
#   BRATS_ROOT=/data/root scripts/train_o_net_bra_ts.sh
# For several GPUs, launch train_oss_net.py through torchrun with the same flags: --paper makes the batch global.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/table1.sh"
run_table1 vanilla_o_net_wide bra_ts "$@"
