"""Config loading: presets match their cited sources, human units, plan defaults and flags."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from planner.config import list_presets, load_cluster, load_model, load_plan, presets_dir
from planner.config.clusters import CALIBRATION_FIELDS
from planner.config.plans import PLAN_DEFAULTS
from planner.cost import layouts
from planner.errors import ConfigError, UsageError
from planner.specs.hardware import FIELDS_OF_CALIBRATION, Calibration, Switched, Torus, WeightFormat
from planner.specs.model import Block, FfnKind
from planner.specs.plan import Phase

# `reference` (the paper's figures) is the fixture in conftest.py.


def write(folder: Path, name: str, body: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return str(path)


MODEL = """\
    name: tiny
    layers: 2
    d_model: 64
    d_ff: 256
    heads: 4
    kv_heads: 2
    d_head: 16
    vocab: 1000
    ffn: gelu
    block: serial
"""

CLUSTER = """\
    name: tiny-tpu
    chip:
      name: T
      peak_flop_per_s: {bf16: 275 TFLOP/s}
      hbm: 32 GiB
      hbm_bandwidth: 1.2 TB/s
    topology:
      torus:
        axes: [x, y]
        link_bandwidth: 45 GB/s
        links_per_axis: 2
        slices:
          - {chips: 4, shape: [2, 2], wraparound: false}
          - {chips: 16, shape: [4, 4], wraparound: true}
