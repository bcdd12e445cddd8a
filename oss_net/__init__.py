"""OSS-Net: occupancy networks for memory-efficient semantic segmentation of 3D medical volumes."""
__version__ = "0.1.0"
