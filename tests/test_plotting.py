"""Tests for pyg_spherical.repro.plotting (Hammer projection, grids, surface area, figures)."""
from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy.stats import norm

from pyg_spherical.repro.plotting import (
    hammer_projection,
    image_grid,
    log_sphere_surface_area,
    plane_grid,
    plot_latent,
    plot_surface_area,
    save_figure,
    sphere_grid,
    sphere_surface_area,
    tile_images,
)

S2 = math.sqrt(2.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _uniform_sphere(n, seed=0):
    g = np.random.default_rng(seed).standard_normal((n, 3))
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def _assert_png(path):
    with open(path, "rb") as f:
        head = f.read(8)
    assert head == PNG_MAGIC
    assert os.path.getsize(path) > 1000


# ---------------------------------------------------------------------------------------------
# Hammer projection
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "point, expected",
    [
        ((1.0, 0.0, 0.0), (0.0, 0.0)),
        ((0.0, 0.0, 1.0), (0.0, S2)),
        ((0.0, 0.0, -1.0), (0.0, -S2)),
        ((-1.0, 1e-12, 0.0), (2 * S2, 0.0)),
        ((-1.0, -1e-12, 0.0), (-2 * S2, 0.0)),
        ((-1.0, 0.0, 0.0), (2 * S2, 0.0)),  # atan2(+0, -1) = +pi
        # lon = +-pi/2 on the equator: 2 sqrt2 sin(pi/4) / sqrt(1 + cos(pi/4))
        ((0.0, 1.0, 0.0), (2.0 / math.sqrt(1 + 1 / S2), 0.0)),
        ((0.0, -1.0, 0.0), (-2.0 / math.sqrt(1 + 1 / S2), 0.0)),
        # lat = pi/4 on the prime meridian: sqrt2 sin(pi/4) / sqrt(1 + cos(pi/4))
        ((1.0, 0.0, 1.0), (0.0, 1.0 / math.sqrt(1 + 1 / S2))),
    ],
)
def test_hammer_known_points(point, expected):
    x, y = hammer_projection(np.array([point]))
    assert x.shape == (1,) and y.shape == (1,)
    np.testing.assert_allclose([x[0], y[0]], expected, atol=1e-9)


def test_hammer_normalises_and_accepts_tensors():
    v = _uniform_sphere(100, seed=1)
    scale = np.random.default_rng(2).uniform(0.1, 10.0, size=(100, 1))
    x0, y0 = hammer_projection(v)
    x1, y1 = hammer_projection(torch.tensor(v * scale, dtype=torch.float64, requires_grad=True))
    np.testing.assert_allclose(x1, x0, atol=1e-12)
    np.testing.assert_allclose(y1, y0, atol=1e-12)
    x2, _y2 = hammer_projection(torch.tensor(v, dtype=torch.float32))
    np.testing.assert_allclose(x2, x0, atol=1e-6)
    assert x2.dtype == np.float64


def test_hammer_image_is_ellipse_and_symmetric():
    v = _uniform_sphere(10_000, seed=3)
    x, y = hammer_projection(v)
    r = (x / (2 * S2)) ** 2 + (y / S2) ** 2
    assert np.all(r <= 1 + 1e-12)
    assert r.max() > 0.99  # reaches the boundary
    # mirror symmetries: y -> -y flips x, z -> -z flips y
    xm, ym = hammer_projection(v * np.array([1.0, -1.0, -1.0]))
    np.testing.assert_allclose(xm, -x, atol=1e-12)
    np.testing.assert_allclose(ym, -y, atol=1e-12)