"""


# ---------------------------------------------------------------------------------------------
# Presets


def test_presets_dir_holds_the_bundled_configs():
    assert (presets_dir() / "models" / "palm-540b.yaml").is_file()
    assert list_presets("models") == sorted(list_presets("models"))
    assert {
        "palm-8b",
        "palm-62b",
        "palm-540b",
        "mt-nlg-530b",
        "gpt-3-175b",
        "llama-3-8b",
        "llama-3-70b",
        "llama-3-405b",
    } <= set(list_presets("models"))
    assert {"tpu-v4", "a100-80gb", "h100-sxm"} <= set(list_presets("clusters"))
    assert {"palm-540b-tpu-v4", "llama-3-70b-h100"} <= set(list_presets("plans"))
    with pytest.raises(ValueError):
        list_presets("model")


@pytest.mark.parametrize("name", list_presets("models"))
def test_model_preset_loads(name):
    model = load_model(name)
    assert model.name == name
    assert model.source
    assert model.n_heads % model.n_kv_heads == 0


@pytest.mark.parametrize("name", list_presets("clusters"))
def test_cluster_preset_loads(name):
    cluster = load_cluster(name)
    assert cluster.name == name
    assert cluster.chip.peak_bf16_flop_per_s > 0
    assert cluster.topology.chip_counts


@pytest.mark.parametrize("name", list_presets("plans"))
def test_plan_preset_loads(name):
    plan = load_plan(name)
    assert set(plan.space.chips) <= set(plan.cluster.topology.chip_counts)
    assert plan.source.endswith(f"{name}.yaml")


@pytest.mark.parametrize("name", ["palm-8b", "palm-62b", "palm-540b", "mt-nlg-530b"])
def test_paper_models_match_the_reference(reference, name):
    expected = reference["models"][name]
    model = load_model(name)
    assert (model.n_layers, model.d_model, model.d_ff, model.n_heads, model.n_kv_heads, model.d_head, model.vocab) == (
        expected["layers"],
        expected["d_model"],
        expected["d_ff"],
        expected["heads"],
        expected["kv_heads"],
        expected["d_head"],
        expected["vocab"],
    )
    assert model.ffn.label == expected["ffn"]
    assert model.block.value == expected["block"]
    assert model.n_params_nominal == float(reference["conventions"]["n_params_nominal"][name])


def test_palm_540b_shapes_give_the_published_parameter_count():
    model = load_model("palm-540b")
    assert model.ffn is FfnKind.SWIGLU and model.block is Block.PARALLEL
    assert model.n_params == pytest.approx(540.35e9, rel=1e-3)


def test_tpu_v4_matches_the_reference(reference):
    hw = reference["hardware"]["tpu-v4"]
    tpu = load_cluster("tpu-v4")
    assert tpu.chip.hbm_bytes == 34359738368 == hw["hbm_bytes"]
    assert tpu.chip.hbm_bytes_per_s == 1.2e12 == float(hw["hbm_bytes_per_s"])
    assert tpu.chip.peak_flop_per_s == {"bf16": 275e12}
    assert tpu.chip.peak_bf16_flop_per_s == float(hw["peak_bf16_flop_per_s"])
    assert isinstance(tpu.topology, Torus)
    assert tpu.topology.link_bytes_per_s == float(hw["link_bytes_per_s_one_way"]) == 45e9
    assert tpu.topology.links_per_axis == 2
    assert tpu.topology.axes == ("x", "y", "z")
    slices = {s.chips: s for s in tpu.topology.slices}
    assert tpu.topology.chip_counts == (8, 16, 32, 64, 128, 256, 512)
    for chips, shape in hw["slices"].items():
        if chips >= 8:
            assert slices[chips].shape == tuple(shape)
            assert slices[chips].wraparound == (chips >= 64,) * 3
    assert tpu.calibration != Calibration()  # fitted by `planner calibrate` (tests/test_calibration.py)
    assert all(
        0 < getattr(tpu.calibration, k) <= 1 for k in ("matmul_efficiency", "hbm_efficiency", "network_efficiency")
    )


def test_gpu_presets():
    a100, h100 = load_cluster("a100-80gb"), load_cluster("h100-sxm")
    assert a100.chip.peak_flop_per_s == {"bf16": 312e12, "int8": 624e12}
    # what CUDA's totalGlobalMem reports (docs/hardware.md), not the marketed 80 GB
    assert a100.chip.hbm_bytes == 85100068864 and a100.chip.hbm_bytes_per_s == pytest.approx(2.039e12)
    assert h100.chip.peak_flop_per_s == {"bf16": 989e12, "fp8": 1979e12, "int8": 1979e12}
    assert h100.chip.hbm_bytes == 85045477376 and h100.chip.hbm_bytes_per_s == 3.35e12
    assert 79.1 < h100.chip.hbm_bytes / 2**30 < 79.7  # the device exposes ~79.2-79.6 GiB
    for gpu in (a100, h100):  # the runtime keeps 10% (vLLM's gpu_memory_utilization 0.9)
        assert gpu.chip.usable_hbm_bytes == pytest.approx(0.9 * gpu.chip.hbm_bytes)
    for cluster, nvlink, ib in ((a100, 300e9, 25e9), (h100, 450e9, 50e9)):
        assert isinstance(cluster.topology, Switched)
        inner, outer = cluster.topology.levels
        assert (inner.size, inner.bytes_per_s) == (8, nvlink)
        assert (outer.size, outer.bytes_per_s) == (None, ib)
        assert cluster.topology.chip_counts == (1, 2, 4, 8, 16, 32, 64, 128, 256)


def test_other_models():
    gpt3 = load_model("gpt-3-175b")
    assert (gpt3.n_layers, gpt3.d_model, gpt3.n_heads, gpt3.vocab) == (96, 12288, 96, 50257)
    assert gpt3.ffn is FfnKind.GELU and gpt3.n_params_nominal == 175e9
    for name, params, layers in (
        ("llama-3-8b", 8.03e9, 32),
        ("llama-3-70b", 70.6e9, 80),
        ("llama-3-405b", 405.8e9, 126),
    ):
        llama = load_model(name)
        assert llama.n_params_nominal is None and llama.n_layers == layers and not llama.tied_embeddings
        assert llama.n_kv_heads == 8 and llama.vocab == 128256 and llama.block is Block.SERIAL
        # the shapes give the published count (two E x V matrices); MFU leaves the input lookup out
        assert llama.n_params == pytest.approx(params, rel=0.002)
        layers = llama.n_params - 2 * llama.d_model * llama.vocab  # MFU: no input lookup
        assert llama.mfu_flops(10, 1) == 2 * layers * 10 + 2 * llama.d_model * llama.vocab


def test_paper_plan():
    plan = load_plan("palm-540b-tpu-v4")
    assert plan.model.name == "palm-540b" and plan.cluster.name == "tpu-v4"
    assert (plan.workload.input_tokens, plan.workload.output_tokens, plan.workload.context) == (2048, 64, 2048)
    assert plan.space.phases == (Phase.PREFILL, Phase.DECODE)
    assert plan.space.chips == (8, 16, 32, 64, 128, 256)
    assert plan.space.batches == tuple(2**i for i in range(11))
    assert plan.space.weights == (WeightFormat.BF16, WeightFormat.INT8)
    assert plan.space.ffn == tuple(n for n, f in layouts.FFN_LAYOUTS.items() if not f.replicated)  # dp: MoE only
    assert plan.space.attention == tuple(layouts.ATTENTION_LAYOUTS)
    assert plan.constraints.max_latency_s is None and plan.constraints.min_mfu is None
    assert plan.deployment == ()


def test_llama_plan():
    plan = load_plan("llama-3-70b-h100")
    assert (plan.workload.input_tokens, plan.workload.output_tokens, plan.workload.context) == (2048, 256, 4096)
    assert plan.space.chips == (8, 16, 32, 64)
    assert plan.space.batches == tuple(2**i for i in range(9))


# ---------------------------------------------------------------------------------------------
# Values and units


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32 GiB", 34359738368),
        ("34359738368 B", 34359738368),
        ("32GiB", 2**35),
        ("80 GB", 80e9),
        ("3.2e+10 B", 3.2e10),
        ("3.2e10 bytes", 3.2e10),
        ("'32 GiB'", 2**35),
    ],
)
def test_sizes(tmp_path, text, expected):
    body = CLUSTER.replace("hbm: 32 GiB", f"hbm: {text}")
    assert load_cluster(write(tmp_path, "c.yaml", body)).chip.hbm_bytes == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.2 TB/s", 1.2e12), ("1.2e12", 1.2e12), ("1.2e+12", 1.2e12), ("1200 GB/s", 1.2e12), ("1200000000000", 1.2e12)],
)
def test_bandwidths(tmp_path, text, expected):
    body = CLUSTER.replace("hbm_bandwidth: 1.2 TB/s", f"hbm_bandwidth: {text}")
    cluster = load_cluster(write(tmp_path, "c.yaml", body))
    assert cluster.chip.hbm_bytes_per_s == pytest.approx(expected)


def test_calibration(tmp_path):
    body = (
        CLUSTER
        + """\
    calibration:
      matmul_efficiency: 0.8
      collective_latency_s: 5 us
      layer_overhead_s: 0.001
      overlap: 1
