r"""Evaluation of latent representations: k-nearest-neighbour classification with few labels.

Semi-supervised M1 + kNN (paper section 5.3, Table 2; Kingma et al., 2014 "M1"): the codes of a
trained VAE (the posterior mode) are classified by a k-NN classifier (``k = 5``) fitted on ``N``
labelled training codes, drawn at random and class-balanced (``N / C`` per class); the test
accuracy is averaged over repeated draws.

Distances (Appendix F.2)
------------------------
* N-VAE, codes in :math:`\mathbb{R}^d`: Euclidean distance :math:`\lVert x - y \rVert`.
* S-VAE, codes on :math:`\mathcal{S}^{d-1}`: geodesic distance
  :math:`\theta(x, y) = \arccos(x^\top y)`.

For unit vectors :math:`\lVert x - y \rVert^2 = 2 - 2\,x^\top y = 2 - 2\cos\theta`, so
:math:`\lVert x - y \rVert = 2 \sin(\theta / 2)` is a strictly increasing function of
:math:`\theta \in [0, \pi]`. Hence scikit-learn's Euclidean neighbour search on the
unit-normalised codes returns exactly the geodesic neighbours, in the geodesic order (ties aside:
two neighbours at the same geodesic distance are at the same Euclidean distance as well, and the
order among them is the library's). With uniform vote weights only the neighbour *set* matters,
so the predictions are those of a geodesic k-NN. :func:`geodesic_distance` is the brute-force
reference used by the tests.

Functions
---------
* :func:`balanced_label_draw` -- indices of ``n`` labelled points, ``n / C`` of each class.
* :func:`knn_classifier` -- a fitted :class:`sklearn.neighbors.KNeighborsClassifier`.
* :func:`knn_accuracy` -- test accuracy of one k-NN fit.
* :func:`semi_supervised_knn` -- accuracies over repeated class-balanced draws (Table 2 cell).
* :func:`posterior_summary` -- how a trained VAE's posteriors use the latent (spread, active units).
* :func:`ll_estimators` -- the importance-sampled LL beside the one-decode estimator of the
  authors' TensorFlow example, from the same draws (a diagnostic of Table 1's LL column).

The k-NN functions take torch tensors or numpy arrays and return numpy values; the two model
diagnostics return a dict (:func:`posterior_summary`) and tensors (:func:`ll_estimators`).
Nothing is printed.

Example
-------
>>> z_train, z_test = vae.embed(x_train), vae.embed(x_test)           # doctest: +SKIP
>>> acc = semi_supervised_knn(z_train, y_train, z_test, y_test, n_labels=100,
...                           metric="geodesic", draws=20, seed=0)    # doctest: +SKIP
>>> acc.mean(), acc.std(ddof=1)                                       # doctest: +SKIP
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from torch import Tensor

from ..vae import bernoulli_log_prob
from ._utils import to_numpy

__all__ = [
    "METRICS",
    "balanced_label_draw",
    "geodesic_distance",
    "knn_accuracy",
    "knn_classifier",
    "knn_predict",
    "ll_estimators",
    "metric_for_latent",
    "posterior_summary",
    "semi_supervised_knn",
]

ArrayLike = Union[Tensor, np.ndarray]

#: distance names accepted by the k-NN functions
METRICS = ("euclidean", "geodesic")


def metric_for_latent(kind: str) -> str:
    """``"geodesic"`` for a latent on the sphere (vMF, S-VAE, or Power Spherical),
    ``"euclidean"`` for a Gaussian (N-VAE) one; ``kind`` is any name
    :func:`~pyg_spherical.nn.latent.resolve_kind` accepts."""
    from ..nn.latent import LATENTS, resolve_kind

    return "geodesic" if LATENTS[resolve_kind(kind)].spherical else "euclidean"


def geodesic_distance(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    r"""Pairwise great-circle distances :math:`\arccos(\hat x_i^\top \hat y_j)`, ``(N, M)``.

    Brute force (for reference and small sets). Rows are normalised first; the cosine is
    clipped to ``[-1, 1]`` against rounding.

    Args:
        x: ``(N, m)`` points (unit norm or not; zero rows are invalid).
        y: ``(M, m)``.
    """
    x = _unit_rows(to_numpy(x, np.float64))
    y = _unit_rows(to_numpy(y, np.float64))
    return np.arccos(np.clip(x @ y.T, -1.0, 1.0))


def _unit_rows(z: np.ndarray) -> np.ndarray:
    if z.ndim != 2:
        raise ValueError(f"expected codes of shape (N, d), got {z.shape}.")
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    if not np.all(norm > 0) or not np.all(np.isfinite(norm)):
        raise ValueError("geodesic metric: codes contain zero or non-finite rows.")
    return z / norm


def _prepare(z: ArrayLike, metric: str) -> np.ndarray:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
    z = to_numpy(z)
    z = z.astype(np.float64 if z.dtype == np.float64 else np.float32, copy=False)
    if z.ndim != 2:
        raise ValueError(f"expected codes of shape (N, d), got {z.shape}.")
    return _unit_rows(z) if metric == "geodesic" else z


def balanced_label_draw(labels: ArrayLike, n: int, seed: int | np.random.Generator = 0,
                        num_classes: int | None = None) -> np.ndarray:
    """Indices of ``n`` labelled points drawn without replacement, ``n / C`` from each class.

    Args:
        labels: ``(N,)`` integer class labels ``0 .. C-1``.
        n: number of labelled points; must be a multiple of ``C``.
        seed: seed or :class:`numpy.random.Generator` (draws are reproducible per seed).
        num_classes: ``C`` (default ``labels.max() + 1``).

    Returns:
        ``(n,)`` int64 indices into ``labels``, sorted by class then in draw order.

    Raises:
        ValueError: ``n`` not a positive multiple of ``C``, or a class has too few points.
    """
    y = to_numpy(labels).astype(np.int64, copy=False).ravel()
    if y.size == 0:
        raise ValueError("balanced_label_draw: no labels.")
    C = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if n < 1 or n % C:
        raise ValueError(f"balanced_label_draw: n = {n} must be a positive multiple of the "
                         f"number of classes ({C}).")
    per = n // C
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = []
    for c in range(C):  # a loop over classes, not points
        pool = np.flatnonzero(y == c)
        if pool.size < per:
            raise ValueError(f"balanced_label_draw: class {c} has {pool.size} points, "
                             f"{per} needed.")
        out.append(rng.choice(pool, size=per, replace=False))
    return np.concatenate(out).astype(np.int64)


def knn_classifier(z: ArrayLike, y: ArrayLike, k: int = 5, metric: str = "euclidean"):
    """A fitted ``KNeighborsClassifier(k)`` with uniform votes (brute-force search).

    ``metric="geodesic"`` fits the Euclidean classifier on unit-normalised codes, which has
    exactly the geodesic neighbours (module docstring); :func:`knn_predict` /
    :func:`knn_accuracy` normalise the queries the same way.
    """
    from sklearn.neighbors import KNeighborsClassifier

    z = _prepare(z, metric)
    y = to_numpy(y).astype(np.int64, copy=False).ravel()
    if y.shape[0] != z.shape[0]:
        raise ValueError(f"{z.shape[0]} codes but {y.shape[0]} labels.")
    if not 1 <= k <= z.shape[0]:
        raise ValueError(f"k = {k} must be in [1, number of labelled points = {z.shape[0]}].")
    clf = KNeighborsClassifier(n_neighbors=k, metric="euclidean", algorithm="brute",
                               weights="uniform")
    return clf.fit(z, y)


def knn_predict(clf, z: ArrayLike, metric: str = "euclidean") -> np.ndarray:
    """Predicted labels ``(M,)`` of a classifier from :func:`knn_classifier` (same ``metric``)."""
    return clf.predict(_prepare(z, metric))


def knn_accuracy(z_train: ArrayLike, y_train: ArrayLike, z_test: ArrayLike, y_test: ArrayLike,
                 k: int = 5, metric: str = "euclidean") -> float:
    """Test accuracy (fraction in ``[0, 1]``) of a k-NN classifier fitted on ``(z_train, y_train)``."""
    clf = knn_classifier(z_train, y_train, k, metric)
    pred = knn_predict(clf, z_test, metric)
    return float(np.mean(pred == to_numpy(y_test).ravel()))


def semi_supervised_knn(z_train: ArrayLike, y_train: ArrayLike, z_test: ArrayLike,
                        y_test: ArrayLike, n_labels: int, k: int = 5, metric: str = "euclidean",
                        draws: int = 20, seed: int = 0) -> np.ndarray:
    """Test accuracies of k-NN fitted on ``draws`` class-balanced draws of ``n_labels`` codes.

    Draw ``r`` uses ``numpy.random.default_rng([seed, r])`` (so ``N = 100, 600, 1000`` share
    seeds but not points).

    Args:
        z_train, y_train: ``(N, d)`` codes and ``(N,)`` labels to draw the labelled set from.
        z_test, y_test: ``(M, d)`` and ``(M,)``.
        n_labels: labelled points per draw (multiple of the number of classes).
        k: neighbours (paper: 5).
        metric: ``"euclidean"`` (N-VAE) or ``"geodesic"`` (S-VAE).
        draws: repetitions (paper: 20).
        seed: base seed.

    Returns:
        ``(draws,)`` float64 accuracies in ``[0, 1]``.
    """
    zt = _prepare(z_train, metric)
    yt = to_numpy(y_train).astype(np.int64, copy=False).ravel()
    zq = _prepare(z_test, metric)
    yq = to_numpy(y_test).astype(np.int64, copy=False).ravel()
    if zq.shape[0] != yq.shape[0]:
        raise ValueError(f"{zq.shape[0]} test codes but {yq.shape[0]} test labels.")
    out = np.empty(int(draws), dtype=np.float64)
    for r in range(int(draws)):
        idx = balanced_label_draw(yt, n_labels, np.random.default_rng([seed, r]))
        # the codes are already prepared: fit/predict them as Euclidean points
        clf = knn_classifier(zt[idx], yt[idx], k, "euclidean")
        out[r] = np.mean(clf.predict(zq) == yq)
    return out


@torch.no_grad()
def posterior_summary(model, x: Tensor) -> dict:
    """How the encoder of a :class:`~pyg_spherical.vae.VAE` (anything with ``posterior(x)``,
    ``embed(x)`` and ``kind``) uses the latent on the data ``x``, 2000 rows at a time: quantiles (10/50/90%) of the vMF or
    Power Spherical concentration, or of the Gaussian standard deviation, and the active units
    (``Var_x E[z_u] > 0.01``, Burda et al., 2016) of the posterior means: the numbers that tell
    a collapsed posterior (concentration near its floor, no active units) from a used one."""
    means, spreads = [], []
    for xb in x.split(2000):
        dist = model.posterior(xb)
        base = getattr(dist, "base_dist", dist)
        spreads.append(base.concentration if model.kind != "normal" else base.scale)
        means.append(model.embed(xb))
    spread = torch.cat(spreads).double().flatten()
    qs = torch.quantile(spread, spread.new_tensor([0.1, 0.5, 0.9]))  # on spread's device
    active = int((torch.cat(means).double().var(dim=0) > 0.01).sum())
    name = "concentration" if model.kind != "normal" else "std"
    return {f"{name}_q10": float(qs[0]), f"{name}_median": float(qs[1]),
            f"{name}_q90": float(qs[2]), "active_units": active}


@torch.no_grad()
def ll_estimators(model, x: Tensor, num_samples: int = 500,
                  batch_size: int = 20) -> tuple[Tensor, Tensor]:
    r"""Two estimates of ``log p(x)`` per row of ``x`` from the same ``S = num_samples`` draws
    ``z_s ~ q(z|x)`` and one more draw ``z_0``, for a :class:`~pyg_spherical.vae.VAE`:

    * ``is_ll``: the importance-sampled bound of :meth:`~pyg_spherical.vae.VAE.log_likelihood`
      (the same estimator; not the same numbers under the same seed, as ``z_0`` is drawn first),
      :math:`\operatorname{logsumexp}_s [\log p(x|z_s) + \log p(z_s) - \log q(z_s|x)] - \log S`;
    * ``one_decode``: the estimator of the ``log_likelihood`` function in the authors' public
      TensorFlow example (``s-vae-tf``, ``examples/mnist.py``), which takes the likelihood term from the
      one training draw ``z_0`` for every importance draw,
      :math:`\log p(x|z_0) + \operatorname{logsumexp}_s [\log p(z_s) - \log q(z_s|x)] - \log S`.
      Its value depends on ``S``: in expectation it is at most ``E_q log p(x|z)`` (the
      reconstruction term RE) and tends to it as ``S`` grows; it is not a bound on ``log p(x)``.

    Returns ``(is_ll, one_decode)``, each of shape ``(B,)``. No gradients; seed with
    ``torch.manual_seed``.
    """
    if num_samples < 1 or batch_size < 1:
        raise ValueError("ll_estimators: need num_samples >= 1 and batch_size >= 1.")
    if x.shape[0] == 0:
        return x.new_zeros((0,)), x.new_zeros((0,))
    is_ll, one = [], []
    log_s = float(np.log(num_samples))
    for xb in x.split(batch_size):
        q = model.posterior(xb)
        log_px_z0 = bernoulli_log_prob(model.decode(q.sample()), xb)
        z = q.sample((num_samples,))  # (S, B, d)
        log_ratio = model.prior(xb.device, z.dtype).log_prob(z) - q.log_prob(z)
        log_px_z = bernoulli_log_prob(model.decode(z), xb)
        is_ll.append(torch.logsumexp(log_px_z + log_ratio, dim=0) - log_s)
        one.append(log_px_z0 + torch.logsumexp(log_ratio, dim=0) - log_s)
    return torch.cat(is_ll), torch.cat(one)
