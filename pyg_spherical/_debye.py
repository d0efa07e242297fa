"""Coefficients of Debye's uniform asymptotic expansion of I_v (DLMF 10.41).

Generated once at import with exact rational arithmetic:

    U_0 = 1,   U_{k+1}(p) = p^2 (1 - p^2) U_k'(p) / 2 + 1/8 int_0^p (1 - 5 t^2) U_k(t) dt   (10.41.9)
    V_0 = 1,   V_k(p) = U_k(p) + p (p^2 - 1) (U_{k-1}(p) / 2 + p U_{k-1}'(p))              (10.41.11)

Returned as float tables ``C[k][i]`` = coefficient of p^i in the k-th polynomial.
"""
from fractions import Fraction
from functools import cache


def _mul(a, b):
    out = [Fraction(0)] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            out[i + j] += x * y
    return out


def _add(a, b):
    n = max(len(a), len(b))
    a = a + [Fraction(0)] * (n - len(a))
    b = b + [Fraction(0)] * (n - len(b))
    return [x + y for x, y in zip(a, b)]


def _deriv(a):
    return [i * a[i] for i in range(1, len(a))] or [Fraction(0)]


def _integ(a):
    return [Fraction(0)] + [c / (i + 1) for i, c in enumerate(a)]


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
