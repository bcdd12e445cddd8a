"""OSS-Net models: configurations, encoders, the implicit decoder, checkpoints and parameter groups."""
from .checkpoint import CheckpointError, checkpoint_payload, load_model, model_from_payload, save_model, stored_split
from .config import (
    CONFIG_NAMES,
    TABLE1_ALIASES,
    ConfigError,
    OSSNetConfig,
    canonical_name,
    demo_config,
    get_config,
)
from .networks import DEMO_UNET_OVERRIDES, network_config
from .oss_net import Encoding, ModelInputError, OSSNet
from .parameters import count_parameters, count_pau_modules, parameter_groups
from .recompute import recomputed_blocks, set_activation_recomputation
from .registry import build_model, is_dense, register_model
from .unet import (
    UNET_NAMES,
    UNetConfig,
    build_unet,
    canonical_network_name,
    get_unet_config,
    is_unet_name,
    segmentation_loss,
)

__all__ = [
    "CONFIG_NAMES",
    "DEMO_UNET_OVERRIDES",
    "TABLE1_ALIASES",
    "UNET_NAMES",
    "UNetConfig",
    "CheckpointError",
    "ConfigError",
    "Encoding",
    "ModelInputError",
    "OSSNet",
    "OSSNetConfig",
    "build_model",
    "build_unet",
    "canonical_name",
    "canonical_network_name",
    "checkpoint_payload",
    "count_parameters",
    "count_pau_modules",
    "demo_config",
    "get_config",
    "get_unet_config",
    "is_dense",
    "is_unet_name",
    "load_model",
    "model_from_payload",
    "network_config",
    "parameter_groups",
    "recomputed_blocks",
    "register_model",
    "save_model",
    "segmentation_loss",
    "set_activation_recomputation",
    "stored_split",
]
