"""Distributions on the unit hypersphere, following :mod:`torch.distributions` conventions."""
from . import kl as _kl  # noqa: F401  (registers the KL divergences)
from ._sampling import compile_quadrature
from ._sphere import log_sphere_area
from .constraints import sphere
from .hyperspherical_uniform import HypersphericalUniform
from .power_spherical import PowerSpherical
from .product import ProductOfSpheres
from .von_mises_fisher import VonMisesFisher

__all__ = ["HypersphericalUniform", "PowerSpherical", "ProductOfSpheres", "VonMisesFisher",
           "compile_quadrature", "log_sphere_area", "sphere"]
