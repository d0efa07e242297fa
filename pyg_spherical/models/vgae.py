r"""The S-VGAE: a :class:`torch_geometric.nn.VGAE` with a hyperspherical (vMF) latent space.

Paper section 5.4 / Appendix F.3: the VGAE of Kipf & Welling (2016) with the Gaussian posterior
and prior replaced by ``q(z_i | X, A) = vMF(mu_i, kappa_i)`` and ``p(z_i) = U(S^{d-1})``; the
encoder and the training objective are unchanged, and the inner-product decoder gets a learnable
scale ``s`` (``p(A_ij = 1 | z_i, z_j) = sigmoid(s z_i^T z_j)``; see below):

.. math::
    \mathcal{L} = \underbrace{-\tfrac{1}{|E^+|}\sum_{(i,j)\in E^+}\log\sigma(s z_i^\top z_j)
                  -\tfrac{1}{|E^-|}\sum_{(i,j)\in E^-}\log(1-\sigma(s z_i^\top z_j))}_{\texttt{recon\_loss}}
                  + \frac{1}{N}\,\underbrace{\frac{1}{N}\sum_i \mathrm{KL}(q(z_i)\,\|\,p(z_i))}_{\texttt{kl\_loss}},

with one uniformly sampled negative pair per positive edge, resampled at every call
(``E^-``), and the vMF KL of paper eq. 5. The reductions are those of PyG's ``VGAE``: ``recon_loss``
averages over edges, ``kl_loss`` averages the per-node KL over nodes, and the user scales it by
``1 / num_nodes`` as in PyG's example and the reference code.

The latent family is a :class:`~pyg_spherical.nn.latent.LatentLayer`: ``SphericalVGAE(enc)``
with a :class:`~pyg_spherical.nn.SphericalGCNEncoder` is the S-VGAE, with a
:class:`~pyg_spherical.nn.GaussianGCNEncoder` (or ``latent="normal"``) the N-VGAE, numerically the same
model as ``torch_geometric.nn.VGAE``.

Decoder: on the sphere the plain ``sigmoid(z_i^T z_j)`` has logits in ``[-1, 1]`` and can never
be confident, so a spherical latent defaults to
:class:`~pyg_spherical.nn.ScaledInnerProductDecoder` (``sigmoid(s z_i^T z_j)`` with a learnable
``s > 0``), the model of the paper's Table 4 as its first author describes it. Pass
``decoder=InnerProductDecoder()`` for the paper-literal formula. A Gaussian latent keeps PyG's
``InnerProductDecoder``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution
from torch.nn import Module
from torch_geometric.nn import VGAE, InnerProductDecoder
from torch_geometric.utils import negative_sampling

from ..nn.decoders import ScaledInnerProductDecoder
from ..nn.latent import LATENTS, MAX_LOGSTD, GaussianLatent, LatentLayer, make_latent, resolve_kind

__all__ = ["SphericalVGAE"]


class SphericalVGAE(VGAE):
    r"""Variational graph auto-encoder with a von Mises-Fisher (or Gaussian) latent space.

    A drop-in :class:`torch_geometric.nn.VGAE`: ``encode``, ``decode``, ``recon_loss`` (with
    negative sampling), ``kl_loss``, ``test`` and ``reset_parameters`` keep PyG's signatures and
    semantics, and any encoder that works with PyG's ``VGAE`` works here unchanged.

    Args:
        encoder (Module): returns the raw pair ``(loc_raw (N, d), scale_raw)`` from the graph,
            e.g. :class:`~pyg_spherical.nn.SphericalGCNEncoder`, or PyG's example
            ``VariationalGCNEncoder`` returning ``(mu, logstd)``. For a spherical latent,
            ``scale_raw`` is ``(N, 1)``, or ``(N, d)`` like a Gaussian log-std head, whose
            outputs are then averaged into the one concentration (see
            :class:`~pyg_spherical.nn.VMFLatent`).
        decoder (Module, optional): default :class:`~pyg_spherical.nn.ScaledInnerProductDecoder`
            for a spherical latent, PyG's ``InnerProductDecoder`` for a Gaussian one.
        latent (str or LatentLayer, optional): ``"vmf"`` / ``"power"`` (Power Spherical) /
            ``"normal"`` or a latent layer. Default: ``encoder.latent_kind`` if the encoder has
            one, else ``"vmf"``. The latent width ``d`` is ``encoder.out_channels`` when the
            encoder has an integer one, else it is read from the first encoding (PyG's
            lazy-initialisation idiom).

    ``encode`` returns ``z (N, d)``: a reparameterised posterior sample in training mode, the
    posterior's mean direction ``mu`` (vMF) / mean (Gaussian) in eval mode. After ``encode``,
    :attr:`posterior` holds ``q(Z | X, A)`` (batch shape ``(N,)``), and ``__mu__`` /
    ``__logstd__`` the raw encoder outputs (``__logstd__`` clamped at 10 for a Gaussian latent, as
    in PyG).

    Test embeddings come from :meth:`embed` (``encode`` in eval mode, without gradients).

    Example (PyG's ``examples/autoencoder.py`` with the class name swapped)::

        >>> model = SphericalVGAE(VariationalGCNEncoder(in_channels, out_channels))
        >>> z = model.encode(x, train_pos_edge_index)
        >>> loss = model.recon_loss(z, train_pos_edge_index) + model.kl_loss() / num_nodes
        >>> z = model.embed(x, train_pos_edge_index)      # test embeddings: mean directions
        >>> auc, ap = model.test(z, pos_edge_index, neg_edge_index)
    """

    def __init__(self, encoder: Module, decoder: Module | None = None,
                 latent: str | LatentLayer | None = None):
        if latent is None:
            latent = getattr(encoder, "latent_kind", "vmf")
        if isinstance(latent, str):
            kind = resolve_kind(latent)
            dim = getattr(encoder, "out_channels", None)
            latent = make_latent(kind, dim) if isinstance(dim, int) else None
        elif isinstance(latent, LatentLayer):
            kind = latent.kind
        else:
            raise TypeError(f"SphericalVGAE: latent must be a str or a LatentLayer, got "
                            f"{type(latent).__name__}.")
        if decoder is None:
            spherical = LATENTS[kind].spherical if latent is None else latent.spherical
            decoder = ScaledInnerProductDecoder() if spherical else InnerProductDecoder()
        super().__init__(encoder, decoder)
        self._latent_kind = kind
        #: the latent layer; built at the first :meth:`encode` when the width was not known
        self.latent: LatentLayer | None = latent
        self.__mu__: Tensor | None = None
        self.__logstd__: Tensor | None = None

    # ------------------------------------------------------------------------------------------
    @property
    def latent_kind(self) -> str:
        """``"vmf"`` (S-VGAE), ``"power"`` (Power Spherical) or ``"normal"`` (N-VGAE)."""
        return self._latent_kind

    @property
    def posterior(self) -> Distribution | None:
        """``q(Z | X, A)`` of the last :meth:`encode` (``VonMisesFisher``, ``PowerSpherical`` or
        ``Independent(Normal)``)."""
        return None if self.latent is None else self.latent.posterior

    def reparametrize(self, mu: Tensor, logstd: Tensor) -> Tensor:
        """Raw encoder outputs -> ``z``: ``q.rsample()`` in training mode, the mean/mode in eval.

        (PyG's name and signature; for a vMF latent ``logstd`` is the raw concentration.)
        """
        return self._latent_for(mu)(mu, logstd)

    def _latent_for(self, loc_raw: Tensor) -> LatentLayer:
        """The latent layer, built from the width of ``loc_raw`` on first use."""
        if self.latent is None:
            self.latent = make_latent(self._latent_kind, loc_raw.size(-1))
            self.latent.train(self.training)  # built after a possible model.eval()
        return self.latent

    def encode(self, *args, num_seeds: int | None = None, **kwargs) -> Tensor:
        """Run the encoder and the latent layer; returns ``z`` of shape ``(N, d)``.

        ``num_seeds``: only the first ``num_seeds`` nodes go through the latent layer (``z`` is
        ``(num_seeds, d)``, and :attr:`posterior` and ``kl_loss()`` cover them alone). For
        mini-batches of sampled subgraphs, whose seed nodes come first (PyG's samplers): the
        other nodes are context, with truncated neighbourhoods, and are never decoded."""
        out = self.encoder(*args, **kwargs)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise TypeError("SphericalVGAE: the encoder must return a pair (loc_raw, scale_raw).")
        loc_raw, scale_raw = out
        if num_seeds is not None:
            loc_raw, scale_raw = loc_raw[:num_seeds], scale_raw[:num_seeds]
        latent = self._latent_for(loc_raw)
        if isinstance(latent, GaussianLatent):
            scale_raw = scale_raw.clamp(max=MAX_LOGSTD)
        self.__mu__, self.__logstd__ = loc_raw, scale_raw
        return latent(loc_raw, scale_raw)

    def recon_loss(self, z: Tensor, pos_edge_index: Tensor,
                   neg_edge_index: Tensor | None = None) -> Tensor:
        r"""PyG's reconstruction loss, ``-mean log sigma(l_pos) - mean log(1 - sigma(l_neg))``, on
        the decoder's logits (``log sigma`` computed as ``logsigmoid``): a decoder with a large
        scale saturates the sigmoid, where ``log(sigmoid + eps)`` would lose the gradient.
        Negatives: one per positive by PyG's ``negative_sampling`` unless given."""
        pos = self.decoder(z, pos_edge_index, sigmoid=False)
        if neg_edge_index is None:
            neg_edge_index = negative_sampling(pos_edge_index, z.size(0))
        neg = self.decoder(z, neg_edge_index, sigmoid=False)
        return -F.logsigmoid(pos).mean() - F.logsigmoid(-neg).mean()

    def kl_loss(self, mu: Tensor | None = None, logstd: Tensor | None = None) -> Tensor:
        r"""Mean over nodes of ``KL(q(z_i) || p(z_i))`` (a scalar), PyG's ``VGAE`` convention.

        With no arguments, uses the posterior of the last :meth:`encode`; otherwise the raw
        encoder outputs ``mu`` (``loc_raw``) and ``logstd`` (``scale_raw``: the log-std for a
        Gaussian latent, the pre-softplus concentration for vMF), a missing one taken from the
        last encoding. vMF: ``KL = kappa A_d(kappa) + log C_d(kappa) + log|S^{d-1}|`` (paper
        eq. 5), independent of ``mu``; Gaussian: ``-1/2 sum(1 + 2 log sigma - mu^2 - sigma^2)``.
        An encoding of no nodes (``num_seeds=0``) raises ``ValueError``: its mean is undefined.
        """
        if mu is None and logstd is None:
            if self.posterior is None:
                raise RuntimeError("kl_loss(): no encoding yet; call encode() first.")
            q = self.latent.posterior
        else:
            mu = self.__mu__ if mu is None else mu
            logstd = self.__logstd__ if logstd is None else logstd
            if mu is None or logstd is None:
                raise RuntimeError("kl_loss(): no encoding yet to take the missing argument from.")
            q = self._latent_for(mu).distribution(mu, logstd)
        kl = self.latent.kl(q)
        if kl.numel() == 0:  # e.g. encode(..., num_seeds=0): a mean over no nodes is undefined
            raise ValueError("kl_loss(): the encoding has no nodes; the mean KL over no nodes "
                             "is undefined.")
        return kl.mean()

    @torch.no_grad()
    def test(self, z: Tensor, pos_edge_index: Tensor, neg_edge_index: Tensor) -> tuple:
        """PyG's ``(ROC AUC, average precision)`` of the pairs, ranked by the decoder's logits:
        a large decoder scale saturates the float32 sigmoid to exactly 1, which would tie pairs
        whose logits differ."""
        import numpy as np
        from sklearn.metrics import average_precision_score, roc_auc_score

        pred = torch.cat([self.decoder(z, pos_edge_index, sigmoid=False),
                          self.decoder(z, neg_edge_index, sigmoid=False)]).double().cpu().numpy()
        y = np.concatenate([np.ones(pos_edge_index.size(1)), np.zeros(neg_edge_index.size(1))])
        return roc_auc_score(y, pred), average_precision_score(y, pred)

    @torch.no_grad()
    def embed(self, *args, **kwargs) -> Tensor:
        """Test embeddings: :meth:`encode` in eval mode (the posterior mean direction / mean),
        without gradients; the training mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            return self.encode(*args, **kwargs)
        finally:
            self.train(was_training)
