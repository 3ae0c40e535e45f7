"""Property: whatever the file holds, the loaders either succeed or raise a PlannerError.

Inputs: arbitrary text and bytes, YAML-flavoured text, random YAML documents, and random
mutations (line edits and value swaps) of the bundled presets.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.config import list_presets, load_cluster, load_model, load_plan, presets_dir
from planner.errors import ConfigError, PlannerError

LOADERS = {"models": load_model, "clusters": load_cluster, "plans": load_plan}
PRESETS = [(kind, name) for kind in LOADERS for name in list_presets(kind)]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values that stress the readers: wrong types, units, signs, magnitudes and YAML oddities.
NASTY = [
    "",
    "~",
    "null",
    "yes",
    "no",
    "on",
    "true",
    "0",
    "-1",
    "2.5",
    "'2.5'",
    "1e+3",
    "1e3",
    "1e999",
    "-1e999",
    ".nan",
    ".inf",
    "-.inf",
    "0x10",
    "1_000",
    "1e+40",
    "32 GiB",
    "1.2 TB/s",
    "275 TFLOP/s",
    "5 us",
    "-5 us",
    "5 parsecs",
    "[]",
    "[1, 2]",
    "{}",
    "{a: 1}",
    "&a 1",
    "*a",
    "!!python/object/apply:os.system ['true']",
    "!custom 3",
    "'",
    '"',
    "[",
    "{",
    "- a",
    "? x",
    "2022-01-01",
    '"\\0"',
    '"\\x00"',
    "ws2d",
    "batch",
    "decode",
    "palm-540b",
    "tpu-v4",
    "./missing.yaml",
    "/",
    "..",
    "x" * 300,
    "| \n  block",
    "> \n  folded",
    "@",
    "`",
    "%",
]


def load(kind: str, data: bytes, name: str = "fuzz.yaml") -> None:
    """Write `data` to a fresh folder and load it; only PlannerError may escape."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            LOADERS[kind](str(path))
        except ConfigError as err:
            assert err.file, err
            str(err)
        except PlannerError as err:
            str(err)


def encode(text: str) -> bytes:
    return text.encode("utf-8", errors="surrogatepass")


def preset_text(kind: str, name: str) -> str:
    return (presets_dir() / kind / f"{name}.yaml").read_text()


@FUZZ
@given(kind=st.sampled_from(list(LOADERS)), data=st.binary(max_size=300))
def test_random_bytes(kind, data):
    load(kind, data)


@FUZZ
@given(
    kind=st.sampled_from(list(LOADERS)),
    text=st.text(alphabet=st.sampled_from(list(":-[]{},&*!#|>'\"\n \t%@`?ab_xyz019.e+~\\/")), max_size=200),
)
def test_yaml_flavoured_text(kind, text):
    load(kind, encode(text))


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY),
)
KEYS = st.sampled_from(
    [
        "name",
        "layers",
        "d_model",
        "chip",
        "hbm",
        "topology",
        "torus",
        "switched",
        "slices",
        "model",
        "cluster",
        "workload",
        "search",
        "chips",
        "batch",
        "deployment",
        "decode",
        "levels",
        "size",
        "x",
    ]
)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=20,
)


@FUZZ
@given(kind=st.sampled_from(list(LOADERS)), tree=TREES)
def test_random_documents(kind, tree):
    load(kind, encode(yaml.safe_dump(tree, allow_unicode=True)))


@st.composite
def mutated_preset(draw):
    kind, name = draw(st.sampled_from(PRESETS))
    lines = preset_text(kind, name).splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "value", "insert", "truncate", "swap"]))
        line = lines[i]
        if action == "drop":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, line)
        elif action == "value" and ":" in line:
            key = line.split(":", 1)[0]
            lines[i] = f"{key}: {draw(st.sampled_from(NASTY))}"
        elif action == "insert":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.text(max_size=5)) + line[at:]
        elif action == "truncate":
            lines[i] = line[: draw(st.integers(0, len(line)))]
        elif action == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], line
        if not lines:
            break
    return kind, "\n".join(lines) + "\n"


@FUZZ
@given(case=mutated_preset())
def test_mutated_presets(case):
    kind, text = case
    load(kind, encode(text))


@FUZZ
@given(kind=st.sampled_from(["models", "clusters"]), name=st.text(max_size=40))
def test_random_preset_names(kind, name):
    try:
        LOADERS[kind](name)
    except PlannerError as err:
        str(err)
