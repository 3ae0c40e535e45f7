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

    send: D * n_s / W_b + collective_latency_s (one hop; torus)

with W_b the boundary's bandwidth, one direction: the pool-to-pool transfer below between the
chips that carry it, each at the scale-out bandwidth W_out. On switched levels that is all n_s
chips (stages are whole groups of the outermost level, e.g. nodes over InfiniBand, one NIC per
GPU); on a torus, stages are slices joined face to face along their shortest axis, so only the
n_s / (shortest extent) chips of the face carry it.

Latency and efficiency. On a torus every collective pays `collective_latency_s` per ring step
(hop): sum over the axes it spans of (k_i - 1), since a ring collective is k - 1 dependent
transfers (twice that for an all-reduce); its bandwidth is scaled by `network_efficiency`.

A switched level is one switch (an NVSwitch island of 8 GPUs, an InfiniBand fabric): a group of
k_l GPUs of one level is ONE group however the layout's logical axes factor it (TP 8 as 2 x 2 x 2
is one 8-GPU collective, not three 2-GPU rings), and each level has its own constants
(`Calibration.levels[name]`; a level not given there takes the cluster-wide ones). Level l, with
x_l the bytes each GPU moves there (above), has two lines, NCCL's own tuning model of its
latency-bound protocol (LL) and its bandwidth protocol (Simple):

    t_l = a_l + s_l * p (k_l - 1) + x_l / (e_l W_l)     a_l: latency_s, s_l: step_latency_s,
    u_l = b_l + x_l / (f_l W_l)                         e_l: efficiency, p: 2 for all-reduce
                                                        b_l, f_l: bulk_latency_s, bulk_efficiency

and, as NCCL picks one protocol for a whole collective, the collective costs the faster of the
two lines summed over the levels it spans, min(sum t_l, sum u_l), where a level without the
bulk pair has its first line in both (u_l = t_l; with the pair on one level only, as the fitted
presets have it, that is the level's own faster line). The first line is a fixed cost per
collective (kernel launch and synchronisation: about 5-7 us on NVLink 4) plus a short per-step
latency (about 1 us); the second is the pipelined protocol, slower to start (tens of us) and
faster per byte. Prefetched weight all-gathers (`Collective.prefetched`) are all-gathers like any
other on a level with constants of its own (its fitted lines, as NCCL's all-gather tables show
them), unless the level gives a `weight_gather_efficiency` of its own (measured weight gathers),
which then takes the place of its efficiencies; a level without constants of its own uses the
cluster-wide `weight_gather_efficiency` (the torus rule).
An all-reduce on a level with `in_switch_reduction` (NVLink SHARP, NCCL's NVLS: each GPU sends D once, gets the
sum once) has a third line, v_l = c_l + D k_l P_l / K / (g_l W_l) (in_switch_latency_s, in_switch_efficiency).
With only the cluster-wide constants a level costs k_l - 1 ring steps of `collective_latency_s`
plus its bytes at `network_efficiency`, the torus formula, so an uncalibrated or TPU-fitted
cluster is unchanged.

A collective's time is data (`Line`): each line a latency (the sum of its levels' fixed and
per-step latencies), an efficiency and per-level factors, so a search times many meshes in one
numpy pass (`network_seconds`) and gets the bits `collective_seconds` gets.

Between two pools of chips (disaggregated serving: a prefill pool hands each request's KV cache
to a decode pool), D bytes cross the scale-out network: the outermost switched level (e.g.
InfiniBand), or on a torus the links of one axis (the face two slices of a pod share; a torus
file has no data-centre network). Each chip sends its shard over its own link, so
min(senders, receivers) links carry it in parallel:  D / (min(n_send, n_recv) * W_out) on a
torus (at `network_efficiency`). On switched levels the transfer (and so a pipeline send) is a
one-step collective of the outermost level l and pays its constants like any collective there:
min(a_l + s_l + x / (e_l W), b_l + x / (f_l W)) with W = min(n_send, n_recv) * W_out; with only
the cluster-wide constants that is one hop of `collective_latency_s` at `network_efficiency`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planner.cost.dispatch import level_factors
from planner.cost.layouts.base import Collective, CollectiveKind, Routed
from planner.cost.mesh import Mesh, joined_axis, level_sizes
from planner.specs.hardware import Calibration, Cluster, Switched, Torus

