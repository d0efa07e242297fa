"""pyg_spherical.special against mpmath (arbitrary precision) over the documented range.

Range: orders 0 <= v <= 5000, arguments 1e-6 <= x <= 1e6. Tolerances:
- float64: |log I_v - ref| <= 1e-12 max(1, |ref|); ratio, its complement and both
  derivatives to 1e-11 relative (measured worst cases ~1e-13).
- float32: 5e-6 (log, relative to max(1, |ref|)) and 5e-5 (ratios and derivatives), i.e. a few
  hundred ulps at most; measured worst cases are 1.2e-6 and 6e-6.
"""
import math

import mpmath as mp
import numpy as np
import pytest
import torch

from pyg_spherical.special import (
    iv_ratio,
    iv_ratio_complement,
    iv_ratio_derivative,
    log_iv,
    log_ive,
    vmf_terms,
)

mp.mp.dps = 40

ORDERS = [0, 0.5, 1, 1.5, 4.5, 7.9, 8, 19.5, 20, 49, 100, 511, 2047, 5000]
ARGS = [float(x) for x in np.logspace(-6, 6, 13)] + [1.9, 2.1, 3.0, 30.0]


def _ref(v, x):
    X = mp.mpf(x)
    iv = mp.besseli(v, X, maxterms=10**6)
    ivm = mp.besseli(v - 1, X, maxterms=10**6)
    ivp = mp.besseli(v + 1, X, maxterms=10**6)
    r = iv / ivm
    return {
        "log": mp.log(iv),
        "ratio": r,
        "comp": 1 - r,
        "dlog": ivp / iv + v / X,
        "dratio": 1 - r**2 - (2 * v - 1) * r / X,
    }


@pytest.fixture(scope="module")
def refs():
    return {(v, x): _ref(v, x) for v in ORDERS for x in ARGS}


def _rel(a, b):
    b = float(b)
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("dtype,tol_log,tol_rel", [(torch.float64, 1e-12, 1e-11),
                                                   (torch.float32, 5e-6, 5e-5)])
@pytest.mark.slow  # mpmath references over a wide grid: ~15-30 s
def test_against_mpmath(refs, dtype, tol_log, tol_rel, device):
    x = torch.tensor(ARGS, dtype=dtype, device=device)
    for v in ORDERS:
        xg = x.clone().requires_grad_(True)
        li = log_iv(v, xg)
        (dlog,) = torch.autograd.grad(li.sum(), xg)
        xg2 = x.clone().requires_grad_(True)
        r = iv_ratio(v, xg2)
        (dr,) = torch.autograd.grad(r.sum(), xg2)
        comp = iv_ratio_complement(v, x)
        assert li.dtype == dtype and r.dtype == dtype and dlog.dtype == dtype
        for j, xx in enumerate(ARGS):
            ref = refs[(v, xx)]
            err = abs(li[j].item() - float(ref["log"])) / max(1.0, abs(float(ref["log"])))
            assert err <= tol_log, (v, xx, li[j].item(), float(ref["log"]))
            assert _rel(r[j].item(), ref["ratio"]) <= tol_rel, (v, xx)
            assert _rel(dlog[j].item(), ref["dlog"]) <= tol_rel, (v, xx)
            if v == 0.5:
                # 1 - R_{1/2} = 1 - tanh(x) and R'_{1/2} = sech^2(x) are exponentially small:
                # only absolutely accurate.
                assert abs(comp[j].item() - float(ref["comp"])) <= 10 * torch.finfo(dtype).eps
                assert abs(dr[j].item() - float(ref["dratio"])) <= 10 * torch.finfo(dtype).eps
                continue
            assert _rel(comp[j].item(), ref["comp"]) <= tol_rel, (v, xx)
            assert _rel(dr[j].item(), ref["dratio"]) <= tol_rel, (v, xx, dr[j].item())


def test_log_ive_is_log_iv_minus_x():
    x = torch.logspace(-6, 6, 50, dtype=torch.float64)
    for v in [0, 3.5, 300]:
        # log_ive keeps full precision where log_iv = x + O(log x) rounds at large x
        np.testing.assert_allclose(log_ive(v, x) + x, log_iv(v, x), rtol=1e-14, atol=1e-14)
    ref = float(mp.log(mp.besseli(2, 1e6)) - 1e6)
    assert abs(log_ive(2, torch.tensor(1e6, dtype=torch.float32)).item() - ref) < 1e-5


def test_naive_scipy_underflows_where_we_do_not():
    """``log(ive(m/2 - 1, kappa))`` in float32 is -inf at m = 100, kappa = 1 (the peers' NaN KL)."""
    with np.errstate(divide="ignore"):
        naive = np.log(np.float32(mp.besseli(49, 1) * mp.exp(-1)))
    assert naive == -np.inf
    ours = log_iv(49, torch.tensor(1.0, dtype=torch.float32))
    assert torch.isfinite(ours)
    assert abs(ours.item() - float(mp.log(mp.besseli(49, 1)))) < 1e-4


