"""Meshes: how a slice's physical axes (torus) or network levels (switched) form the logical
mesh axes x, y, z that layouts shard over.

- Torus: every assignment of whole physical axes to x, y, z (an axis is a ring; it is not split).
- Switched levels: each level's GPU count is factorised into three ordered factors, one per
  logical axis, so x may span, say, 2 GPUs of an NVLink island times 4 nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from itertools import product

import numpy as np

from planner.specs.hardware import Cluster, Switched, Torus

Piece = tuple[str, int]  # (physical axis or network level, chips along it)


@dataclass(frozen=True, kw_only=True)
class Mesh:
    chips: int
    physical: tuple[Piece, ...]  # the slice: torus axes or levels, with sizes
    logical: tuple[tuple[Piece, ...], tuple[Piece, ...], tuple[Piece, ...]]  # pieces of x, y, z
    torus: bool  # torus axes (names print bare) or switched levels (names print with a size)
    wraparound: tuple[bool, ...] = ()  # per physical torus axis (empty: every ring closes)

    def wraps(self, axis: str) -> bool:
        """Whether physical axis `axis` closes into a ring (its wraparound link exists)."""
        for (name, _), wrap in zip(self.physical, self.wraparound):
            if name == axis:
                return wrap
        return True

    @cached_property
    def sizes(self) -> dict[str, int]:
        return {axis: _product(pieces) for axis, pieces in zip("xyz", self.logical)}

    def pieces(self, axes: str) -> tuple[Piece, ...]:
        """The physical pieces spanned by logical axes `axes`, in a canonical order."""
        return _pieces(self.logical, axes)

    def moves_nothing(self, term) -> bool:
        """A collective-only layout term over axes that span one chip: it moves nothing."""
        return (
            term.collective is not None
            and _product(self.pieces(term.collective.axes)) == 1
            and not np.any(term.flops)
            and not np.any(term.hbm_bytes)
        )

    def names(self, axes: str) -> list[str]:
        return [name if self.torus else f"{name}:{n}" for name, n in self.pieces(axes)]


@lru_cache(maxsize=4096)
def _pieces(logical, axes: str) -> tuple[Piece, ...]:
    return tuple(sorted(p for axis, pieces in zip("xyz", logical) if axis in axes for p in pieces))


def piece_names(cluster: Cluster) -> tuple[str, ...]:
    """Every physical piece a mesh of the cluster can span: torus axes or switched levels."""
    topology = cluster.topology
    return tuple(topology.axes) if isinstance(topology, Torus) else tuple(level.name for level in topology.levels)


def factor_matrix(meshes: list[Mesh], names: tuple[str, ...]) -> np.ndarray:
    """(meshes, 3, pieces) int64: the chips of each physical piece (in `names` order) each of the
    logical axes x, y, z holds, 0 where it holds none of it (a torus axis of one chip assigned to
    x is 1 in x, 0 in y and z: the axis is still x's piece). A group of logical axes spans, of
    piece p, the product of its axes' nonzero entries (`spans`)."""
    index = {name: j for j, name in enumerate(names)}
    out = np.zeros((len(meshes), 3, len(names)), dtype=np.int64)
    for m, mesh in enumerate(meshes):
        for a, pieces in enumerate(mesh.logical):
            for name, k in pieces:
                out[m, a, index[name]] = k  # a logical axis holds one factor of each piece
    return out


def first_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse) for the rows of a 2-D array of non-negative integers: the index of each
    distinct row's first occurrence, in order of first occurrence, and each row's index into
    `first`. A few rows go through a dict; many are packed into one integer each where that is
    exact (columns recoded densely first if need be), as np.unique over whole rows is slow."""
    if len(keys) <= 64:
        seen: dict[tuple, int] = {}
        first, inverse = [], []
        for i, row in enumerate(map(tuple, keys.tolist())):
            code = seen.setdefault(row, len(seen))
            if code == len(first):
                first.append(i)
            inverse.append(code)
        return np.array(first, dtype=np.int64), np.array(inverse, dtype=np.int64)
    radix = keys.max(axis=0) + 1
    if float(np.prod(radix.astype(float))) >= 2.0**62:  # dense codes per column: fewer values
        keys = np.stack([np.unique(column, return_inverse=True)[1].reshape(-1) for column in keys.T], axis=1)
        radix = keys.max(axis=0) + 1
    if float(np.prod(radix.astype(float))) < 2.0**62:
        strides = np.concatenate([np.cumprod(radix[::-1])[::-1][1:], [1]]).astype(np.int64)
        _, first, inverse = np.unique(keys @ strides, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # distinct rows in order of first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.reshape(-1)]


def spans(factors: np.ndarray, axes: str) -> np.ndarray:
    """(meshes, pieces): the chips of each piece that logical axes `axes` span (1: none), from a
    `factor_matrix`."""
    held = factors[:, ["xyz".index(a) for a in axes], :]
    return np.prod(np.where(held == 0, 1, held), axis=1)


def meshes(cluster: Cluster, chips: int) -> list[Mesh]:
    """Every logical mesh the cluster offers on `chips` chips (empty if it cannot form them)."""
    topology = cluster.topology
    if isinstance(topology, Torus):
        return [m for s in topology.slices if s.chips == chips for m in _torus_meshes(topology, s)]
    return _switched_meshes(topology, chips)


def stage_meshes(cluster: Cluster, chips: int, stages: int) -> list[Mesh]:
    """The meshes of one pipeline stage when `chips` chips form `stages` stages over the outermost
    level (empty if they cannot): on switched levels, each stage is whole groups of the outermost
    level (whole nodes); on a torus, each stage is a slice the cluster offers, of chips / stages
    chips (`slice_meshes` as a stage)."""
    per_stage = stage_chips(cluster, chips, stages)
    return [] if per_stage is None else slice_meshes(cluster, per_stage, stage=stages > 1)


def slice_meshes(cluster: Cluster, chips: int, stage: bool = False) -> list[Mesh]:
    """`meshes` of `chips` chips; `stage`: as one stage of a pipeline. On a torus neighbouring
    stages are joined across each stage's largest face (along its shortest axis, the first such):
    the links of that face carry the sends instead of closing the stage's ring along that axis,
    so a stage has no wraparound there (TPU v4 cubes joined by their optical switches)."""
    found = meshes(cluster, chips)
    if not stage or not isinstance(cluster.topology, Torus):
        return found
    return [replace(m, wraparound=_cut(m)) for m in found]


def joined_axis(mesh: Mesh) -> int:
    """The physical axis a torus stage is joined to its neighbours along: its shortest (the first)."""
    extents = [n for _, n in mesh.physical]
    return extents.index(min(extents))


def _cut(mesh: Mesh) -> tuple[bool, ...]:
    wraps = mesh.wraparound or (True,) * len(mesh.physical)
    k = joined_axis(mesh)
    return tuple(w and i != k for i, w in enumerate(wraps))


def stage_chips(cluster: Cluster, chips: int, stages: int) -> int | None:
    """Chips per stage when `chips` chips form `stages` stages (see `stage_meshes`), or None if
    they cannot."""
    if stages == 1:
        return chips
    if chips % stages:
        return None
    per_stage, topology = chips // stages, cluster.topology
    if isinstance(topology, Switched):
        inner = _product((level.name, level.size or 1) for level in topology.levels[:-1])
        if per_stage % inner:
            return None
    return per_stage


def _torus_meshes(torus: Torus, slice_) -> list[Mesh]:
    physical = tuple(zip(torus.axes, slice_.shape))
    out = []
    for assignment in product(range(3), repeat=len(physical)):
        logical = tuple(tuple(p for p, a in zip(physical, assignment) if a == i) for i in range(3))
        out.append(
            Mesh(chips=slice_.chips, physical=physical, logical=logical, torus=True, wraparound=slice_.wraparound)
        )
    return out


def _switched_meshes(switched: Switched, chips: int) -> list[Mesh]:
    physical = level_sizes(switched, chips)
    if physical is None:
        return []
    per_level = [[tuple((name, f) for f in factors) for factors in _triples(n)] for name, n in physical]
    out = []
    for choice in product(*per_level):
        logical = tuple(tuple(level[i] for level in choice if level[i][1] > 1) for i in range(3))
        out.append(Mesh(chips=chips, physical=physical, logical=logical, torus=False))
    return out


def level_sizes(switched: Switched, chips: int) -> tuple[Piece, ...] | None:
    """GPUs spanned at each level (inner first) for `chips` GPUs, or None if not formable."""
    out, remaining = [], chips
    for level in switched.levels:
        if level.size is None or remaining <= level.size:
            out.append((level.name, remaining))
            remaining = 1
            break
        if remaining % level.size:
            return None
        out.append((level.name, level.size))
        remaining //= level.size
    if remaining != 1:
        return None
    return tuple(p for p in out if p[1] > 1) or ((switched.levels[0].name, 1),)


def _triples(n: int) -> list[tuple[int, int, int]]:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return [(a, b, n // (a * b)) for a in divisors for b in divisors if (n // a) % b == 0]


def _product(pieces) -> int:
    out = 1
    for _, n in pieces:
        out *= n
    return out
