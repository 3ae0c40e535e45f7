"""Plan-file readers for the number-format axes and token counts (issue 11): a token count with
k = 1024, and the check that every weight format asked for has a peak on the chip."""

from __future__ import annotations

import re
from typing import Any

from planner.config.yamlio import DECIMAL, MAX_COUNT, At, Fields, count, scalar
from planner.errors import UsageError
from planner.specs.hardware import Chip, Cluster, WeightFormat
from planner.units import fmt_percent, parse_fraction, parse_tokens

# MFU is against the bf16 peak, so a point in a faster format can pass 100%: up to the ratio of
# its peak to bf16's (fp4 2:4 over dense bf16 is 8x on B200). A larger --min-mfu is a mistake.
MAX_MFU = 8.0


def tokens(at: At) -> int:
    """A token count in a plan file: a positive whole number, or with k = 1024 ('2k' = 2048,
    '128k' = 131072) or M = 1024k ('1M'), optionally followed by 'tokens' ('2k tokens')."""
    raw = scalar(at, "a token count such as 2048 or '2k'").strip()
    if re.fullmatch(r"[0-9.eE+-]+", raw):  # a plain number (1e+3 is fine, 2.5 is not)
        return count(at)
    try:
        value = parse_tokens(raw)
    except ValueError as err:
        raise at.error(str(err)) from None
    if not 1 <= value <= MAX_COUNT:
        raise at.error(f"{raw!r} is out of range (a token count from 1 to {MAX_COUNT:g})")
    return value


def format_names(chip: Chip, sparse: bool = False) -> str:
    """'bf16, int8, int8-w8a8, int4 (peaks: bf16, int8)': the weight formats a chip runs."""
    peaks = chip.sparse_peak_flop_per_s if sparse else chip.peak_flop_per_s
    kind = "2:4 sparse peaks" if sparse else "peaks"
    return (
        f"{', '.join(w.label for w in chip.weight_formats(sparse)) or 'none'} "
        f"({kind}: {', '.join(peaks) or 'none declared'})"
    )


def check_weight_formats(
    cluster: Cluster,
    weights: tuple[WeightFormat, ...],
    sparse: bool,
    search: Fields | None,
    flags: dict[str, Any],
    names: dict[str, str],
) -> None:
    """A weight format asked for explicitly must have a peak on the chip (with 2:4, a sparse one);
    from the defaults, one without is just not searched - unless none is left."""
    chip = cluster.chip
    supported = chip.weight_formats(sparse)
    in_file = "weights" not in flags and search is not None and "weights" in search.values
    explicit = "weights" in flags or in_file
    missing = [(i, w) for i, w in enumerate(weights) if w not in supported]
    if missing and (explicit or len(missing) == len(weights)):
        i, w = missing[0]
        peak = (
            f"a sparse {w.compute.label} peak (sparse_peak_flop_per_s)"
            if sparse
            else f"the chip's {w.compute.label} peak"
        )
        message = (
            f"{w.label} weights need {peak}, which {chip.name} ({cluster.name}) does not have; its "
            f"formats: {format_names(chip, sparse)}"
        )
        hint = "choose one of its formats, or --weights all for every one it has"
        if in_file:
            raise search.where["weights"].item(i).error(message, hint=hint)
        if "weights" in flags:
            raise UsageError(f"{names['weights']}: {message}\n  hint: {hint}")
        raise UsageError(
            f"{names['sparsity']}: {message}\n  hint: drop --sparsity, or use a cluster that declares sparse peaks"
        )


def mfu(at: At) -> float:
    """A minimum MFU in a plan file: a fraction (0.4) or a percentage ('40%'), above 1 allowed
    (MFU is against the bf16 peak; fp8 and fp4 points can pass 100%) up to MAX_MFU."""
    expected = "an MFU such as 0.4 or 40% (of the bf16 peak)"
    raw = scalar(at, expected).strip()
    if not DECIMAL.fullmatch(raw.removesuffix("%").strip()):
        raise at.error(f"expected {expected}, found {raw!r}")
    value = parse_fraction(raw)
    if not 0 < value <= MAX_MFU:
        hint = f"did you mean {raw}%?" if not raw.endswith("%") and 1 < value <= 100 else None
        raise at.error(f"expected {expected}, at most {fmt_percent(MAX_MFU)}, found {raw!r}", hint=hint)
    return value


def mfu_ceiling(chip: Chip, formats) -> float:
    """The highest MFU (of the bf16 peak) any of `formats` can reach on `chip`: its weight peak
    over the bf16 peak (1 for bf16), the matmuls at full efficiency."""
    return max((f.weight_peak_flop_per_s(chip) or 0.0) / chip.peak_bf16_flop_per_s for f in formats)


def check_min_mfu(
    cluster: Cluster,
    space,
    value: float | None,
    constraints: Fields | None,
    flags: dict[str, Any],
    flag: str,
    bare: bool = True,
) -> None:
    """A minimum MFU above what every format searched can reach (MFU is of the bf16 peak).
    `bare`: the flag was a number, not a percentage (only then may 3 mean 3%)."""
    formats = space.formats(cluster.chip)
    if not value or not formats:  # none searched (--runnable-on): the search says why
        return
    ceiling = mfu_ceiling(cluster.chip, formats)
    if value <= ceiling:
        return
    message = (
        f"MFU {fmt_percent(value)} is out of reach: MFU is of the bf16 peak, and the weight formats "
        f"searched on {cluster.chip.name} reach at most {fmt_percent(ceiling)} (their peak over bf16's)"
    )
    given = "min_mfu" in flags or constraints is None
    if not given:  # in the file: what it says
        bare = not str(getattr(constraints.where["min_mfu"].node, "value", "")).strip().endswith("%")
    hint = (
        f"did you mean {value:g}%? " if bare and 1 < value <= 100 else ""
    ) + "lower it, or search faster formats (--weights all)"
    if given:
        raise UsageError(f"{flag}: {message}\n  hint: {hint}")
    raise constraints.where["min_mfu"].error(message, hint=hint)
