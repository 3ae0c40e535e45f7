"""Two-batch overlap: a step as two micro-batches, one's collectives under the other's kernels
(planner.cost.costmodel calls `two_batch` for a candidate whose expert layout has micro_batches 2,
and `timing` takes the longer of the two chains)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np


def two_batch(
    layer_costs,
    model,
    cluster,
    workload,
    candidate,
    batch,
    formats=None,
    *,
    first=True,
    last=True,
    shared: dict | None = None,
    grid=None,
):
    """Two-batch overlap (DeepSeek-V3 report section 3.4; SGLang's two-batch overlap): the step's
    B sequences run as two micro-batches of ceil(B/2), and while one's dispatch and combine (every
    collective) cross the links, the other's attention and expert matmuls run. Each micro-batch
    runs every kernel and reads the weights again (both micro-batches' kernels are summed: the
    compute chain); each runs every collective (the link chain, `timing`); the step is the longer
    chain. The per-layer fixed time is paid once per layer (the two micro-batches' layers
    interleave), the per-kernel time per kernel launched (twice as many), the per-token time for
    the step's tokens as without overlap. Memory, MFU's FLOPs and tokens are the whole batch's."""
    one = replace(
        candidate, experts=replace(candidate.experts, micro_batches=1, name=candidate.experts.name.removesuffix("+tbo"))
    )
    full = layer_costs(model, cluster, workload, one, batch, formats, first=first, last=last, shared=shared, grid=grid)
    micro = (np.asarray(batch, dtype=np.int64) + 1) // 2
    half = layer_costs(
        model,
        cluster,
        workload,
        one,
        micro,
        formats,
        first=first,
        last=last,
        grid=grid,
        shared=None if shared is None else shared.setdefault("two-batch micro-batch", {}),
    )
    mb = 2
    return replace(
        full,
        candidate=candidate,
        terms=half.terms,
        collective_bytes=half.collective_bytes,
        repeats=mb * half.repeats,
        prefetched=half.prefetched,
        compute_s=mb * half.compute_s,
        memory_s=mb * half.memory_s,
        local_s=mb * half.local_s,
        kernels=mb * half.kernels,
        overhead_s=full.overhead_s + (mb * half.kernels - full.kernels) * cluster.calibration.kernel_overhead_s,
        micro_batches=mb,
    )
