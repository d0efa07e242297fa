"""Neural-network building blocks: latent layers and encoders/decoders."""
from .decoders import DEFAULT_SCALE_INIT, ScaledInnerProductDecoder
from .graph_encoders import GCNEncoder, GCNLatentEncoder, SphericalGCNEncoder
from .latent import (
    GaussianLatent,
    LatentLayer,
    PowerSphericalLatent,
    SphericalLatent,
    VMFLatent,
    make_latent,
    resolve_kind,
)

__all__ = ["DEFAULT_SCALE_INIT", "GCNEncoder", "GCNLatentEncoder", "GaussianLatent",
           "LatentLayer", "PowerSphericalLatent", "ScaledInnerProductDecoder",
           "SphericalGCNEncoder", "SphericalLatent", "VMFLatent", "make_latent", "resolve_kind"]
