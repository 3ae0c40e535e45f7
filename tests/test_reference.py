"""Cited reference numbers: the paper's Figure 3, Table 1, Table 2, closed forms and claims."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from planner.config import load_cluster, load_model, load_plan
from planner.cost.layouts import ATTENTION_LAYOUTS, FFN_LAYOUTS
from planner.cost.layouts.base import StepShape
from planner.cost.mesh import Mesh
from planner.search.search import best
from planner.specs.hardware import WeightFormat
from planner.specs.model import Block, FfnKind, Model
from planner.specs.plan import Phase


def test_the_ci_copy_of_the_reference_file_is_current():
    """CI has no ../shared, so tests/reference keeps a copy; it must match the original."""
    from conftest import REFERENCE_PATH

    copy = Path(__file__).parent / "reference" / "pope2022.yaml"
    if REFERENCE_PATH.exists():
        assert copy.read_bytes() == REFERENCE_PATH.read_bytes(), "refresh tests/reference/pope2022.yaml"


CUBE = Mesh(
    chips=64, physical=(("x", 4), ("y", 4), ("z", 4)), logical=((("x", 4),), (("y", 4),), (("z", 4),)), torus=True
)


def ffn_comm_bytes(model, layout, tokens, weight_bytes=2):
    shape = StepShape(batch=np.array([tokens]), tokens=1, attended=1, cached=1, reads_cache=False)
    cost = layout.cost(model, CUBE.sizes, shape, weight_bytes)
    return sum(float(np.asarray(t.collective.bytes_per_chip).sum()) for t in cost.terms if t.collective)


FIG3_MODEL = Model(
    name="fig3",
    n_layers=1,
    d_model=16384,
    d_ff=65536,
    n_heads=64,
    n_kv_heads=1,
    d_head=256,
    vocab=1,
    ffn=FfnKind.GELU,
    block=Block.PARALLEL,
)


@pytest.mark.parametrize("layout", ["ws2d", "wg-x", "wg-xy", "wg-xyz"])
def test_figure3_ffn_communication_volume(reference, layout):
    for row in reference["figure3_ffn_comm_bytes"]:
        got = ffn_comm_bytes(FIG3_MODEL, FFN_LAYOUTS[layout], row["tokens"])
        assert got == pytest.approx(float(row[layout]), rel=1e-3), (layout, row["tokens"])


def max_context(model, attention, batch, chips_hbm=2**35, share=0.3):
    """Longest context whose KV cache fits in `share` of HBM (Table 1's setting), on 64 chips."""
    ffn = FFN_LAYOUTS["ws2d"]
    shape = StepShape(batch=np.array([batch]), tokens=1, attended=1, cached=1, reads_cache=True)
    per_token = model.n_layers * float(
        np.asarray(ATTENTION_LAYOUTS[attention].cost(model, ffn, CUBE.sizes, shape, 2).kv_bytes_stored).sum()
    )
    return share * chips_hbm / per_token


def test_table1_max_context(reference):
    palm = load_model("palm-540b")
    for row in reference["table1_max_context"]:
        model = dataclasses.replace(palm, d_head=row["d_head"], n_kv_heads=row["kv_heads"])
        for batch in (128, 512):
            got = max_context(model, row["attention"], batch)
            assert got == pytest.approx(row[f"batch_{batch}"], rel=0.02), (row["variant"], batch)


@pytest.fixture(scope="module")
def palm_plan():
    return load_plan(None, model="palm-540b", cluster="tpu-v4", input_tokens=2048, output_tokens=64, context=2048)


@pytest.mark.parametrize(
    "name", ["low-latency prefill", "low-latency decode", "high-throughput prefill", "high-throughput decode"]
)
def test_table2_best_layouts(reference, palm_plan, name):
    row = next(r for r in reference["table2_palm540b"] if r["name"] == name)
    ev = best(palm_plan, Phase(row["phase"]), row["chips"], row["batch"], WeightFormat.parse(row["weights"]))
    c = ev.candidate
    assert (c.ffn.name, c.attention.name) == (row["ffn"], row["attention"]), row["name"]


def test_closed_form_ws1d_and_ws2d_times():
    """Paper: ws1d FFN comm = 2BLE/bandwidth, constant in chips; ws2d = 2BL(E/X + F/YZ)/bandwidth
    (elements of 2 bytes; bandwidth 270 GB/s on TPU v4; collectives carry (K-1)/K)."""
    from planner.cost.network import collective_seconds

    cluster = load_cluster("tpu-v4")
    cluster = dataclasses.replace(cluster, calibration=type(cluster.calibration)())
    tokens, E, F = 4096, FIG3_MODEL.d_model, FIG3_MODEL.d_ff
    shape = StepShape(batch=np.array([tokens]), tokens=1, attended=1, cached=1, reads_cache=False)
    for name, expected in (
        ("ws1d", 2 * tokens * E * 2 * 63 / 64),
        ("ws2d", 2 * tokens * (E / 4) * 2 * 15 / 16 + 2 * tokens * (F / 16) * 2 * 3 / 4),
    ):
        cost = FFN_LAYOUTS[name].cost(FIG3_MODEL, CUBE.sizes, shape, 2)
        seconds = sum(float(collective_seconds(cluster, CUBE, t.collective)[0]) for t in cost.terms if t.collective)
        assert seconds == pytest.approx(expected / 270e9, rel=1e-9), name


def test_closed_form_ws2d_beats_ws1d_above_4F_over_E_chips():
    """With F = 4E, 2D weight-stationary moves less than 1D only above 16 chips."""

    def volume(layout, chips, shape_xyz):
        mesh = Mesh(
            chips=chips,
            physical=tuple(zip("xyz", shape_xyz)),
            logical=tuple(((a, n),) for a, n in zip("xyz", shape_xyz)),
            torus=True,
        )
        shape = StepShape(batch=np.array([1024]), tokens=1, attended=1, cached=1, reads_cache=False)
        cost = FFN_LAYOUTS[layout].cost(FIG3_MODEL, mesh.sizes, shape, 2)
        return sum(float(np.asarray(t.collective.bytes_per_chip).sum()) for t in cost.terms if t.collective)

    assert volume("ws2d", 8, (2, 2, 2)) > volume("ws1d", 8, (2, 2, 2))
    assert volume("ws2d", 64, (4, 4, 4)) < volume("ws1d", 64, (4, 4, 4))
    assert volume("ws2d", 256, (8, 4, 8)) < 0.6 * volume("ws1d", 256, (8, 4, 8))


def test_claim_decode_prefers_ws2d_and_batch_attention(palm_plan):
    for chips in (64, 128, 256):
        for batch in (64, 256, 512):
            ev = best(palm_plan, Phase.DECODE, chips, batch, WeightFormat.BF16)
            assert (ev.candidate.ffn.name, ev.candidate.attention.name) == ("ws2d", "batch"), (chips, batch)


def test_claim_prefill_moves_from_weight_stationary_to_weight_gathered(palm_plan):
    small = best(palm_plan, Phase.PREFILL, 64, 1, WeightFormat.BF16).candidate.ffn.name
    large = best(palm_plan, Phase.PREFILL, 64, 512, WeightFormat.BF16).candidate.ffn.name
    assert small.startswith("ws") and large.startswith("wg")


def test_claim_int8_helps_most_at_low_batch(palm_plan):
    def ratio(batch):
        costs = [
            best(palm_plan, Phase.DECODE, 64, batch, w).cost_chip_s_per_token[0]
            for w in (WeightFormat.BF16, WeightFormat.INT8)
        ]
        return costs[0] / costs[1]

    # "about 2x" (reference claims); the paper's own measurement at batch 64 is 1.29x (section 4.4:
    # 36.9 vs 28.5 ms per token), and the calibrated fixed time per layer dilutes the gain of
    # halving the weight bytes at batch 1 (1.47x with the shipped tpu-v4 constants).
    assert ratio(1) > 1.4
    assert ratio(1) > ratio(64) > ratio(512)
