"""Straight-line guides where the eye would put them: the paper reads its Figs. 2-3 by eye, so
socjax's paper-style figures draw the line a reader would draw, and say how straight it is.

`straightest(u, v, span)`: among the windows of consecutive points whose u extent is at least
`span` (the shortest such window from each start), the one whose least-squares line of v on u
has the smallest root-mean-square residual; its slope, intercept and ends, and the spread of the
local slope over it (least-squares slopes over `local` consecutive points, their min and max).
On log-log axes u = log10 |dw|, v = log10 p and span = 1 is "the straightest decade"; on the
paper's Fig. 3b axes u = dw^2, v = ln p, and span is a third of the populated dw^2 axis (the
large-|dw| stretch the eye follows there).
"""

from __future__ import annotations

import numpy as np


def _line(u: np.ndarray, v: np.ndarray) -> tuple[float, float, float]:
    """(slope, intercept, rms residual) of the least-squares line of v on u."""
    a = np.vstack([u, np.ones_like(u)]).T
    (slope, intercept), *_ = np.linalg.lstsq(a, v, rcond=None)
    return float(slope), float(intercept), float(np.sqrt(np.mean((v - (slope * u + intercept)) ** 2)))


def local_slopes(u: np.ndarray, v: np.ndarray, local: int = 5) -> np.ndarray:
    """Least-squares slopes over each run of `local` consecutive points."""
    return np.array([_line(u[i : i + local], v[i : i + local])[0] for i in range(len(u) - local + 1)])


def _best(u, v, ends, local, min_points) -> dict | None:
    best = None
    for i, j in ends:
        if j - i < min_points:
            continue
        slope, intercept, rms = _line(u[i:j], v[i:j])
        if best is None or rms < best["rms"]:
            best = dict(slope=slope, intercept=intercept, rms=rms, lo=float(u[i]), hi=float(u[j - 1]), start=i, stop=j)
    if best is not None:
        s = local_slopes(u[best["start"] : best["stop"]], v[best["start"] : best["stop"]], min(local, best["stop"] - best["start"]))
        best["local_min"], best["local_max"] = float(s.min()), float(s.max())
    return best


def straightest(u, v, span: float, local: int = 5, min_points: int = 5) -> dict | None:
    """The straightest window of the points (u, v) (u increasing) spanning at least `span` in u
    (see the module docstring): slope, intercept, rms, lo and hi (its ends in u), start and stop
    (indices, stop exclusive), local_min and local_max (the local slope's range over it). None
    when no window of at least min_points spans it."""
    u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
    ends = []
    for i in range(len(u)):
        j = int(np.searchsorted(u, u[i] + span * (1 - 1e-12)))  # the first point at least `span` beyond u[i]
        if j < len(u):
            ends.append((i, j + 1))
    return _best(u, v, ends, local, min_points)
