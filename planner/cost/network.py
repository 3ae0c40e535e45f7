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

Latency and efficiency. On a torus every collective pays `collective_latency_s` per ring step
(hop): sum over the axes it spans of (k_i - 1), since a ring collective is k - 1 dependent
transfers (twice that for an all-reduce); its bandwidth is scaled by `network_efficiency`.

A switched level is one switch (an NVSwitch island of 8 GPUs, an InfiniBand fabric): a group of
k_l GPUs of one level is ONE group however the layout's logical axes factor it (TP 8 as 2 x 2 x 2
is one 8-GPU collective, not three 2-GPU rings), and each level has its own constants
(`Calibration.levels[name]`; a level not given there takes the cluster-wide ones). Level l, with
x_l the bytes each GPU moves there (above), costs the faster of two lines, NCCL's own tuning
model of its latency-bound protocol (LL) and its bandwidth protocol (Simple):

    t_l = min(a_l + s_l * p (k_l - 1) + x_l / (e_l W_l),     a_l: latency_s, s_l: step_latency_s,
              b_l + x_l / (f_l W_l))                          e_l: efficiency, p: 2 for all-reduce
                                                              b_l, f_l: bulk_latency_s, bulk_efficiency

(without the bulk pair, the first line alone), and a collective costs the sum over the levels it
spans. The first line is a fixed cost per collective (kernel launch and synchronisation: about
5-7 us on NVLink 4) plus a short per-step latency (about 1 us); the second is the pipelined
protocol, slower to start (tens of us) and faster per byte. Prefetched weight all-gathers
(`Collective.prefetched`) use `weight_gather_efficiency` in place of the level's efficiencies.
With only the cluster-wide constants a level costs k_l - 1 ring steps of `collective_latency_s`
plus its bytes at `network_efficiency`, the torus formula, so an uncalibrated or TPU-fitted
cluster is unchanged.