def test_hammer_equal_area_jacobian():
    """|d(X, Y) / d(lon, lat)| = cos(lat), the spherical area element."""
    rng = np.random.default_rng(4)
    lon = rng.uniform(-3.0, 3.0, 200)
    lat = rng.uniform(-1.5, 1.5, 200)

    def proj(lo, la):
        xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
        return np.stack(hammer_projection(xyz), axis=1)

    h = 1e-6
    d_lon = (proj(lon + h, lat) - proj(lon - h, lat)) / (2 * h)
    d_lat = (proj(lon, lat + h) - proj(lon, lat - h)) / (2 * h)
    det = d_lon[:, 0] * d_lat[:, 1] - d_lon[:, 1] * d_lat[:, 0]
    np.testing.assert_allclose(np.abs(det), np.cos(lat), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    "box",
    [
        (0.0, 1.0, 0.0, 0.5),
        (-2.0, -1.0, -0.8, 0.2),
        (-0.5, 0.5, 0.9, 1.3),
        (2.0, 2.6, -0.4, 0.4),
    ],
)
def test_hammer_equal_area_monte_carlo(box):
    """Uniform points on S^2 land in a region with probability area / (4 pi)."""
    x0, x1, y0, y1 = box
    # the box lies inside the ellipse (check its corners)
    for cx in (x0, x1):
        for cy in (y0, y1):
            assert (cx / (2 * S2)) ** 2 + (cy / S2) ** 2 < 1
    n = 200_000
    x, y = hammer_projection(_uniform_sphere(n, seed=5))
    frac = np.mean((x > x0) & (x < x1) & (y > y0) & (y < y1))
    p = (x1 - x0) * (y1 - y0) / (4 * math.pi)
    se = math.sqrt(p * (1 - p) / n)
    assert abs(frac - p) < 5 * se, (frac, p, se)


def test_hammer_not_equal_area_for_wrong_map():
    """Sanity check of the Monte Carlo test: equirectangular (lon, lat) is not equal-area."""
    v = _uniform_sphere(200_000, seed=6)
    lat = np.arcsin(v[:, 2])
    frac = np.mean(np.abs(lat) > 1.0)  # a band of 1/pi - fraction ~ 0.364 of the lat range
    p_area = (math.pi / 2 - 1.0) / (math.pi / 2)
    assert abs(frac - p_area) > 0.1


@pytest.mark.parametrize(
    "bad",
    [np.zeros((5, 2)), np.zeros(3), np.zeros((2, 3, 1)), np.ones((4, 4))],
)
def test_hammer_bad_shape(bad):
    with pytest.raises(ValueError, match="shape"):
        hammer_projection(bad)


def test_hammer_zero_and_nonfinite_rows():
    with pytest.raises(ValueError, match="zero"):
        hammer_projection(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="finite"):
        hammer_projection(np.array([[np.nan, 0.0, 1.0]]))


# ---------------------------------------------------------------------------------------------
# surface area
# ---------------------------------------------------------------------------------------------
def test_surface_area_closed_forms():
    assert sphere_surface_area(1) == pytest.approx(2.0, rel=1e-12)
    assert sphere_surface_area(2) == pytest.approx(2 * math.pi, rel=1e-12)
    assert sphere_surface_area(3) == pytest.approx(4 * math.pi, rel=1e-12)
    assert sphere_surface_area(4) == pytest.approx(2 * math.pi**2, rel=1e-12)
    assert sphere_surface_area(5) == pytest.approx(8 * math.pi**2 / 3, rel=1e-12)
    assert sphere_surface_area(3, radius=2.0) == pytest.approx(16 * math.pi, rel=1e-12)
    assert isinstance(sphere_surface_area(3), float)


def test_surface_area_vectorised_and_max_at_7():
    ms = np.arange(1, 101)
    a = sphere_surface_area(ms)
    assert a.shape == ms.shape
    ref = [2 * math.pi ** (m / 2) / math.gamma(m / 2) for m in range(1, 101)]
    np.testing.assert_allclose(a, ref, rtol=1e-10)
    assert ms[np.argmax(a)] == 7
    assert np.all(np.diff(a[6:]) < 0)  # decreasing after the maximum
    assert sphere_surface_area(torch.tensor([2, 3])).tolist() == pytest.approx(
        [2 * math.pi, 4 * math.pi]
    )
    np.testing.assert_allclose(sphere_surface_area(np.array([[2, 3], [4, 5]])).shape, (2, 2))


def test_surface_area_large_m_is_stable():
    assert np.isfinite(log_sphere_surface_area(1e6))
    assert sphere_surface_area(1000) == 0.0 or sphere_surface_area(1000) < 1e-300
    assert log_sphere_surface_area(1000) < -1000


@pytest.mark.parametrize("m", [0, -1, np.array([3, 0])])
def test_surface_area_bad_m(m):
    with pytest.raises(ValueError):
        sphere_surface_area(m)


