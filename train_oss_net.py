"""Train OSS-Net with the original's command line (see `python train_oss_net.py --help`).

    python train_oss_net.py --train --test --network_config C --dataset BraTS --dataset_path BraTS2020 \
        --batch_size 8 --epochs 50 --uniform_sampling
    torchrun --nproc_per_node 2 train_oss_net.py --train --test ...
"""
from oss_net.training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
