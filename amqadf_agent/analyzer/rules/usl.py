"""The Universal Scalability Law fit the thread rules cap a pool with (Gunther's USL).

``X(N) = lambda N / (1 + alpha (N-1) + beta N (N-1))``: throughput ``X`` at concurrency ``N`` grows
linearly (``lambda``), loses to contention (``alpha``) and, past the peak ``N* = sqrt((1-alpha)/beta)``,
falls to coherence costs (``beta``). The fit is linear least squares on ``N/X = 1/lambda +
(alpha/lambda)(N-1) + (beta/lambda)N(N-1)``, solved without numpy (the analyzer's dependencies stay
small).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["UslFit", "fit_usl"]


@dataclass(frozen=True, slots=True)
class UslFit:
    """Universal Scalability Law parameters: ``X(N) = lam*N / (1 + alpha(N-1) + beta*N(N-1))``."""

    lam: float
    alpha: float
    beta: float

    @property
    def peak(self) -> float | None:
        """``N* = sqrt((1 - alpha) / beta)``; None without retrograde term (beta <= 0) or alpha >= 1."""
        if self.beta <= 0 or self.alpha >= 1:
            return None
        return math.sqrt((1 - self.alpha) / self.beta)

    def throughput(self, n: float) -> float:
        return self.lam * n / (1 + self.alpha * (n - 1) + self.beta * n * (n - 1))


def _solve3(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting for a 3x3 system; None when singular."""
    m = [[*row[:], rhs] for row, rhs in zip(a, b, strict=True)]
    n = 3
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-12:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            factor = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= factor * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def fit_usl(samples: Sequence[tuple[float, float]]) -> UslFit | None:
    """Fit the USL to ``(concurrency N, throughput X)`` samples; None with fewer than three distinct N
    (rounded to 0.1) or a degenerate fit (lambda <= 0)."""
    points = [(n, x) for n, x in samples if n > 0 and x > 0]
    if len({round(n, 1) for n, _ in points}) < 3:
        return None
    # N/X = a + b (N-1) + c N(N-1): normal equations of the linear least squares.
    ata = [[0.0] * 3 for _ in range(3)]
    aty = [0.0] * 3
    for n, x in points:
        row = (1.0, n - 1, n * (n - 1))
        y = n / x
        for i in range(3):
            aty[i] += row[i] * y
            for j in range(3):
                ata[i][j] += row[i] * row[j]
    solution = _solve3(ata, aty)
    if solution is None or solution[0] <= 0:
        return None
    a, b, c = solution
    return UslFit(lam=1 / a, alpha=b / a, beta=c / a)
