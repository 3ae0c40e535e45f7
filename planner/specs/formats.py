"""Number formats: how weights and the KV cache are stored, and which peak of the chip a matmul
runs at. Each enum carries its data; docs/formats.md gives the literature on what each costs in
quality (the planner does not model quality).

- `ComputeFormat`: the operand format of a matmul against the weights, i.e. which entry of the
  chip's `peak_flop_per_s` it runs at. Weight-only formats are dequantised and run at bf16.
- `WeightFormat`: stored bytes per weight, scales included, and the compute format it implies.
- `KvFormat`: stored bytes per KV-cache element (scales included, per d_head vector when the
  scales are per token and head). The attention core dequantises to bf16: its matmuls (QK, AV)
  run at the bf16 peak whatever the cache holds.
- `Sparsity`: a what-if. 2:4 structured sparsity keeps 2 of every 4 weights plus a 2-bit index
  for each kept one (1 bit per dense weight), and runs weight matmuls at the chip's sparse peak.

Activations and their collectives stay bf16 (`ACTIVATION_BYTES`) in every format, except the
dispatch all-to-all of MoE layers with fp8 W8A8 weights: the tokens are quantised to fp8 before
they leave for their experts (as DeepEP's fp8 dispatch does; the combine stays bf16),
`Formats.dispatch_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

ACTIVATION_BYTES = 2  # activations and their collectives move in bf16
INDEX_BYTES_PER_WEIGHT_2_4 = 2 * 2 / 4 / 8  # 2:4: two 2-bit indices per group of four weights = 1 bit each


class ComputeFormat(Enum):
    """Which of the chip's peaks a matmul runs at (a key of `peak_flop_per_s`)."""

    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    FP4 = "fp4"

    @property
    def label(self) -> str:
        return self.value


class WeightFormat(Enum):
    """Stored weights: (label, payload bytes per weight, scale bytes, weights per scale, compute
    format, description). Bytes per weight = payload + scale bytes / weights per scale.

    Per-channel and per-tensor scales (int8, fp8, int8-w8a8) are one scale per output row of
    d_model or more weights (< 0.03% of the bytes for d_model >= 4096) and are not counted, so
    those formats are exactly 1 byte per weight; group-wise and block scales are counted."""

    BF16 = ("bf16", 2.0, 0, 1, ComputeFormat.BF16, "bf16 weights and matmuls")
    INT8 = (
        "int8",
        1.0,
        0,
        1,
        ComputeFormat.BF16,
        "int8 weights (per-channel scales), dequantised: matmuls at the bf16 peak",
    )
    FP8 = (
        "fp8",
        1.0,
        0,
        1,
        ComputeFormat.FP8,
        "W8A8: fp8 weights and activations (per-tensor scales), matmuls at the fp8 peak",
    )
    INT8_W8A8 = (
        "int8-w8a8",
        1.0,
        0,
        1,
        ComputeFormat.INT8,
        "W8A8 (SmoothQuant-style): int8 weights and activations, matmuls at the int8 peak",
    )
    INT4 = (
        "int4",
        0.5,
        2,
        128,
        ComputeFormat.BF16,
        "int4 weights, one 16-bit scale per group of 128, dequantised: matmuls at the bf16 peak",
    )
    FP4 = (
        "fp4",
        0.5,
        1,
        16,
        ComputeFormat.FP4,
        "W4A4 (NVFP4): fp4 weights and activations, one fp8 scale per block of 16, fp4 peak",
    )

    def __init__(
        self, label: str, payload_bytes: float, scale_bytes: int, group: int, compute: ComputeFormat, description: str
    ) -> None:
        self.label = label
        self.payload_bytes = payload_bytes
        self.scale_bytes = scale_bytes
        self.group = group
        self.compute = compute
        self.description = description

    @property
    def bytes_per_element(self) -> float:
        """Stored bytes per weight, scales included (int4: 0.5 + 2/128; fp4: 0.5 + 1/16)."""
        return self.payload_bytes + self.scale_bytes / self.group

    @classmethod
    def parse(cls, label: str) -> WeightFormat:
        for fmt in cls:
            if fmt.label == label:
                return fmt
        raise ValueError(label)


class KvFormat(Enum):
    """KV cache storage: (label, bytes per element, scale bytes per d_head vector, description)."""

    BF16 = ("bf16", 2.0, 0, "bf16")
    FP8 = ("fp8", 1.0, 0, "fp8 (e4m3, per-tensor scale)")
    INT8 = ("int8", 1.0, 4, "int8, a 16-bit scale and zero point per token and kv head")

    def __init__(self, label: str, element_bytes: float, scale_bytes_per_vector: int, description: str) -> None:
        self.label = label
        self.element_bytes = element_bytes
        self.scale_bytes_per_vector = scale_bytes_per_vector
        self.description = description

    def bytes_per_element(self, d_head: int) -> float:
        """Stored bytes per K or V element, scales included (int8 with d_head 128: 1 + 4/128)."""
        return self.element_bytes + self.scale_bytes_per_vector / d_head


class Sparsity(Enum):
    """Weight sparsity (a what-if: quality is not modelled)."""

    DENSE = "dense"
    TWO_FOUR = "2:4"

    @property
    def label(self) -> str:
        return self.value


@dataclass(frozen=True, kw_only=True)
class Formats:
    """One point's number formats: its weights, KV cache and sparsity."""

    weights: WeightFormat = WeightFormat.BF16
    kv_cache: KvFormat = KvFormat.BF16
    sparsity: Sparsity = Sparsity.DENSE

    @property
    def weight_bytes(self) -> float:
        """Stored bytes per (dense) weight: 2:4 keeps half the payload plus its indices; scales
        stay per group of dense weights."""
        w = self.weights
        if self.sparsity is Sparsity.TWO_FOUR:
            return w.payload_bytes / 2 + INDEX_BYTES_PER_WEIGHT_2_4 + w.scale_bytes / w.group
        return w.bytes_per_element

    @property
    def dispatch_bytes(self) -> float:
        """Bytes per element of the MoE dispatch all-to-all: 1 when the expert matmuls take fp8
        activations (fp8 W8A8), else bf16. (Per-token scales, 4 B per 128 elements in DeepEP, are
        not counted.)"""
        return 1.0 if self.weights.compute is ComputeFormat.FP8 else ACTIVATION_BYTES

    def weight_peak_flop_per_s(self, chip) -> float | None:
        """The peak the weight matmuls run at on `chip` (None: the chip has no such peak)."""
        peaks = chip.sparse_peak_flop_per_s if self.sparsity is Sparsity.TWO_FOUR else chip.peak_flop_per_s
        return peaks.get(self.weights.compute.label)

    @property
    def label(self) -> str:
        return f"{self.weights.label} weights, {self.kv_cache.label} KV cache" + (
            f", {self.sparsity.label} sparse" if self.sparsity is not Sparsity.DENSE else ""
        )
