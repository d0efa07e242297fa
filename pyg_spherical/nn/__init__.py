"""Neural-network building blocks: latent layers and encoders/decoders."""
from .decoders import ScaledInnerProductDecoder
from .graph_encoders import GCNEncoder, GCNLatentEncoder, SphericalGCNEncoder  # noqa: F401
from .latent import GaussianLatent, LatentLayer, PowerSphericalLatent, VMFLatent, make_latent

__all__ = ["GaussianLatent", "LatentLayer", "PowerSphericalLatent", "ScaledInnerProductDecoder",
           "VMFLatent", "make_latent"]
