"""Hardware specs: a chip, the network that joins chips, and the calibration knobs.

Two topologies:
- `Torus` (TPU): named physical axes; each chip has 2 links per axis (+ and -); slices of given
  shapes, each axis with or without its wraparound link.
- `Switched` (GPU): levels such as an NVLink island of 8 GPUs joined by InfiniBand; each level
  has a per-GPU bandwidth per direction, or (a fully connected level, no switch: MI300X
  Infinity Fabric) a link to every peer, so a group gets the links to the peers it spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from planner.specs.formats import ACTIVATION_BYTES, Formats, WeightFormat

__all__ = ["ACTIVATION_BYTES", "WeightFormat"]  # formats live in planner.specs.formats


@dataclass(frozen=True, kw_only=True)
class Chip:
    name: str
    peak_flop_per_s: dict[str, float]  # dense, per compute format; "bf16" is required (MFU's peak)
    hbm_bytes: float  # the device total the runtime sees
    hbm_bytes_per_s: float
    sparse_peak_flop_per_s: dict[str, float] = field(default_factory=dict)  # 2:4, per format
    memory_reserve_bytes: float = 0.0  # kept by the runtime (context, workspaces): not for the model
    default_weights: tuple[WeightFormat, ...] = ()  # searched without --weights; (): native_weights()

    @property
    def peak_bf16_flop_per_s(self) -> float:
        return self.peak_flop_per_s["bf16"]

    @property
    def usable_hbm_bytes(self) -> float:
        """What weights, KV cache and activations may use: HBM less the runtime's reserve."""
        return self.hbm_bytes - self.memory_reserve_bytes

    def supports(self, formats: Formats) -> bool:
        return formats.weight_peak_flop_per_s(self) is not None

    def weight_formats(self, sparse: bool = False) -> tuple[WeightFormat, ...]:
        """The weight formats this chip has a peak for (dense, or 2:4 sparse)."""
        peaks = self.sparse_peak_flop_per_s if sparse else self.peak_flop_per_s
        return tuple(w for w in WeightFormat if w.compute.label in peaks)

    def native_weights(self) -> tuple[WeightFormat, ...]:
        """The weight formats served by default: the chip file's `default_weights`, else bf16 and
        each narrower floating-point format the chip computes in (W8A8 fp8, W4A4 fp4), and int8
        weight-only where it has no fp8 peak (the paper's TPU v4 choice)."""
        if self.default_weights:
            return self.default_weights
        native = [w for w in WeightFormat if w.label in ("fp8", "fp4") and w.compute.label in self.peak_flop_per_s]
        return (WeightFormat.BF16, *([] if native else [WeightFormat.INT8]), *native)


@dataclass(frozen=True, kw_only=True)
class Slice:
    chips: int
    shape: tuple[int, ...]  # one size per torus axis
    wraparound: tuple[bool, ...]  # per torus axis: whether it closes into a ring


@dataclass(frozen=True, kw_only=True)
class Torus:
    axes: tuple[str, ...]
    link_bytes_per_s: float  # per link, one direction
    links_per_axis: int = 2
    slices: tuple[Slice, ...] = ()
    bandwidth_model: str = "chip"  # "chip": every collective gets all links; "axes": only its axes'

    @property
    def chip_counts(self) -> tuple[int, ...]:
        return tuple(sorted({s.chips for s in self.slices}))

    def forms(self, chips: int) -> bool:
        """Whether `chips` chips are one of the offered slices."""
        return chips in self.chip_counts


@dataclass(frozen=True, kw_only=True)
class Level:
    name: str
    size: int | None  # GPUs per group at this level; None for the outermost (any count)
    bytes_per_s: float  # per GPU, per direction (fully connected: with every peer of the level)
    fully_connected: bool = False  # no switch: one set of links from each GPU to each peer
    link_bytes_per_s: float = 0.0  # fully connected: one link, per direction
    links_per_peer: int = 1  # fully connected: links between each pair of GPUs
    in_switch_reduction: bool = False  # the switch reduces (NVLink SHARP): an all-reduce sends D, not 2(k-1)/k D

    def bandwidth(self, peers: int) -> float:
        """Per-GPU bytes/s per direction for a group spanning `peers` GPUs of this level: the
        switched bandwidth, or, fully connected, the links to the other peers - 1."""
        if self.fully_connected:
            return self.links_per_peer * (peers - 1) * self.link_bytes_per_s
        return self.bytes_per_s


