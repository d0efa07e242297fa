r"""The S-VGAE: a :class:`torch_geometric.nn.VGAE` with a hyperspherical (vMF) latent space.

Paper section 5.4 / Appendix F.3: the VGAE of Kipf & Welling (2016) with the Gaussian posterior
and prior replaced by ``q(z_i | X, A) = vMF(mu_i, kappa_i)`` and ``p(z_i) = U(S^{d-1})``; the
encoder, the inner-product decoder ``p(A_ij = 1 | z_i, z_j) = sigmoid(z_i^T z_j)`` (a cosine
similarity on the sphere) and the training objective are unchanged:

.. math::
    \mathcal{L} = \underbrace{-\tfrac{1}{|E^+|}\sum_{(i,j)\in E^+}\log\sigma(z_i^\top z_j)
                  -\tfrac{1}{|E^-|}\sum_{(i,j)\in E^-}\log(1-\sigma(z_i^\top z_j))}_{\texttt{recon\_loss}}
                  + \frac{1}{N}\,\underbrace{\frac{1}{N}\sum_i \mathrm{KL}(q(z_i)\,\|\,p(z_i))}_{\texttt{kl\_loss}},

with one uniformly sampled negative pair per positive edge, resampled at every call
(``E^-``), and the vMF KL of paper eq. 5. The reductions are those of PyG's ``VGAE``: ``recon_loss``
averages over edges, ``kl_loss`` averages the per-node KL over nodes, and the user scales it by
``1 / num_nodes`` as in PyG's example and the reference code.

The latent family is a :class:`~pyg_spherical.nn.latent.LatentLayer`: ``SphericalVGAE(enc)``
with a :class:`~pyg_spherical.nn.SphericalGCNEncoder` is the S-VGAE, with a
:class:`~pyg_spherical.nn.GCNEncoder` (or ``latent="normal"``) the N-VGAE, numerically the same
model as ``torch_geometric.nn.VGAE``.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution
from torch.nn import Module
from torch_geometric.nn import VGAE

from ..nn.latent import MAX_LOGSTD, GaussianLatent, LatentLayer, make_latent

__all__ = ["SphericalVGAE"]


class SphericalVGAE(VGAE):
    r"""Variational graph auto-encoder with a von Mises-Fisher (or Gaussian) latent space.

    A drop-in :class:`torch_geometric.nn.VGAE`: ``encode``, ``decode``, ``recon_loss`` (with
    negative sampling), ``kl_loss``, ``test`` and ``reset_parameters`` keep PyG's signatures and
    semantics.

    Args:
        encoder (Module): returns the raw pair ``(loc_raw (N, d), scale_raw (N, s))`` from the
            graph (``s = 1`` for vMF, ``d`` for Gaussian), e.g.
            :class:`~pyg_spherical.nn.SphericalGCNEncoder`.
        decoder (Module, optional): defaults to PyG's ``InnerProductDecoder``.
        latent (str or LatentLayer, optional): ``"vmf"`` / ``"normal"`` or a latent layer.
            Default: ``encoder.latent_kind`` if the encoder has one, else ``"vmf"``; the latent
            size is ``encoder.out_channels`` (pass a :class:`LatentLayer` for encoders without it).

    ``encode`` returns ``z (N, d)``: a reparameterised posterior sample in training mode, the
    posterior's mean direction ``mu`` (vMF) / mean (Gaussian) in eval mode. After ``encode``,
    :attr:`posterior` holds ``q(Z | X, A)`` (batch shape ``(N,)``), and ``__mu__`` /
    ``__logstd__`` the raw encoder outputs (``__logstd__`` clamped at 10 for a Gaussian latent, as
    in PyG).

    Example::

        >>> model = SphericalVGAE(SphericalGCNEncoder(in_channels, 32, 16, dropout=0.1))
        >>> z = model.encode(x, train_pos_edge_index)
        >>> loss = model.recon_loss(z, train_pos_edge_index) + model.kl_loss() / num_nodes
        >>> auc, ap = model.test(z, pos_edge_index, neg_edge_index)
    """

    def __init__(self, encoder: Module, decoder: Module | None = None,
                 latent: str | LatentLayer | None = None):
        super().__init__(encoder, decoder)
        if latent is None:
            latent = getattr(encoder, "latent_kind", "vmf")
        if isinstance(latent, str):
            dim = getattr(encoder, "out_channels", None)
            if not isinstance(dim, int):
                raise TypeError(
                    "SphericalVGAE: the encoder has no integer `out_channels`; pass the latent "
                    "layer explicitly, e.g. latent=make_latent('vmf', dim).")
            latent = make_latent(latent, dim)
        if not isinstance(latent, LatentLayer):
            raise TypeError(f"SphericalVGAE: latent must be a str or a LatentLayer, got "
                            f"{type(latent).__name__}.")
        self.latent = latent
        self.__mu__: Tensor | None = None
        self.__logstd__: Tensor | None = None

    # ------------------------------------------------------------------------------------------
    @property
    def latent_kind(self) -> str:
        """``"vmf"`` (S-VGAE) or ``"normal"`` (N-VGAE)."""
        return self.latent.kind

    @property
    def posterior(self) -> Distribution | None:
        """``q(Z | X, A)`` of the last :meth:`encode` (``VonMisesFisher`` or ``Independent(Normal)``)."""
        return self.latent.posterior

    def reparametrize(self, mu: Tensor, logstd: Tensor) -> Tensor:
        """Raw encoder outputs -> ``z``: ``q.rsample()`` in training mode, the mean/mode in eval.

        (PyG's name and signature; for a vMF latent ``logstd`` is the raw concentration.)
        """
        return self.latent(mu, logstd)

    def encode(self, *args, **kwargs) -> Tensor:
        """Run the encoder and the latent layer; returns ``z`` of shape ``(N, d)``."""
        out = self.encoder(*args, **kwargs)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError("SphericalVGAE: the encoder must return a pair (loc_raw, scale_raw).")
        loc_raw, scale_raw = out
        if isinstance(self.latent, GaussianLatent):
            scale_raw = scale_raw.clamp(max=MAX_LOGSTD)
        self.__mu__, self.__logstd__ = loc_raw, scale_raw
        return self.latent(loc_raw, scale_raw)

    def kl_loss(self, mu: Tensor | None = None, logstd: Tensor | None = None) -> Tensor:
        r"""Mean over nodes of ``KL(q(z_i) || p(z_i))`` (a scalar), PyG's ``VGAE`` convention.

        With no arguments, uses the posterior of the last :meth:`encode`; otherwise the raw
        encoder outputs ``mu`` (``loc_raw``) and ``logstd`` (``scale_raw``: the log-std for a
        Gaussian latent, the pre-softplus concentration for vMF), a missing one taken from the
        last encoding. vMF: ``KL = kappa A_d(kappa) + log C_d(kappa) + log|S^{d-1}|`` (paper
        eq. 5), independent of ``mu``; Gaussian: ``-1/2 sum(1 + 2 log sigma - mu^2 - sigma^2)``.
        """
        if mu is None and logstd is None:
            if self.latent.posterior is None:
                raise RuntimeError("kl_loss(): no encoding yet; call encode() first.")
            q = self.latent.posterior
        else:
            mu = self.__mu__ if mu is None else mu
            logstd = self.__logstd__ if logstd is None else logstd
            if mu is None or logstd is None:
                raise RuntimeError("kl_loss(): no encoding yet to take the missing argument from.")
            q = self.latent.distribution(mu, logstd)
        return self.latent.kl(q).mean()

    @torch.no_grad()
    def embed(self, *args, **kwargs) -> Tensor:
        """Deterministic node embeddings (posterior mean direction / mean), without gradients."""
        was_training = self.training
        self.eval()
        try:
            return self.encode(*args, **kwargs)
        finally:
            self.train(was_training)
