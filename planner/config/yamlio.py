"""Strict, position-aware YAML reading for config files.

`load_document` turns a file into a node tree by composition only (nothing is constructed;
aliases, anchors, foreign tags, duplicate keys and several documents are refused) and returns an
`At`: a node together with its file and dotted key path, so that every error can name the file,
line, column and key. The readers below take an `At` and return a checked Python value; the three
schemas in `planner.config.plans` are assembled from them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from planner.errors import ConfigError, did_you_mean
from planner.units import EXAMPLES, parse_fraction, parse_quantity

T = TypeVar("T")

MAX_FILE_BYTES = 1 << 20  # a config is a page of text; anything larger is a mistake
MAX_DEPTH = 16  # nesting of lists and mappings
MAX_COUNT = 10**9  # largest plausible count (layers, chips, batch, tokens, ...)
MAX_MAGNITUDE = 1e30  # largest plausible quantity in SI units (FLOP/s, bytes, ...)
MAX_LOCAL_LAYERS = 10**5  # layers of a model with local attention (each local layer is listed)

_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp", "map", "seq")}
DECIMAL = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_NON_FINITE = re.compile(r"[-+]?\.?(?:nan|inf|infinity)", re.IGNORECASE)
_TRUE, _FALSE = ("yes", "true", "on"), ("no", "false", "off")


@dataclass(frozen=True)
class At:
    """A YAML node, the file it came from, and its dotted key path (e.g. `chip.hbm`)."""

    node: yaml.Node
    file: str
    key: str = ""

    def child(self, node: yaml.Node, step: str | int) -> At:
        if isinstance(step, int):
            return At(node, self.file, f"{self.key}[{step}]")
        return At(node, self.file, f"{self.key}.{step}" if self.key else step)

    def item(self, index: int) -> At:
        """The location of item `index` of a list."""
        return self.child(self.node.value[index], index)

    def error(self, message: str, hint: str | None = None) -> ConfigError:
        mark = self.node.start_mark
        return ConfigError(
            message, file=self.file, line=mark.line + 1, column=mark.column + 1, key=self.key or None, hint=hint
        )


Reader = Callable[[At], T]


# ---------------------------------------------------------------------------------------------
# Files to node trees


def load_document(path: Path, shown: str | None = None) -> At:
    """Read one YAML file into its root node; `shown` is the file name used in errors."""
    shown = shown or str(path)
    text = _read_text(path, shown)
    try:  # libyaml: the same nodes and marks, several times faster; a bad file is worded below
        root = _scan(text, shown, _C_LOADER) or yaml.compose(text, Loader=_C_LOADER) if _C_LOADER else None
    except (yaml.YAMLError, ConfigError):
        root = None
    if root is None:
        _scan(text, shown)
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as err:  # the scan has seen every parse error; this is a safety net
            raise _parse_error(err, shown, text) from None
    if root is None:
        raise ConfigError(
            "the file is empty (no YAML content)",
            file=shown,
            line=1,
            hint="a config is a mapping of keys; see the presets for examples",
        )
    _check_tree(At(root, shown))
    return At(root, shown)


def _read_text(path: Path, shown: str) -> str:
    try:
        if path.is_dir():
            raise ConfigError("is a directory, not a YAML file", file=shown)
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("no such file", file=shown) from None
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
        raise ConfigError(f"cannot read the file ({getattr(err, 'strerror', None) or err})", file=shown) from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"file too large for a config (the limit is {MAX_FILE_BYTES} bytes)", file=shown)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"not UTF-8 text (byte 0x{data[err.start]:02x})", file=shown, line=line, hint="save the file as UTF-8"
        ) from None


_C_LOADER = getattr(yaml, "CSafeLoader", None)  # None without libyaml


def _scan(text: str, shown: str, loader=yaml.SafeLoader) -> None:
    """Walk the parse events: refuse anchors, aliases, several documents and deep nesting."""
    depth = documents = 0
    try:
        for event in yaml.parse(text, Loader=loader):
            mark = event.start_mark
            where = {"file": shown, "line": mark.line + 1, "column": mark.column + 1}
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(
                    f"alias '*{event.anchor}' is not supported", hint="write the value out in full", **where
                )
            if getattr(event, "anchor", None):
                raise ConfigError(
                    f"anchor '&{event.anchor}' is not supported",
                    hint="remove it and write repeated values out in full",
                    **where,
                )
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise ConfigError(
                        "several YAML documents in one file; expected one",
                        **where,
                        hint="remove the '---' line and what follows it",
                    )
            elif isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"nested more than {MAX_DEPTH} levels deep", **where)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as err:
        raise _parse_error(err, shown, text) from None


def _parse_error(err: yaml.YAMLError, shown: str, text: str) -> ConfigError:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    else:  # a ReaderError (forbidden character) knows only its offset
        position = getattr(err, "position", 0) or 0
        line = text[:position].count("\n") + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
    if isinstance(err, yaml.reader.ReaderError):
        char = err.character
        char = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        return ConfigError(
            f"not valid YAML: character {char} is not allowed",
            file=shown,
            line=line,
            column=column,
            hint="remove control characters from the file",
        )
    problem = getattr(err, "problem", None) or str(err)
    context = getattr(err, "context", None)
    detail = f"{problem} ({context})" if context else problem
    return ConfigError(f"not valid YAML: {detail}", file=shown, line=line, column=column, hint=_yaml_hint(problem))


def _yaml_hint(problem: str) -> str | None:
    """Plain words for the YAML mistakes people make most."""
    if "'\\t'" in problem:  # PyYAML shows the tab escaped
        return "YAML does not allow tabs for indentation: use spaces"
    if (
        "expected <block end>" in problem
        or "mapping values are not allowed" in problem
        or "could not find expected ':'" in problem
    ):
        return (
            "check the indentation (keys of one mapping start in the same column, indented with spaces)"
            " and that every key is followed by ': '"
        )
    return None


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _check_tree(at: At) -> None:
    """Refuse explicit non-plain tags, non-scalar keys and duplicate keys anywhere in the tree."""
    if at.node.tag not in _PLAIN_TAGS:
        raise at.error(
            f"tag {_show_tag(at.node.tag)} is not allowed",
            hint="configs hold plain values, lists and mappings only; remove the tag",
        )
    if isinstance(at.node, yaml.SequenceNode):
        for i, item in enumerate(at.node.value):
            _check_tree(at.child(item, i))
    elif isinstance(at.node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in at.node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _PLAIN_TAGS:
                merge = key_node.tag == _TAG + "merge"
                what = "merge key '<<'" if merge else "a key that is not a plain name"
                raise At(key_node, at.file, at.key).error(f"{what} is not supported")
            name = key_node.value
            key_at = at.child(key_node, name)
            if name in first_line:
                raise key_at.error(
                    f"duplicate key '{name}' (first given on line {first_line[name]})", hint="keep only one of them"
                )
            first_line[name] = key_node.start_mark.line + 1
            _check_tree(at.child(value_node, name))


# ---------------------------------------------------------------------------------------------
# Scalars


def _found(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _TAG + "null":
        return "no value"
    return repr(node.value)


def scalar(at: At, expected: str) -> str:
    """The text of a non-empty, non-boolean scalar."""
    node = at.node
    if not isinstance(node, yaml.ScalarNode):
        raise at.error(f"expected {expected}, found {_found(node)}")
    if node.tag == _TAG + "null" or not node.value.strip():
        raise at.error(f"no value given; expected {expected}")
    if node.tag == _TAG + "bool":
        raise at.error(
            f"expected {expected}, found the boolean {node.value!r}",
            hint="YAML reads yes/no/on/off/true/false as booleans; quote text",
        )
    return node.value


def text(at: At) -> str:
    return scalar(at, "text")


def boolean(at: At) -> bool:
    node = at.node
    value = node.value.lower() if isinstance(node, yaml.ScalarNode) else None
    if node.tag != _TAG + "bool" or value not in _TRUE + _FALSE:
        raise at.error(f"expected true or false, found {_found(node)}")
    return value in _TRUE


def _number(at: At, expected: str, kind: str | None) -> float:
    raw = scalar(at, expected).strip()
    if _NON_FINITE.fullmatch(raw):
        raise at.error(f"expected {expected}, found {raw!r}", hint="use a finite number")
    try:
        if kind is not None:
            value = parse_quantity(raw, kind)
        elif DECIMAL.fullmatch(raw):
            value = float(raw)
        else:
            raise ValueError("not a decimal number")
    except ValueError as err:
        raise at.error(f"expected {expected}, found {raw!r} ({err})") from None
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        raise at.error(f"{raw!r} is out of range (magnitudes above {MAX_MAGNITUDE:g} are not plausible)")
    return value


def fraction(at: At) -> float:
    """A fraction in (0, 1], as a number (0.4) or a percentage ('40%')."""
    expected = "a fraction such as 0.4 or 40%"
    raw = scalar(at, expected).strip()
    if not DECIMAL.fullmatch(raw.removesuffix("%").strip()):
        raise at.error(f"expected {expected}, found {raw!r}")
    value = parse_fraction(raw)
    if not 0 < value <= 1:
        hint = f"did you mean {raw}%?" if not raw.endswith("%") and 1 < value <= 100 else None
        raise at.error(f"expected a fraction in (0, 1], found {raw!r}", hint=hint)
    return value


def count(at: At) -> int:
    """A positive whole number (layers, chips, batch, tokens, ...); 1e+3 is fine, 2.5 is not."""
    expected = "a positive whole number"
    value = _number(at, expected, None)
    if value != math.floor(value):
        raise at.error(f"expected {expected}, found {at.node.value!r} (not whole)")
    if value < 1:
        raise at.error(f"expected {expected}, found {at.node.value!r}")
    if value > MAX_COUNT:
        raise at.error(f"{at.node.value!r} is out of range (counts above {MAX_COUNT:g} are not plausible)")
    return int(value)


def number(
    kind: str | None = None, *, minimum: float = 0.0, inclusive: bool = False, maximum: float = MAX_MAGNITUDE
) -> Reader[float]:
    """A reader for a number above `minimum` (or at least it, if `inclusive`) and at most
    `maximum`; `kind` ('bytes', 'bytes_per_s', 'flop_per_s', 'seconds') allows human units."""
    expected = EXAMPLES[kind] if kind else "a number"
    bounds = f"{'>=' if inclusive else '>'} {minimum:g}"
    if maximum < MAX_MAGNITUDE:
        bounds += f" and <= {maximum:g}"

    def read(at: At) -> float:
        value = _number(at, expected, kind)
        if value < minimum or (value == minimum and not inclusive) or value > maximum:
            raise at.error(f"must be {bounds}, found {at.node.value!r}")
        return value

    return read


def choice(options: Mapping[str, T], what: str) -> Reader[T]:
    """A reader for one of the names in `options`; returns the matching value."""

    def read(at: At) -> T:
        name = scalar(at, f"a {what} name")
        if name not in options:
            raise at.error(
                f"unknown {what} {name!r}; expected one of {', '.join(options)}", hint=did_you_mean(name, options)
            )
        return options[name]

    return read


def passthrough(at: At) -> At:
    """A reader that defers: the caller reads the node later, once it knows more."""
    return at


# ---------------------------------------------------------------------------------------------
# Collections


def list_of(item: Reader[T], *, unique: bool = True) -> Reader[tuple[T, ...]]:
    """A reader for a non-empty YAML list whose items `item` reads."""

    def read(at: At) -> tuple[T, ...]:
        if not isinstance(at.node, yaml.SequenceNode):
            raise at.error(
                f"expected a list, found {_found(at.node)}",
                hint="write a list as [a, b] or as lines starting with '- '",
            )
        if not at.node.value:
            raise at.error("empty list; give at least one value")
        values: list[T] = []
        for i, node in enumerate(at.node.value):
            child = at.child(node, i)
            value = item(child)
            if unique and value in values:
                raise child.error(f"{node.value} is listed twice")
            values.append(value)
        return tuple(values)

    return read


@dataclass(frozen=True)
class Field:
    read: Reader[Any]
    required: bool = True


@dataclass(frozen=True)
class Fields:
    """The values read from a mapping, and where each came from (for cross-field checks)."""

    at: At
    values: dict[str, Any]
    where: dict[str, At]

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def entries(at: At, what: str) -> list[tuple[str, At, At]]:
    """(name, key location, value location) for each entry of a mapping."""
    if not isinstance(at.node, yaml.MappingNode):
        raise at.error(f"expected {what} (a mapping of keys), found {_found(at.node)}")
    return [(k.value, at.child(k, k.value), at.child(v, k.value)) for k, v in at.node.value]


def fields(at: At, schema: Mapping[str, Field], what: str) -> Fields:
    """Read a mapping against a schema, in file order: unknown keys and missing required keys
    are errors."""
    values: dict[str, Any] = {}
    where: dict[str, At] = {}
    for name, key_at, value_at in entries(at, what):
        if name not in schema:
            hint = did_you_mean(name, schema) or f"known keys: {', '.join(schema)}"
            raise key_at.error(f"unknown key {name!r} in {what}", hint=hint)
        values[name], where[name] = schema[name].read(value_at), value_at
    missing = [name for name, field in schema.items() if field.required and name not in values]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        required = ", ".join(name for name, field in schema.items() if field.required)
        raise at.child(at.node, missing[0]).error(
            f"missing key{'s' * (len(missing) > 1)} {listed} in {what}", hint=f"required keys: {required}"
        )
    return Fields(at, values, where)


def names(options: Iterable[str]) -> dict[str, str]:
    """An identity mapping, for `choice` over plain names."""
    return {name: name for name in options}
