"""Collective time on a topology: bytes to seconds. The only place links are modelled.

Let D be a collective's `bytes_per_chip` (Figure 3's convention) and K the chips it spans.

Torus: rings along torus axes use both directions (2 links per axis); an axis without its
wraparound link (per axis: a TPU v5e 8x16 slice closes only its 16 axis) runs a line instead
of a ring, which halves that axis's bandwidth. The bandwidth W a collective gets is set by the
cluster's `bandwidth_model`, summed over axes of links per axis x link bandwidth (x 1/2 on an
axis that does not wrap):
- `chip` (the paper's model; its closed forms use one per-chip bandwidth): every collective moves
  data at the chip's full interconnect bandwidth, over every axis of the slice (270 GB/s on a
  TPU v4 3D torus), as if collectives over different axes were pipelined so that every link
  stays busy;
- `axes`: only the links of the axes the collective spans (90 GB/s for one TPU v4 axis).

    all-gather, reduce-scatter:  D (K-1)/K / W
    all-reduce:                  2 D (K-1)/K / W
    all-to-all:                  D (K-1)/K * h / W, with h = max(1, sum over axes of k_i/4),
                                 the mean ring distance a shard travels

Switched levels (GPU): each level has a per-GPU bandwidth W_l; on a fully connected level (no
switch: MI300X's Infinity Fabric, one link to each of the 7 peers) a group of k_l GPUs uses only
the links to its k_l - 1 peers, W_l(k_l) = links per peer x (k_l - 1) x link bandwidth, so a
2-GPU all-gather gets one link and an 8-GPU one all seven. A collective spanning k_l GPUs at
each level runs hierarchically, slowest level first for an all-gather (smallest data), so level l
moves D (k_l - 1) P_l / K bytes, where P_l is the product of the k of the levels done before it.
An all-to-all sends D (k_l - 1)/k_l through each level it spans.

Point-to-point send between neighbouring pipeline stages (planner.cost.pipeline): every chip
of a stage sends its shard, D bytes, to its counterpart in the next stage at once, so the send
moves D * n_s bytes (n_s the stage's chips) across the boundary between the two stages:

    send: D * n_s / W_b + collective_latency_s (one hop)

with W_b the boundary's bandwidth, one direction: the pool-to-pool transfer below between the
chips that carry it, each at the scale-out bandwidth W_out. On switched levels that is all n_s
chips (stages are whole groups of the outermost level, e.g. nodes over InfiniBand, one NIC per
GPU); on a torus, stages are slices joined face to face along their shortest axis, so only the
n_s / (shortest extent) chips of the face carry it.

Every collective also pays `collective_latency_s` per ring step (hop): sum over the axes or levels
it spans of (k_i - 1), since a ring collective is k - 1 dependent transfers (twice that for an
all-reduce); and all
bandwidths are scaled by `network_efficiency`, except those of prefetched weight all-gathers
(`Collective.prefetched`), scaled by `weight_gather_efficiency` (by default the same).

Between two pools of chips (disaggregated serving: a prefill pool hands each request's KV cache
to a decode pool), D bytes cross the scale-out network: the outermost switched level (e.g.
InfiniBand), or on a torus the links of one axis (the face two slices of a pod share; a torus
file has no data-centre network). Each chip sends its shard over its own link, so
min(senders, receivers) links carry it in parallel:  D / (min(n_send, n_recv) * W_out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.layouts.base import Collective, CollectiveKind
from planner.cost.mesh import Mesh
from planner.specs.hardware import Cluster, Switched, Torus

_PASSES = {
    CollectiveKind.ALL_GATHER: 1.0, CollectiveKind.REDUCE_SCATTER: 1.0,
    CollectiveKind.ALL_REDUCE: 2.0, CollectiveKind.ALL_TO_ALL: 1.0,
}


def ring_steps(mesh: Mesh, collective: Collective) -> int:
    """Ring steps (hops) of a collective: one per extra chip along each axis or level it spans,
    twice for an all-reduce (a reduce-scatter then an all-gather)."""
    return int(_PASSES[collective.kind]) * sum(k - 1 for _, k in mesh.pieces(collective.axes))


@dataclass(frozen=True)
class Line:
    """A collective's time along one path, as data: latency_s + (sum over the levels (or torus
    axes) it crosses of bytes x a x b / c / d x e x g / f) / efficiency. Factors of 1 and levels
    of zeros stand for steps a formula does not have, so every collective computes its seconds
    in one order of operations (the search evaluates many meshes in one numpy pass and must get
    the bits `collective_seconds` gets). A collective takes the fastest of its lines."""

    latency_s: float
    efficiency: float
    levels: tuple[tuple[float, float, float, float, float, float, float], ...]


def collective_seconds(cluster: Cluster, mesh: Mesh, collective: Collective):
    """Seconds of `collective` on `mesh`: the fastest of its `collective_lines`."""
    lines = collective_lines(cluster, mesh, collective.kind, collective.axes, collective.prefetched)
    data = np.asarray(collective.bytes_per_chip, dtype=float)
    times = []
    for line in lines:
        seconds = 0.0
        for a, b, c, d, e, g, f in line.levels:
            seconds = seconds + data * a * b / c / d * e * g / f
        times.append(seconds / line.efficiency + line.latency_s)
    return times[0] if len(times) == 1 else np.minimum.reduce(times)


def lines_seconds(factors: np.ndarray, efficiency: np.ndarray, latency_s: np.ndarray, data: np.ndarray):
    """`collective_seconds` over many collectives at once, in its order of operations: `factors`
    (..., lines, levels, 7), `efficiency` and `latency_s` (..., lines) stacked from Lines (padded
    with copies of a line), `data` the bytes per chip broadcast against (..., points)."""
    data = data[..., None, :]  # against the lines axis
    seconds = 0.0
    for j in range(factors.shape[-2]):
        a, b, c, d, e, g, f = (factors[..., j, k, None] for k in range(7))
        seconds = seconds + data * a * b / c / d * e * g / f
    times = seconds / efficiency[..., None] + latency_s[..., None]
    return times[..., 0, :] if times.shape[-2] == 1 else times.min(axis=-2)


def collective_lines(cluster: Cluster, mesh: Mesh, kind: CollectiveKind, axes: str,
                     prefetched: bool = False) -> tuple[Line, ...]:
    """The lines of a collective over `axes` of `mesh`: they depend only on the pieces it spans
    (and the slice's, for a torus), its kind and whether it is prefetched, not on its bytes."""
    pieces = mesh.pieces(axes)
    chips = 1
    for _, k in pieces:
        chips *= k
    if chips == 1:
        return (Line(latency_s=0.0, efficiency=1.0, levels=(_NO_LEVEL,)),)
    topology, cal = cluster.topology, cluster.calibration
    if isinstance(topology, Torus):
        levels = (_torus_factors(topology, mesh, kind, pieces, chips),)
    else:
        levels = _switched_factors(topology, kind, pieces, chips)
    efficiency = cal.weight_gather_efficiency if prefetched else cal.network_efficiency
    steps = int(_PASSES[kind]) * sum(k - 1 for _, k in pieces)  # ring_steps
    return (Line(latency_s=cal.collective_latency_s * steps, efficiency=efficiency, levels=levels),)


class LineCache:
    """`collective_lines` kept per (slice, pieces spanned, kind, prefetched) for a whole search."""

    def __init__(self, cluster: Cluster):
        self.cluster, self._lines, self._arrays = cluster, {}, {}

    def __call__(self, mesh: Mesh, kind: CollectiveKind, axes: str, prefetched: bool) -> tuple[Line, ...]:
        key = (mesh.physical, mesh.wraparound, mesh.pieces(axes), kind, prefetched)
        lines = self._lines.get(key)
        if lines is None:
            lines = self._lines[key] = collective_lines(self.cluster, mesh, kind, axes, prefetched)
        return lines

    def arrays(self, mesh: Mesh, kind: CollectiveKind, axes: str, prefetched: bool):
        """The lines as arrays for `lines_seconds`: factors (lines, levels, 7), efficiency and
        latency_s (lines,); levels padded with zeros to the topology's count."""
        key = (mesh.physical, mesh.wraparound, mesh.pieces(axes), kind, prefetched)
        out = self._arrays.get(key)
        if out is None:
            lines = self(mesh, kind, axes, prefetched)
            depth = max(len(line.levels) for line in lines)
            if isinstance(self.cluster.topology, Switched):
                depth = max(depth, len(self.cluster.topology.levels))
            out = self._arrays[key] = (
                np.array([line.levels + (_NO_LEVEL,) * (depth - len(line.levels)) for line in lines], dtype=float),
                np.array([line.efficiency for line in lines]), np.array([line.latency_s for line in lines]))
        return out


def network_seconds(lines: LineCache, meshes, collectives, data: np.ndarray, repeats: np.ndarray,
                    prefetched: np.ndarray):
    """(comm_s, prefetched_s), each (meshes, points): `collectives` (each with bytes per chip
    `data` (collectives, points), repeated `repeats` (collectives, 1) times, `prefetched` or not)
    on each of `meshes` (groupings of the same logical sizes), summed in dataflow order, each
    term as `collective_seconds` computes it."""
    shape = (len(meshes), data.shape[-1])
    if not collectives:
        return np.zeros(shape), np.zeros(shape)
    per_mesh = [[lines.arrays(mesh, k.kind, k.axes, k.prefetched) for k in collectives] for mesh in meshes]
    if len({a[0].shape for row in per_mesh for a in row}) > 1:  # lines of different counts: pad them
        per_mesh = [[pad_lines(a, per_mesh) for a in row] for row in per_mesh]
    factors, efficiency, latency_s = (np.array([[a[i] for a in row] for row in per_mesh]) for i in range(3))
    seconds = repeats * lines_seconds(factors, efficiency, latency_s, data)
    comm_s = np.add.accumulate(seconds, axis=1)[:, -1]  # in order, as a running sum
    prefetched_s = np.add.accumulate(np.where(prefetched[:, None], seconds, 0.0), axis=1)[:, -1]
    return comm_s, prefetched_s


_NO_LEVEL = (0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # adds exactly nothing


def pad_lines(arrays, rows):
    """`LineCache.arrays` padded with copies of its last line to the most lines in `rows`."""
    most = max(a[0].shape[0] for row in rows for a in row)
    factors, efficiency, latency_s = arrays
    take = np.minimum(np.arange(most), factors.shape[0] - 1)
    return factors[take], efficiency[take], latency_s[take]


def torus_bandwidth(torus: Torus, mesh: Mesh, pieces) -> float:
    """Bytes/s a collective over `pieces` gets: the links of every axis of the slice
    (`bandwidth_model: chip`, the paper's) or only of the axes it spans (`axes`)."""
    spanned = mesh.physical if torus.bandwidth_model == "chip" else pieces
    per_axis = torus.links_per_axis * torus.link_bytes_per_s
    shares = [1.0 if mesh.wraps(name) else 0.5 for name, n in spanned if n > 1]
    return per_axis * (sum(shares) if shares else 1.0)


def _torus_factors(torus: Torus, mesh: Mesh, kind: CollectiveKind, pieces, chips: int) -> tuple:
    """D (K-1)/K x passes [x h for an all-to-all] / W, as Line factors."""
    hops = max(1.0, sum(k / 4.0 for _, k in pieces)) if kind is CollectiveKind.ALL_TO_ALL else 1.0
    return (chips - 1, 1.0, chips, 1.0, _PASSES[kind], hops, torus_bandwidth(torus, mesh, pieces))


def _switched_factors(switched: Switched, kind: CollectiveKind, pieces, chips: int) -> tuple:
    """Per level spanned, outermost (slowest) first: D (k-1) P / K / W_l x passes, or for an
    all-to-all D (k-1) / k / W_l, as Line factors."""
    spans: dict[str, int] = {}
    for name, k in pieces:
        spans[name] = spans.get(name, 1) * k
    levels, done = [], 1
    for level in reversed(switched.levels):  # outermost (slowest) first
        k = spans.get(level.name, 1)
        if k == 1:
            continue
        if kind is CollectiveKind.ALL_TO_ALL:
            levels.append((k - 1, 1.0, k, level.bandwidth(k), 1.0, 1.0, 1.0))
        else:
            levels.append((k - 1, done, chips, level.bandwidth(k), _PASSES[kind], 1.0, 1.0))
        done *= k
    return tuple(levels)


def scale_out_bytes_per_s(cluster: Cluster) -> float:
    """Per-chip, per-direction bandwidth between two pools of chips (see the module docstring)."""
    topology = cluster.topology
    if isinstance(topology, Torus):
        return topology.links_per_axis * topology.link_bytes_per_s
    return topology.levels[-1].bytes_per_s


def transfer_seconds(cluster: Cluster, bytes_, senders, receivers):
    """Time to move `bytes_` from a pool of `senders` chips to one of `receivers` chips."""
    links = np.minimum(senders, receivers)
    return bytes_ / (links * scale_out_bytes_per_s(cluster) * cluster.calibration.network_efficiency)


def boundary_chips(cluster: Cluster, mesh: Mesh) -> int:
    """Chips of a stage with a link into the next stage: all of them on switched levels (one NIC
    each); on a torus the face two slices share (the stage's chips / its shortest extent)."""
    if isinstance(cluster.topology, Torus):
        return mesh.chips // min(n for _, n in mesh.physical)
    return mesh.chips


def boundary_bytes_per_s(cluster: Cluster, mesh: Mesh) -> float:
    """Bytes/s across the boundary between two neighbouring stages of `mesh`'s shape, one direction."""
    return boundary_chips(cluster, mesh) * scale_out_bytes_per_s(cluster)


def send_seconds(cluster: Cluster, mesh: Mesh, bytes_per_chip):
    """A point-to-point send of `bytes_per_chip` from every chip of a stage to the next stage: the
    pool-to-pool transfer over the boundary's chips, plus one hop of `collective_latency_s`."""
    moved = np.asarray(bytes_per_chip, dtype=float) * mesh.chips
    carriers = boundary_chips(cluster, mesh)
    return transfer_seconds(cluster, moved, carriers, carriers) + cluster.calibration.collective_latency_s
