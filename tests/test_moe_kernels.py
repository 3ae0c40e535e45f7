"""MoE kernels on h800-sxm: DeepEP's dispatch/combine tables and DeepGEMM's grouped-GEMM tables
(configs/measurements/h800-sxm-moe.yaml) reproduced by the fitted preset, the preset is the fit,
and two-batch overlap lies between its longest chain and the sum of its parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from planner.commands.calibrate.moe import MIN_ROWS, fit_moe, load_moe_tables, moe_yaml_block
from planner.config import load_cluster
from planner.cost.costmodel import evaluate
from planner.cost.dispatch import distinct_bins, level_factors, token_spread
from planner.cost.layouts.base import Routed
from planner.specs.plan import Phase

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "configs" / "measurements" / "h800-sxm-moe.yaml"
TARGET = 0.20


@pytest.fixture(scope="module")
def fitted():
    return fit_moe(load_cluster("h800-sxm"), load_moe_tables(str(DATA)))


def test_the_preset_is_the_fit(fitted):
    assert fitted.cluster.moe_kernels == load_cluster("h800-sxm").moe_kernels, (
        "regenerate with: planner calibrate configs/measurements/h800-sxm-moe.yaml --cluster h800-sxm -o configs/clusters/h800-sxm.yaml"
    )
    text = (ROOT / "configs" / "clusters" / "h800-sxm.yaml").read_text()
    assert moe_yaml_block(fitted, "planner calibrate configs/measurements/h800-sxm-moe.yaml --cluster h800-sxm") in text


@pytest.mark.parametrize("table", ["deepep_normal", "deepep_low_latency"])
def test_deepep_tables_within_target(fitted, table):
    rows = fitted.of(table)
    assert len(rows) >= 8
    worst = max(rows, key=lambda r: abs(r.error))
    assert abs(worst.error) <= TARGET, f"{worst.label}: {100 * worst.error:+.1f}%"


@pytest.mark.parametrize("table", ["deepgemm_contiguous", "deepgemm_masked"])
def test_deepgemm_grouped_tables_within_target(fitted, table):
    rows = [r for r in fitted.of(table) if int(r.label.split("m=")[1].split()[0]) >= MIN_ROWS]
    assert rows and all(r.fitted for r in rows)
    worst = max(rows, key=lambda r: abs(r.error))
    assert abs(worst.error) <= TARGET, f"{worst.label}: {100 * worst.error:+.1f}%"


def test_unidentified_constants_are_warned(fitted):
    text = " ".join(fitted.warnings)
    assert "extrapolated" in text and "weakly identified" in text


def test_h100_and_h200_carry_h800s_constants_by_rule():
    h800 = load_cluster("h800-sxm").moe_kernels
    for name in ("h100-sxm", "h200-sxm"):
        m = load_cluster(name).moe_kernels
        assert m.borrowed_from == "h800-sxm"
        assert (m.normal, m.low_latency, m.grouped_efficiency) == (
            h800.normal,
            h800.low_latency,
            h800.grouped_efficiency,
        )
    assert load_cluster("a100-80gb").moe_kernels is None


def test_routing_counts():
    # one expert per bin and one draw: exactly one bin; all bins when k covers every expert
    assert distinct_bins(256, 1, 8) == pytest.approx(1.0)
    assert distinct_bins(8, 8, 8) == pytest.approx(8.0)
    # DeepSeek-V3 routing over 8 nodes: about 5.3 nodes uniform, at most 4 with 4 groups
    free, _ = token_spread(Routed(top_k=8, n_experts=256, low_latency=False), 8, 8)
    limited, _ = token_spread(Routed(top_k=8, n_experts=256, low_latency=False, node_limit=4), 8, 8)
    assert 5.0 < free < 5.6 and 3.4 < limited <= 4.0
    # one node: nothing crosses InfiniBand; low-latency: the copies split by where the expert is
    assert level_factors(Routed(top_k=8, n_experts=256, low_latency=False), 8, 1)[1] == 0.0
    assert level_factors(Routed(top_k=8, n_experts=256, low_latency=True), 8, 4) == (0.25, 0.75)


def test_normal_kernels_send_each_token_once_per_node():
    # the InfiniBand bytes of a normal dispatch are at most one copy per other node, never k
    routed = Routed(top_k=8, n_experts=256, low_latency=False)
    for nodes in (2, 4, 8, 16):
        nvlink, infiniband = level_factors(routed, 8, nodes)
        assert infiniband * routed.top_k <= nodes - 1 + 1e-9 and infiniband < 1.0


@pytest.mark.parametrize("phase", [Phase.DECODE, Phase.PREFILL])
def test_two_batch_overlap_between_longest_chain_and_sum(phase):
    from planner.config.plans import load_plan
    from planner.search.search import candidates

    plan = load_plan(
        None,
        model="deepseek-v3",
        cluster="h100-sxm",
        phases=(phase.value,),
        chips=(32,),
        batches=(64, 1024),
        weights=("fp8",),
        ffn=("ws1d",),
        attention=("batch",),
    )
    model, cluster = plan.model, plan.cluster
    batch = np.array([64, 1024])
    checked = 0
    for c in candidates(plan, phase):
        if c.micro_batches == 1:
            continue
        ev = evaluate(model, cluster, plan.workload, c, batch)
        over = ev.step_s - ev.overhead_s
        chains = np.maximum(ev.compute_chain_s, ev.comm_chain_s)
        parts = ev.compute_chain_s + ev.comm_chain_s
        assert np.all(over >= chains * (1 - 1e-12)) and np.all(over <= parts * (1 + 1e-12))
        checked += 1
    assert checked


@pytest.mark.parametrize("cluster, says", [("h100-sxm", "was measured on h800-sxm"), ("tpu-v4", "was measured on")])
def test_the_tables_fit_only_the_cluster_they_were_measured_on(planner, cluster, says):
    """H800 tables fitted to an H100 would give H100's NVLink H800's speed; a torus has no such
    links. Both are a user's mistake: exit 2, never a traceback."""
    r = planner("calibrate", str(DATA), "--cluster", cluster)
    assert r.code == 2 and says in r.err and "--cluster h800-sxm" in r.err and "Traceback" not in r.err
