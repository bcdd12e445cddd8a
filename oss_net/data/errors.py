"""The data package's own exception type; `DatasetError`, which the models raise too, is in `oss_net.datasets`."""
from __future__ import annotations

from oss_net.io import OSSNetError


class DataArgumentError(OSSNetError, ValueError):
    """A bad argument of a data function (an unknown layout, a too small shape): bad input at a command's
    edge (exit status 2), and still the ValueError that Python callers expect."""
