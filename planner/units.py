"""Human units in configs (`32 GiB`, `1.2 TB/s`, `275 TFLOP/s`) to SI base units, and back for
display. This is the only module that knows unit factors; formulas never see them."""

from __future__ import annotations

import json
import math
import re

_PREFIX = {
    "": 1.0,
    "k": 1e3,
    "K": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
}
# unit kind -> accepted base spellings (after the prefix)
_BASES = {
    "bytes": ("B", "bytes", "byte"),
    "bytes_per_s": ("B/s", "Bps", "bytes/s"),
    "flop_per_s": ("FLOP/s", "FLOPS", "flop/s", "flops"),
    "seconds": ("s",),
}
# bits per second (network links are sold in them: '400 Gb/s' = 50 GB/s)
_BITS_PER_S = ("b/s", "bps", "bit/s", "bits/s")
_MIN_BARE_RATE = 1e6  # a bare bandwidth or FLOP rate below this forgot its unit ('3.35' for TB/s)
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµ/]*)\s*$")

EXAMPLES = {
    "bytes": "a size with a unit such as '32 GiB', '80 GB' or '34359738368 B'",
    "bytes_per_s": "a bandwidth such as 1.2e+12, '1.2 TB/s', '45 GB/s' or '400 Gb/s'",
    "flop_per_s": "a rate such as 2.75e+14 or '275 TFLOP/s'",
    "seconds": "a time such as 0.001, '1 ms' or '5 us'",
}


def parse_quantity(text: str, kind: str) -> float:
    """Parse '1.2 TB/s' (kind 'bytes_per_s') to 1.2e12. Raises ValueError with the reason."""
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"cannot read {text!r} as a number with a unit")
    number, unit = float(match.group(1)), match.group(2)
    if unit == "":
        if kind == "bytes":
            raise ValueError(
                "a size needs a unit: a bare number is ambiguous (write '80 GB', "
                "'80 GiB' or, for bytes, '85045477376 B')"
            )
        if kind in ("bytes_per_s", "flop_per_s") and abs(number) < _MIN_BARE_RATE:
            example = "'3.35 TB/s'" if kind == "bytes_per_s" else "'989 TFLOP/s'"
            raise ValueError(
                f"a bare number below {_MIN_BARE_RATE:g} is not a plausible rate: give a unit, e.g. {example}"
            )
        return number
    if kind == "seconds":
        if unit in _SECONDS:
            return number * _SECONDS[unit]
        raise ValueError(f"unknown time unit {unit!r} (use s, ms, us or ns)")
    for prefix in sorted(_PREFIX, key=len, reverse=True):
        if unit.startswith(prefix) and unit[len(prefix) :] in _BASES[kind]:
            return number * _PREFIX[prefix]
        if kind == "bytes_per_s" and unit.startswith(prefix) and unit[len(prefix) :] in _BITS_PER_S:
            return number * _PREFIX[prefix] / 8
    raise ValueError(f"unknown unit {unit!r} for {kind.replace('_per_', '/')}")


SECONDS_PER_HOUR = 3600.0
PER_MILLION = 1e6  # cost per token -> per million tokens (display)


def parse_price(text: str) -> float:
    """'2.50/h', '$2.50/h', '2.5 USD/h' or '2.5' (per chip-hour) -> USD per chip-second."""
    raw = text.strip().removeprefix("$").replace("USD", "").replace(" ", "")
    for suffix in ("/chip-hour", "/chip-h", "/hour", "/hr", "/h"):
        if raw.endswith(suffix):
            raw = raw[: -len(suffix)]
            break
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"a price must be positive, got {text!r}")
    return value / SECONDS_PER_HOUR


# token counts: '2k' = 2048, '128k' = 131072 (as contexts are quoted), '1M' = 1024k = 1048576
TOKEN_SUFFIX = {"k": 1024, "K": 1024, "M": 1024 * 1024}
TOKEN_FORMS = "2048, 2k, 128k or 1M (k = 1024, M = 1024k), optionally followed by 'tokens'"


def parse_tokens(text: str) -> int:
    """'2048', '2k', '128k', '1M' or any of them followed by 'tokens' ('2k tokens') -> a whole
    number of tokens (k = 1024, M = 1024k); ValueError naming the accepted forms otherwise."""
    raw = str(text).strip()
    raw = re.sub(r"\s*tokens?$", "", raw) if re.search(r"\d\s*[kKM]?\s*tokens?$", raw) else raw
    factor = TOKEN_SUFFIX.get(raw[-1:], 1) if raw else 1
    digits = raw[:-1].strip() if factor != 1 else raw
    value = float(digits) * factor if re.fullmatch(r"\d+(?:\.\d+)?", digits) else None
    if value is None or value != int(value) or value < 1:
        raise ValueError(f"expected a positive whole number of tokens: {TOKEN_FORMS}; found {text!r}")
    return int(value)


def parse_fraction(text: str) -> float:
    """'0.4' or '40%' -> 0.4 (the range is the caller's to check); ValueError otherwise."""
    raw = text.strip()
    percent = raw.endswith("%")
    value = float(raw[:-1].strip() if percent else raw)
    return value / 100.0 if percent else value


def fmt_seconds(value: float, *, pad: bool = True) -> str:
    """Three significant figures, trailing zeros kept ('1.00 s', '15.7 ms', '389 us') unless not
    `pad` (axis labels: '1 s', '10 ms'); whole seconds from 1000 s; '0 s'."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0 s"
    if abs(value) >= 999.5:
        return f"{value:.0f} s"
    value = float(f"{value:.3g}")  # round first, so that 999.96 ms becomes 1.00 s
    for factor, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
        if abs(value) >= factor or unit == "ns":
            scaled = value / factor
            return f"{_three_figures(scaled) if pad else f'{scaled:g}'} {unit}"
    return f"{value} s"


def _three_figures(x: float) -> str:
    digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:.{digits}f}"


def fmt_bytes(value: float) -> str:
    """Three significant figures in binary units: '236 MiB', '17.2 GiB', '1.01 TiB'."""
    for factor, unit in ((2.0**40, "TiB"), (2.0**30, "GiB"), (2.0**20, "MiB"), (2.0**10, "KiB")):
        if abs(value) >= 0.9995 * factor:
            scaled = value / factor
            return f"{scaled:.0f} {unit}" if abs(scaled) >= 99.95 else f"{scaled:.3g} {unit}"
    return f"{value:.0f} B"


def fmt_rate(value: float, unit: str) -> str:
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def fmt_chips(n: int) -> str:
    """'1 chip', '8 chips'."""
    return f"{n} chip{'s' * (n != 1)}"


def fmt_percent(fraction: float) -> str:
    return f"{100.0 * fraction:.1f}%"


def signed_percent(fraction: float) -> str:
    return "inf" if math.isinf(fraction) else f"{100.0 * fraction:+.1f}%"


def points_change(fraction: float) -> str:
    return f"{100.0 * fraction:+.1f} pp"


# --- machine output: 6 significant digits, sorted keys, so the same input gives the same bytes


def num(x: float) -> float | int:
    """A figure as the JSON, CSV and saved runs store it: 6 significant digits (ints as they are)."""
    if isinstance(x, int):
        return x
    return float(f"{x:.6g}")


def to_json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def fmt_tokens(count: float) -> str:
    """A token count: whole ('2304') where it is whole, else one decimal ('2176.5', a mean)."""
    return f"{count:.0f}" if count == int(count) else f"{count:.1f}"
