"""JSON files read strictly, with positions for errors (what `yamlio` is to YAML): a Hugging Face
`config.json` as `JsonObject`s that name the file, line, column and key of a bad value."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planner.config.yamlio import MAX_FILE_BYTES
from planner.errors import ConfigError


@dataclass(frozen=True)
class _Document:
    file: str
    text: str


@dataclass(frozen=True)
class JsonObject:
    """A JSON object of a config file, with where it starts (for line numbers in errors)."""

    data: dict
    doc: _Document
    start: int
    prefix: str = ""

    @staticmethod
    def parse(path: Path) -> JsonObject:
        shown = str(path)
        try:
            raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
        except FileNotFoundError:
            raise ConfigError("no such file", file=shown) from None
        except OSError as err:
            raise ConfigError(f"cannot read the file: {err.strerror or err}", file=shown) from None
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(
                f"the file is larger than {MAX_FILE_BYTES} bytes; a config.json is a page of text", file=shown
            )
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(
                f"the file is not UTF-8 (byte {err.start})", file=shown, line=raw[: err.start].count(b"\n") + 1
            ) from None
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"not valid JSON: {err.msg}",
                file=shown,
                line=err.lineno,
                column=err.colno,
                hint="a Hugging Face config.json is one JSON object",
            ) from None
        except _Duplicate as dup:
            second = [m.start() for m in _key_pattern(dup.key).finditer(text)][1:2] or [0]
            line, column = _line_column(text, second[0])
            raise ConfigError(f"duplicate key {dup.key!r}", file=shown, line=line, column=column, key=dup.key) from None
        except _Constant as bad:
            raise ConfigError(
                f"{bad.name} is not a valid JSON number", file=shown, line=_line_column(text, text.find(bad.name))[0]
            ) from None
        if not isinstance(data, dict):
            raise ConfigError("expected a JSON object (a mapping of keys)", file=shown, line=1)
        return JsonObject(data=data, doc=_Document(file=shown, text=text), start=max(text.find("{"), 0))

    def present(self, key: str) -> bool:
        return key in self.data

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def value(self, key: str) -> Any:
        return self.data[key]

    def text(self, key: str, hint: str | None = None) -> str:
        if not self.has(key) or not isinstance(self.data[key], str):
            found = "missing key" if not self.has(key) else f"expected text, found {json.dumps(self.data[key])} for"
            raise self.error(key, f"{found} {key!r}", hint=hint)
        return self.data[key]

    def child(self, key: str) -> JsonObject:
        if not isinstance(self.data.get(key), dict):
            raise self.error(key, f"expected the object {key!r} (the language model's config)")
        return JsonObject(data=self.data[key], doc=self.doc, start=self._position(key), prefix=f"{self.prefix}{key}.")

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        line, column = _line_column(self.doc.text, self._position(key) if key in self.data else self.start)
        return ConfigError(message, file=self.doc.file, line=line, column=column, key=self.prefix + key, hint=hint)

    def _position(self, key: str) -> int:
        match = _key_pattern(key).search(self.doc.text, self.start)
        return match.start() if match else self.start


class _Duplicate(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _Constant(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Constant(name)


def _key_pattern(key: str) -> re.Pattern:
    return re.compile('"' + re.escape(key) + r'"\s*:')


def _line_column(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1
