"""OSS-Net: occupancy networks for memory-efficient semantic segmentation of 3D medical volumes.

`oss_net.Segmenter` (and `oss_net.Segmentation`) is the Python API (`oss_net.api`). They load on first use
(PEP 562): the API brings torch, SimpleITK and the whole inference package, 5-6.5 s on 2 busy cores against
0.03-0.1 s for `import oss_net` alone (measured with `time python -c "import oss_net"` and
`... "import oss_net.inference.segmenter"`), which every command's `--help` and every subpackage pays otherwise.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
API_NAMES = ("Segmenter", "Segmentation")  # oss_net.api's names, loaded by `__getattr__` on first use


def __getattr__(name: str) -> Any:
    if name in API_NAMES:
        from oss_net import api  # on first use, not at import (module docstring)

        return getattr(api, name)
    raise AttributeError(f"module 'oss_net' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API_NAMES])
