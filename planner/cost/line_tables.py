"""The collectives' lines kept for a whole search, and many collectives timed in one numpy pass.

A collective's lines (planner.cost.network.collective_lines) depend only on the physical pieces
it spans, its kind and whether it is prefetched, never on its bytes: `LineCache` keeps them per
collective, `MeshLines` for a search's whole list of meshes, coded once per logical axis group,
and `network_seconds` times every collective of many meshes at once with
network.lines_seconds, summing them in dataflow order so that each term has the bits
`collective_seconds` gives it alone.
"""

from __future__ import annotations

import numpy as np

from planner.cost.layouts.base import CollectiveKind
from planner.cost.mesh import Mesh, factor_matrix, first_rows, piece_names, spans
from planner.cost.network import Line, collective_lines, collective_spans, lines_seconds
from planner.specs.hardware import Cluster, Switched, Torus


class LineCache:
    """`collective_lines` kept per (pieces spanned, kind, prefetched; on a torus its slice too)
    for a whole search, and as arrays per (mesh, collectives) for `network_seconds`."""

    def __init__(self, cluster: Cluster):
        self.cluster, self._lines, self._arrays, self._stacks = cluster, {}, {}, {}
        constants = (
            [(level, cluster.calibration.level(level.name)) for level in cluster.topology.levels]
            if isinstance(cluster.topology, Switched)
            else []
        )  # lines: one more per pair a level has
        self.count = (
            1
            + any(c.bulk_latency_s is not None for _, c in constants)
            + any(level.in_switch_reduction and c.in_switch_latency_s is not None for level, c in constants)
        )

    @staticmethod
    def _key(mesh: Mesh, kind: CollectiveKind, axes: str, prefetched: bool, routed=None) -> tuple:
        """What a collective's lines depend on: on a torus the slice and the pieces spanned, on a
        switched cluster the chips spanned per level (and a dispatch's routing)."""
        if mesh.torus:
            return (mesh.physical, mesh.wraparound, mesh.pieces(axes), kind, prefetched, routed)
        return (collective_spans(mesh, axes), kind, prefetched, routed)

    def __call__(self, mesh: Mesh, kind: CollectiveKind, axes: str, prefetched: bool, routed=None) -> tuple[Line, ...]:
        key = self._key(mesh, kind, axes, prefetched, routed)
        lines = self._lines.get(key)
        if lines is None:
            lines = self._lines[key] = collective_lines(self.cluster, mesh, kind, axes, prefetched, routed)
        return lines

    def arrays(self, mesh: Mesh, kind: CollectiveKind, axes: str, prefetched: bool, routed=None):
        """The lines as arrays for `lines_seconds`: seconds_per_byte and latency_s (lines,),
        padded with copies of the last line to `count` (every collective of the cluster the same
        shape)."""
        key = self._key(mesh, kind, axes, prefetched, routed)
        out = self._arrays.get(key)
        if out is None:
            lines = self(mesh, kind, axes, prefetched, routed)
            lines = lines + lines[-1:] * (self.count - len(lines))
            out = self._arrays[key] = (
                np.array([line.seconds_per_byte for line in lines]),
                np.array([line.latency_s for line in lines]),
            )
        return out

    def stack(self, mesh: Mesh, signature: tuple[tuple[CollectiveKind, str, bool], ...]):
        """`arrays` of every collective of `signature` ((kind, axes, prefetched) each, in
        dataflow order) on `mesh`: seconds_per_byte and latency_s, each (collectives, lines)."""
        key = (mesh, signature)
        out = self._stacks.get(key)
        if out is None:
            rows = [self.arrays(mesh, *collective) for collective in signature]
            out = self._stacks[key] = (
                np.array([r[0] for r in rows]).reshape(len(rows), self.count),
                np.array([r[1] for r in rows]).reshape(len(rows), self.count),
            )
        return out


class MeshLines:
    """The collectives' lines of a fixed list of meshes (a search's), gathered by index. A
    collective's lines depend only on the chips it spans of each physical piece (and on a torus
    on the slice, whose links its bandwidth counts), so each logical axis group's spans are coded
    once over all the meshes (`first_rows`), and each (code, kind, prefetched) gets its lines once,
    from the first mesh with that code."""

    def __init__(self, cluster: Cluster, meshes: list[Mesh]):
        self.meshes, self.factors = meshes, factor_matrix(meshes, piece_names(cluster))
        torus, slices = isinstance(cluster.topology, Torus), {}
        self.slices = np.array(
            [slices.setdefault((m.physical, m.wraparound) if torus else (), len(slices)) for m in meshes],
            dtype=np.int64,
        )
        self._codes: dict[str, tuple] = {}
        self._tables: dict[tuple, tuple] = {}

    def tables(self, lines: LineCache, index: np.ndarray, signature: tuple[tuple[CollectiveKind, str, bool], ...]):
        """`LineCache.stack` of the meshes `index`, all at once: seconds_per_byte and latency_s,
        each (meshes, collectives, lines)."""
        shape = (len(index), len(signature), lines.count)
        rate, latency = np.empty(shape), np.empty(shape)
        for k, collective in enumerate(signature):
            table = self._tables.get(collective)
            if table is None:
                kind, axes, prefetched, routed = collective
                if axes not in self._codes:
                    self._codes[axes] = first_rows(
                        np.concatenate([self.slices[:, None], spans(self.factors, axes)], axis=1)
                    )
                first, inverse = self._codes[axes]
                arrays = [lines.arrays(self.meshes[i], kind, axes, prefetched, routed) for i in first]
                table = self._tables[collective] = (
                    np.array([a[0] for a in arrays]),
                    np.array([a[1] for a in arrays]),
                    inverse,
                )
            codes = table[2][index]
            rate[:, k], latency[:, k] = table[0][codes], table[1][codes]
        return rate, latency


def signature(collectives) -> tuple[tuple, ...]:
    """What a list of collectives' lines depend on: (kind, axes, prefetched, routed) of each."""
    return tuple((k.kind, k.axes, k.prefetched, k.routed) for k in collectives)


def network_seconds(
    lines: LineCache,
    meshes,
    collectives,
    data: np.ndarray,
    repeats: np.ndarray,
    prefetched: np.ndarray,
    stacks=None,
    times=None,
):
    """(comm_s, prefetched_s), each (meshes, points): `collectives` (each with bytes per chip
    `data`, (collectives, points) on every mesh or (meshes, collectives, points) one per mesh,
    repeated `repeats` (collectives, 1) times, `prefetched` or not) on each of `meshes`, summed
    in dataflow order, each term as `collective_seconds` computes it. `stacks`: the meshes'
    `LineCache.stack` arrays, (meshes, collectives, lines) each, if already gathered; `times`:
    lines_seconds of them and `data`, if already computed (before the repeats)."""
    shape = (len(meshes), data.shape[-1])
    if not collectives:
        return np.zeros(shape), np.zeros(shape)
    if stacks is None and times is None:
        key = signature(collectives)
        rows = [lines.stack(mesh, key) for mesh in meshes]
        stacks = (np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
    times = lines_seconds(stacks[0], stacks[1], data) if times is None else times
    comm_s, prefetched_s = repeats[..., 0, :] * times[:, 0], np.zeros(shape)  # summed in dataflow order
    for k in range(1, len(collectives)):
        comm_s = comm_s + repeats[..., k, :] * times[:, k]
    for k in np.flatnonzero(prefetched):
        prefetched_s = prefetched_s + repeats[..., k, :] * times[:, k]
    return comm_s, prefetched_s