"""
    )
    cal = load_cluster(write(tmp_path, "c.yaml", body)).calibration
    assert cal.matmul_efficiency == 0.8 and cal.hbm_efficiency == 1.0
    assert cal.collective_latency_s == pytest.approx(5e-6)
    assert cal.layer_overhead_s == 0.001 and cal.overlap == 1.0
    assert set(CALIBRATION_FIELDS) == set(FIELDS_OF_CALIBRATION)


@pytest.mark.parametrize(("text", "expected"), [("1e+3", 1000), ("1e3", 1000), ("'64'", 64), ("64.0", 64), ("+8", 8)])
def test_integral_counts(tmp_path, text, expected):
    body = MODEL.replace("layers: 2", f"layers: {text}")
    assert load_model(write(tmp_path, "m.yaml", body)).n_layers == expected


def test_optional_model_fields(tmp_path):
    model = load_model(write(tmp_path, "m.yaml", MODEL))
    assert model.n_params_nominal is None and model.source == ""
    model = load_model(write(tmp_path, "m.yaml", MODEL + "    params: 1e9\n    source: x\n"))
    assert model.n_params_nominal == 1e9 and model.source == "x"


def test_switched_levels(tmp_path):
    body = CLUSTER.split("    topology:")[0] + textwrap.indent(
        textwrap.dedent("""\
        topology:
          switched:
            levels:
              - {name: nvlink, size: 8, bandwidth: 300 GB/s}
              - {name: rack, size: 32, bandwidth: 100 GB/s}
              - {name: ib, bandwidth: 25 GB/s}
            chips: [4, 1, 8, 64]
    """),
        "    ",
    )
    topology = load_cluster(write(tmp_path, "c.yaml", body)).topology
    assert [level.size for level in topology.levels] == [8, 32, None]
    assert topology.chip_counts == (1, 4, 8, 64)


# ---------------------------------------------------------------------------------------------
# Plans: files, flags, defaults


def test_defaults_without_a_file():
    plan = load_plan(None, model="palm-8b", cluster="tpu-v4")
    assert plan.space.phases == tuple(Phase(p) for p in PLAN_DEFAULTS.phases)
    assert plan.space.chips == plan.cluster.topology.chip_counts
    assert plan.space.batches == (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
    assert plan.space.weights == (WeightFormat.BF16, WeightFormat.INT8)
    assert plan.space.ffn == tuple(layouts.FFN_LAYOUTS)
    assert plan.space.attention == tuple(layouts.ATTENTION_LAYOUTS)
    assert (plan.workload.input_tokens, plan.workload.output_tokens, plan.workload.context) == (
        1024,
        1024,
        2048,
    )  # a serving benchmark's request; the context holds all of it (issue 29)
    assert plan.space.stages == (1,)  # a torus plans its chips as one slice
    assert plan.defaults == ("weights", "stages", "context")
    assert plan.deployment == () and plan.source == ""


def test_flags_override_the_file():
    plan = load_plan(
        "palm-540b-tpu-v4",
        model="palm-62b",
        cluster="tpu-v4",
        phases=("decode",),
        chips=(64, 512),
        batches=(3,),
        weights=("int8",),
        ffn=("ws2d",),
        attention=("batch",),
        input_tokens=10,
        output_tokens=20,
        context=30,
        max_latency_s=0.5,
        min_mfu=0.25,
    )
    assert plan.model.name == "palm-62b"
    assert plan.space.phases == (Phase.DECODE,)
    assert plan.space.chips == (64, 512) and plan.space.batches == (3,)
    assert plan.space.weights == (WeightFormat.INT8,)
    assert plan.space.ffn == ("ws2d",) and plan.space.attention == ("batch",)
    assert (plan.workload.input_tokens, plan.workload.output_tokens, plan.workload.context) == (10, 20, 30)
    assert plan.constraints.max_latency_s == 0.5 and plan.constraints.min_mfu == 0.25


def test_cluster_flag_overrides_the_file(tmp_path):
    plan = load_plan("llama-3-70b-h100", cluster="a100-80gb")
    assert plan.cluster.name == "a100-80gb" and plan.space.chips == (8, 16, 32, 64)
    small = write(tmp_path, "small.yaml", CLUSTER.replace("chips: 4, shape: [2, 2]", "chips: 8, shape: [2, 4]"))
    with pytest.raises(ConfigError, match="cannot form 32 chips"):
        load_plan("llama-3-70b-h100", cluster=small)


def test_plan_file_with_relative_paths_and_deployment(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "tiny.yaml", MODEL)
    write(tmp_path, "tiny-tpu.yaml", CLUSTER)
    path = write(
        tmp_path,
        "plan.yaml",
        """\
        model: sub/tiny.yaml
        cluster: ./tiny-tpu.yaml
        workload: {input_tokens: 128, output_tokens: 8, context: 256}
        search: {batch: [1, 2]}
        constraints: {max_latency_s: 200 ms, min_mfu: 0.1}
        deployment:
          decode: {chips: 16, batch: 2, ffn: ws2d, attention: batch, weights: int8}
          prefill: {chips: 4, batch: 1, ffn: wg-xyz, attention: heads, weights: bf16}
    """,
    )
    plan = load_plan(path)
    assert plan.model.name == "tiny" and plan.cluster.name == "tiny-tpu"
    assert plan.space.chips == (4, 16) and plan.space.batches == (1, 2)
    assert plan.constraints.max_latency_s == pytest.approx(0.2)
    assert [(p.phase, p.chips, p.weights) for p in plan.deployment] == [
        (Phase.DECODE, 16, WeightFormat.INT8),
        (Phase.PREFILL, 4, WeightFormat.BF16),
    ]
    assert plan.source == path


def test_flags_fill_in_what_the_file_lacks(tmp_path):
    path = write(tmp_path, "plan.yaml", "workload: {input_tokens: 1, output_tokens: 2}\n")
    plan = load_plan(path, model="palm-8b", cluster="tpu-v4", context=3)
    assert (plan.workload.input_tokens, plan.workload.output_tokens, plan.workload.context) == (1, 2, 3)
    with pytest.raises(ConfigError, match="missing key 'model'"):
        load_plan(path, cluster="tpu-v4", context=3)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"cluster": "tpu-v4"}, "--model is required"),
        ({"model": "palm-8b"}, "--cluster is required"),
        ({"model": "palm540b", "cluster": "tpu-v4"}, "did you mean 'palm-540b'"),
        ({"model": "palm-8b", "cluster": "tpu-v3"}, "did you mean 'tpu-v4'"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "chips": (8, 12)}, "cannot form 12.*8, 16, 32"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "ffn": ("ws3d",)}, "--ffn.*did you mean 'ws2d'"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "attention": ("head",)}, "did you mean 'heads'"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "phases": ("prefil",)}, "did you mean 'prefill'"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "weights": ("fp8",)}, "--weights"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "batches": ()}, "--batch.*at least one"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "ffn": ()}, "--ffn.*at least one"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "batches": (0,)}, "positive"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "batches": (1, 1)}, "twice"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "batches": (True,)}, "positive"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "context": -1}, "--context"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "input_tokens": 2.5}, "--input-tokens"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "max_latency_s": 0.0}, "--max-latency"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "max_latency_s": float("nan")}, "--max-latency"),
        ({"model": "palm-8b", "cluster": "tpu-v4", "min_mfu": 1.5}, "--min-mfu"),
    ],
)
def test_bad_flags(overrides, match):
    with pytest.raises(UsageError, match=match):
        load_plan(None, **overrides)


def test_missing_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_model(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="directory"):
        load_cluster(str(tmp_path) + "/")
    with pytest.raises(ConfigError, match="no such file"):
        load_plan(str(tmp_path / "plan.yaml"))


def test_unknown_preset_lists_the_presets():
    with pytest.raises(UsageError) as caught:
        load_cluster("h100")
    assert "h100-sxm" in str(caught.value) and "tpu-v4" in str(caught.value)


def test_decode_context_defaults_to_the_whole_request_when_planning_from_flags():
    """Decode attends to the prompt and the tokens generated so far: without --context (and no
    plan file), the context is input + output, where the KV cache must fit (issue 29); a
    prefill-only plan's is the prompt."""
    from planner.config import load_plan

    assert load_plan(None, model="palm-8b", cluster="tpu-v4", input_tokens=8192).workload.context == 8192 + 1024
    assert load_plan(None, model="palm-8b", cluster="tpu-v4").workload.context == 2048
    assert load_plan(None, model="palm-8b", cluster="tpu-v4", output_tokens=64).workload.context == 1024 + 64
    assert load_plan(None, model="palm-8b", cluster="tpu-v4", phases=("prefill",)).workload.context == 1024
    assert (
        load_plan(
            None, model="palm-8b", cluster="tpu-v4", input_tokens=8192, context=1024, allow_short_context=True
        ).workload.context
        == 1024
    )
    with pytest.raises(UsageError, match="--context: the decode context .1024 tokens. is shorter than the prompt"):
        load_plan(None, model="palm-8b", cluster="tpu-v4", input_tokens=8192, context=1024)


def test_min_mfu_reads_a_percentage_in_a_plan_file_as_the_flag_does(tmp_path):
    from planner.config import load_plan

    path = tmp_path / "p.yaml"
    path.write_text(
        "model: palm-8b\ncluster: tpu-v4\nworkload: {input_tokens: 2048, output_tokens: 64, "
        "context: 2048}\nconstraints: {min_mfu: 40%}\n"
    )
    assert load_plan(str(path)).constraints.min_mfu == pytest.approx(0.4)


def test_plan_file_limits_the_decode_step(tmp_path):
    from planner.config import load_plan

    path = tmp_path / "p.yaml"
    path.write_text(
        "model: palm-8b\ncluster: tpu-v4\nworkload: {input_tokens: 2048, output_tokens: 64, "
        "context: 2048}\nconstraints: {max_step_latency_s: 30 ms}\n"
    )
    assert load_plan(str(path)).constraints.max_step_latency_s == pytest.approx(0.030)
