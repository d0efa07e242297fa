"""Neural-network building blocks: latent layers, GCN encoders and edge decoders."""
from .decoders import DEFAULT_SCALE_INIT, ScaledInnerProductDecoder
from .graph_encoders import GaussianGCNEncoder, GCNEncoder, GCNLatentEncoder, SphericalGCNEncoder
from .latent import (
    GaussianLatent,
    LatentLayer,
    PowerSphericalLatent,
    SphericalLatent,
    VMFLatent,
    make_latent,
    resolve_kind,
)

__all__ = ["DEFAULT_SCALE_INIT", "GCNEncoder", "GCNLatentEncoder", "GaussianGCNEncoder",
           "GaussianLatent", "LatentLayer", "PowerSphericalLatent", "ScaledInnerProductDecoder",
           "SphericalGCNEncoder", "SphericalLatent", "VMFLatent", "make_latent", "resolve_kind"]