_PASSES = {
    CollectiveKind.ALL_GATHER: 1.0,
    CollectiveKind.REDUCE_SCATTER: 1.0,
    CollectiveKind.ALL_REDUCE: 2.0,
    CollectiveKind.ALL_TO_ALL: 1.0,
}


def ring_steps(mesh: Mesh, collective: Collective) -> int:
    """Ring steps (hops) of a collective: one per extra chip along each torus axis or switched
    level it spans (a level's sub-axes merged: it is one group), twice for an all-reduce."""
    return int(_PASSES[collective.kind]) * sum(k - 1 for _, k in collective_spans(mesh, collective.axes))


def collective_spans(mesh: Mesh, axes: str) -> tuple[tuple[str, int], ...]:
    """The pieces a collective spans: torus axes as they are, switched levels merged."""
    pieces = mesh.pieces(axes)
    if mesh.torus:
        return pieces
    spans: dict[str, int] = {}
    for name, k in pieces:
        spans[name] = spans.get(name, 1) * k
    return tuple(spans.items())


@dataclass(frozen=True)
class Line:
    """A collective's time along one path, as data: bytes x (sum over the levels (or torus axes)
    it crosses of a x b / c / d x e x g / f) / efficiency + latency_s. Factors of 1 and levels of
    zeros stand for steps a formula does not have, so every collective computes its seconds in
    one order of operations, bytes x seconds_per_byte + latency_s (the search evaluates many
    meshes in one numpy pass and must get the bits `collective_seconds` gets). A collective
    takes the fastest of its lines: on switched levels NCCL's two protocols (module docstring),
    each level's efficiency its factor f's."""

    latency_s: float
    efficiency: float
    levels: tuple[tuple[float, float, float, float, float, float, float], ...]
    # latency_s split by the switched levels it crosses, innermost first ("torus": one entry)
    latency_by_level: tuple[tuple[str, float], ...] = ()

    @property
    def seconds_per_byte(self) -> float:
        """The line's slope: (sum over its levels of a x b / c / d x e x g / f) / efficiency, so
        that its time is bytes x seconds_per_byte + latency_s, two operations per point."""
        out = 0.0
        for a, b, c, d, e, g, f in self.levels:
            out = out + a * b / c / d * e * g / f
        return out / self.efficiency


def collective_seconds(cluster: Cluster, mesh: Mesh, collective: Collective):
    """Seconds of `collective` on `mesh`: the fastest of its `collective_lines`."""
    lines = collective_lines(cluster, mesh, collective.kind, collective.axes, collective.prefetched, collective.routed)
    return _fastest(lines, collective.bytes_per_chip)


def _fastest(lines: tuple[Line, ...], bytes_per_chip):
    data = np.asarray(bytes_per_chip, dtype=float)
    times = [data * line.seconds_per_byte + line.latency_s for line in lines]
    return times[0] if len(times) == 1 else np.minimum.reduce(times)


def latency_line(lines: tuple[Line, ...]) -> Line:
    """The line that is fastest at zero bytes: a collective's latency (and its split by level)."""
    return min(lines, key=lambda line: line.latency_s)


def kernel_collective_seconds(cluster: Cluster, kind: CollectiveKind, bytes_per_chip, gpus: int):
    """A collective of `bytes_per_chip` over `gpus` GPUs of a switched cluster, filling the inner
    levels first (one node of 8, then nodes): a row of a collective kernel table."""
    spans = {name: k for name, k in level_sizes(cluster.topology, gpus) if k > 1}
    return _fastest(_switched_lines(cluster.topology, cluster.calibration, kind, spans, gpus), bytes_per_chip)


