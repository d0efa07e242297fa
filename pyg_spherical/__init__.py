r"""pyg_spherical: hyperspherical (von Mises-Fisher) latent spaces for PyTorch Geometric.

A reference implementation of *Hyperspherical Variational Auto-Encoders*
(Davidson, Falorsi, De Cao, Kipf & Tomczak, UAI 2018, https://arxiv.org/abs/1804.00891).

Modules
-------
special         log_iv, log_ive, iv_ratio: modified Bessel functions in pure torch, with gradients
distributions   VonMisesFisher, HypersphericalUniform (+ registered KL divergences)
nn              latent layers (VMFLatent / GaussianLatent, make_latent) and encoders
models          SphericalVGAE (a torch_geometric.nn.VGAE), the MNIST VAE, M1+M2
datasets        MNIST IDX loader with dynamic binarisation; Planetoid link-split helpers
plotting        Hammer projection, latent scatter plots, image grids

Data sets are read from ``$PYG_SPHERICAL_DATA`` (or a ``root=`` argument).
"""
from . import distributions, special
from .distributions import HypersphericalUniform, VonMisesFisher
from .models import GCNEncoder, SphericalGCNEncoder, SphericalVGAE
from .nn import GaussianLatent, VMFLatent, make_latent

__version__ = "0.1.0"

__all__ = [
    "GaussianLatent",
    "HypersphericalUniform",
    "VMFLatent",
    "VonMisesFisher",
    "distributions",
    "make_latent",
    "special",
]
__all__ += ["GCNEncoder", "SphericalGCNEncoder", "SphericalVGAE"]
