"""What `planner calibrate` fits against: the candidates a measured point may have used
(`allowed`), and every such candidate as the cost model's parts at ideal constants (`Terms`),
so that any set of the eight constants prices them by a few array operations (see
planner.commands.calibrate.fit for the formula)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from planner.config.measurements import ATTENTION_CHOICES, BEST, FFN_CHOICES, Measurement
from planner.config.stages import offered_text
from planner.cost.costmodel import Candidate, Evaluation, combine, evaluate, step_kernels
from planner.search.search import candidates
from planner.specs.hardware import Calibration, Cluster
from planner.specs.plan import Plan, SearchSpace
from planner.units import fmt_chips


def measurement_plan(cluster: Cluster, m: Measurement, ffn: tuple[str, ...], attention: tuple[str, ...]) -> Plan:
    """The search of one measured point's setting over the given layouts."""
    return Plan(
        model=m.model,
        cluster=cluster,
        workload=m.workload,
        space=SearchSpace(
            phases=(m.phase,), chips=(m.chips,), batches=(m.batch,), weights=(m.weights,), ffn=ffn, attention=attention
        ),
    )


def allowed(cluster: Cluster, m: Measurement) -> list[Evaluation]:
    """The cost model's evaluation of every candidate a measurement may have used that fits in
    HBM (an error naming the row if there is none)."""
    if not cluster.topology.forms(m.chips):
        raise m.error(
            "chips", f"{cluster.name} cannot form {fmt_chips(m.chips)}", hint=f"it offers {offered_text(cluster)}"
        )
    plan = measurement_plan(cluster, m, FFN_CHOICES[m.ffn], ATTENTION_CHOICES[m.attention])
    found = candidates(plan, m.phase, chips=(m.chips,))
    if not found and m.chips == 1:  # one chip: every layout is the same single-chip layout
        found = candidates(
            measurement_plan(cluster, m, FFN_CHOICES[BEST], ATTENTION_CHOICES[BEST]), m.phase, chips=(1,)
        )
    if not found:
        raise m.error(
            "ffn",
            f"{m.ffn}+{m.attention} does not apply on {fmt_chips(m.chips)} of "
            f"{cluster.name} (its axis groups would be trivial)",
        )
    evs = [evaluate(m.model, cluster, m.workload, c, np.array([m.batch])) for c in found]
    fits = [ev for ev in evs if ev.hbm_bytes[0] <= cluster.chip.usable_hbm_bytes]
    if not fits:
        raise m.error(
            "batch", f"{m.layout} at batch {m.batch} does not fit in HBM on {m.chips} chips of {cluster.name}"
        )
    return fits


