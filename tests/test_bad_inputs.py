"""Every file in tests/bad_inputs/ must fail with a ConfigError naming the file, line and key.

`CASES` is the corpus table: (file name, kind, substrings the error must contain). The first line
of each file says what is wrong with it. The CLI tests can reuse the table to run the real
commands on the same files.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from planner.config import load_cluster, load_model, load_plan
from planner.errors import ConfigError

BAD_INPUTS = Path(__file__).parent / "bad_inputs"
LOADERS = {"model": load_model, "cluster": load_cluster, "plan": load_plan}

CASES: list[tuple[str, str, list[str]]] = [
    ("model-float-layers.yaml", "model", [":3:", "layers", "whole"]),
    ("model-quoted-float.yaml", "model", [":4:", "d_model", "whole"]),
    ("model-negative.yaml", "model", [":5:", "d_ff", "positive"]),
    ("model-zero-heads.yaml", "model", [":6:", "heads", "positive"]),
    ("model-bool.yaml", "model", [":9:", "vocab", "boolean"]),
    ("model-empty-value.yaml", "model", [":8:", "d_head", "no value"]),
    ("model-nan.yaml", "model", [":4:", "d_model", "finite"]),
    ("model-inf.yaml", "model", [":5:", "d_ff", "finite"]),
    ("model-huge-count.yaml", "model", [":9:", "vocab", "out of range"]),
    ("model-overflow.yaml", "model", [":3:", "layers", "out of range"]),
    ("model-typo-key.yaml", "model", [":5:", "d_fff", "did you mean 'd_ff'"]),
    ("model-missing-key.yaml", "model", [":2:", "vocab", "missing key"]),
    ("model-bad-ffn.yaml", "model", [":10:", "ffn", "did you mean 'swiglu'"]),
    ("model-bad-block.yaml", "model", [":11:", "block", "did you mean 'parallel'"]),
    ("model-kv-not-divisor.yaml", "model", [":7:", "kv_heads", "multiple"]),
    ("model-kv-above-heads.yaml", "model", [":7:", "kv_heads", "multiple"]),
    ("model-list-root.yaml", "model", [":2:", "expected a model", "found a list"]),
    ("model-scalar-root.yaml", "model", [":2:", "expected a model"]),
    ("model-empty.yaml", "model", [":1:", "empty"]),
    ("model-two-documents.yaml", "model", [":12:", "several YAML documents"]),
    ("model-duplicate-key.yaml", "model", [":4:", "layers", "duplicate key", "line 3"]),
    ("model-anchor.yaml", "model", [":4:", "anchor '&size'"]),
    ("model-alias.yaml", "model", [":5:", "alias '*size'"]),
    ("model-alias-bomb.yaml", "model", [":2:", "anchor '&a'"]),
    ("model-python-tag.yaml", "model", [":2:", "name", "!!python/object/apply:os.system", "not allowed"]),
    ("model-custom-tag.yaml", "model", [":4:", "d_model", "tag !units"]),
    ("model-not-yaml.yaml", "model", [":7:", "not valid YAML"]),
    ("model-bad-indent.yaml", "model", [":9:", "not valid YAML", "hint: check the indentation"]),
    ("model-tab.yaml", "model", [":7:", "not valid YAML", "does not allow tabs"]),
    ("model-not-utf8.yaml", "model", [":2", "not UTF-8"]),
    ("model-control-char.yaml", "model", [":2", "not valid YAML"]),
    ("model-name-list.yaml", "model", [":2:", "name", "found a list"]),
    ("model-mapping-value.yaml", "model", [":3:", "layers", "found a mapping"]),
    ("model-params-text.yaml", "model", [":12:", "params", "expected a number"]),
    ("model-params-negative.yaml", "model", [":12:", "params", "> 0"]),
    ("model-hex.yaml", "model", [":3:", "layers", "not a decimal"]),
    ("model-name-bool.yaml", "model", [":2:", "name", "boolean"]),
    ("model-merge-key.yaml", "model", [":12:", "merge key"]),
    ("model-deep.yaml", "model", [":12:", "nested more than"]),
    ("model-complex-key.yaml", "model", [":12:", "not a plain name"]),
    ("cluster-hbm-unit.yaml", "cluster", [":6:", "chip.hbm", "unknown unit"]),
    ("cluster-bandwidth-kind.yaml", "cluster", [":7:", "chip.hbm_bandwidth", "bandwidth"]),
    ("cluster-no-bf16.yaml", "cluster", [":5:", "chip.peak_flop_per_s.bf16", "missing key 'bf16'"]),
    ("cluster-peak-typo.yaml", "cluster", [":5:", "chip.peak_flop_per_s.imt8", "did you mean 'int8'"]),
    ("cluster-peak-unit.yaml", "cluster", [":5:", "chip.peak_flop_per_s.bf16", "unknown unit"]),
    ("cluster-slice-axes.yaml", "cluster", [":16:", "topology.torus.slices[2].shape", "3 axes"]),
    ("cluster-slice-product.yaml", "cluster", [":15:", "topology.torus.slices[1].shape", "holds 8 chips"]),
    ("cluster-slice-zero.yaml", "cluster", [":14:", "topology.torus.slices[0].shape[1]", "positive"]),
    ("cluster-wraparound.yaml", "cluster", [":16:", "topology.torus.slices[2].wraparound", "true or false"]),
    ("cluster-duplicate-slice.yaml", "cluster", [":15:", "topology.torus.slices[1].chips", "already listed"]),
    ("cluster-slice-missing.yaml", "cluster", [":14:", "topology.torus.slices[0].wraparound", "missing key"]),
    ("cluster-empty-slices.yaml", "cluster", [":13:", "topology.torus.slices", "empty list"]),
    ("cluster-axes-scalar.yaml", "cluster", [":10:", "topology.torus.axes", "expected a list"]),
    ("cluster-both-topologies.yaml", "cluster", [":9:", "topology", "exactly one"]),
    ("cluster-no-topology.yaml", "cluster", [":8:", "topology", "exactly one"]),
    ("cluster-topology-typo.yaml", "cluster", [":9:", "topology.torrus", "did you mean 'torus'"]),
    ("cluster-efficiency-range.yaml", "cluster", [":18:", "calibration.matmul_efficiency", "<= 1"]),
    ("cluster-narrow-efficiency-range.yaml", "cluster", [":19:", "calibration.narrow_matmul_efficiency", "<= 1"]),
    ("cluster-negative-latency.yaml", "cluster", [":19:", "calibration.collective_latency_s", ">= 0"]),
    ("cluster-latency-unit.yaml", "cluster", [":19:", "calibration.collective_latency_s", "unknown time unit"]),
    ("cluster-overlap-range.yaml", "cluster", [":20:", "calibration.overlap", "<= 1"]),
    ("cluster-calibration-typo.yaml", "cluster", [":20:", "calibration.overlapp", "did you mean 'overlap'"]),
    ("cluster-hbm-zero.yaml", "cluster", [":6:", "chip.hbm", "> 0"]),
    ("cluster-hbm-absurd.yaml", "cluster", [":6:", "chip.hbm", "out of range"]),
    ("cluster-outer-size.yaml", "cluster", [":12:", "topology.switched.levels[1].size", "outermost"]),
    ("cluster-inner-no-size.yaml", "cluster", [":11:", "topology.switched.levels[0].size", "missing key 'size'"]),
    ("cluster-chip-count.yaml", "cluster", [":13:", "topology.switched.chips[4]", "nvlink groups of 8"]),
    ("cluster-chip-duplicate.yaml", "cluster", [":13:", "topology.switched.chips[2]", "listed twice"]),
    ("cluster-level-multiple.yaml", "cluster", [":12:", "topology.switched.levels[1].size", "multiple"]),
    (
        "cluster-level-bandwidth.yaml",
        "cluster",
        [":12:", "topology.switched.levels[1].bandwidth", "expected a bandwidth"],
    ),
    ("cluster-chip-missing.yaml", "cluster", [":2:", "chip", "missing key 'chip'"]),
    ("plan-unknown-model.yaml", "plan", [":2:", "model", "did you mean 'palm-540b'", "llama-3-70b"]),
    ("plan-unknown-cluster.yaml", "plan", [":3:", "cluster", "did you mean 'tpu-v5p'"]),
    ("plan-missing-model-file.yaml", "plan", [":2:", "model", "no-such-model.yaml"]),
    ("plan-bad-model-file.yaml", "plan", ["model-float-layers.yaml:3:", "layers"]),
    ("plan-chips-cluster.yaml", "plan", [":7:", "search.chips[1]", "cannot form 12 chips", "8, 16, 32"]),
    ("plan-unknown-ffn.yaml", "plan", [":10:", "search.ffn[1]", "did you mean 'ws2d'"]),
    ("plan-unknown-attention.yaml", "plan", [":11:", "search.attention[1]", "did you mean 'batch'"]),
    ("plan-unknown-phase.yaml", "plan", [":6:", "search.phases[0]", "did you mean 'prefill'"]),
    ("plan-unknown-weights.yaml", "plan", [":9:", "search.weights[1]", "unknown weight format"]),
    ("plan-batch-zero.yaml", "plan", [":8:", "search.batch[0]", "positive"]),
    ("plan-batch-float.yaml", "plan", [":8:", "search.batch[1]", "whole"]),
    ("plan-empty-chips.yaml", "plan", [":7:", "search.chips", "empty list"]),
    ("plan-duplicate-batch.yaml", "plan", [":8:", "search.batch[2]", "listed twice"]),
    ("plan-phases-scalar.yaml", "plan", [":6:", "search.phases", "expected a list"]),
    ("plan-missing-workload.yaml", "plan", [":2:", "workload", "missing key 'workload'"]),
    ("plan-workload-missing-key.yaml", "plan", [":4:", "workload.context", "missing key 'context'"]),
    ("plan-workload-typo.yaml", "plan", [":4:", "workload.input_token", "did you mean 'input_tokens'"]),
    ("plan-workload-float.yaml", "plan", [":4:", "workload.output_tokens", "whole"]),
    ("plan-latency-unit.yaml", "plan", [":12:", "constraints.max_latency_s", "unknown time unit"]),
    ("plan-min-mfu.yaml", "plan", [":12:", "constraints.min_mfu", "out of reach", "did you mean 1.5%?"]),
    ("plan-deployment-phase.yaml", "plan", [":14:", "deployment.decod", "did you mean 'decode'"]),
    ("plan-deployment-chips.yaml", "plan", [":14:", "deployment.decode.chips", "cannot form 48 chips"]),
    ("plan-deployment-missing.yaml", "plan", [":14:", "deployment.decode.weights", "missing key 'weights'"]),
    ("plan-search-typo.yaml", "plan", [":8:", "search.batches", "did you mean 'batch'"]),
    ("plan-model-mapping.yaml", "plan", [":2:", "model", "found a mapping"]),
    ("plan-top-typo.yaml", "plan", [":12:", "constraint", "did you mean 'constraints'"]),
    ("plan-list-root.yaml", "plan", [":2:", "expected a plan", "found a list"]),
    ("plan-context-beyond-model.yaml", "plan", [":4:", "workload.context", "maximum context of 40960 tokens"]),
    (
        "plan-short-context.yaml",
        "plan",
        [":7:", "workload.context", "shorter than the prompt", "--allow-short-context"],
    ),
    ("model-window-alone.yaml", "model", [":12:", "sliding_window", "needs 'local_layers'"]),
    ("model-local-layer-range.yaml", "model", [":13:", "local_layers[2]", "layer 4 does not exist"]),
    ("model-local-pattern.yaml", "model", [":13:", "local_layers", "found 'LLLX'"]),
    # Hugging Face config.json files (JSON has no comments: the names say what is wrong)
    (
        "hf-unsupported-type.json",
        "model",
        [
            ":4:",
            "model_type",
            "unsupported model_type 'mamba'",
            "supported model types: deepseek_v3, falcon, gemma2, gemma3",
        ],
    ),
    ("hf-missing-key.json", "model", [":1:", "intermediate_size", "missing key 'intermediate_size'", "llama"]),
    ("hf-no-model-type.json", "model", [":1:", "missing key 'model_type'", "supported model types"]),
    ("hf-not-json.json", "model", [":5:", "not valid JSON"]),
    ("hf-count-text.json", "model", [":8:", "num_hidden_layers", "positive whole number", '"32"']),
    ("hf-duplicate-key.json", "model", [":5:", "hidden_size", "duplicate key"]),
    ("hf-kv-not-divisor.json", "model", [":9:", "num_key_value_heads", "multiple"]),
    ("hf-gemma3-no-text-config.json", "model", [":1:", "text_config", "expected the object 'text_config'"]),
    ("hf-gemma3-missing-head-dim.json", "model", [":3:", "text_config.head_dim", "missing key 'head_dim'"]),
    ("hf-layer-types.json", "model", [":6:", "layer_types", "unsupported layer type 'chunked_attention'"]),
    ("hf-activation.json", "model", [":2:", "hidden_act", "unsupported activation 'relu'"]),
    ("hf-list-root.json", "model", [":1", "expected a JSON object"]),
    ("hf-deepseek-missing-kv-lora.json", "model", [":1:", "kv_lora_rank", "missing key 'kv_lora_rank'", "deepseek_v3"]),
    ("hf-mixtral-missing-experts.json", "model", [":1:", "missing key 'num_local_experts'", "MixtralConfig"]),
    ("hf-qwen3-moe-mlp-only.json", "model", [":8:", "mlp_only_layers", "expected the first layers", "[5, 7]"]),
    ("hf-gpt-oss-top-k.json", "model", [":9:", "num_experts_per_tok", "exceed the 128 routed experts"]),
    ("cluster-hbm-bare.yaml", "cluster", [":6:", "chip.hbm", "needs a unit", "'80 GB'"]),
    ("cluster-reserve-bare.yaml", "cluster", [":8:", "chip.memory_reserve", "'10%'", "needs a unit"]),
    ("cluster-wraparound-axes.yaml", "cluster", [":16:", "slices[2].wraparound", "has 2 values", "3 axes"]),
    ("cluster-sparse-without-dense.yaml", "cluster", [":6:", "sparse_peak_flop_per_s.fp8", "without a dense"]),
    ("cluster-connected-bandwidth.yaml", "cluster", [":11:", "levels[0].bandwidth", "fully connected"]),
    (
        "cluster-level-name-unknown.yaml",
        "cluster",
        [":17:", "calibration.levels.nvlnk", "not a level", "nvlink, infiniband"],
    ),
    ("cluster-level-efficiency-range.yaml", "cluster", [":16:", "calibration.levels.nvlink.efficiency", "<= 1"]),
    ("cluster-level-bulk-half.yaml", "cluster", [":16:", "calibration.levels.nvlink", "bulk_efficiency"]),
    ("cluster-level-in-switch-half.yaml", "cluster", [":16:", "calibration.levels.nvlink", "in_switch_efficiency"]),
    ("cluster-connected-in-switch.yaml", "cluster", [":11:", "levels[0].in_switch_reduction", "no switch"]),
    ("cluster-level-key-typo.yaml", "cluster", [":16:", "step_latency", "did you mean 'step_latency_s'"]),
    ("cluster-level-negative-latency.yaml", "cluster", [":16:", "calibration.levels.infiniband.latency_s", ">= 0"]),
    ("cluster-borrowed-and-calibration.yaml", "cluster", [":17:", "calibration.levels", "drop it and give"]),
    ("cluster-borrowed-torus.yaml", "cluster", [":14:", "calibration_borrowed_from", "torus vs switched"]),
    ("cluster-borrowed-not-fitted.yaml", "cluster", [":14:", "calibration_borrowed_from", "no fitted calibration"]),
    (
        "plan-weights-no-peak.yaml",
        "plan",
        [":9:", "search.weights[1]", "TPU v4 (tpu-v4)", "its formats: bf16, int8, int4"],
    ),
    ("plan-tokens-suffix.yaml", "plan", [":4:", "workload.input_tokens", "'2m'"]),
]


def test_table_covers_the_corpus():
    listed = [name for name, _, _ in CASES]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(path.name for path in BAD_INPUTS.glob("*.*"))
    assert len(listed) >= 45


@pytest.mark.parametrize(("name", "kind", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_reported(name: str, kind: str, expected: list[str]):
    path = BAD_INPUTS / name
    with pytest.raises(ConfigError) as caught:
        LOADERS[kind](str(path))
    message = str(caught.value)
    names_another_file = any(re.match(r"[\w.-]+\.(yaml|json):\d+:", s) for s in expected)
    if not names_another_file:  # e.g. a plan whose model file is wrong: that file is named
        assert name in message
    assert caught.value.line is not None
    for substring in expected:
        assert substring in message, f"{substring!r} not in:\n{message}"
