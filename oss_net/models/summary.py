"""Print every configuration's size: parameters (encoder / decoder / total), PAU modules, latent, decoder input.

    python -m oss_net.models.summary           # a table
    python -m oss_net.models.summary --json    # a list of objects: config, dataset, parameters, pau_modules, ...

Models are built on the meta device: shapes only, no memory, a fraction of a second for all 24.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import torch

from oss_net.datasets import PAPER_DATASETS

from .config import CONFIG_NAMES, TABLE1_ALIASES, OSSNetConfig, get_config
from .parameters import count_parameters, count_pau_modules
from .registry import build_model

CONFIG_COLUMNS = (
    "config",
    "table1",
    "dataset",
    "encoder_parameters",
    "decoder_parameters",
    "parameters",
    "pau_modules",
    "latents",
    "latent_size",
    "decoder_input_width",
)


def config_summary(config: OSSNetConfig) -> dict[str, Any]:
    """One row of the summary for `config`."""
    with torch.device("meta"):
        model = build_model(config)
    table1 = [alias for alias, target in TABLE1_ALIASES.items() if target == config.name]
    if config.name in ("A", "B"):
        table1.append(config.name)
    return {
        "config": config.name,
        "table1": table1[0] if table1 else "",
        "dataset": config.dataset,
        "encoder_parameters": count_parameters(model.encoder),
        "decoder_parameters": count_parameters(model.decoder),
        "parameters": count_parameters(model),
        "pau_modules": count_pau_modules(model),
        "latents": config.number_of_latents,
        "latent_size": config.latent_size,
        "decoder_input_width": config.decoder_input_width,
    }


def summary_rows() -> list[dict[str, Any]]:
    """A row per configuration and dataset, in CONFIG_NAMES order, BraTS then LiTS."""
    return [config_summary(get_config(name, dataset)) for name in CONFIG_NAMES for dataset in PAPER_DATASETS]


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table with thousands separators."""
    cells = [[f"{row[c]:,}" if isinstance(row[c], int) else str(row[c]) for c in CONFIG_COLUMNS] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(CONFIG_COLUMNS)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(CONFIG_COLUMNS, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    args = parser.parse_args(argv)
    rows = summary_rows()
    print(json.dumps(rows, indent=1) if args.json else format_rows(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
