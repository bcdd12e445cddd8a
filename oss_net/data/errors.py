"""The exception types of the data package."""
from __future__ import annotations

from oss_net.io import OSSNetError


class DatasetError(OSSNetError):
    """A dataset file or folder that cannot be used; the message names the file and the problem."""


class DataArgumentError(OSSNetError, ValueError):
    """A bad argument of a data function (an unknown layout, a too small shape): bad input at a command's
    edge (exit status 2), and still the ValueError that Python callers expect."""
