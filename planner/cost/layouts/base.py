"""What a layout reports: terms (einsums, HBM reads) and collectives, per chip, per layer.

Quantities are numpy arrays over the batch axis (or plain floats when they do not depend on it).
Logical mesh axes are written as strings of letters: "x", "yz", "xyz"; "" is no axis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import cache

import numpy as np

Quantity = np.ndarray | float


class CollectiveKind(Enum):
    """A collective and how its `bytes_per_chip` is measured (the paper's Figure 3 convention:
    the per-chip size of the larger side, without the (K-1)/K factor)."""

    ALL_GATHER = "all-gather"  # bytes: per-chip output
    REDUCE_SCATTER = "reduce-scatter"  # bytes: per-chip input
    ALL_REDUCE = "all-reduce"  # bytes: per-chip input (= reduce-scatter + all-gather)
    ALL_TO_ALL = "all-to-all"  # bytes: per-chip shard sent and received


@dataclass(frozen=True, kw_only=True)
class Routed:
    """A dispatch or combine all-to-all of routed tokens: each token goes to `top_k` of
    `n_experts` experts spread evenly over the collective's chips; its `bytes_per_chip` counts
    every copy (T k E bytes). The network prices it as DeepEP's kernels move it where the cluster
    has their constants (planner.cost.dispatch, planner.cost.network): `low_latency` (decode)
    or normal (prefill) kernels; `node_limit`: at most that many nodes per token (0: no limit)."""

    top_k: int
    n_experts: int
    low_latency: bool
    node_limit: int = 0


@dataclass(frozen=True, kw_only=True)
class Collective:
    kind: CollectiveKind
    axes: str  # logical mesh axes it runs over, e.g. "yz"
    bytes_per_chip: Quantity
    # Prefetched: it moves weights, which do not depend on the step's activations, so it streams
    # ahead of the einsums that use them and runs under compute; activation collectives cannot.
    prefetched: bool = False
    routed: Routed | None = None  # a dispatch/combine of routed tokens (an all-to-all)


@dataclass(frozen=True, kw_only=True)
class Term:
    """One row of a layer's dataflow: an einsum (FLOPs, weight bytes read), an HBM read, or a
    collective. `notation` is the book's sharding syntax, printed by `explain`: a string, or a
    zero-argument callable that builds it (the search never prints it; `text` builds it)."""

    name: str
    notation: str | Callable[[], str]
    flops: Quantity = 0.0
    hbm_bytes: Quantity = 0.0
    collective: Collective | None = None
    # An einsum's matmul size: rows (tokens) of its per-chip activation operand, the m of an
    # (m, k) x (k, n) matmul; sets its efficiency (Calibration.matmul_half_rows). None: no matmul.
    rows: Quantity | None = None
    layers: int | None = None  # the layers this row runs on, when not all (local or global attention)
    # An einsum of activations only (QK, AV): it runs at the bf16 peak whatever the weights'
    # format; every other einsum multiplies weights at the weight format's peak.
    activation_matmul: bool = False
    # Matmul kernels the einsum launches per step (fused Q, K, V then O: 2), each paying
    # Calibration.kernel_overhead_s; counted for einsums with rows only.
    kernels: int = 1
    # Rows that run as one kernel share a name here (the attention core: QK, AV and the KV-cache
    # read it streams); "": the row is its own kernel. Compute and HBM time overlap only within a
    # kernel (planner.cost.costmodel).
    kernel: str = ""
    # A grouped GEMM (the routed experts: one kernel over every local expert, `rows` per expert):
    # it runs at the cluster's grouped-GEMM rate where it has one (planner.cost.kernels).
    grouped: bool = False

    @property
    def text(self) -> str:
        """The notation as printed."""
        return notation_text(self.notation)


@dataclass(frozen=True, kw_only=True)
class LayerCost:
    """Per chip, per layer: dataflow rows plus what must be resident in HBM."""

    terms: tuple[Term, ...]
    weight_bytes_stored: float  # resident weights per chip for this layer (capacity)
    kv_bytes_stored: Quantity = 0.0  # resident KV cache per chip for this layer (capacity)
    working_bytes: Quantity = 0.0  # transient buffers (gathered weights) per chip


def notation_text(notation: str | Callable[[], str]) -> str:
    """A notation built now, if it was left to `explain` as a callable."""
    return notation() if callable(notation) else notation


def collective_term(
    name: str,
    notation: str | Callable[[], str],
    kind: CollectiveKind,
    axes: str,
    bytes_per_chip,
    prefetched: bool = False,
    routed: Routed | None = None,
    layers=None,
) -> Term | None:
    """A dataflow row for a collective, or None when it runs over no axis."""
    if not axes:
        return None
    return Term(
        name=name,
        notation=lambda: f"{kind.value}({axes}) {notation_text(notation)}",
        collective=Collective(
            kind=kind, axes=axes, bytes_per_chip=bytes_per_chip, prefetched=prefetched, routed=routed
        ),
        layers=layers,
    )


def size(sizes: dict[str, int], axes: str) -> int:
    """Number of chips spanned by logical axes `axes` on a mesh with logical sizes `sizes`."""
    out = 1
    for axis in axes:
        out *= sizes[axis]
    return out


def ceil_div(a: Quantity, b) -> Quantity:
    """ceil(a / b) for non-negative integers, arrays among them (padding a batch to whole
    shards; `b` an int, or an array of many meshes' shard counts)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return -(-np.asarray(a) // b)
    return float(-(-int(a) // b))


def stacked(values: list[Quantity], shape: tuple[int, ...]) -> np.ndarray:
    """(values, *shape): each value (an array broadcasting to `shape`, or a number) as floats."""
    out = np.empty((len(values), *shape))
    for i, value in enumerate(values):
        out[i] = value
    return out


@dataclass(frozen=True, kw_only=True)
class StepShape:
    """The shape of one step of one phase; `batch` is the swept numpy axis."""

    batch: np.ndarray  # B, int64
    tokens: int  # L: tokens per sequence in this step (prefill: input tokens; decode: 1)
    attended: float  # mean KV length a query attends to (prefill: causal (L+1)/2; decode: S)
    cached: int  # S: KV-cache length held per sequence
    reads_cache: bool  # decode reads the whole KV cache every step; prefill writes it


def windowed(shape: StepShape, window: int) -> StepShape:
    """The step as a local-attention layer with a `window`-token sliding window sees it: query i
    (1-based) of the step's L sits at position p = S - L + i and attends to min(p, window) tokens;
    the cache holds at most `window` tokens per sequence."""
    if window >= shape.cached:
        return shape
    L, before = shape.tokens, shape.cached - shape.tokens  # tokens cached before this step
    top = min(before + L, window)
    below = (top * (top + 1) - before * (before + 1)) / 2 if top > before else 0.0
    capped = max(0, before + L - max(before, window))  # queries that see a full window
    return StepShape(
        batch=shape.batch,
        tokens=L,
        attended=(below + window * capped) / L,
        cached=window,
        reads_cache=shape.reads_cache,
    )


ALL_AXES = "xyz"


def sharded(dim: str, axes: str) -> str:
    """A dimension with the axes it is split over, the book's way: `E_x`; bare `E` if none."""
    return f"{dim}_{axes}" if axes else dim


def tensor(*dims: tuple[str, str]) -> str:
    """An activation's sharding from (dimension, axes) pairs: `BLE_xyz`, or spaced when a
    subscript is not last, `B_x L E_yz`."""
    spaced = any(axes for _, axes in dims[:-1])
    return (" " if spaced else "").join(sharded(dim, axes) for dim, axes in dims)


def activation(batch_axes: str, *dims: tuple[str, str]) -> str:
    """Tokens `B_b L` followed by `dims`: activation("x", ("E", "yz")) is `B_x L E_yz`."""
    return tensor(("B", batch_axes), ("L", ""), *dims)


def partial_sum(axes: str) -> str:
    """`{U_x}`: a partial sum still to be reduced over x (empty if over no axis)."""
    return f"{{U_{axes}}}" if axes else ""


@cache  # axis groups are few: letters of "xyz"
def union(*groups: str) -> str:
    """The axes of several groups, in mesh order."""
    return "".join(a for a in ALL_AXES if any(a in g for g in groups))


@cache
def complement(axes: str) -> str:
    return "".join(a for a in ALL_AXES if a not in axes)
