"""KL divergences registered with :func:`torch.distributions.kl_divergence`: one function per
pair of families, and the only place the library computes a KL."""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import kl_divergence, register_kl

from .._utils import compute_dtype
from ..special import iv_ratio_complement
from .hyperspherical_uniform import HypersphericalUniform
from .power_spherical import PowerSpherical
from .product import ProductOfSpheres
from .von_mises_fisher import VonMisesFisher

__all__: list[str] = []


def _check_dims(p, q):
    if p.event_shape != q.event_shape:
        raise ValueError(f"KL between distributions on different spheres: event shapes "
                         f"{tuple(p.event_shape)} and {tuple(q.event_shape)}.")


@register_kl(VonMisesFisher, HypersphericalUniform)
@register_kl(PowerSpherical, HypersphericalUniform)
def _kl_sphere_uniform(p: VonMisesFisher | PowerSpherical, q: HypersphericalUniform):
    r"""Independent of ``mu``, the closed form of each family (``p._kl_to_uniform()``): vMF,
    paper eq. 5, ``kappa A_m(kappa) + log C_m(kappa) + log|S^{m-1}|`` (Bessel functions);
    Power Spherical, ``log|S^{m-1}| - H(p)`` (lgamma / digamma)."""
    _check_dims(p, q)
    kl = p._kl_to_uniform()
    return kl.expand(torch.broadcast_shapes(kl.shape, q.batch_shape))


@register_kl(VonMisesFisher, VonMisesFisher)
def _kl_vmf_vmf(p: VonMisesFisher, q: VonMisesFisher):
    r"""Closed form ``E_p[log p - log q]``:

    ``log C(kp) - log C(kq) + A(kp) (kp - kq mu_q^T mu_p)``, written as
    ``L(kq) - L(kp) - kp (1 - A_p) + kq ((1 - mu_q^T mu_p) + (1 - A_p) mu_q^T mu_p)`` with
    ``L = log(Gamma(m/2)(2/k)^{m/2-1} I_{m/2-1}(k)) - k`` so that no ``O(kappa)`` terms cancel.
    """
    _check_dims(p, q)
    m = p.event_shape[0]
    out = torch.promote_types(p.loc.dtype, q.loc.dtype)
    work = compute_dtype(out)  # float16 / bfloat16 are computed in float32
    kp, kq, loc_p, loc_q = (t.to(work) for t in (p.concentration, q.concentration, p.loc, q.loc))
    comp_p = iv_ratio_complement(m / 2, kp)
    cos = (loc_p * loc_q).sum(-1)
    one_minus_cos = 0.5 * ((loc_p - loc_q) ** 2).sum(-1)
    Lp, Lq = p._log_normalizer_scaled(kp), q._log_normalizer_scaled(kq)
    return (Lq - Lp - kp * comp_p + kq * (one_minus_cos + comp_p * cos)).to(out)


@register_kl(HypersphericalUniform, HypersphericalUniform)
def _kl_uniform_uniform(p: HypersphericalUniform, q: HypersphericalUniform):
    _check_dims(p, q)
    return torch.zeros(torch.broadcast_shapes(p.batch_shape, q.batch_shape), dtype=p.dtype,
                       device=p.device)


@register_kl(ProductOfSpheres, ProductOfSpheres)
def _kl_product_product(p: ProductOfSpheres, q: ProductOfSpheres) -> Tensor:
    """The sum over factors of the factors' KL divergences (independent factors)."""
    if p.factor_dim != q.factor_dim or p.factors != q.factors:
        raise ValueError("KL between products of spheres with different factors.")
    return kl_divergence(p.base, q.base).sum(-1)
