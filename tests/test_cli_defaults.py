"""Issue 29: the defaults a GPU serving engineer meets first, and the inputs that must not pass.
Each item is checked as a user runs it: exit code, stdout's first lines, stderr's message."""

import pytest

from planner.config import load_cluster, load_plan
from planner.errors import ConfigError
from planner.specs.hardware import WeightFormat

# --- 1. weight formats: the chip's defaults, said in the header ------------------------------


@pytest.mark.parametrize(
    ("cluster", "formats"),
    [
        ("h100-sxm", "bf16, fp8"),
        ("h200-sxm", "bf16, fp8"),
        ("b200", "bf16, fp8, fp4"),
        ("gb200-nvl72", "bf16, fp8, fp4"),
        ("a100-80gb", "bf16, int8"),
        ("tpu-v4", "bf16, int8"),
    ],
)
def test_each_preset_names_its_default_formats(cluster, formats):
    chip = load_cluster(cluster).chip
    assert chip.default_weights and ", ".join(w.label for w in chip.native_weights()) == formats


def test_plan_searches_fp8_on_h100_and_says_so(planner):
    r = planner("plan", "--model", "llama-3.1-70b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8")
    assert r.code == 0, r.err
    first = r.out.split("\n\n")[0].replace("\n", " ")
    assert first.startswith("llama-3.1-70b on h100-sxm: input 1024, output 1024, context 2048 tokens")
    assert "Weights: bf16, fp8 (h100-sxm's defaults)" in first
    assert " fp8 " in r.out.split("\n\n", 2)[2]  # fp8 rows on the frontier


def test_serve_header_says_the_formats(planner):
    r = planner("serve", "--model", "llama-3-8b", "--cluster", "b200", "--chips", "8", "--batch", "8")
    assert r.code == 0, r.err
    assert "Weights: bf16, fp8, fp4 (b200's defaults)." in r.out.split("\n\n")[0].replace("\n", " ")


def test_a_cluster_file_may_name_its_defaults(tmp_path):
    text = (load_cluster.__globals__["locate"]("clusters", "h100-sxm")).read_text()
    mine = tmp_path / "mine.yaml"
    mine.write_text(text.replace("default_weights: [bf16, fp8]", "default_weights: [int8, fp8]"))
    assert load_plan(None, model="llama-3-8b", cluster=str(mine)).space.weights == (WeightFormat.INT8, WeightFormat.FP8)
    mine.write_text(text.replace("default_weights: [bf16, fp8]", "default_weights: [bf16, fp4]"))
    with pytest.raises(ConfigError, match="fp4 weights need a fp4 peak"):
        load_cluster(str(mine))
    mine.write_text(text.replace("  default_weights: [bf16, fp8]", ""))  # no key: the rule
    assert load_cluster(str(mine)).chip.native_weights() == (WeightFormat.BF16, WeightFormat.FP8)


def test_an_explicit_weights_flag_is_not_called_a_default(planner):
    r = planner(
        "plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8", "--weights", "bf16"
    )
    assert "Weights: bf16." in r.out.replace("\n", " ") and "defaults" not in r.out.split("\n\n")[0]


# --- 2. the flag-only workload is a serving benchmark's; plan files keep theirs ---------------


