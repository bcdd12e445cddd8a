"""Write the border map of every labelled BraTS 2020 case (border-weighted sampling, docs/reference.md §7).

    python generate_borders_bra_ts_2020.py /data/BraTS2020            # next to each case: <case>_border.nii.gz
    python generate_borders_bra_ts_2020.py /data/BraTS2020 --output /data/borders --device cuda

Cases that already have a map are skipped (--overwrite redoes them); writes are atomic, so an
interrupted run can be restarted. Training finds the maps itself and computes missing ones on the fly.
"""
import sys

from oss_net.data.borders import border_cli


def main(argv: list[str] | None = None) -> int:
    return border_cli("brats", __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