def lines_seconds(seconds_per_byte: np.ndarray, latency_s: np.ndarray, data: np.ndarray):
    """`collective_seconds` over many collectives at once, in its order of operations:
    `seconds_per_byte` and `latency_s` (..., lines) stacked from Lines (padded with copies of a
    line), `data` the bytes per chip broadcast against (..., points)."""
    times = data * seconds_per_byte[..., :1] + latency_s[..., :1]
    for j in range(1, seconds_per_byte.shape[-1]):  # the fastest line (a minimum: exact in any order)
        times = np.minimum(times, data * seconds_per_byte[..., j : j + 1] + latency_s[..., j : j + 1])
    return times


def collective_lines(
    cluster: Cluster,
    mesh: Mesh,
    kind: CollectiveKind,
    axes: str,
    prefetched: bool = False,
    routed: Routed | None = None,
) -> tuple[Line, ...]:
    """The lines of a collective over `axes` of `mesh`: they depend only on the pieces it spans
    (and the slice's, for a torus), its kind, whether it is prefetched and, for a dispatch or
    combine (`routed`), its routing, not on its bytes."""
    pieces = mesh.pieces(axes)
    chips = 1
    for _, k in pieces:
        chips *= k
    if chips == 1:
        return (Line(latency_s=0.0, efficiency=1.0, levels=(_NO_LEVEL,)),)
    topology, cal = cluster.topology, cluster.calibration
    if isinstance(topology, Switched) and routed is not None and cluster.moe_kernels is not None:
        return (_routed_line(routed_levels(cluster, dict(collective_spans(mesh, axes)), routed)),)
    if isinstance(topology, Switched):
        return _switched_lines(topology, cal, kind, dict(collective_spans(mesh, axes)), chips, prefetched)
    efficiency = cal.weight_gather_efficiency if prefetched else cal.network_efficiency
    steps = int(_PASSES[kind]) * sum(k - 1 for _, k in pieces)  # ring_steps
    latency_s = cal.collective_latency_s * steps
    return (
        Line(
            latency_s=latency_s,
            efficiency=efficiency,
            levels=(_torus_factors(topology, mesh, kind, pieces, chips),),
            latency_by_level=(("torus", latency_s),) if latency_s else (),
        ),
    )


