"""Model kinds by name: which config class builds which model, for build_model and checkpoints.

OSSNet registers itself as "oss_net"; the U-Net baselines register their own kind the same way, so
checkpoints of every model share one format and one loader. A kind also says whether its model is
dense (predicts the whole grid at once, no point decoder), which `is_dense` answers for everyone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from .config import ConfigError


@dataclass(frozen=True)
class ModelKind:
    """A checkpoint `kind`: its config class (with to_dict/from_dict), the builder config -> model, and
    whether the model is dense (a U-Net baseline: whole-volume loss and prediction, no points or patches)."""

    name: str
    config_type: type
    builder: Callable[[Any], nn.Module]
    dense: bool = False


_KINDS: dict[str, ModelKind] = {}


def register_model(name: str, config_type: type, builder: Callable[[Any], nn.Module], *, dense: bool = False) -> None:
    """Make build_model and the checkpoint loader know `config_type` under the checkpoint kind `name`."""
    _KINDS[name] = ModelKind(name, config_type, builder, dense)


def model_kind(name: str) -> ModelKind:
    """The registered kind `name`; KeyError if unknown (callers turn it into their own error)."""
    return _KINDS[name]


def kind_of_config(config: Any) -> ModelKind:
    """The registered kind whose config class `config` is an instance of."""
    for kind in _KINDS.values():
        if isinstance(config, kind.config_type):
            return kind
    raise ConfigError(f"no model is registered for {type(config).__name__}; known kinds: {', '.join(sorted(_KINDS))}")


def build_model(config: Any) -> nn.Module:
    """The model for `config` (OSSNetConfig -> OSSNet), with freshly initialised weights."""
    return kind_of_config(config).builder(config)


def is_dense(model_or_config: Any) -> bool:
    """Whether a model (or its config) is a dense U-Net baseline rather than a point-decoding OSS-Net.

    The one model-kind check of the code base: training picks the whole-volume loss and inference the
    dense predictor from it.
    """
    config = model_or_config.config if isinstance(model_or_config, nn.Module) else model_or_config
    return kind_of_config(config).dense