@dataclass(frozen=True, kw_only=True)
class Switched:
    levels: tuple[Level, ...]
    chip_counts_: tuple[int, ...] = ()

    @property
    def chip_counts(self) -> tuple[int, ...]:
        """The counts a search takes by default (the cluster file's `chips`)."""
        return self.chip_counts_

    @property
    def group_chips(self) -> int:
        """GPUs in one group of the outermost level (a node of 8 for NVLink within, IB across)."""
        inner = 1
        for level in self.levels[:-1]:
            inner *= level.size or 1
        return inner

    def forms(self, chips: int) -> bool:
        """Whether `chips` GPUs can be used: an offered count, or any whole number of outermost
        groups (nodes) up to the largest offered count (3 nodes: 24 H100s)."""
        most = max(self.chip_counts_, default=0)
        return chips in self.chip_counts_ or (
            len(self.levels) > 1 and chips % self.group_chips == 0 and 0 < chips <= most
        )


@dataclass(frozen=True, kw_only=True)
class Calibration:
    """Constants shared by every model and layout on one cluster; ideal until fitted.

    `weight_gather_efficiency` is the network efficiency of the prefetched weight all-gathers
    (weight-gathered layouts), a different kind of transfer from the activation collectives
    that `network_efficiency` scales (huge, streamed ahead under the einsums, competing with
    them for HBM). Its default, None, means "the same as `network_efficiency`": it is resolved
    when the Calibration is built, so the field always holds a number afterwards (with
    `dataclasses.replace`, give it again if `network_efficiency` changes). It prices the weight
    gathers of a torus and of switched levels without constants of their own: a level with its
    own (`levels`, fitted to NCCL's tables) prices a weight all-gather like any all-gather there,
    with its fitted lines, unless it gives its own `weight_gather_efficiency` (data on weight
    gathers over that level say otherwise).

    `matmul_half_rows` makes matmul efficiency depend on the matmul's size: an einsum whose
    per-chip activation operand has m rows (tokens) runs at
        matmul_efficiency * m / (m + matmul_half_rows),
    i.e. it costs as if it had `matmul_half_rows` more rows. 0 (ideal) is size-independent.

    `narrow_matmul_efficiency` takes the place of `matmul_efficiency` for an einsum that runs at
    a peak above the chip's dense bf16 one (fp8, int8, fp4 and the 2:4 sparse peaks): the share
    of that higher peak large matmuls sustain, lower where power and clocks limit the narrow
    formats' tensor-core rate (planner.cost.kernels.matmul_flop_per_s). None (absent): the same
    as `matmul_efficiency`, resolved where it is used, so `dataclasses.replace` of
    `matmul_efficiency` carries it along.
    """

    matmul_efficiency: float = 1.0  # achieved / peak FLOP/s of a large matmul
    hbm_efficiency: float = 1.0  # achieved / peak HBM bytes/s
    network_efficiency: float = 1.0  # achieved / peak link bytes/s (activation collectives)
    collective_latency_s: float = 0.0  # fixed cost of each ring step (hop) of a collective
    layer_overhead_s: float = 0.0  # fixed cost per layer per step
    token_overhead_s: float = 0.0  # fixed cost per token per layer (each token a chip holds)
    overlap: float = 0.0  # share of min(max(compute, memory), activation comm) hidden (0: sum, 1: max)
    weight_gather_efficiency: float | None = None  # achieved / peak link bytes/s of prefetched weight all-gathers
    matmul_half_rows: float = 0.0  # per-chip rows at which a matmul reaches half of matmul_efficiency
    kernel_overhead_s: float = 0.0  # fixed time of each matmul kernel (einsum) per step
    narrow_matmul_efficiency: float | None = None  # achieved / peak FLOP/s of a large matmul at a peak above bf16's
    # Per switched level (by name): its own collective constants, LEVEL_KEYS (planner.cost.network).
    levels: dict[str, dict[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weight_gather_efficiency is None:
            object.__setattr__(self, "weight_gather_efficiency", self.network_efficiency)

    def level(self, name: str) -> LevelConstants:
        """The collective constants of switched level `name`: its own where `levels` gives them,
        else the cluster-wide ones (no fixed latency, `collective_latency_s` per ring step,
        `network_efficiency`, one protocol)."""
        given = self.levels.get(name, {})
        return LevelConstants(
            latency_s=given.get("latency_s", 0.0),
            step_latency_s=given.get("step_latency_s", self.collective_latency_s),
            efficiency=given.get("efficiency", self.network_efficiency),
            bulk_latency_s=given.get("bulk_latency_s"),
            bulk_efficiency=given.get("bulk_efficiency"),
            in_switch_latency_s=given.get("in_switch_latency_s"),
            in_switch_efficiency=given.get("in_switch_efficiency"),
            weight_gather_efficiency=given.get("weight_gather_efficiency"),
            own=bool(given),
        )


# Keys of one entry of Calibration.levels; the bulk and in-switch pairs are optional (both or neither).
LEVEL_KEYS = (
    "latency_s",
    "step_latency_s",
    "efficiency",
    "bulk_latency_s",
    "bulk_efficiency",
    "in_switch_latency_s",
    "in_switch_efficiency",
    "weight_gather_efficiency",
)


@dataclass(frozen=True, kw_only=True)
class LevelConstants:
    """A switched level's collective constants (planner.cost.network has the formula)."""

    latency_s: float  # fixed time of a collective that spans the level
    step_latency_s: float  # per ring step at the level
    efficiency: float  # achieved / peak bytes/s of the latency-bound protocol
    bulk_latency_s: float | None = None  # the bandwidth protocol's fixed time (None: no such line)
    bulk_efficiency: float | None = None  # its achieved / peak bytes/s
    # the in-switch all-reduce's fixed time and efficiency (a level with `in_switch_reduction`)
    in_switch_latency_s: float | None = None
    in_switch_efficiency: float | None = None
    # prefetched weight all-gathers: measured on this level (None: its own lines if `own`, else the
    # cluster-wide weight_gather_efficiency; Calibration's docstring)
    weight_gather_efficiency: float | None = None
    own: bool = False  # the level has constants of its own (Calibration.levels)


FIELDS_OF_CALIBRATION = tuple(Calibration.__dataclass_fields__)


@dataclass(frozen=True, kw_only=True)
class MoeKernels:
    """Fitted constants of the mixture-of-experts kernels (planner.commands.calibrate.moe): DeepEP's
    dispatch/combine, normal (prefill) and low-latency (decode) kernels, per switched level a
    fixed time and the share of the level's bandwidth they sustain (planner.cost.network), and
    DeepGEMM's grouped GEMMs, the share of the weight format's peak a large grouped GEMM sustains
    and the rows per expert at which it reaches half of it (planner.cost.kernels)."""

    normal: tuple[tuple[str, float, float], ...]  # (level, latency_s, efficiency) per level
    low_latency: tuple[tuple[str, float, float], ...]  # the same for the low-latency kernels
    grouped_efficiency: float
    grouped_half_rows: float
    borrowed_from: str | None = None  # a preset that carries another's by a stated rule

    def level(self, kernels: str, name: str) -> tuple[float, float] | None:
        """(latency_s, efficiency) of `kernels` ("normal" or "low-latency") on level `name`."""
        table = self.normal if kernels == "normal" else self.low_latency
        return next(((a, e) for level, a, e in table if level == name), None)


@dataclass(frozen=True, kw_only=True)
class Cluster:
    name: str
    chip: Chip
    topology: Torus | Switched
    calibration: Calibration = field(default_factory=Calibration)
    source: str = ""
    price_usd_per_chip_hour: float | None = None
    # A preset without measurements of its own: the preset whose fitted constants it carries by a
    # stated rule (not fitted: "calibration borrowed from ..." in every output), and how much to
    # trust that rule ("low": another vendor's chip and software).
    calibration_borrowed_from: str | None = None
    calibration_confidence: str | None = None
    # of a borrowed calibration, the constants fitted to this chip's own measurements (its file's
    # calibration block, written by `planner calibrate`): they replace the borrowed values
    calibration_refitted: tuple[str, ...] = ()
    # DeepEP/DeepGEMM constants (None: dispatch/combine priced as plain all-to-alls, expert
    # matmuls as dense ones)
    moe_kernels: MoeKernels | None = None
    # The engine profile whose constants replaced the file's engine fields (planner.specs.engine;
    # "": none applied, the file's own)
    engine: str = ""

    @property
    def calibrated(self) -> bool:
        """True only for constants fitted to measurements of this cluster: False for ideal
        constants ("uncalibrated") and for borrowed ones (`calibration_status`)."""
        return self.calibration_borrowed_from is None and self.calibration != Calibration()

    @property
    def calibration_status(self) -> str:
        """'calibrated', 'uncalibrated' (ideal constants) or 'calibration borrowed from X (not fitted)'."""
        if self.calibration_borrowed_from is not None:
            low = ", low confidence" if self.calibration_confidence == "low" else ""
            if self.calibration_refitted:
                refitted = ", ".join(self.calibration_refitted)
                return (
                    f"calibration borrowed from {self.calibration_borrowed_from} ({refitted} fitted to this chip's "
                    f"serving runs, the rest not fitted{low})"
                )
            return f"calibration borrowed from {self.calibration_borrowed_from} (not fitted{low})"
        return "calibrated" if self.calibrated else "uncalibrated"

    @property
    def engine_note(self) -> str:
        """'engine profile NAME' (planner.specs.engine), or '' where none was applied."""
        return f"engine profile {self.engine}" if self.engine else ""