_NO_LEVEL = (0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # adds exactly nothing


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


def _switched_lines(
    switched: Switched,
    cal: Calibration,
    kind: CollectiveKind,
    spans: dict[str, int],
    chips: int,
    prefetched: bool = False,
) -> tuple[Line, ...]:
    """The first (LL), bulk (a level with the bulk pair) and in-switch (an all-reduce, module docstring)
    lines. Per level, outermost first: D (k-1) P / K / W_l x passes / e_l (all-to-all: D (k-1) / k
    / W_l / e_l; in-switch: D k P / K / W_l / g_l), as factors; its latency a_l + s_l x steps (b_l, c_l)."""
    first, bulk, in_switch, done = [], [], [], 1
    for level in reversed(switched.levels):  # outermost (slowest) first
        k = spans.get(level.name, 1)
        if k == 1:
            continue
        c = cal.level(level.name)
        efficiency, bulk_efficiency = _gather_efficiencies(cal, c) if prefetched else (c.efficiency, c.bulk_efficiency)
        if kind is CollectiveKind.ALL_TO_ALL:
            steps, factors = k - 1, (k - 1, 1.0, k, level.bandwidth(k), 1.0, 1.0)
        else:
            steps, factors = _PASSES[kind] * (k - 1), (k - 1, done, chips, level.bandwidth(k), _PASSES[kind], 1.0)
        first.append((level.name, c.latency_s + c.step_latency_s * steps, factors + (efficiency,)))
        bulk.append(
            first[-1] if c.bulk_latency_s is None else (level.name, c.bulk_latency_s, factors + (bulk_efficiency,))
        )
        reduces = level.in_switch_reduction and c.in_switch_latency_s is not None and kind is CollectiveKind.ALL_REDUCE
        in_switch.append(
            (level.name, c.in_switch_latency_s, (k, done, chips, level.bandwidth(k), 1.0, 1.0, c.in_switch_efficiency))
            if reduces
            else bulk[-1]
        )
        done *= k
    return tuple(_line(levels) for levels in [first] + [bulk] * (bulk != first) + [in_switch] * (in_switch != bulk))


def _gather_efficiencies(cal: Calibration, c) -> tuple:
    """(first, bulk) efficiencies of a prefetched weight all-gather on a switched level: the level's
    measured weight-gather efficiency if it gives one; else, on a level with constants of its own,
    its fitted lines (an all-gather like any other there); else the cluster-wide
    `weight_gather_efficiency` (the torus rule)."""
    if c.weight_gather_efficiency is not None:
        return (c.weight_gather_efficiency,) * 2
    if c.own:
        return c.efficiency, c.bulk_efficiency
    return (cal.weight_gather_efficiency,) * 2


def _line(levels) -> Line:
    """A line of (level, latency_s, factors), outermost first; efficiency in the factors."""
    latency_s = 0.0
    for _, seconds, _ in levels:
        latency_s = latency_s + seconds
    return Line(
        latency_s=latency_s,
        efficiency=1.0,
        levels=tuple(f for _, _, f in levels) or (_NO_LEVEL,),
        latency_by_level=tuple((name, seconds) for name, seconds, _ in reversed(levels)),
    )


def routed_levels(cluster: Cluster, spans: dict[str, int], routed: Routed) -> tuple[tuple, ...]:
    """DeepEP's dispatch/combine on a switched cluster with `moe_kernels`: per level it spans,
    innermost first, (name, factor of the stated bytes it carries (planner.cost.dispatch),
    latency_s, efficiency, bytes/s per GPU). A call takes the sum of the levels' fixed times plus
    the longest of their transfers, factor D / (efficiency W): NVLink forwarding and RDMA run at
    once. Constants: the cluster's `moe_kernels` for the kernels (normal or low-latency); a level
    it lacks takes the level's collective constants (first line)."""
    levels, moe = cluster.topology.levels, cluster.moe_kernels
    gpus = spans.get(levels[0].name, 1)
    nodes = 1
    for level in levels[1:]:
        nodes *= spans.get(level.name, 1)
    inner, outer = level_factors(routed, gpus, nodes)
    kernels = "low-latency" if routed.low_latency else "normal"
    out = []
    for i, level in enumerate(levels):
        k = spans.get(level.name, 1)
        if k == 1:
            continue
        constants = moe.level(kernels, level.name)
        if constants is None:
            c = cluster.calibration.level(level.name)
            constants = (c.latency_s, c.efficiency)
        out.append((level.name, inner if i == 0 else outer, constants[0], constants[1], level.bandwidth(k)))
    return tuple(out)


def _routed_line(levels) -> Line:
    """`routed_levels` as one Line: the fixed times summed, the steepest level's slope."""
    latency_s, slope = 0.0, 0.0
    for _, factor, seconds, efficiency, bandwidth in levels:
        latency_s, slope = latency_s + seconds, max(slope, factor / (efficiency * bandwidth))
    return Line(
        latency_s=latency_s,
        efficiency=1.0,
        levels=((slope, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),),
        latency_by_level=tuple((name, seconds) for name, _, seconds, _, _ in levels),
    )


def routed_seconds(cluster: Cluster, routed: Routed, gpus: int, bytes_per_chip):
    """A dispatch or combine of `bytes_per_chip` (every copy) over `gpus` GPUs of a switched
    cluster with `moe_kernels`, filling one node of 8 first: a row of DeepEP's tables."""
    spans = {name: k for name, k in level_sizes(cluster.topology, gpus) if k > 1}
    return _fastest((_routed_line(routed_levels(cluster, spans, routed)),), bytes_per_chip)


def scale_out_bytes_per_s(cluster: Cluster) -> float:
    """Per-chip, per-direction bandwidth between two pools of chips (see the module docstring)."""
    topology = cluster.topology
    if isinstance(topology, Torus):
        return topology.links_per_axis * topology.link_bytes_per_s
    return topology.levels[-1].bytes_per_s


def transfer_seconds(cluster: Cluster, bytes_, senders, receivers):
    """Time to move `bytes_` from a pool of `senders` chips to one of `receivers` chips: on a
    torus at `network_efficiency`; on switched levels a one-step collective of the outermost
    level, its constants' faster line min(a + s + x / (e W), b + x / (f W))."""
    links = np.minimum(senders, receivers)
    topology, cal = cluster.topology, cluster.calibration
    if isinstance(topology, Torus):
        return bytes_ / (links * scale_out_bytes_per_s(cluster) * cal.network_efficiency)
    c, rate = cal.level(topology.levels[-1].name), links * scale_out_bytes_per_s(cluster)
    first = c.latency_s + c.step_latency_s + bytes_ / (rate * c.efficiency)
    if c.bulk_latency_s is None:
        return first
    return np.minimum(first, c.bulk_latency_s + bytes_ / (rate * c.bulk_efficiency))


def boundary_chips(cluster: Cluster, mesh: Mesh) -> int:
    """Chips of a stage with a link into the next stage: all of them on switched levels (one NIC
    each); on a torus the face two stages share (the stage's chips / its extent along the axis
    they are joined on, mesh.joined_axis)."""
    if isinstance(cluster.topology, Torus):
        return mesh.chips // mesh.physical[joined_axis(mesh)][1]
    return mesh.chips


def _boundary_link_bytes_per_s(cluster: Cluster) -> float:
    """One chip's one-way rate into the next stage: a NIC's on switched levels; on a torus one
    ICI link (the face chip's link along the joined axis)."""
    topology = cluster.topology
    return topology.link_bytes_per_s if isinstance(topology, Torus) else scale_out_bytes_per_s(cluster)


def boundary_bytes_per_s(cluster: Cluster, mesh: Mesh) -> float:
    """Bytes/s across the boundary between two neighbouring stages of `mesh`'s shape, one direction."""
    return boundary_chips(cluster, mesh) * _boundary_link_bytes_per_s(cluster)


def send_seconds(cluster: Cluster, mesh: Mesh, bytes_per_chip):
    """A point-to-point send of `bytes_per_chip` from every chip of a stage to the next stage: on
    switched levels the pool-to-pool transfer over the boundary's chips (the outermost level's
    one-step collective); on a torus the bytes over one ICI link per face chip at
    `network_efficiency`, plus one hop of `collective_latency_s`."""
    return _send(cluster, mesh.chips, boundary_chips(cluster, mesh), bytes_per_chip)


def send_seconds_many(cluster: Cluster, meshes: list[Mesh], bytes_per_chip: np.ndarray):
    """`send_seconds` on each of `meshes`, `bytes_per_chip` (meshes, points): (meshes, points)."""
    chips = np.array([[mesh.chips] for mesh in meshes])
    carriers = np.array([[boundary_chips(cluster, mesh)] for mesh in meshes])
    return _send(cluster, chips, carriers, bytes_per_chip)


def _send(cluster: Cluster, chips, carriers, bytes_per_chip):
    moved = np.asarray(bytes_per_chip, dtype=float) * chips
    if isinstance(cluster.topology, Torus):  # one ICI link per face chip, one way, plus one hop
        cal = cluster.calibration
        return (
            moved / (carriers * _boundary_link_bytes_per_s(cluster) * cal.network_efficiency) + cal.collective_latency_s
        )
    return transfer_seconds(cluster, moved, carriers, carriers)  # switched: the hop is in the transfer
