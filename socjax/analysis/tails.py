"""The large-|dw| tail: Gaussian, exponential or stretched exponential, compared by likelihood.

All three are one family, density ~ exp(-(x/tau)^beta) on [c, inf): beta = 2 is the Gaussian
(sigma = tau / sqrt 2), beta = 1 the exponential, beta free the stretched exponential. Its
survival function is proportional to the upper incomplete gamma function Gamma(1/beta, (x/tau)^beta),
so binned probabilities are exact. Fits are binned maximum likelihood on a `LogHist`
(100 bins per decade by default), from the crossover c to the last populated bin. The paper
expects beta = 2; socjax reports which model wins (AIC) and never assumes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from socjax.analysis.loghist import LogHist
from socjax.analysis.powerlaw import _log_diff_exp, vuong


def _log_gammaincc(s, y):
    """log of the regularized upper incomplete gamma Q(s, y), stable for large y."""
    q = special.gammaincc(s, y)
    with np.errstate(divide="ignore"):
        direct = np.log(q)
    yy = np.maximum(y, 1e-300)
    with np.errstate(invalid="ignore", divide="ignore"):  # the series is only used where q underflows
        asym = (s - 1) * np.log(yy) - yy + np.log1p((s - 1) / yy + (s - 1) * (s - 2) / yy**2) - special.gammaln(s)
    return np.where(q > 1e-250, direct, asym)


def logp_bins(e, tau, beta):
    """log probability of bins [e_k, e_k+1) for density ~ exp(-(x/tau)^beta) on [e_0, inf)."""
    log_s = _log_gammaincc(1.0 / beta, (e / tau) ** beta)
    return _log_diff_exp(log_s[:-1], log_s[1:]) - log_s[0]


@dataclass
class TailFit:
    xmin: float
    xmax: float
    n: int
    gaussian: dict  # sigma, loglik, aic
    exponential: dict  # scale, loglik, aic
    stretched: dict  # tau, beta, loglik, aic
    winner: str
    loglik_ratio_gaussian_vs_exponential: float
    p_gaussian_vs_exponential: float
    p_stretched_vs_gaussian: float  # Wilks, 1 dof: does freeing beta beat beta = 2?

    def to_json(self) -> dict:
        return dict(self.__dict__)


def fit(h: LogHist, c_index: int, min_count: int = 100) -> TailFit | None:
    """Fit the three tail models to the bins from edge `c_index` up; None if fewer than
    min_count samples lie there."""
    nz = np.flatnonzero(h.counts)
    if nz.size == 0 or nz[-1] < c_index:
        return None
    last = nz[-1] + 1
    counts = h.counts[c_index:last]
    n = counts.sum()
    if n < min_count:
        return None
    e = h.grid.edges()[c_index : last + 1]
    scale0 = np.log(np.sqrt(np.dot(counts, (0.5 * (e[:-1] + e[1:])) ** 2) / n))

    def nll(log_tau, beta):
        return -float(np.dot(counts, logp_bins(e, np.exp(log_tau), beta)))

    def fit_fixed(beta):
        res = optimize.minimize_scalar(lambda lt: nll(lt, beta), bounds=(scale0 - 12, scale0 + 6),
                                       method="bounded", options=dict(xatol=1e-9))
        return res.x, -res.fun

    lt_g, ll_g = fit_fixed(2.0)
    lt_e, ll_e = fit_fixed(1.0)
    start = [lt_g, 2.0] if ll_g >= ll_e else [lt_e, 1.0]
    res = optimize.minimize(lambda p: nll(p[0], p[1]), start, method="Nelder-Mead",
                            bounds=[(scale0 - 12, scale0 + 6), (0.1, 6.0)],
                            options=dict(xatol=1e-8, fatol=1e-8, maxiter=4000))
    lt_s, beta_s, ll_s = res.x[0], res.x[1], -res.fun
    if ll_s < max(ll_g, ll_e):  # the family nests both: never report a worse stretched fit
        lt_s, beta_s, ll_s = (lt_g, 2.0, ll_g) if ll_g >= ll_e else (lt_e, 1.0, ll_e)
    models = dict(
        gaussian=dict(sigma=float(np.exp(lt_g) / np.sqrt(2)), loglik=ll_g, aic=2 - 2 * ll_g),
        exponential=dict(scale=float(np.exp(lt_e)), loglik=ll_e, aic=2 - 2 * ll_e),
        stretched=dict(tau=float(np.exp(lt_s)), beta=float(beta_s), loglik=ll_s, aic=4 - 2 * ll_s),
    )
    winner = min(models, key=lambda k: models[k]["aic"])
    r, p = vuong(counts, logp_bins(e, np.exp(lt_g), 2.0), logp_bins(e, np.exp(lt_e), 1.0))
    p_wilks = float(stats.chi2.sf(max(2 * (ll_s - ll_g), 0.0), 1))
    return TailFit(float(e[0]), float(e[-1]), int(round(n)), models["gaussian"], models["exponential"],
                   models["stretched"], winner, r, p, p_wilks)
