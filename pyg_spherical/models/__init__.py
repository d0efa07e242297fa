"""Models: the spherical VGAE (graphs)."""
from ..nn.graph_encoders import GCNEncoder, SphericalGCNEncoder
from .vgae import SphericalVGAE

__all__ = ["GCNEncoder", "SphericalGCNEncoder", "SphericalVGAE"]