# ---------------------------------------------------------------------------------------------
# grids
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_sphere_grid_unit_rows_and_order(n):
    g = sphere_grid(n)
    assert g.shape == (n * n, 3)
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1.0, atol=1e-12)
    grid = g.reshape(n, n, 3)
    z = grid[..., 2]
    # heights are the midpoints of n equal intervals of (-1, 1), north first
    np.testing.assert_allclose(z[:, 0], 1 - 2 * (np.arange(n) + 0.5) / n, atol=1e-12)
    np.testing.assert_allclose(z, z[:, :1] * np.ones((1, n)), atol=1e-12)
    lon = np.arctan2(grid[..., 1], grid[..., 0])
    np.testing.assert_allclose(lon[0], -np.pi + 2 * np.pi * (np.arange(n) + 0.5) / n, atol=1e-12)
    # in the Hammer view, rows go top -> bottom and columns left -> right
    if n > 1:
        x, y = hammer_projection(g)
        assert np.all(np.diff(x.reshape(n, n), axis=1) > 0)
        assert np.all(np.diff(y.reshape(n, n), axis=0) < 0)


def test_sphere_grid_is_roughly_balanced():
    g = sphere_grid(30)
    np.testing.assert_allclose(g.mean(axis=0), 0.0, atol=1e-12)


def test_plane_grid():
    n = 9
    g = plane_grid(n)
    assert g.shape == (n * n, 2)
    grid = g.reshape(n, n, 2)
    u = (np.arange(n) + 0.5) / n
    np.testing.assert_allclose(norm.cdf(grid[0, :, 0]), u, atol=1e-12)  # columns: x increasing
    np.testing.assert_allclose(norm.cdf(grid[:, 0, 1]), u[::-1], atol=1e-12)  # rows: y decreasing
    np.testing.assert_allclose(g.mean(axis=0), 0.0, atol=1e-12)
    g2 = plane_grid(5, lim=0.05).reshape(5, 5, 2)
    np.testing.assert_allclose(norm.cdf(g2[0, :, 0]), np.linspace(0.05, 0.95, 5), atol=1e-12)
    assert g2[0, 0, 1] == pytest.approx(norm.ppf(0.95))


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2.5}, {"n": 3, "lim": 0.0}, {"n": 3, "lim": 0.6}])
def test_grid_bad_args(kwargs):
    with pytest.raises(ValueError):
        plane_grid(**kwargs)
    if "lim" not in kwargs:
        with pytest.raises(ValueError):
            sphere_grid(kwargs["n"])


# ---------------------------------------------------------------------------------------------
# image tiles
# ---------------------------------------------------------------------------------------------
def test_tile_images_layout():
    imgs = np.stack([np.full((28, 28), k / 10.0) for k in range(7)])
    t = tile_images(imgs.reshape(7, 784), nrow=3, padding=2, pad_value=1.0)
    assert t.shape == (3 * 30 + 2, 3 * 30 + 2)
    for k in range(7):
        r, c = divmod(k, 3)
        cell = t[2 + r * 30:2 + r * 30 + 28, 2 + c * 30:2 + c * 30 + 28]
        np.testing.assert_allclose(cell, k / 10.0)
    assert np.all(t[2 + 2 * 30:2 + 2 * 30 + 28, 2 + 30:] == 1.0)  # empty cells = pad_value
    # (N, 1, H, W) tensors and no padding
    t2 = tile_images(torch.tensor(imgs[:4, None], dtype=torch.float32), nrow=2, padding=0)
    assert t2.shape == (56, 56)
    np.testing.assert_allclose(t2[28:, 28:], 0.3, atol=1e-6)
    # fewer images than nrow: the grid is only as wide as needed
    assert tile_images(imgs[:2], nrow=10, padding=0).shape == (28, 56)


@pytest.mark.parametrize(
    "images, kwargs",
    [
        (np.zeros((4, 783)), {}),
        (np.zeros((4, 27, 28)), {}),
        (np.zeros((4, 3, 28, 28)), {}),
        (np.zeros(784), {}),
        (np.zeros((0, 784)), {}),
        (np.zeros((4, 784)), {"nrow": 0}),
    ],
)
def test_tile_images_bad_shape(images, kwargs):
    kwargs = {"nrow": 2, **kwargs}
    with pytest.raises(ValueError):
        tile_images(images, **kwargs)
    with pytest.raises(ValueError):
        image_grid(images, **kwargs)


