"""The cluster schema: a cluster YAML file (chip, torus or switched network, calibration) to a
`Cluster`."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from planner.config.presets import locate
from planner.config.yamlio import (
    At,
    Field,
    Fields,
    boolean,
    choice,
    count,
    entries,
    fields,
    fraction,
    list_of,
    load_document,
    number,
    passthrough,
    text,
)
from planner.specs.hardware import Calibration, Chip, Cluster, Level, MoeKernels, Slice, Switched, Torus, WeightFormat
from planner.units import parse_quantity

COMPUTE_FORMATS = ("bf16", "fp16", "fp8", "int8", "int4", "fp4", "tf32", "fp32")

EFFICIENCY = number(maximum=1.0)
LATENCY = number("seconds", inclusive=True)
CALIBRATION_FIELDS = {
    "matmul_efficiency": Field(EFFICIENCY, required=False),
    "hbm_efficiency": Field(EFFICIENCY, required=False),
    "network_efficiency": Field(EFFICIENCY, required=False),
    "collective_latency_s": Field(LATENCY, required=False),
    "layer_overhead_s": Field(LATENCY, required=False),
    "token_overhead_s": Field(LATENCY, required=False),
    "overlap": Field(number(inclusive=True, maximum=1.0), required=False),
    "weight_gather_efficiency": Field(EFFICIENCY, required=False),  # absent: network_efficiency
    "matmul_half_rows": Field(number(inclusive=True), required=False),
    "kernel_overhead_s": Field(LATENCY, required=False),
    "narrow_matmul_efficiency": Field(EFFICIENCY, required=False),  # absent: matmul_efficiency
    "levels": Field(lambda at: _read_level_calibration(at), required=False),
}
LEVEL_CALIBRATION_FIELDS = {
    "latency_s": Field(LATENCY, required=False),
    "step_latency_s": Field(LATENCY, required=False),
    "efficiency": Field(EFFICIENCY, required=False),
    "bulk_latency_s": Field(LATENCY, required=False),
    "bulk_efficiency": Field(EFFICIENCY, required=False),
    "in_switch_latency_s": Field(LATENCY, required=False),
    "in_switch_efficiency": Field(EFFICIENCY, required=False),
    "weight_gather_efficiency": Field(EFFICIENCY, required=False),  # absent: the level's own lines
}

PEAK_FIELDS = {fmt: Field(number("flop_per_s"), required=fmt == "bf16") for fmt in COMPUTE_FORMATS}
SPARSE_PEAK_FIELDS = {fmt: Field(number("flop_per_s"), required=False) for fmt in COMPUTE_FORMATS}
CHIP_FIELDS = {
    "name": Field(text),
    "peak_flop_per_s": Field(lambda at: fields(at, PEAK_FIELDS, "peak rates per format").values),
    # 2:4 structured-sparsity peaks, as vendors print them (used only by --sparsity 2:4)
    "sparse_peak_flop_per_s": Field(
        lambda at: fields(at, SPARSE_PEAK_FIELDS, "sparse peak rates per format"), required=False
    ),
    "hbm": Field(number("bytes")),
    "hbm_bandwidth": Field(number("bytes_per_s")),
    "memory_reserve": Field(passthrough, required=False),  # '10%' of hbm or a size: read with hbm
    # the weight formats searched without --weights (absent: Chip.native_weights's rule)
    "default_weights": Field(list_of(choice({w.label: w for w in WeightFormat}, "weight format")), required=False),
}
SLICE_FIELDS = {
    "chips": Field(count),
    "shape": Field(list_of(count, unique=False)),
    "wraparound": Field(passthrough),
}  # true/false (every axis) or one per axis
TORUS_FIELDS = {
    "axes": Field(list_of(text)),
    "link_bandwidth": Field(number("bytes_per_s")),
    "links_per_axis": Field(count),
    "slices": Field(list_of(passthrough, unique=False)),
    "bandwidth_model": Field(choice({"chip": "chip", "axes": "axes"}, "bandwidth model"), required=False),
}
LEVEL_FIELDS = {
    "name": Field(text),
    "size": Field(count, required=False),
    "bandwidth": Field(number("bytes_per_s"), required=False),
    # a level without a switch: each GPU has links_per_peer links to every peer
    "fully_connected": Field(boolean, required=False),
    "link_bandwidth": Field(number("bytes_per_s"), required=False),
    "links_per_peer": Field(count, required=False),
    # the switch reduces all-reduce data itself (NVLink SHARP on NVSwitch gen 3+)
    "in_switch_reduction": Field(boolean, required=False),
}
SWITCHED_FIELDS = {"levels": Field(list_of(passthrough, unique=False)), "chips": Field(list_of(count))}
TOPOLOGY_FIELDS = {"torus": Field(passthrough, required=False), "switched": Field(passthrough, required=False)}
CLUSTER_FIELDS = {
    "name": Field(text),
    "chip": Field(lambda at: _read_chip(fields(at, CHIP_FIELDS, "a chip"))),
    "topology": Field(lambda at: _read_topology(fields(at, TOPOLOGY_FIELDS, "a topology"))),
    "calibration": Field(
        lambda at: Calibration(**fields(at, CALIBRATION_FIELDS, "calibration").values), required=False
    ),  # the keys are Calibration's fields (tested)
    "source": Field(text, required=False),
    "price_usd_per_chip_hour": Field(number(), required=False),  # cite its source in a comment
    # a preset without measurements: another preset's fitted constants, by a stated rule (comment)
    "calibration_borrowed_from": Field(text, required=False),
    "calibration_confidence": Field(choice({"low": "low", "medium": "medium"}, "confidence"), required=False),
    # DeepEP/DeepGEMM constants fitted by planner.commands.calibrate.moe, or the preset that
    # carries them by a stated rule (comment)
    "moe_kernels": Field(passthrough, required=False),
    "moe_kernels_from": Field(text, required=False),
}
MOE_KERNEL_FIELDS = {
    "deepep_normal": Field(passthrough),
    "deepep_low_latency": Field(passthrough),
    "grouped_matmul_efficiency": Field(EFFICIENCY),
    "grouped_half_rows": Field(number(inclusive=True)),
}
MOE_LEVEL_FIELDS = {"latency_s": Field(LATENCY), "efficiency": Field(EFFICIENCY)}


def load_cluster(name_or_path: str, *, base: Path | None = None, at: At | None = None) -> Cluster:
    return _read_cluster(load_document(locate("clusters", name_or_path, base, at)))


def _read_cluster(root: At, *, donor: bool = False) -> Cluster:
    """A cluster; `donor`: read only for its own fitted constants (another preset borrows them),
    without resolving what it borrows in turn (h800-sxm borrows h100-sxm's calibration, h100-sxm
    its moe_kernels)."""
    f = fields(root, CLUSTER_FIELDS, "a cluster")
    calibration = f.get("calibration", Calibration())
    borrowed = f.get("calibration_borrowed_from")
    refitted: tuple[str, ...] = ()
    if borrowed is not None:
        if not donor:
            calibration, refitted = _borrowed_calibration(f, borrowed)
    elif "calibration_confidence" in f.values:
        raise f.where["calibration_confidence"].error(
            "calibration_confidence without calibration_borrowed_from",
            hint="it rates a borrowed calibration; remove it",
        )
    if isinstance(f["topology"], Switched):
        _check_level_names(f, calibration)
        _check_weight_gathers(f, calibration)
    return Cluster(
        name=f["name"],
        chip=f["chip"],
        topology=f["topology"],
        calibration=calibration,
        source=f.get("source", ""),
        price_usd_per_chip_hour=f.get("price_usd_per_chip_hour"),
        calibration_borrowed_from=borrowed,
        calibration_confidence=f.get("calibration_confidence"),
        calibration_refitted=refitted,
        moe_kernels=None if donor and "moe_kernels" not in f.values else _moe_kernels(f),
    )


def _moe_kernels(f: Fields) -> MoeKernels | None:
    """`moe_kernels:` (fitted constants, per level by name) or `moe_kernels_from: <preset>` (that
    preset's, its levels renamed by position, innermost to innermost: the rule its comment states)."""
    if "moe_kernels" in f.values and "moe_kernels_from" in f.values:
        raise f.where["moe_kernels_from"].error(
            "both a moe_kernels block and moe_kernels_from",
            hint="keep one: fitted constants, or the preset they come from",
        )
    if "moe_kernels_from" in f.values:
        at = f.where["moe_kernels_from"]
        source = _read_cluster(
            load_document(locate("clusters", f["moe_kernels_from"], Path(at.file).parent, at)), donor=True
        )
        if source.moe_kernels is None or source.moe_kernels.borrowed_from is not None:
            raise at.error(
                f"{f['moe_kernels_from']!r} has no fitted moe_kernels of its own",
                hint="name the preset whose moe_kernels block was fitted (h800-sxm)",
            )
        ours = [level.name for level in f["topology"].levels] if isinstance(f["topology"], Switched) else []
        theirs = [level.name for level in source.topology.levels]
        if len(ours) != len(theirs):
            raise at.error(
                f"{f['moe_kernels_from']!r} has {len(theirs)} switched levels, this cluster {len(ours)}",
                hint="carry them from a cluster with as many switched levels",
            )
        rename = dict(zip(theirs, ours))
        m = source.moe_kernels
        return replace(
            m,
            normal=tuple((rename[n], a, e) for n, a, e in m.normal),
            low_latency=tuple((rename[n], a, e) for n, a, e in m.low_latency),
            borrowed_from=source.name,
        )
    if "moe_kernels" not in f.values:
        return None
    v = fields(f.where["moe_kernels"], MOE_KERNEL_FIELDS, "moe_kernels")
    names = [level.name for level in f["topology"].levels] if isinstance(f["topology"], Switched) else []

    def per_level(key):
        out = []
        for name, name_at, value_at in entries(v.where[key], f"{key} (level name: latency_s, efficiency)"):
            if name not in names:
                raise name_at.error(
                    f"{name!r} is not a level of this cluster's topology",
                    hint=f"its levels: {', '.join(names) or 'none (a torus)'}",
                )
            c = fields(value_at, MOE_LEVEL_FIELDS, "a level's kernel constants")
            out.append((name, c["latency_s"], c["efficiency"]))
        return tuple(out)

    return MoeKernels(
        normal=per_level("deepep_normal"),
        low_latency=per_level("deepep_low_latency"),
        grouped_efficiency=v["grouped_matmul_efficiency"],
        grouped_half_rows=v["grouped_half_rows"],
    )


def _borrowed_calibration(f: Fields, name: str) -> tuple[Calibration, tuple[str, ...]]:
    """Another cluster's fitted constants (`calibration_borrowed_from`), its switched levels
    renamed by position (innermost to innermost): the rule a preset without measurements states;
    a calibration block beside it holds the constants fitted to this chip's own measurements
    (`planner calibrate ... --fit NAMES -o FILE`), which replace the borrowed ones (names returned)."""
    at = f.where["calibration_borrowed_from"]
    refitted: dict = {}
    if "calibration" in f.values:
        given = {key: key_at for key, key_at, _ in entries(f.where["calibration"], "calibration")}
        if "levels" in given:
            raise given["levels"].error(
                "a borrowed calibration's levels are the donor's, renamed by position",
                hint="refit scalar constants only beside calibration_borrowed_from, or drop it and give the whole calibration",
            )
        refitted = {key: getattr(f["calibration"], key) for key in given}
    source = _read_cluster(load_document(locate("clusters", name, Path(at.file).parent, at)), donor=True)
    if source.calibration_borrowed_from is not None or not source.calibrated:
        raise at.error(
            f"{name!r} has no fitted calibration of its own",
            hint="borrow from a calibrated preset (planner presets lists them)",
        )
    if isinstance(source.topology, Switched) != isinstance(f["topology"], Switched):
        raise at.error(
            f"{name!r} has another kind of topology (torus vs switched)",
            hint="borrow from a cluster of the same kind: its constants are per torus or per level",
        )
    cal = source.calibration
    if cal.levels:
        ours, theirs = f["topology"].levels, source.topology.levels
        if len(ours) != len(theirs):
            raise at.error(
                f"{name!r} has {len(theirs)} switched levels, this cluster {len(ours)}",
                hint="borrow from a cluster with as many levels",
            )
        cal = replace(
            cal,
            levels={mine.name: cal.levels[other.name] for mine, other in zip(ours, theirs) if other.name in cal.levels},
        )
    return replace(cal, **refitted), tuple(refitted)


def _check_weight_gathers(f: Fields, calibration: Calibration) -> None:
    """A cluster-wide weight_gather_efficiency that no level would use (every level has constants
    of its own, which price its weight gathers: planner.cost.network) is a mistake: say where it goes."""
    if "calibration" not in f.values:
        return
    given = {key: key_at for key, key_at, _ in entries(f.where["calibration"], "calibration")}
    if "weight_gather_efficiency" in given and all(level.name in calibration.levels for level in f["topology"].levels):
        raise given["weight_gather_efficiency"].error(
            "a cluster-wide weight_gather_efficiency is not used here: every switched level has constants of its "
            "own, which price its weight all-gathers",
            hint="give it per level (levels: {nvlink: {..., weight_gather_efficiency: 0.7}}) if you measured "
            "weight gathers there, or drop it",
        )


def _check_level_names(f: Fields, calibration: Calibration) -> None:
    """Every `calibration.levels` name must be one of the topology's levels."""
    names = [level.name for level in f["topology"].levels]
    if "calibration" not in f.values:
        return
    for key, _, levels_at in entries(f.where["calibration"], "calibration"):
        if key != "levels":
            continue
        for name, name_at, _ in entries(levels_at, "per-level constants"):
            if name not in names:
                raise name_at.error(
                    f"{name!r} is not a level of this cluster's topology", hint=f"its levels: {', '.join(names)}"
                )


def _read_level_calibration(at: At) -> dict[str, dict[str, float]]:
    """`levels: {nvlink: {latency_s: ..., efficiency: ...}, ...}`: per switched level constants."""
    out = {}
    for name, _, value_at in entries(at, "per-level constants (level name: its constants)"):
        v = fields(value_at, LEVEL_CALIBRATION_FIELDS, "a level's constants")
        if ("bulk_latency_s" in v.values) != ("bulk_efficiency" in v.values):
            raise v.at.error(
                "give both 'bulk_latency_s' and 'bulk_efficiency' or neither",
                hint="they are the bandwidth protocol's line: its fixed time and efficiency",
            )
        if ("in_switch_latency_s" in v.values) != ("in_switch_efficiency" in v.values):
            raise v.at.error(
                "give both 'in_switch_latency_s' and 'in_switch_efficiency' or neither",
                hint="they are the in-switch all-reduce's line: its fixed time and efficiency",
            )
        out[name] = dict(v.values)
    return out


def _read_chip(f: Fields) -> Chip:
    sparse = f.get("sparse_peak_flop_per_s")
    if sparse is not None:
        for fmt, where in sparse.where.items():
            if fmt not in f["peak_flop_per_s"]:
                raise where.error(
                    f"a sparse {fmt} peak without a dense one",
                    hint=f"add {fmt} to peak_flop_per_s (dense) or remove it here",
                )
    reserve = _memory_reserve(f.where["memory_reserve"], f["hbm"]) if "memory_reserve" in f.values else 0.0
    for i, w in enumerate(f.get("default_weights", ())):
        if w.compute.label not in f["peak_flop_per_s"]:
            raise (
                f.where["default_weights"]
                .item(i)
                .error(
                    f"{w.label} weights need a {w.compute.label} peak, which peak_flop_per_s does not declare",
                    hint=f"add a {w.compute.label} peak, or name formats the chip has a peak for",
                )
            )
    return Chip(
        default_weights=tuple(f.get("default_weights", ())),
        name=f["name"],
        peak_flop_per_s=f["peak_flop_per_s"],
        hbm_bytes=f["hbm"],
        hbm_bytes_per_s=f["hbm_bandwidth"],
        sparse_peak_flop_per_s=sparse.values if sparse is not None else {},
        memory_reserve_bytes=reserve,
    )


def _memory_reserve(at: At, hbm_bytes: float) -> float:
    """'10%' of HBM or a size ('1 GiB'); a bare number is ambiguous and refused."""
    raw = text(at).strip()
    if raw.endswith("%"):
        share = fraction(at)
        if share >= 1:
            raise at.error("a reserve of all of HBM leaves nothing for the model")
        return share * hbm_bytes
    try:
        reserve = parse_quantity(raw, "bytes")
    except ValueError as err:
        raise at.error(
            f"expected a share of HBM such as '10%' or a size such as '1 GiB', found {raw!r} ({err})"
        ) from None
    if not 0 <= reserve < hbm_bytes:
        raise at.error(f"the reserve {raw!r} must be at least 0 and less than hbm")
    return reserve


def _wraparound(at: At, axes: tuple[str, ...]) -> tuple[bool, ...]:
    """`true`/`false` for every axis, or a list of one boolean per axis."""
    if not isinstance(at.node.value, list):
        return (boolean(at),) * len(axes)
    wraps = list_of(boolean, unique=False)(at)
    if len(wraps) != len(axes):
        raise at.error(
            f"wraparound has {len(wraps)} values but the torus has {len(axes)} axes ({', '.join(axes)})",
            hint="one true/false per axis, or one for all",
        )
    return wraps


def _read_topology(f: Fields) -> Torus | Switched:
    if len(f.values) != 1:
        raise f.at.error(
            "expected exactly one of 'torus' or 'switched'",
            hint="torus for TPU slices, switched for GPU nodes joined by a network",
        )
    if "torus" in f.values:
        return _read_torus(fields(f["torus"], TORUS_FIELDS, "a torus"))
    return _read_switched(fields(f["switched"], SWITCHED_FIELDS, "a switched network"))


def _read_torus(f: Fields) -> Torus:
    axes = f["axes"]
    slices: list[Slice] = []
    for slice_at in f["slices"]:
        s = fields(slice_at, SLICE_FIELDS, "a slice")
        shape, where = s["shape"], s.where["shape"]
        if len(shape) != len(axes):
            raise where.error(f"shape has {len(shape)} sizes but the torus has {len(axes)} axes ({', '.join(axes)})")
        if math.prod(shape) != s["chips"]:
            raise where.error(f"shape {'x'.join(map(str, shape))} holds {math.prod(shape)} chips, not {s['chips']}")
        if any(s["chips"] == other.chips for other in slices):
            raise s.where["chips"].error(f"a slice of {s['chips']} chips is already listed")
        slices.append(Slice(chips=s["chips"], shape=shape, wraparound=_wraparound(s["wraparound"], axes)))
    return Torus(
        axes=axes,
        link_bytes_per_s=f["link_bandwidth"],
        links_per_axis=f["links_per_axis"],
        slices=tuple(slices),
        bandwidth_model=f.get("bandwidth_model", "chip"),
    )


def _level(v: Fields, outermost: bool) -> Level:
    """A switched level (`bandwidth` per GPU), or a fully connected one (`link_bandwidth` per
    link to each peer, `links_per_peer`): its bandwidth depends on the peers a group spans."""
    connected = v.get("fully_connected", False)
    need, refuse = (
        (("link_bandwidth", "links_per_peer"), ("bandwidth",))
        if connected
        else (("bandwidth",), ("link_bandwidth", "links_per_peer"))
    )
    if connected and "in_switch_reduction" in v.values:
        raise v.where["in_switch_reduction"].error(
            "a fully connected level has no switch to reduce in",
            hint="remove in_switch_reduction, or describe a switched level",
        )
    for key in refuse:
        if key in v.values:
            raise v.where[key].error(
                f"{key!r} does not apply to a {'fully connected' if connected else 'switched'} level",
                hint="a fully connected level gives link_bandwidth and links_per_peer; a switched one gives bandwidth",
            )
    for key in need:
        if key not in v.values:
            raise v.at.child(v.at.node, key).error(
                f"missing key {key!r} in a {'fully connected' if connected else 'switched'} level"
            )
    if connected and outermost:
        raise v.where["fully_connected"].error(
            "the outermost level joins any number of groups; it cannot be fully connected", hint="add an outer level"
        )
    if not connected:
        return Level(
            name=v["name"],
            size=v.get("size"),
            bytes_per_s=v["bandwidth"],
            in_switch_reduction=v.get("in_switch_reduction", False),
        )
    link, per_peer = v["link_bandwidth"], v["links_per_peer"]
    return Level(
        name=v["name"],
        size=v["size"],
        bytes_per_s=per_peer * (v["size"] - 1) * link,
        fully_connected=True,
        link_bytes_per_s=link,
        links_per_peer=per_peer,
    )


def _read_switched(f: Fields) -> Switched:
    level_ats = f["levels"]
    levels: list[Level] = []
    for i, level_at in enumerate(level_ats):
        v = fields(level_at, LEVEL_FIELDS, "a network level")
        outermost = i == len(level_ats) - 1
        if outermost and "size" in v.values:
            raise v.where["size"].error(
                "the outermost level has no size (it joins any number of groups)",
                hint="remove 'size' or add an outer level",
            )
        if not outermost and "size" not in v.values:
            raise level_at.child(level_at.node, "size").error(
                "missing key 'size' (every level but the outermost has one)"
            )
        inner = levels[-1].size if levels else None
        if inner and "size" in v.values and (v["size"] <= inner or v["size"] % inner):
            raise v.where["size"].error(f"size {v['size']} is not a larger multiple of the inner level's size {inner}")
        levels.append(_level(v, outermost))
    for i, n in enumerate(f["chips"]):
        for level in levels[:-1]:
            if n > level.size and n % level.size:
                raise (
                    f.where["chips"]
                    .item(i)
                    .error(
                        f"{n} chips do not fill whole {level.name} groups of {level.size}",
                        hint=f"use at most {level.size} chips or a multiple of {level.size}",
                    )
                )
    return Switched(levels=tuple(levels), chip_counts_=tuple(sorted(f["chips"])))