def test_extremes_are_finite():
    for dtype in (torch.float32, torch.float64):
        x = torch.tensor([1e-6, 1.0, 1e6], dtype=dtype, requires_grad=True)
        for v in (0, 0.5, 1, 2047.5, 5000):
            out = log_iv(v, x) + iv_ratio(v + 1, x) + iv_ratio_complement(v + 1, x)
            (g,) = torch.autograd.grad(out.sum(), x)
            assert torch.isfinite(out).all() and torch.isfinite(g).all(), (dtype, v)


def test_gradcheck_float64():
    x = torch.tensor([1e-3, 0.7, 2.5, 40.0, 3e3], dtype=torch.float64, requires_grad=True)
    for v in (0, 1.5, 12.0, 64.0):
        assert torch.autograd.gradcheck(lambda t, v=v: log_iv(v, t), (x,))
        assert torch.autograd.gradcheck(lambda t, v=v: log_ive(v, t), (x,))
        assert torch.autograd.gradcheck(lambda t, v=v: iv_ratio(v, t), (x,))
        assert torch.autograd.gradcheck(lambda t, v=v: iv_ratio_complement(v, t), (x,))
    # second derivative of log I_v (its backward is itself differentiable)
    assert torch.autograd.gradgradcheck(lambda t: log_iv(3.0, t), (x,))


def test_tensor_orders_broadcast_and_match_scalars():
    v = torch.tensor([[0.0], [2.5], [30.0], [800.0]], dtype=torch.float64)
    x = torch.logspace(-4, 4, 9, dtype=torch.float64)
    out = log_iv(v, x)
    assert out.shape == (4, 9)
    for i, vi in enumerate(v.flatten().tolist()):
        torch.testing.assert_close(out[i], log_iv(vi, x), rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(iv_ratio(v, x)[i], iv_ratio(vi, x), rtol=1e-13, atol=0)


def test_dtypes_and_inputs():
    assert log_iv(1, torch.tensor([1.0], dtype=torch.float64)).dtype == torch.float64
    assert iv_ratio(1, torch.tensor([1.0])).dtype == torch.float32
    half = log_iv(1, torch.tensor([1.0], dtype=torch.float16))
    assert half.dtype == torch.float16
    assert math.isclose(log_iv(1, 2.0).item(), math.log(float(mp.besseli(1, 2))), rel_tol=1e-6)
    with pytest.raises(ValueError, match="order v"):
        log_iv(-1, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="not differentiable in the order"):
        log_iv(torch.tensor(1.0, requires_grad=True), torch.tensor([1.0]))
    with pytest.raises(TypeError):
        log_iv("1", torch.tensor([1.0]))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 5e-5)])
def test_ratio_derivative_against_mpmath(dtype, tol):
    """``iv_ratio_derivative`` is ``R_v'`` (it falls as (2v - 1) / (2 x^2): no cancellation)
    and not itself differentiable."""
    x = torch.tensor([1e-4, 0.5, 2.0, 30.0, 1e4], dtype=dtype)
    for v in (0.5, 4.5, 50):
        got = iv_ratio_derivative(v, x)
        assert got.dtype == dtype and not got.requires_grad
        for xi, gi in zip(x.tolist(), got.tolist()):
            ref = mp.diff(lambda t, v=v: mp.besseli(v, t) / mp.besseli(v - 1, t), mp.mpf(xi))
            if v == 0.5:  # sech^2(x): exponentially small, only absolutely accurate
                assert abs(gi - float(ref)) <= 10 * torch.finfo(dtype).eps, (xi, gi)
            else:
                assert _rel(gi, ref) < tol, (v, xi, gi, ref)


@pytest.mark.parametrize("m", [3, 10, 100])
def test_vmf_terms_against_mpmath(m):
    """Every Bessel quantity of the vMF on S^{m-1} from one pass, in float64: A_m, 1 - A_m,
    A_m', the scaled log normaliser, and its exact small-kappa form where ``small``."""
    kappa = torch.tensor([1e-3, 1.5, 2.0, 2.5, 40.0, 3e3], dtype=torch.float64)
    t = vmf_terms(m, kappa)
    assert t.small.tolist() == [k <= 2 for k in kappa.tolist()]
    for i, k in enumerate(kappa.tolist()):
        K, h = mp.mpf(k), mp.mpf(m) / 2
        a = mp.besseli(h, K) / mp.besseli(h - 1, K)
        ell = mp.loggamma(h) + (h - 1) * mp.log(2 / K) + mp.log(mp.besseli(h - 1, K))
        assert _rel(t.A[i].item(), a) < 1e-12 and _rel(t.comp[i].item(), 1 - a) < 1e-11
        assert _rel(t.dA[i].item(), 1 - a**2 - (m - 1) * a / K) < 1e-10
        assert _rel(t.lnorm[i].item(), ell - K) < 1e-12
        if k <= 2:  # the series form keeps its relative precision as ell -> kappa^2 / (2m)
            assert _rel(t.ell_small[i].item(), ell) < 1e-12
