"""Coefficients of the asymptotic series of :mod:`pyg_spherical.special` and the Power Spherical.

Debye's uniform asymptotic expansion of I_v (DLMF 10.41), generated with exact rational
arithmetic:

    U_0 = 1,   U_{k+1}(p) = p^2 (1 - p^2) U_k'(p) / 2 + 1/8 int_0^p (1 - 5 t^2) U_k(t) dt   (10.41.9)
    V_0 = 1,   V_k(p) = U_k(p) + p (p^2 - 1) (U_{k-1}(p) / 2 + p U_{k-1}'(p))              (10.41.11)

Returned as float tables ``C[k][i]`` = coefficient of p^i in the k-th polynomial.

Stirling's series (DLMF 5.11.1), ``lgamma(x) - (x - 1/2) log x + x - log(2 pi) / 2
= sum_k B_{2k} / (2k (2k - 1)) x^{1 - 2k}``, and its derivatives (:func:`stirling_series`).
"""
from fractions import Fraction
from functools import cache
from itertools import zip_longest


def _mul(a, b):
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _add(a, b):
    return [x + y for x, y in zip_longest(a, b, fillvalue=Fraction(0))]


def _deriv(a):
    return [i * a[i] for i in range(1, len(a))] or [Fraction(0)]


def _integ(a):
    return [Fraction(0)] + [c / (i + 1) for i, c in enumerate(a)]


#: the Bernoulli numbers B_2, B_4, ..., B_14 (seven terms of Stirling's series: < 1e-16
#: relative truncation error from x = 10 on)
_BERNOULLI = (Fraction(1, 6), Fraction(-1, 30), Fraction(1, 42), Fraction(-1, 30),
              Fraction(5, 66), Fraction(-691, 2730), Fraction(7, 6))


@cache
def stirling_series(derivative: int = 0) -> tuple[float, ...]:
    """Coefficients ``c_k`` (``k = 1..7``) of the ``derivative``-th derivative of the Stirling
    correction of ``lgamma``: ``sum_k c_k x^(1 - 2k - derivative)`` (0: lgamma, 1: digamma,
    2: trigamma, each less its leading terms)."""
    out = []
    for k, b in enumerate(_BERNOULLI, 1):
        c = b / (2 * k * (2 * k - 1))
        for j in range(derivative):
            c *= -(2 * k - 1 + j)
        out.append(float(c))
    return tuple(out)


@cache
def debye_tables(K: int):
    """Float tables (U, V - U) of the Debye polynomials U_k, V_k - U_k for k = 0..K."""
    U = [[Fraction(1)]]
    for _ in range(K):
        u = U[-1]
        t1 = _mul([Fraction(0), Fraction(0), Fraction(1, 2), Fraction(0), Fraction(-1, 2)], _deriv(u))
        t2 = [c / 8 for c in _integ(_mul([Fraction(1), Fraction(0), Fraction(-5)], u))]
        U.append(_add(t1, t2))
    VmU = [[Fraction(0)]]
    for k in range(1, K + 1):
        u = U[k - 1]
        inner = _add([c / 2 for c in u], _mul([Fraction(0), Fraction(1)], _deriv(u)))
        VmU.append(_mul([Fraction(0), Fraction(-1), Fraction(0), Fraction(1)], inner))
    width = 3 * K + 2
    pad = lambda c: [float(x) for x in c] + [0.0] * (width - len(c))
    return tuple(tuple(pad(c)) for c in U), tuple(tuple(pad(c)) for c in VmU)