Between two pools of chips (disaggregated serving: a prefill pool hands each request's KV cache
to a decode pool), D bytes cross the scale-out network: the outermost switched level (e.g.
InfiniBand), or on a torus the links of one axis (the face two slices of a pod share; a torus
file has no data-centre network). Each chip sends its shard over its own link, so
min(senders, receivers) links carry it in parallel:  D / (min(n_send, n_recv) * W_out).
"""

from __future__ import annotations

import numpy as np

from planner.cost.layouts.base import Collective, CollectiveKind
from planner.cost.mesh import Mesh, level_sizes
from planner.specs.hardware import Calibration, Cluster, Switched, Torus

_PASSES = {
    CollectiveKind.ALL_GATHER: 1.0, CollectiveKind.REDUCE_SCATTER: 1.0,
    CollectiveKind.ALL_REDUCE: 2.0, CollectiveKind.ALL_TO_ALL: 1.0,
}


def ring_steps(mesh: Mesh, collective: Collective) -> int:
    """Ring steps (hops) of a collective: one per extra chip along each torus axis or switched
    level it spans (a level's sub-axes merged: it is one group), twice for an all-reduce."""
    return int(_PASSES[collective.kind]) * sum(k - 1 for _, k in _spans(mesh, collective.axes))


def _spans(mesh: Mesh, axes: str) -> tuple[tuple[str, int], ...]:
    """The pieces a collective spans: torus axes as they are, switched levels merged."""
    pieces = mesh.pieces(axes)
    if mesh.torus:
        return pieces
    spans: dict[str, int] = {}
    for name, k in pieces:
        spans[name] = spans.get(name, 1) * k
    return tuple(spans.items())


def collective_seconds(cluster: Cluster, mesh: Mesh, collective: Collective):
    pieces = mesh.pieces(collective.axes)
    chips = 1
    for _, k in pieces:
        chips *= k
    if chips == 1:
        return 0.0 * np.asarray(collective.bytes_per_chip)
    topology, cal = cluster.topology, cluster.calibration
    if isinstance(topology, Torus):
        seconds = _torus_seconds(topology, mesh, collective, pieces, chips)
        efficiency = cal.weight_gather_efficiency if collective.prefetched else cal.network_efficiency
        return seconds / efficiency + cal.collective_latency_s * ring_steps(mesh, collective)
    return _switched_seconds(topology, cal, collective, dict(_spans(mesh, collective.axes)), chips)


def collective_latency_seconds(cluster: Cluster, mesh: Mesh, collective: Collective) -> float:
    """The part of a collective's time that does not depend on its bytes: its time at zero bytes."""
    zero = Collective(kind=collective.kind, axes=collective.axes, bytes_per_chip=0.0,
                      prefetched=collective.prefetched)
    return float(collective_seconds(cluster, mesh, zero))


def collective_latency_by_level(cluster: Cluster, mesh: Mesh, collective: Collective) -> dict[str, float]:
    """`collective_latency_seconds` split by the switched levels it spans (their own constants),
    or one entry, "torus", on a torus. At zero bytes a level's time does not depend on the others."""
    zero = Collective(kind=collective.kind, axes=collective.axes, bytes_per_chip=0.0,
                      prefetched=collective.prefetched)
    topology = cluster.topology
    if isinstance(topology, Torus):
        seconds = float(collective_seconds(cluster, mesh, zero))
        return {"torus": seconds} if seconds else {}
    spans = dict(_spans(mesh, collective.axes))
    return {level.name: float(_switched_seconds(topology, cluster.calibration, zero, {level.name: spans[level.name]},
                                                spans[level.name]))
            for level in topology.levels if spans.get(level.name, 1) > 1}


def kernel_collective_seconds(cluster: Cluster, kind: CollectiveKind, bytes_per_chip, gpus: int):
    """A collective of `bytes_per_chip` over `gpus` GPUs of a switched cluster, filling the inner
    levels first (one node of 8, then nodes): a row of a collective kernel table."""
    switched = cluster.topology
    spans = {name: k for name, k in level_sizes(switched, gpus) if k > 1}
    return _switched_seconds(switched, cluster.calibration,
                             Collective(kind=kind, axes="x", bytes_per_chip=bytes_per_chip), spans, gpus)


def torus_bandwidth(torus: Torus, mesh: Mesh, pieces) -> float:
    """Bytes/s a collective over `pieces` gets: the links of every axis of the slice
    (`bandwidth_model: chip`, the paper's) or only of the axes it spans (`axes`)."""
    spanned = mesh.physical if torus.bandwidth_model == "chip" else pieces
    per_axis = torus.links_per_axis * torus.link_bytes_per_s
    shares = [1.0 if mesh.wraps(name) else 0.5 for name, n in spanned if n > 1]
    return per_axis * (sum(shares) if shares else 1.0)


def _torus_seconds(torus: Torus, mesh: Mesh, collective: Collective, pieces, chips: int):
    moved = np.asarray(collective.bytes_per_chip) * (chips - 1) / chips * _PASSES[collective.kind]
    if collective.kind is CollectiveKind.ALL_TO_ALL:
        moved = moved * max(1.0, sum(k / 4.0 for _, k in pieces))
    return moved / torus_bandwidth(torus, mesh, pieces)


def _switched_seconds(switched: Switched, cal: Calibration, collective: Collective, spans: dict[str, int],
                     chips: int):
    data = np.asarray(collective.bytes_per_chip, dtype=float)
    passes = _PASSES[collective.kind]
    seconds, done = 0.0, 1
    for level in reversed(switched.levels):  # outermost (slowest) first
        k = spans.get(level.name, 1)
        if k == 1:
            continue
        if collective.kind is CollectiveKind.ALL_TO_ALL:
            moved = data * (k - 1) / k
            steps = k - 1
        else:
            moved = data * (k - 1) * done / chips * passes
            steps = passes * (k - 1)
        c = cal.level(level.name)
        efficiency, bulk = c.efficiency, c.bulk_efficiency
        if collective.prefetched:
            efficiency = bulk = cal.weight_gather_efficiency
        t = c.latency_s + c.step_latency_s * steps + moved / (efficiency * level.bandwidth(k))
        if c.bulk_latency_s is not None:
            t = np.minimum(t, c.bulk_latency_s + moved / (bulk * level.bandwidth(k)))
        seconds = seconds + t
        done *= k
    return seconds


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
