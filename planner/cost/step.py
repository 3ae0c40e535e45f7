"""How a step's parts become its time: the overlap policy, one calibration knob `overlap` = f in
[0, 1] (planner.cost.costmodel has the step's parts),

    critical = local + k_a - f * min(local, k_a)
    step     = max(critical, k_a + k_w)

Compute and HBM time overlap within a kernel (a roofline): the matrix units consume operands
as HBM streams them, so a kernel takes the larger of the two. Kernels run one after another, so
their times add: a compute-bound matmul does not hide the attention core's KV-cache read, and
local_s >= max(compute_s, memory_s), equal when every kernel has the same bound (a step that
only streams weights, or only multiplies). Activation collectives (k_a) depend on
the step's own data; a share f of the shorter of local time and k_a hides under the other (the
paper's looped collective einsums): f = 0 adds them, f = 1 takes the max. Weight all-gathers
(k_w) do not depend on the step's data: weights are known ahead, so they stream
in chunks, each gathered while the previous one multiplies (the next layer's first chunk during
this layer), and cost time only when the links, which carry both kinds, are busier than the
critical path (the working set is one layer's gathered weights: planner.cost.costmodel). Ideal
clusters use f = 0; the calibrated TPU v4 preset carries the fitted f (which is 0: its
measurements show no hiding of activation collectives beyond the roofline).
Two-batch overlap (planner.cost.overlap) runs one micro-batch's collectives under the other's
kernels: f = 1, the longer chain.
"""

from __future__ import annotations

import numpy as np

BOUNDS = ("compute", "memory", "comm")


def critical_path(local_s, active_comm_s, overlap: float):
    """local + k_a - f * min(local, k_a) (see module docstring)."""
    return local_s + active_comm_s - overlap * np.minimum(local_s, active_comm_s)


def step_overlap(cal, micro_batches: int) -> float:
    """The share of the active collectives hidden under the kernels: the calibrated `overlap`, or
    1 with two-batch overlap (one micro-batch's collectives run under the other's kernels, so the
    step is the longer chain: critical_path(l, k, 1) = max(l, k))."""
    return 1.0 if micro_batches > 1 else cal.overlap


def combine(local_s, comm_s, overlap: float, prefetched_s=0.0):
    """The overlap policy (see module docstring); `comm_s` includes `prefetched_s`."""
    return step_time(critical_path(local_s, comm_s - prefetched_s, overlap), comm_s)


def step_time(critical_s, comm_s):
    """The step before overhead: the critical path, or all the traffic if it lasts longer (the
    prefetched weight gathers run under the critical path)."""
    return np.maximum(critical_s, comm_s)


def bound(compute_s, memory_s, local_s, active_s, critical_s, comm_s):
    """What sets the step (index into BOUNDS): the links when all their traffic outlasts the
    critical path or the activation collectives outlast the local time; else compute or HBM,
    whichever total is larger (the step's compute against its memory seconds; explain's kernels
    line says how much kernels of different bounds add on top)."""
    local = np.where(compute_s >= memory_s, 0, 1)
    comm = (comm_s > critical_s) | (active_s > local_s)
    return np.where(comm, 2, local)
