# Shared body of the ten Table-1 training scripts (sourced by them, not run on its own).
# Paper settings (docs/reference.md §1.3): 50 epochs, 2^14 points, validation every 5 epochs; BraTS batch 8
# with uniform sampling, LiTS batch 4 with half the points from the border band; and paper mode (--paper,
# oss_net/compat.py): the original's split, raw coordinates, sampling, augmentation, global batch, best model
# on the sampled IoU and max-pooled large patches at inference. Table them with `python -m oss_net.results`.

# run_table1 CONFIG DATASET [DATASET_ROOT] [extra train_oss_net.py flags...]
# DATASET is bra_ts or lits; DATASET_ROOT defaults to $BRATS_ROOT / $LITS_ROOT. Extra flags come last,
# so they override the paper settings.
run_table1() {
    local config="$1" dataset="$2"
    shift 2
    local repo_root env_name dataset_path
    local -a settings
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    case "${dataset}" in
        bra_ts) env_name=BRATS_ROOT; settings=(--dataset BraTS --batch_size 8 --uniform_sampling) ;;
        lits) env_name=LITS_ROOT; settings=(--dataset LiTS --batch_size 4) ;;
        *) echo "run_table1: unknown dataset '${dataset}' (bra_ts or lits)" >&2; exit 2 ;;
    esac
    if [[ $# -gt 0 && "$1" != -* ]]; then
        dataset_path="$1"
        shift
    else
        dataset_path="${!env_name:-}"
    fi
    if [[ -z "${dataset_path}" ]]; then
        echo "usage: $0 DATASET_ROOT [flags...]  (or set ${env_name})" >&2
        exit 2
    fi
    exec "${PYTHON:-python}" "${repo_root}/train_oss_net.py" --train --test --paper --epochs 50 --training_samples 16384 \
        --network_config "${config}" "${settings[@]}" --dataset_path "${dataset_path}" "$@"
}