def test_tile_images_other_shape():
    t = tile_images(np.zeros((6, 12)), nrow=3, shape=(3, 4), padding=1)
    assert t.shape == (2 * 4 + 1, 3 * 5 + 1)


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def test_plot_latent_hammer_png(tmp_path):
    z = torch.randn(500, 3)
    labels = torch.randint(0, 10, (500,))
    ax = plot_latent(z, labels, title="S-VAE")
    assert isinstance(ax.figure.canvas, FigureCanvasAgg)
    assert len(ax.get_legend().get_texts()) == len(torch.unique(labels))
    assert ax.get_title() == "S-VAE"
    path = save_figure(ax.figure, tmp_path / "a" / "b" / "hammer.png")
    assert path == str(tmp_path / "a" / "b" / "hammer.png")
    _assert_png(path)


@pytest.mark.parametrize("kind", ["euclidean", "circle", "auto"])
def test_plot_latent_2d_png(tmp_path, kind):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((300, 2))
    labels = rng.integers(0, 4, 300)
    ax = plot_latent(z, labels, kind=kind, cmap="viridis", legend=False)
    assert ax.get_legend() is None
    _assert_png(save_figure(ax, tmp_path / f"{kind}.png"))  # Axes accepted too


def test_plot_latent_no_labels_and_given_ax(tmp_path):
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    rng = np.random.default_rng(1)
    out = plot_latent(rng.standard_normal((100, 3)), ax=axes[0])
    assert out is axes[0]
    plot_latent(rng.standard_normal((100, 2)), ax=axes[1])
    assert plt.fignum_exists(fig.number)
    _assert_png(save_figure(fig, tmp_path / "two.png"))
    assert not plt.fignum_exists(fig.number)  # pyplot figure released


def test_plot_latent_bad_inputs():
    rng = np.random.default_rng(2)
    with pytest.raises(ValueError, match="PCA"):
        plot_latent(rng.standard_normal((10, 5)))
    with pytest.raises(ValueError):
        plot_latent(rng.standard_normal((10, 2)), kind="hammer")
    with pytest.raises(ValueError):
        plot_latent(rng.standard_normal((10, 3)), kind="euclidean")
    with pytest.raises(ValueError):
        plot_latent(rng.standard_normal((10, 3)), kind="circle")
    with pytest.raises(ValueError):
        plot_latent(rng.standard_normal((10, 1)))
    with pytest.raises(ValueError):
        plot_latent(rng.standard_normal(10))
    with pytest.raises(ValueError):
        plot_latent(rng.standard_normal((10, 2)), kind="polar")
    with pytest.raises(ValueError, match="labels"):
        plot_latent(rng.standard_normal((10, 2)), labels=np.zeros(9))
    with pytest.raises(ValueError):
        plot_latent(np.zeros((10, 2)), kind="circle")
    with pytest.raises(ValueError):
        plot_latent(np.zeros((10, 3)))


def test_image_grid_png(tmp_path):
    imgs = torch.rand(20, 784)
    ax = image_grid(imgs, nrow=5, title="samples")
    assert ax.get_xticks().size == 0 and ax.get_yticks().size == 0
    im = ax.get_images()[0]
    assert im.get_cmap().name == "gray"
    assert im.get_array().shape == (4 * 30 + 2, 5 * 30 + 2)
    _assert_png(save_figure(ax.figure, tmp_path / "grid.png"))


def test_manifold_pipeline_png(tmp_path):
    """sphere_grid -> 'decoder' -> image_grid, as for paper Figure 9."""
    n = 6
    g = torch.from_numpy(sphere_grid(n)).float()
    w = torch.rand(3, 784)
    imgs = torch.sigmoid(g @ w)
    ax = image_grid(imgs, nrow=n)
    _assert_png(save_figure(ax.figure, tmp_path / "manifold.png"))


def test_plot_surface_area_png(tmp_path):
    ax = plot_surface_area(np.arange(1, 41))
    assert "m = 7" in ax.get_legend().get_texts()[0].get_text()
    _assert_png(save_figure(ax.figure, tmp_path / "area.png", dpi=80))
    ax = plot_surface_area(None, logy=True)
    assert ax.get_yscale() == "log"
    _assert_png(save_figure(ax.figure, tmp_path / "area_log.png"))


def test_save_figure_type_error(tmp_path):
    with pytest.raises(TypeError):
        save_figure("not a figure", tmp_path / "x.png")
