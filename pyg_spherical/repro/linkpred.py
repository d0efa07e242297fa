r"""Full-batch link prediction as in the paper's Table 4 (section 5.4, Appendix F.3).

The protocol of ``benchmarks/linkpred.py``: an 85 / 5 / 10 % undirected edge split
(:func:`make_split`), the GCN encoder of Kipf & Welling with a latent of the chosen family,
full-batch Adam, one uniformly sampled negative pair per positive edge resampled every epoch
(PyG's ``VGAE.recon_loss``), the loss ``recon + KL / N`` of PyG's example, and the test AUC / AP
kept at the epoch of best validation AUC (:class:`LinkPredRun`).
"""
from __future__ import annotations

import random
import statistics
import time

import numpy as np
import torch
from torch import Tensor

__all__ = ["Graph", "LinkPredRun", "make_decoder", "make_split", "seed_all"]


def seed_all(seed: int) -> None:
    """Seed Python's ``random`` (PyG's negative sampling draws from it), NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_split(data, seed: int):
    """The 85 / 5 / 10 % undirected edge split of seed ``seed`` (with sampled negatives)."""
    from .datasets import link_split

    return link_split(data, val_ratio=0.05, test_ratio=0.10, seed=seed)


class Graph:
    """Features and split on the target device (``x`` sparse COO where supported)."""

    def __init__(self, data, split, device):
        x = data.x.to(device)
        self.x = x if device.type == "mps" else x.to_sparse()
        self.num_nodes, self.num_features = data.num_nodes, data.num_features
        self.y = data.y
        self.train = split.train_pos_edge_index.to(device)
        self.val = (split.val_pos_edge_index.to(device), split.val_neg_edge_index.to(device))
        self.test = (split.test_pos_edge_index.to(device), split.test_neg_edge_index.to(device))


def make_decoder(cfg: dict):
    """The decoder of a run configuration: ``None`` (the model's default), the plain inner
    product (``cfg["decoder"] == "plain"``) or the scaled one from ``cfg["scale_init"]``."""
    from torch_geometric.nn import InnerProductDecoder

    from ..nn import ScaledInnerProductDecoder

    kind = cfg.get("decoder", "default")
    if kind == "plain":
        return InnerProductDecoder()
    if kind == "scaled":
        return ScaledInnerProductDecoder(cfg["scale_init"])
    return None


class LinkPredRun:
    """One model, one run: full-batch training step, evaluation, best-validation bookkeeping.

    Args:
        latent (str): the latent family, ``"vmf"``, ``"power"`` or ``"normal"``.
        cfg (dict): ``lr``, ``dropout``, ``dim``, ``hidden``, ``epochs`` and optionally
            ``decoder`` / ``scale_init`` (:func:`make_decoder`) and ``bias`` (GCN biases, default
            on).
        graph (Graph): the data and split.
        device, dtype: where and in which dtype the model lives.
        seed (int): seeds the model's initialisation and every draw of its training.

    Every run owns its random streams (torch CPU/CUDA generators and Python's ``random``, which
    PyG's negative sampling uses), seeded with ``seed`` before the model is built, and swapped in
    around each training step: a model trained side by side with another one sees exactly the
    draws it would see alone, so neither model's results depend on the other's.
    """

    def __init__(self, latent: str, cfg: dict, graph: Graph, device, seed: int,
                 dtype=torch.float32):
        from ..nn import GCNLatentEncoder

        self.cfg, self.g, self.device = cfg, graph, device
        self._cuda = device.type == "cuda"
        outer = self._get_rng()
        seed_all(seed)
        enc = GCNLatentEncoder(graph.num_features, cfg["hidden"], cfg["dim"], cfg["dropout"],
                               latent=latent, cached=True, bias=cfg.get("bias", True))
        self.model = self._build_model(enc, make_decoder(cfg)).to(device=device, dtype=dtype)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg["lr"])
        self._rng = self._get_rng()
        self._set_rng(outer)
        self.times: list[float] = []
        self.best = {"val_auc": -1.0}
        self.last_loss = None

    def _build_model(self, encoder, decoder):
        """The run's model around ``encoder`` and ``decoder`` (``None``: the default one),
        built from the run's seeded random stream; a subclass may build a variant."""
        from ..models import SphericalVGAE

        return SphericalVGAE(encoder, decoder=decoder)

    def _get_rng(self):
        cuda = torch.cuda.get_rng_state(self.device) if self._cuda else None
        return torch.get_rng_state(), random.getstate(), cuda

    def _set_rng(self, state) -> None:
        torch.set_rng_state(state[0])
        random.setstate(state[1])
        if self._cuda:
            torch.cuda.set_rng_state(state[2], self.device)

    def step(self) -> None:
        """One training epoch (timed), drawing from this run's own random streams."""
        outer = self._get_rng()
        self._set_rng(self._rng)
        try:
            self._train_step()
        finally:
            self._rng = self._get_rng()
            self._set_rng(outer)

    def _train_step(self) -> None:
        m, g = self.model, self.g
        t0 = time.perf_counter()
        m.train()
        self.opt.zero_grad(set_to_none=True)
        z = m.encode(g.x, g.train)
        loss = m.recon_loss(z, g.train) + m.kl_loss() / g.num_nodes
        loss.backward()
        self.opt.step()
        if self._cuda:
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - t0)
        self.last_loss = loss.detach()

    @torch.no_grad()
    def evaluate(self, epoch: int) -> float:
        """Validation AUC of the embedding after ``epoch``; see :meth:`record`."""
        return self.record(epoch, self.model.embed(self.g.x, self.g.train))

    @torch.no_grad()
    def record(self, epoch: int, z: Tensor) -> float:
        """Validation AUC of the embedding ``z``; test scores kept at the best validation AUC."""
        m, g = self.model, self.g
        val_auc, val_ap = m.test(z, *g.val)
        if val_auc > self.best["val_auc"]:
            test_auc, test_ap = m.test(z, *g.test)
            self.best = {"epoch": epoch, "val_auc": float(val_auc), "val_ap": float(val_ap),
                         "test_auc": float(test_auc), "test_ap": float(test_ap)}
        return float(val_auc)

    def summary(self) -> dict:
        """The best-validation record, epoch times (ms), the final loss, decoder scale and the
        median concentration (spherical latent) or standard deviation (Gaussian)."""
        out = dict(self.best)
        t = self.times[1:] or self.times  # the first epoch includes one-off setup
        out["epoch_ms_median"] = 1000 * statistics.median(t)
        out["epoch_ms_mean"] = 1000 * statistics.fmean(t)
        out["final_loss"] = float(self.last_loss)
        q = self.model.posterior
        scale = getattr(self.model.decoder, "scale", None)
        if scale is not None:
            out["final_decoder_scale"] = float(scale.detach())
        if self.model.latent.spherical:
            out["final_kappa_median"] = float(q.concentration.median())
        else:
            out["final_sigma_median"] = float(q.base_dist.scale.median())
        return out
