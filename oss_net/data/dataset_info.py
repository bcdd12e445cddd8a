"""What a dataset is made of: its channels in order, how each is normalised, and its label names.

nnU-Net and the Medical Segmentation Decathlon describe this in ``dataset.json``; BraTS, LiTS and
FLARE21 ship no such file, so their description is fixed here. Checkpoints store it (`to_dict`) so
inference can check an input against the channels a model was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from oss_net.datasets import DatasetError

CT = "CT"  # channels normalised with the CT scheme (clip to foreground percentiles, then z-score)
MRI = "MRI"  # every other channel: z-scored per case, as nnU-Net does for any channel name but "CT"
LabelValue = int | tuple[int, ...]  # one label value, or the values of a region (nnU-Net region lists)


def channel_modality(name: str) -> str:
    """CT for a channel called "CT" (any case, as nnU-Net matches it), MRI-like for any other name."""
    return CT if name.strip().casefold() == "ct" else MRI


@dataclass(frozen=True)
class DatasetInfo:
    """The description of one dataset.

    Attributes:
        name: the dataset's name (e.g. "Dataset001_BrainTumour", "FLARE21").
        channel_names: one name per image channel, in channel order.
        labels: label name -> value, or -> tuple of values for a region; "background" is 0.
        file_ending: the image file suffix, e.g. ".nii.gz".
        num_training: number of labelled training cases the dataset declares.
        regions_class_order: nnU-Net's value each region (labels listing several values, in their order)
            writes in a label map; () when the dataset.json gives none.
    """

    name: str
    channel_names: tuple[str, ...]
    labels: Mapping[str, LabelValue] = field(hash=False)
    file_ending: str = ".nii.gz"
    num_training: int = 0
    regions_class_order: tuple[int, ...] = ()

    @property
    def modalities(self) -> tuple[str, ...]:
        """`CT` or `MRI` per channel, from the channel names."""
        return tuple(channel_modality(name) for name in self.channel_names)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def label_values(self) -> frozenset[int]:
        """Every voxel value a label file may hold: 0 and every value named by a label or region."""
        values = {0}
        for value in self.labels.values():
            values.update(value if isinstance(value, tuple) else (value,))
        return frozenset(values)

    @property
    def has_regions(self) -> bool:
        """Whether some label is a region (several values), as nnU-Net's region-based training uses."""
        return any(isinstance(value, tuple) for value in self.labels.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (region tuples become lists); `from_dict` inverts it."""
        return {"name": self.name, "channel_names": list(self.channel_names),
                "labels": {k: list(v) if isinstance(v, tuple) else v for k, v in self.labels.items()},
                "file_ending": self.file_ending, "num_training": self.num_training,
                "regions_class_order": list(self.regions_class_order)}

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> "DatasetInfo":
        return cls(str(record["name"]), tuple(str(c) for c in record["channel_names"]),
                   parse_labels(record["labels"], "dataset info"), str(record["file_ending"]),
                   int(record["num_training"]), tuple(int(v) for v in record.get("regions_class_order", ())))


def parse_labels(labels: Any, source: str) -> dict[str, LabelValue]:
    """nnU-Net's {name: value | [values]} as {name: int | tuple[int, ...]}; DatasetError naming `source` otherwise."""
    if not isinstance(labels, Mapping) or not labels:
        raise DatasetError(f"{source}: 'labels' must be a non-empty mapping, got {labels!r}")
    parsed: dict[str, LabelValue] = {}
    for name, value in labels.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise DatasetError(f"{source}: label {name!r} must be a non-negative integer or a list of them, "
                               f"got {value!r}")
        parsed[str(name)] = tuple(values) if isinstance(value, (list, tuple)) else int(value)
    return parsed


def parse_regions_class_order(value: Any, labels: Mapping[str, LabelValue], source: str) -> tuple[int, ...]:
    """nnU-Net's `regions_class_order` (one label value per region, in the order of the labels' regions) as a
    tuple; DatasetError naming `source` when it is not such a list."""
    regions = [name for name, values in labels.items() if isinstance(values, tuple)]
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise DatasetError(f"{source}: 'regions_class_order' must be a list of positive label values, got {value!r}")
    if len(value) != len(regions):
        raise DatasetError(f"{source}: 'regions_class_order' gives {len(value)} value(s) for {len(regions)} region(s) "
                           f"({', '.join(regions) or 'none'}): one per region, in the order of 'labels'")
    return tuple(value)


BRATS_INFO = DatasetInfo("BraTS2020", ("flair", "t1", "t1ce", "t2"),
                         {"background": 0, "necrotic core": 1, "oedema": 2, "enhancing tumour": 4}, ".nii.gz", 0)
LITS_INFO = DatasetInfo("LiTS", (CT,), {"background": 0, "liver": 1, "tumour": 2}, ".nii", 0)
FLARE_INFO = DatasetInfo("FLARE21", (CT,), {"background": 0, "liver": 1, "kidney": 2, "spleen": 3, "pancreas": 4},
                         ".nii.gz", 0)
