r"""Figures for hyperspherical and Gaussian latent spaces (Davidson et al., UAI 2018).

* :func:`plot_latent` -- latent codes coloured by class: points in :math:`\mathbb{R}^2`
  (N-VAE, paper Figure 2a), on :math:`\mathcal{S}^2` through the equal-area Hammer projection
  (S-VAE, Figure 2b, see :func:`hammer_projection`) or on the circle :math:`\mathcal{S}^1`.
* :func:`image_grid` / :func:`tile_images` -- tiles of MNIST digits: samples from the prior
  (Figures 7/8), decoded 2-d latent manifolds (Figure 9, with :func:`sphere_grid` and
  :func:`plane_grid`) and conditional generation (Figure 10).
* :func:`sphere_surface_area` / :func:`plot_surface_area` -- the collapse of the surface area
  of :math:`\mathcal{S}^{m-1}` with the dimension (paper eq. 10, Figure 6).
* :func:`save_figure` -- write a PNG and release the figure.

Backend. Figures are created as :class:`matplotlib.figure.Figure` objects attached to a
non-interactive Agg canvas (:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`); this
module never imports :mod:`matplotlib.pyplot`, never calls ``show`` and never changes the
global backend, so it works headless and does not leak figures into pyplot's figure manager.
Every plotting function accepts an optional ``ax`` to draw into an existing
:class:`~matplotlib.axes.Axes` (e.g. one panel of a user's ``plt.subplots``) and returns the
:class:`~matplotlib.axes.Axes` it drew on; the figure is ``ax.figure``.

Inputs may be :class:`torch.Tensor` (any device, with or without grad) or array-likes.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Union

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from scipy.special import ndtri

from ..distributions import log_sphere_area
from ._utils import to_numpy

__all__ = [
    "hammer_projection",
    "image_grid",
    "log_sphere_surface_area",
    "plane_grid",
    "plot_latent",
    "plot_surface_area",
    "save_figure",
    "sphere_grid",
    "sphere_surface_area",
    "tile_images",
]

SQRT2 = math.sqrt(2.0)
#: Semi-axes of the Hammer ellipse: ``x in [-2 sqrt2, 2 sqrt2]``, ``y in [-sqrt2, sqrt2]``.
HAMMER_HALF_WIDTH = 2.0 * SQRT2
HAMMER_HALF_HEIGHT = SQRT2

ArrayLike = Union[np.ndarray, "torch.Tensor", list, tuple]  # noqa: F821


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _new_axes(figsize: tuple[float, float]) -> Axes:
    """A fresh Axes on a Figure backed by the non-interactive Agg canvas (no pyplot)."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig.add_subplot(1, 1, 1)


