"""Models: the spherical VGAE (graphs); its encoders live in :mod:`pyg_spherical.nn`."""
from .vgae import SphericalVGAE

__all__ = ["SphericalVGAE"]
