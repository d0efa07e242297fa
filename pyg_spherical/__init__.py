r"""pyg_spherical: hyperspherical (von Mises-Fisher) latent spaces for PyTorch Geometric.

A reference implementation of *Hyperspherical Variational Auto-Encoders*
(Davidson, Falorsi, De Cao, Kipf & Tomczak, UAI 2018, https://arxiv.org/abs/1804.00891):
variational auto-encoders whose latent codes live on the unit sphere
``S^{d-1} = {z in R^d : ||z|| = 1}``, with a von Mises-Fisher posterior and a uniform prior
instead of a Gaussian posterior and a ``N(0, I)`` prior.

The model
---------
Posterior and prior (paper eq. 3-5), for ``z, mu in S^{d-1}``, ``kappa > 0``::

    q(z | mu, kappa) = C_d(kappa) exp(kappa mu^T z),
    C_d(kappa)       = kappa^{d/2-1} / ((2 pi)^{d/2} I_{d/2-1}(kappa)),
    p(z)             = 1 / |S^{d-1}| = Gamma(d/2) / (2 pi^{d/2}),
    KL(q || p)       = kappa A_d(kappa) + log C_d(kappa) + log |S^{d-1}|,
    A_d(kappa)       = I_{d/2}(kappa) / I_{d/2-1}(kappa) = E_q[mu^T z].

Samples come from the Ulrich/Wood rejection sampler plus a Householder reflection (Algorithm
1-3); their gradient in ``kappa`` uses implicit reparameterisation, so it is unbiased.
**Convention**: the dimension ``d`` (the argument ``dim``; ``out_channels`` in the encoders,
as in PyG) is always the ambient dimension -- codes are unit vectors of shape ``(..., d)`` and
the sphere is ``S^{d-1}``.

Quick start (link prediction, a drop-in for ``torch_geometric.nn.VGAE``)::

    from pyg_spherical import SphericalGCNEncoder, SphericalVGAE
    model = SphericalVGAE(SphericalGCNEncoder(num_features, 32, 16))   # codes on S^15
    z = model.encode(x, train_pos_edge_index)                          # (N, 16), unit rows
    loss = model.recon_loss(z, train_pos_edge_index) + model.kl_loss() / num_nodes
    auc, ap = model.test(model.embed(x, train_pos_edge_index), pos_edge_index, neg_edge_index)

The distribution on its own::

    from pyg_spherical import VonMisesFisher
    q = VonMisesFisher(loc, kappa)      # loc (..., d) unit rows, kappa (...) positive
    z = q.rsample((S,))                 # (S, ..., d), differentiable in loc and kappa
    q.log_prob(z), q.mean, q.entropy()
    kl_divergence(q, HypersphericalUniform(d))   # torch.distributions.kl_divergence (eq. 5)

Modules
-------
The library core: torch-native, no plotting, no downloads, no prints.

==============  ==================================================================================
special         log_iv, log_ive, iv_ratio: modified Bessel functions in pure torch, with gradients
distributions   VonMisesFisher, PowerSpherical, HypersphericalUniform, ProductOfSpheres
                (+ the registered KL divergences)
nn              latent layers (``make_latent("vmf" | "power" | "normal", d)``), GCN encoders
                (SphericalGCNEncoder, GaussianGCNEncoder), ScaledInnerProductDecoder
models          SphericalVGAE (a ``torch_geometric.nn.VGAE``)
vae             the MNIST VAE of section 5.2 (ELBO, importance-sampled log-likelihood)
m1m2            the semi-supervised M1+M2 model of section 5.3
sampling        a pure-torch neighbour sampler for PyG's link loaders
minibatch       the mini-batch link-prediction loss and data-parallel helpers
==============  ==================================================================================

The paper-reproduction kit, ``pyg_spherical.repro``: ``datasets`` (MNIST, Planetoid with the
packaged Cora and CiteSeer, the link split), ``training``, ``evaluation`` (k-NN), ``synthetic``
(the circle experiment), ``plotting``. Data sets are read from ``$PYG_SPHERICAL_DATA`` (or a
``root=`` argument), derived files go to ``$PYG_SPHERICAL_CACHE``.

Each name lives in its module (``from pyg_spherical.vae import VAE``), the most used also in the
package. Walkthroughs: ``notebooks/``; paper reproductions: ``benchmarks/`` (``--help``).
"""
from . import distributions, special
from .distributions import HypersphericalUniform, PowerSpherical, ProductOfSpheres, VonMisesFisher
from .models import SphericalVGAE
from .nn import (
    GaussianGCNEncoder,
    GaussianLatent,
    GCNEncoder,
    PowerSphericalLatent,
    ScaledInnerProductDecoder,
    SphericalGCNEncoder,
    VMFLatent,
    make_latent,
)

__version__ = "0.2.0"

__all__ = ["GCNEncoder", "GaussianGCNEncoder", "GaussianLatent", "HypersphericalUniform",
           "PowerSpherical", "PowerSphericalLatent", "ProductOfSpheres", "ScaledInnerProductDecoder",
           "SphericalGCNEncoder", "SphericalVGAE", "VMFLatent", "VonMisesFisher", "distributions",
           "make_latent", "special"]
