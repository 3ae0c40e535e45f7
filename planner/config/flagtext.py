"""Command-line text to values: comma lists, token counts, times and fractions, each raising
`UsageError` that names the flag. The option registry (`planner.config.options`) names one of
these per option; ranges are checked where the value is used (`planner.config.overrides`)."""

from __future__ import annotations

from typing import Any

from planner.errors import UsageError


def same(text: Any, flag: str) -> Any:
    """The value as typer gave it (a name, a number, a switch)."""
    return text


def int_list(text: str | None, flag: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    items = text.split(",")
    if len(items) > 1 and not all(v.strip() for v in items):
        raise UsageError(
            f"{flag}: an empty item in {text!r}; expected whole numbers separated by commas, such as 1,8,64"
        )
    try:
        return tuple(int(v) for v in items if v.strip())
    except ValueError:
        raise UsageError(f"{flag}: expected whole numbers separated by commas, got {text!r}") from None


def word_list(text: str | None, flag: str = "") -> tuple[str, ...] | None:
    return None if text is None else tuple(v.strip() for v in text.split(",") if v.strip())


def phase_list(text: str | None, flag: str = "") -> tuple[str, ...] | None:
    return ("prefill", "decode") if text == "both" else word_list(text)


def lower(text: str | None, flag: str = "") -> str | None:
    return text.lower() if text else text


def seconds_flag(text: str | None, flag: str) -> float | None:
    """'0.2', '200 ms' or '200ms' -> seconds; the range is checked by the loader. A bare number
    above one second is refused: '30' is as likely 30 ms as 30 s."""
    from planner.units import parse_quantity

    if text is None:
        return None
    try:
        seconds = parse_quantity(text, "seconds")
    except ValueError as err:
        raise UsageError(f"{flag}: {err}; expected a time such as 0.2 or '200 ms'") from None
    if seconds > 1 and not any(c.isalpha() for c in text.replace("e", "").replace("E", "")):
        raise UsageError(
            f"{flag}: {text.strip()} without a unit is ambiguous; write '{text.strip()} s' or "
            f"'{text.strip()} ms' (a bare number is read as seconds only up to 1)"
        )
    return seconds


def tokens_flag(text: str | None, flag: str) -> int | None:
    """'2048', '2k', '128k' or '1M' (k = 1024, M = 1024k; optionally '... tokens') -> tokens; the
    range is checked by the loader."""
    from planner.units import parse_tokens

    if text is None:
        return None
    try:
        return parse_tokens(text)
    except ValueError as err:
        raise UsageError(f"{flag}: {err}") from None


def fraction_flag(text: str | None, flag: str) -> float | None:
    """'0.5' or '50%' -> 0.5; the range is checked by the loader."""
    from planner.units import parse_fraction

    if text is None:
        return None
    try:
        return parse_fraction(text)
    except ValueError:
        raise UsageError(f"{flag}: expected a fraction such as 0.5 or 50%, got {text!r}") from None
