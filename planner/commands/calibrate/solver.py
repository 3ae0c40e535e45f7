"""A generic solver: projected Levenberg-Marquardt for box-bounded least squares, as every stage
of `planner calibrate` uses it (planner.commands.calibrate.fit, .network, .kernels, .moe)."""

from __future__ import annotations

import numpy as np


def levenberg_marquardt(
    residual, u: np.ndarray, lower: np.ndarray, upper: np.ndarray, max_iterations: int = 200
) -> tuple[np.ndarray, float]:
    """Minimise |residual(u)|^2 within the box [lower, upper]; returns (u, cost). A parameter
    on a bound that the gradient pushes outwards is held there (projected steps).

    The arithmetic avoids BLAS and LAPACK (no `@`, no `np.linalg`): their kernels differ by
    processor (OPENBLAS_CORETYPE), and where the loss is nearly flat in a constant, the last-bit
    differences move where the fit stops. Elementwise numpy and a small elimination give the same
    bits everywhere, so `planner calibrate` reproduces a preset on any machine."""
    r = residual(u)
    cost = _dot(r, r)
    damping = 1e-3
    for _ in range(max_iterations):
        h = 1e-6 * (1.0 + np.abs(u)) * np.where(u >= upper, -1.0, 1.0)
        probes = u[:, None] + np.diag(h)  # column j: u with u[j] moved by h[j]
        jacobian = (residual(probes) - r[:, None]) / h
        gradient = (jacobian * r[:, None]).sum(axis=0)
        free = ~(((u <= lower) & (gradient > 0)) | ((u >= upper) & (gradient < 0)))
        J, g = jacobian[:, free], gradient[free]
        normal = (J[:, :, None] * J[:, None, :]).sum(axis=0)
        while True:
            step = np.zeros_like(u)
            step[free] = _solve(normal + damping * np.diag(np.diag(normal) + 1e-12), -g)
            trial = np.clip(u + step, lower, upper)
            r_trial = residual(trial)
            cost_trial = _dot(r_trial, r_trial)
            if cost_trial < cost:
                break
            damping *= 4.0
            if damping > 1e10:
                return u, cost
        gain = cost - cost_trial
        u, r, cost = trial, r_trial, cost_trial
        damping = max(damping / 3.0, 1e-12)
        if gain <= 1e-9 * cost:
            break
    return u, cost


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b))


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with a x = b, by Gaussian elimination with partial pivoting (a is small: one row and
    column per constant)."""
    a, b = a.astype(float), b.astype(float)
    n = len(b)
    for k in range(n):
        p = k + int(np.argmax(np.abs(a[k:, k])))
        a[[k, p]], b[[k, p]] = a[[p, k]], b[[p, k]]
        for i in range(k + 1, n):
            f = a[i, k] / a[k, k]
            a[i, k:] -= f * a[k, k:]
            b[i] -= f * b[k]
    x = np.zeros(n)
    for k in range(n - 1, -1, -1):
        x[k] = (b[k] - float(np.sum(a[k, k + 1 :] * x[k + 1 :]))) / a[k, k]
    return x