@dataclass(frozen=True)
class Terms:
    """Every allowed candidate of every point, as the cost model's parts at ideal constants;
    `start[i]` is where point i's candidates begin. Collectives are split into the activation
    ones and the prefetched weight all-gathers, which `combine` treats differently. Per kernel
    (columns; rows with fewer kernels padded with 0, which adds nothing): compute, one more
    row's compute, and memory seconds."""

    compute_s: np.ndarray  # (rows, kernels)
    row_s: np.ndarray  # (rows, kernels): compute time of one more row of the kernel's einsums (x m_half)
    memory_s: np.ndarray  # (rows, kernels)
    comm_s: np.ndarray  # activation collectives
    collectives: np.ndarray  # their ring steps per step, which pay collective_latency_s
    prefetch_s: np.ndarray  # prefetched weight all-gathers
    prefetches: np.ndarray  # their ring steps
    layers: np.ndarray  # layers per step that pay layer_overhead_s
    steps: np.ndarray  # latency_s / step_s
    start: np.ndarray
    row_candidates: tuple[Candidate, ...]  # the candidate of each row

    @staticmethod
    def build(cluster: Cluster, points: tuple[Measurement, ...]) -> Terms:
        ideal = replace(cluster, calibration=Calibration())
        one_row = replace(cluster, calibration=Calibration(matmul_half_rows=1.0))
        rows, kernels, start, kept = [], [], [], []
        for m in points:
            start.append(len(rows))
            evs = allowed(ideal, m)
            batch = np.array([m.batch])
            here_kernels = []
            for e in evs:
                ideal_k, one_k = (step_kernels(m.model, c, m.workload, e.candidate, batch) for c in (ideal, one_row))
                here_kernels.append(
                    [(_scalar(c), _scalar(p) - _scalar(c), _scalar(mem)) for (c, mem), (p, _) in zip(ideal_k, one_k)]
                )
            here = np.array(
                [
                    (
                        e.comm_s[0] - e.prefetched_s[0],
                        e.ring_steps - e.prefetched_ring_steps,
                        e.prefetched_s[0],
                        e.prefetched_ring_steps,
                        m.model.n_layers,
                        e.latency_s[0] / e.step_s[0],
                    )
                    for e in evs
                ],
                dtype=float,
            )
            parts = _padded(here_kernels)
            keep = _undominated(np.concatenate([parts.reshape(len(evs), -1), here], axis=1))
            rows.extend(here[keep])
            kernels.extend(here_kernels[i] for i in keep)
            kept.extend(evs[i].candidate for i in keep)
        per_kernel = _padded(kernels)
        a = np.array(rows, dtype=float)
        return Terms(*per_kernel.transpose(2, 0, 1), *a.T, start=np.array(start), row_candidates=tuple(kept))

    def _rows(self, constants: np.ndarray) -> np.ndarray:
        """Each row's latency [s]: (rows,) for one set of constants, (k, rows) for a (8, k) array."""
        matmul, hbm, network, t_collective, t_layer, overlap, weights, half_rows = (
            np.asarray(c)[..., None] for c in constants
        )
        active = self.comm_s / network + self.collectives * t_collective
        prefetched = self.prefetch_s / weights + self.prefetches * t_collective
        per_row, per_matmul, per_hbm = (c[..., None] for c in (half_rows, matmul, hbm))  # against the kernel axis
        local = np.maximum((self.compute_s + per_row * self.row_s) / per_matmul, self.memory_s / per_hbm).sum(axis=-1)
        step = combine(local, active + prefetched, overlap, prefetched)
        return (step + self.layers * t_layer) * self.steps

    def latency(self, constants: np.ndarray) -> np.ndarray:
        """Each point's predicted latency [s] under `constants` (ordered as CONSTANTS): shape
        (points,) for one set, (points, k) for k sets given as a (8, k) array."""
        return np.minimum.reduceat(self._rows(constants), self.start, axis=-1).T

    def fastest(self, constants: np.ndarray) -> list[int]:
        """Each point's fastest row under one set of constants (ties: the first)."""
        rows = self._rows(constants)
        ends = list(self.start[1:]) + [rows.size]
        return [int(a + np.argmin(rows[a:b])) for a, b in zip(self.start, ends)]


def _padded(kernels: list) -> np.ndarray:
    """Candidates' lists of per-kernel (compute, row, memory) seconds as one (candidates, kernels,
    3) array, shorter lists padded with kernels of 0 s (which add nothing)."""
    out = np.zeros((len(kernels), max(len(k) for k in kernels), 3))
    for i, k in enumerate(kernels):
        out[i, : len(k)] = k
    return out


def _scalar(x) -> float:
    """A one-point figure (an array of one point, or the plain number 0) as a float."""
    return float(np.asarray(x).reshape(-1)[0])


def _undominated(rows: np.ndarray) -> list[int]:
    """The candidates some constants may make the fastest: `combine` grows with each of its
    parts, so a candidate no better than another in every part never wins (ties keep the first)."""
    return [
        i
        for i, row in enumerate(rows)
        if not any(np.all(other <= row) and (np.any(other < row) or j < i) for j, other in enumerate(rows) if j != i)
    ]