def test_flag_only_workload_is_1k_in_1k_out_and_plan_files_keep_theirs(planner):
    r = planner("serve", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8")
    assert r.out.startswith("llama-3-8b on h100-sxm: requests of 1024 input and 1024 output tokens")
    r = planner("plan", "palm-540b-tpu-v4", "--chips", "64", "--batch", "64", "--phase", "decode")
    assert r.out.startswith("palm-540b on tpu-v4: input 2048, output 64, context 2048 tokens. Weights: bf16,")


def test_compare_side_by_side_names_the_workload_first(planner):
    r = planner(
        "compare", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8", "--phase", "decode"
    )
    assert r.code == 0, r.err
    assert r.out.startswith("llama-3-8b on h100-sxm: input 1024, output 1024, context 2048 tokens;")


# --- 3. pipeline stages by default when the chips span nodes ----------------------------------


def test_405b_on_16_h100s_shows_pp2_rows_without_stages(planner):
    r = planner(
        "plan",
        "--model",
        "llama-3.1-405b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "16",
        "--weights",
        "bf16",
        "--phase",
        "decode",
    )
    assert r.code == 0, r.err
    header = r.out.split("\n\n")[0].replace("\n", " ")
    assert "pipeline stages 1, 2 (by default where the chips span more than one node; --stages 1 for none)" in header
    assert "PP2" in r.out


@pytest.mark.parametrize(
    ("model", "cluster", "chips", "stages"),
    [
        ("llama-3.1-405b", "h100-sxm", (8,), (1,)),  # one node: no pipeline
        ("llama-3.1-405b", "h100-sxm", (16, 64), (1, 2, 4, 8)),  # 2 and 8 nodes: counts dividing them
        ("llama-3.1-405b", "h100-sxm", (24,), (1, 3)),
        ("palm-540b", "tpu-v4", (64, 256), (1,)),  # a torus plans its chips as one slice
    ],
)
def test_default_stage_counts_divide_the_nodes(model, cluster, chips, stages):
    plan = load_plan(None, model=model, cluster=cluster, chips=chips)
    assert plan.space.stages == stages and "stages" in plan.defaults
    assert load_plan(None, model=model, cluster=cluster, chips=chips, stages=(1,)).space.stages == (1,)


# --- 4. a request beyond the model's context; the KV cache holds the whole request ------------


def test_output_beyond_max_context_is_exit_2_with_the_hint(planner):
    for command in ("plan", "serve"):
        r = planner(command, "--model", "llama-3.1-70b", "--cluster", "h100-sxm", "--output-tokens", "1M")
        assert r.code == 2 and r.out == ""
        assert (
            "error: --output-tokens: a request of 1024 input + 1048576 output tokens = 1049600 tokens "
            "exceeds llama-3.1-70b's maximum context of 131072 tokens"
        ) in r.err
        assert "hint: give at most 130048 output tokens" in r.err


def test_without_context_the_kv_cache_holds_input_plus_output_and_the_header_says_so(planner):
    r = planner(
        "plan",
        "--model",
        "llama-3-8b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "8",
        "--batch",
        "8",
        "--input-tokens",
        "2k",
        "--output-tokens",
        "512",
        "--phase",
        "decode",
        "--format",
        "json",
    )
    import json

    assert json.loads(r.out)["workload"] == {"input_tokens": 2048, "output_tokens": 512, "context": 2560}
    r = planner(
        "plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8", "--phase", "decode"
    )
    assert (
        "context 2048 tokens (input + output: each decode step is timed at, and the KV cache must hold, "
        "a whole request)"
    ) in r.out.replace("\n", " ")


def test_a_batch_that_overflows_before_its_last_token_is_infeasible():
    """At 2k in, 1k out the KV cache at the prompt fits where the one at the last token does not."""
    from planner.search.search import best
    from planner.specs.plan import Phase

    at_prompt = load_plan(
        None,
        model="llama-3-70b",
        cluster="h100-sxm",
        chips=(8,),
        input_tokens=2048,
        output_tokens=6144,
        context=2048,
        phases=("decode",),
    )
    whole = load_plan(
        None,
        model="llama-3-70b",
        cluster="h100-sxm",
        chips=(8,),
        input_tokens=2048,
        output_tokens=6144,
        phases=("decode",),
    )
    args = (Phase.DECODE, 8, 512, WeightFormat.BF16, "ws1d", "heads")
    assert best(at_prompt, *args) is not None and best(whole, *args) is None


def test_allow_short_context_without_a_context_is_an_error(planner):
    r = planner("plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--allow-short-context")
    assert r.code == 2 and "--allow-short-context applies to a context shorter than the prompt" in r.err


# --- 5. flags that do not apply ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "serve", "compare"])
@pytest.mark.parametrize(("flag", "value"), [("--experts", "ep"), ("--load-imbalance", "1.5")])
def test_moe_flags_on_a_dense_model_are_errors(planner, command, flag, value):
    r = planner(command, "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8", "--batch", "8", flag, value)
    assert r.code == 2 and r.out == ""
    assert f"error: {flag} applies to mixtures of experts only, and llama-3-8b is dense" in r.err
    assert "hint: drop it" in r.err


def test_explain_refuses_experts_on_a_dense_model(planner):
    r = planner(
        "explain",
        "--model",
        "llama-3-8b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "8",
        "--ffn",
        "ws1d",
        "--attention",
        "heads",
        "--weights",
        "bf16",
        "--experts",
        "ep",
    )
    assert r.code == 2 and "--experts applies to mixtures of experts only" in r.err


def test_a_plan_file_with_experts_for_a_dense_model_is_an_error(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "model: llama-3-8b\ncluster: h100-sxm\nworkload: {input_tokens: 1k, output_tokens: 1k, "
        "context: 2k}\nsearch:\n  experts: [ep]\n"
    )
    with pytest.raises(ConfigError, match="expert layouts apply to mixtures of experts only") as caught:
        load_plan(str(plan))
    assert ":5:" in str(caught.value) or "line 5" in str(caught.value)


# --- 6. serve --plot: modes on the same points stay visible -----------------------------------


def test_serve_plot_draws_each_mode_distinguishably(planner, tmp_path):
    pytest.importorskip("matplotlib")
    from planner.render.serve_plot import STYLES, coincide

    assert len({(m, line) for m, line, _ in STYLES}) == len(STYLES)
    assert len({size for *_, size in STYLES}) == len(STYLES)  # larger hollow marks first: later ones show
    assert coincide([(1.0, 2.0)], [(1.0005, 2.0)]) and not coincide([(1.0, 2.0)], [(1.1, 2.0)])
    picture = tmp_path / "f.svg"
    r = planner(
        "serve",
        "--model",
        "llama-3-8b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "1,8",
        "--batch",
        "1,8,64",
        "--plot",
        picture,
    )
    assert r.code == 0, r.err
    svg = picture.read_text()
    assert "stroke-dasharray" in svg  # dashed and dotted lines beside the solid one
    assert "on static's points, within 1%" in svg  # this workload puts disaggregated on static's points


# --- 7. more stages than nodes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("chips", "stages", "nodes"),
    [("8", "2", "8 chips are 1 nvlink group"), ("16", "4", "16 chips are 2 nvlink groups")],
)
def test_more_stages_than_nodes_says_stages_split_the_outermost_level(planner, chips, stages, nodes):
    r = planner("plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", chips, "--stages", stages)
    assert r.code == 2 and r.out == ""
    assert (
        f"cannot form {stages} pipeline stages from {chips} chips: pipeline stages split only the outermost "
        "level (infiniband)" in r.err
    )
    assert nodes in r.err and "stages inside one nvlink group are not modelled" in r.err