def _check_positive_int(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def _hammer_lonlat(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hammer-Aitoff projection of longitude ``lon in [-pi, pi]`` and latitude ``lat``."""
    cos_lat = np.cos(lat)
    half = 0.5 * np.asarray(lon)
    # cos(lat) >= 0 and cos(lon/2) >= 0 on the sphere, so the denominator is >= 1.
    denom = np.sqrt(1.0 + cos_lat * np.cos(half))
    x = 2.0 * SQRT2 * cos_lat * np.sin(half) / denom
    y = SQRT2 * np.sin(lat) / denom
    return x, y


# ---------------------------------------------------------------------------------------------
# Hammer projection
# ---------------------------------------------------------------------------------------------
def hammer_projection(xyz: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    r"""Hammer-Aitoff equal-area projection of points on :math:`\mathcal{S}^2` to the plane.

    Each row is first normalised to unit length. With longitude
    :math:`\lambda = \operatorname{atan2}(y, x) \in [-\pi, \pi]` and latitude
    :math:`\varphi = \arcsin z \in [-\pi/2, \pi/2]`,

    .. math::
        X = \frac{2\sqrt2\,\cos\varphi\,\sin(\lambda/2)}{\sqrt{1 + \cos\varphi\cos(\lambda/2)}},
        \qquad
        Y = \frac{\sqrt2\,\sin\varphi}{\sqrt{1 + \cos\varphi\cos(\lambda/2)}} .

    The image is the ellipse :math:`(X / 2\sqrt2)^2 + (Y/\sqrt2)^2 \le 1` of area
    :math:`4\pi`, and the map is equal-area (its Jacobian w.r.t. :math:`(\lambda, \varphi)` is
    :math:`\cos\varphi`, the spherical area element), so a uniform distribution on the sphere
    stays uniform on the ellipse. ``(1, 0, 0)`` maps to the centre, the poles to
    :math:`(0, \pm\sqrt2)` and the meridian :math:`\lambda = \pm\pi` to the left/right edge
    of the ellipse (``atan2`` puts ``y = +0`` at :math:`+\pi` and ``y = -0`` at :math:`-\pi`).

    Args:
        xyz: array or tensor of shape ``(N, 3)``; rows need not be unit length.

    Returns:
        ``(x, y)``: two float64 arrays of shape ``(N,)``.

    Raises:
        ValueError: if ``xyz`` is not of shape ``(N, 3)``, or a row is zero or not finite.
    """
    xyz = to_numpy(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"hammer_projection expects an array of shape (N, 3), got {xyz.shape}")
    if not np.all(np.isfinite(xyz)):
        raise ValueError("hammer_projection: input contains non-finite values")
    norms = np.linalg.norm(xyz, axis=1, keepdims=True)
    if np.any(norms <= 0.0):
        bad = np.flatnonzero(norms[:, 0] <= 0.0)
        raise ValueError(f"hammer_projection: rows {bad[:10].tolist()} have zero norm")
    u = xyz / norms
    lon = np.arctan2(u[:, 1], u[:, 0])
    # = arcsin(z) for unit rows, but accurate near the poles
    lat = np.arctan2(u[:, 2], np.hypot(u[:, 0], u[:, 1]))
    return _hammer_lonlat(lon, lat)


def _draw_hammer_frame(ax: Axes, graticule: bool = True) -> None:
    """Ellipse outline of the Hammer projection, plus a light 30-degree graticule."""
    t = np.linspace(0.0, 2.0 * np.pi, 361)
    if graticule:
        lat = np.linspace(-np.pi / 2, np.pi / 2, 181)
        for lon_deg in range(-150, 180, 30):
            gx, gy = _hammer_lonlat(np.full_like(lat, np.deg2rad(lon_deg)), lat)
            ax.plot(gx, gy, color="0.85", lw=0.5, zorder=0)
        lon = np.linspace(-np.pi, np.pi, 361)
        for lat_deg in (-60, -30, 0, 30, 60):
            gx, gy = _hammer_lonlat(lon, np.full_like(lon, np.deg2rad(lat_deg)))
            ax.plot(gx, gy, color="0.85", lw=0.5, zorder=0)
    ax.plot(HAMMER_HALF_WIDTH * np.cos(t), HAMMER_HALF_HEIGHT * np.sin(t), color="k", lw=0.8,
            zorder=1)
    margin = 0.05
    ax.set_xlim(-HAMMER_HALF_WIDTH - margin, HAMMER_HALF_WIDTH + margin)
    ax.set_ylim(-HAMMER_HALF_HEIGHT - margin, HAMMER_HALF_HEIGHT + margin)
    ax.set_aspect("equal")
    ax.set_axis_off()


# ---------------------------------------------------------------------------------------------
# latent scatter plots
# ---------------------------------------------------------------------------------------------
_KINDS = ("auto", "euclidean", "hammer", "circle")


def _class_colors(cmap: str | Colormap, k: int) -> list:
    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    if cm.N <= 32:  # qualitative (listed) colormap: one entry per class, cycling if needed
        return [cm(i % cm.N) for i in range(k)]
    return [cm(i / max(k - 1, 1)) for i in range(k)]


def plot_latent(
    z: ArrayLike,
    labels: ArrayLike | None = None,
    ax: Axes | None = None,
    kind: str = "auto",
    title: str | None = None,
    s: float = 2,
    cmap: str | Colormap = "tab10",
    legend: bool = True,
) -> Axes:
    r"""Scatter plot of 2-d latent codes, coloured by class (paper Figure 2).

    Kinds:

    * ``"euclidean"``: ``z`` of shape ``(N, 2)``, points of :math:`\mathbb{R}^2` (N-VAE).
    * ``"hammer"``: ``z`` of shape ``(N, 3)``, points of :math:`\mathcal{S}^2` (S-VAE) drawn
      with :func:`hammer_projection` inside the ellipse outline of the projection.
    * ``"circle"``: ``z`` of shape ``(N, 2)``, points of :math:`\mathcal{S}^1`, normalised to
      unit length and drawn with the unit circle.
    * ``"auto"``: ``"hammer"`` if ``z.shape[1] == 3``, ``"euclidean"`` if it is 2.

    Args:
        z: latent codes, shape ``(N, 2)`` or ``(N, 3)`` (tensor or array).
        labels: optional class labels of shape ``(N,)``; one colour (and legend entry) per
            distinct value, in sorted order.
        ax: Axes to draw into; a new Agg-backed figure is created if ``None``.
        kind: one of ``"auto"``, ``"euclidean"``, ``"hammer"``, ``"circle"``.
        title: optional axes title.
        s: marker size.
        cmap: colormap (name or object) used for the classes; qualitative maps such as
            ``"tab10"`` give one listed colour per class.
        legend: draw a legend of the classes (only if ``labels`` is given).

    Returns:
        The :class:`~matplotlib.axes.Axes` drawn on.

    Raises:
        ValueError: on an unknown ``kind``, a shape that does not fit ``kind`` (in particular
            latent dimension > 3: project first, e.g. with PCA or by taking the first
            coordinates), mismatched ``labels`` or zero vectors for ``"hammer"``/``"circle"``.
    """
    z, labels, kind = _check_latent(z, labels, kind)
    px, py = _project(z, kind)
    if ax is None:
        ax = _new_axes((8.0, 4.6) if kind == "hammer" else (5.0, 5.0))
    _draw_frame(ax, kind)
    if labels is None:
        ax.scatter(px, py, s=s, color=_class_colors(cmap, 1)[0], linewidths=0, zorder=2)
    else:
        classes = np.unique(labels)
        colors = _class_colors(cmap, len(classes))
        for c, color in zip(classes, colors):
            m = labels == c
            ax.scatter(px[m], py[m], s=s, color=color, linewidths=0, label=str(c), zorder=2)
        if legend:
            ax.legend(markerscale=max(1.0, 6.0 / math.sqrt(max(s, 1e-12))), fontsize="small",
                      loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title is not None:
        ax.set_title(title)
    return ax


def _check_latent(z, labels, kind: str):
    """``(z, labels, kind)`` of :func:`plot_latent` as float64 / numpy arrays, ``kind`` resolved
    from ``"auto"``; one clear error for what does not fit."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
    z = to_numpy(z, dtype=np.float64)
    if z.ndim != 2:
        raise ValueError(f"plot_latent expects z of shape (N, d), got {z.shape}")
    d = z.shape[1]
    if d > 3:
        raise ValueError(
            f"plot_latent can only draw 2- or 3-dimensional latent codes, got dimension {d}; "
            "reduce the dimension first, e.g. with PCA (sklearn.decomposition.PCA) or by "
            "plotting the first 2 or 3 coordinates (renormalised for hyperspherical codes)"
        )
    if kind == "auto":
        if d == 3:
            kind = "hammer"
        elif d == 2:
            kind = "euclidean"
        else:
            raise ValueError(f"plot_latent with kind='auto' needs dimension 2 or 3, got {d}")
    expected = 3 if kind == "hammer" else 2
    if d != expected:
        raise ValueError(f"kind={kind!r} expects z of shape (N, {expected}), got {z.shape}")
    if labels is not None:
        labels = to_numpy(labels)
        if labels.ndim != 1 or labels.shape[0] != z.shape[0]:
            raise ValueError(
                f"labels must have shape ({z.shape[0]},) to match z, got {labels.shape}"
            )
    return z, labels, kind


def _project(z: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Plane coordinates of the codes for ``kind`` (Hammer, unit circle or as given)."""
    if kind == "hammer":
        return hammer_projection(z)
    if kind == "circle":
        norms = np.linalg.norm(z, axis=1)
        if not np.all(norms > 0.0):
            raise ValueError("plot_latent(kind='circle'): z contains zero or non-finite rows")
        return z[:, 0] / norms, z[:, 1] / norms
    return z[:, 0], z[:, 1]


def _draw_frame(ax: Axes, kind: str) -> None:
    """The outline and axes of ``kind``: the Hammer ellipse, the unit circle or the plane."""
    if kind == "hammer":
        _draw_hammer_frame(ax)
        return
    if kind == "circle":
        t = np.linspace(0.0, 2.0 * np.pi, 361)
        ax.plot(np.cos(t), np.sin(t), color="k", lw=0.8, zorder=1)
        ax.set_xlim(-1.15, 1.15)
        ax.set_ylim(-1.15, 1.15)
        ax.set_aspect("equal")
    else:
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel(r"$z_1$")
    ax.set_ylabel(r"$z_2$")


# ---------------------------------------------------------------------------------------------
# image grids
# ---------------------------------------------------------------------------------------------
def tile_images(
    images: ArrayLike,
    nrow: int,
    shape: tuple[int, int] = (28, 28),
    padding: int = 2,
    pad_value: float = 1.0,
) -> np.ndarray:
    r"""Tile images into one 2-d array, row-major, ``nrow`` images per row.

    Image ``k`` goes to grid row ``k // nrow`` and column ``k % nrow`` (the convention of
    ``torchvision.utils.make_grid``); the grid has ``ceil(N / nrow)`` rows, unused cells are
    filled with ``pad_value``.

    Args:
        images: shape ``(N, H*W)``, ``(N, H, W)`` or ``(N, 1, H, W)``, values in ``[0, 1]``.
        nrow: number of images per row of the grid.
        shape: ``(H, W)`` used to reshape flat images.
        padding: pixels between (and around) images.
        pad_value: value of the padding pixels.

    Returns:
        float array of shape ``(rows*(H+padding)+padding, nrow*(W+padding)+padding)``.
    """
    nrow = _check_positive_int(nrow, "nrow")
    h, w = (int(v) for v in shape)
    if h < 1 or w < 1:
        raise ValueError(f"shape must be two positive integers, got {shape!r}")
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    x = to_numpy(images, dtype=np.float64)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        if x.shape[1] != h * w:
            raise ValueError(
                f"flat images of shape {x.shape} do not match shape={shape} ({h * w} pixels)"
            )
        x = x.reshape(-1, h, w)
    elif x.ndim != 3 or x.shape[1:] != (h, w):
        raise ValueError(
            f"images must have shape (N, {h * w}), (N, {h}, {w}) or (N, 1, {h}, {w}), "
            f"got {x.shape}"
        )
    n = x.shape[0]
    if n == 0:
        raise ValueError("images is empty")
    ncol = min(nrow, n)
    rows = -(-n // ncol)
    p = padding
    out = np.full((rows * (h + p) + p, ncol * (w + p) + p), float(pad_value))
    for k in range(n):
        r, c = divmod(k, ncol)
        top, left = p + r * (h + p), p + c * (w + p)
        out[top:top + h, left:left + w] = x[k]
    return out


def image_grid(
    images: ArrayLike,
    nrow: int,
    ax: Axes | None = None,
    shape: tuple[int, int] = (28, 28),
    padding: int = 2,
    pad_value: float = 1.0,
    title: str | None = None,
) -> Axes:
    r"""Show images in ``[0, 1]`` as a grid (grey colormap, no ticks); paper Figures 7-10.

    See :func:`tile_images` for the layout (``nrow`` images per row, row-major), so decoding
    ``sphere_grid(n)`` or ``plane_grid(n)`` and calling ``image_grid(x, nrow=n)`` draws the
    2-d latent manifold (Figure 9) in the orientation of the latent plot.

    Args:
        images: shape ``(N, H*W)``, ``(N, H, W)`` or ``(N, 1, H, W)``, tensor or array.
        nrow: number of images per row.
        ax: Axes to draw into; a new Agg-backed figure is created if ``None``.
        shape: ``(H, W)`` of one image (MNIST: ``(28, 28)``).
        padding, pad_value: separator width in pixels and its grey value.
        title: optional axes title.

    Returns:
        The :class:`~matplotlib.axes.Axes` drawn on.
    """
    grid = tile_images(images, nrow, shape=shape, padding=padding, pad_value=pad_value)
    if ax is None:
        gh, gw = grid.shape
        scale = 6.0 / max(gh, gw)
        ax = _new_axes((max(gw * scale, 1.0), max(gh * scale, 1.0)))
    ax.imshow(grid, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    return ax


# ---------------------------------------------------------------------------------------------
# latent grids for manifold figures
# ---------------------------------------------------------------------------------------------
def sphere_grid(n: int) -> np.ndarray:
    r"""An ``n x n`` grid of points on :math:`\mathcal{S}^2` with equal-area cells.

    Longitude :math:`\lambda` and height :math:`z = \sin\varphi` are both taken at the
    midpoints of ``n`` equal intervals of :math:`(-\pi, \pi)` and :math:`(-1, 1)`. Since the
    area element of the sphere is :math:`d\lambda\,dz` (Archimedes), every grid point is the
    centre of a cell of area :math:`4\pi / n^2`, i.e. the grid is the image of a uniform grid
    under the inverse of the sphere's uniform-area map; it is the spherical analogue of
    :func:`plane_grid` and suits decoding the S-VAE's 2-d manifold (paper Figure 9).

    Ordering is row-major as in an image: row ``r`` (``0`` = top) has the ``r``-th largest
    :math:`z` (north first), column ``c`` the ``c``-th smallest longitude (west to east), so
    point ``r * n + c`` is in the same place as in :func:`plot_latent`'s Hammer view.

    Returns:
        float64 array of shape ``(n * n, 3)`` with unit rows.
    """
    n = _check_positive_int(n, "n")
    mid = (np.arange(n) + 0.5) / n
    lon = -np.pi + 2.0 * np.pi * mid  # west -> east
    zs = 1.0 - 2.0 * mid  # north -> south
    zz, ll = np.meshgrid(zs, lon, indexing="ij")
    rho = np.sqrt(np.clip(1.0 - zz**2, 0.0, None))
    pts = np.stack([rho * np.cos(ll), rho * np.sin(ll), zz], axis=-1).reshape(-1, 3)
    return pts / np.linalg.norm(pts, axis=1, keepdims=True)


def plane_grid(n: int, lim: float | None = None) -> np.ndarray:
    r"""An ``n x n`` grid in :math:`\mathbb{R}^2` spaced by the standard normal prior.

    As in Kingma & Welling's manifold figure, a uniform grid of the unit square is mapped
    through the inverse normal CDF :math:`\Phi^{-1}` coordinate-wise. The uniform grid uses
    the cell midpoints :math:`(i + 1/2)/n` if ``lim`` is ``None`` (every point then carries
    prior mass :math:`1/n^2`, the Gaussian analogue of :func:`sphere_grid`), else ``n``
    equally spaced values from ``lim`` to ``1 - lim`` (e.g. ``lim=0.05``).

    Ordering is row-major as in an image: row ``r`` (``0`` = top) has the ``r``-th largest
    second coordinate, column ``c`` the ``c``-th smallest first coordinate, matching
    :func:`plot_latent`'s Euclidean view.

    Returns:
        float64 array of shape ``(n * n, 2)``.
    """
    n = _check_positive_int(n, "n")
    if lim is None:
        u = (np.arange(n) + 0.5) / n
    else:
        lim = float(lim)
        if not 0.0 < lim < 0.5:
            raise ValueError(f"lim must be in (0, 0.5), got {lim}")
        u = np.linspace(lim, 1.0 - lim, n)
    q = ndtri(u)
    yy, xx = np.meshgrid(q[::-1], q, indexing="ij")
    return np.stack([xx, yy], axis=-1).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------
# surface area of the hypersphere
# ---------------------------------------------------------------------------------------------
def log_sphere_surface_area(dim: ArrayLike, radius: float = 1.0):
    r"""Log surface area of the sphere :math:`\mathcal{S}^{m-1} \subset \mathbb{R}^m`, ``m = dim``.

    .. math::
        \log S(m-1) = \log 2 + \tfrac m2 \log\pi - \log\Gamma(\tfrac m2) + (m-1)\log r ,

    :func:`~pyg_spherical.distributions.log_sphere_area` (finite for any ``m > 0``) elementwise,
    plus the radius term.
    (The paper's eq. 10 writes :math:`r^m`; the area of a sphere of radius ``r`` scales as
    :math:`r^{m-1}`, and both agree for the unit sphere.)

    Args:
        dim: ambient dimension(s) ``m > 0`` (scalar or array; non-integers allowed).
        radius: sphere radius ``r > 0``.

    Returns:
        float (for scalar ``m``) or float64 array of the shape of ``m``.
    """
    m_arr = to_numpy(dim, dtype=np.float64)
    if not np.all(m_arr > 0):
        raise ValueError("sphere dimension m must be > 0")
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    out = (np.vectorize(log_sphere_area, otypes=[np.float64])(m_arr)
           + (m_arr - 1.0) * math.log(radius))
    return float(out) if out.ndim == 0 else out


def sphere_surface_area(dim: ArrayLike, radius: float = 1.0):
    r"""Surface area of the sphere :math:`\mathcal{S}^{m-1}` in :math:`\mathbb{R}^m`, ``m = dim`` (eq. 10).

    .. math::
        S(m-1) = \frac{2\pi^{m/2}}{\Gamma(m/2)}\, r^{m-1}

    computed as ``exp(log_sphere_surface_area(dim, radius))`` (vectorised, no overflow of
    :math:`\Gamma`). For the unit sphere: :math:`S^0 = 2`, :math:`S^1 = 2\pi`,
    :math:`S^2 = 4\pi`, :math:`S^3 = 2\pi^2`; over integers the maximum is at ``m = 7``
    and :math:`S \to 0` as :math:`m \to \infty` (paper Figure 6).

    Returns:
        float (for scalar ``m``) or float64 array of the shape of ``m``.
    """
    out = np.exp(log_sphere_surface_area(dim, radius))
    return float(out) if np.ndim(out) == 0 else out


def plot_surface_area(
    ms: ArrayLike | None = None,
    ax: Axes | None = None,
    logy: bool = False,
    title: str | None = None,
) -> Axes:
    r"""Surface area of the unit :math:`\mathcal{S}^{m-1}` against ``m`` (paper Figure 6).

    Args:
        ms: dimensions to plot (default ``1, ..., 50``).
        ax: Axes to draw into; a new Agg-backed figure is created if ``None``.
        logy: logarithmic y axis (shows the collapse for large ``m``).
        title: optional axes title.

    Returns:
        The :class:`~matplotlib.axes.Axes` drawn on; the maximum over ``ms`` is marked.
    """
    ms = np.arange(1, 51) if ms is None else to_numpy(ms, dtype=np.float64).ravel()
    if ms.size == 0:
        raise ValueError("ms is empty")
    area = sphere_surface_area(ms)
    area = np.atleast_1d(area)
    if ax is None:
        ax = _new_axes((6.0, 4.0))
    ax.plot(ms, area, "o-", ms=3, lw=1)
    k = int(np.argmax(area))
    ax.plot([ms[k]], [area[k]], "o", color="C3", ms=7,
            label=f"max at m = {ms[k]:g} (S = {area[k]:.2f})")
    ax.legend(frameon=False)
    ax.set_xlabel("dimensionality $m$")
    ax.set_ylabel(r"surface area of $\mathcal{S}^{m-1}$")
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if title is not None:
        ax.set_title(title)
    return ax


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------
def save_figure(fig: Figure | Axes, path: str | os.PathLike, dpi: int = 150) -> str:
    """Save ``fig`` (a Figure, or an Axes whose figure is saved) as a PNG and close it.

    Parent folders are created. The figure is released afterwards: removed from pyplot's
    figure manager if pyplot manages it (``plt.close``), which is a no-op for the Agg figures
    this module creates. Do not reuse the figure after saving.

    Returns:
        ``path`` as a string.
    """
    if hasattr(fig, "get_figure") and not isinstance(fig, Figure):  # Axes or SubFigure
        try:
            fig = fig.get_figure(root=True)
        except TypeError:  # matplotlib < 3.10
            fig = fig.figure
            while not isinstance(fig, Figure) and hasattr(fig, "figure"):
                fig = fig.figure
    if not isinstance(fig, Figure):
        raise TypeError(f"save_figure expects a matplotlib Figure or Axes, got {type(fig)}")
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", bbox_inches="tight")
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:  # only pyplot-created figures need closing
        plt.close(fig)
    return path
