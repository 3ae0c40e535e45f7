"""CLI behaviour from an expert review: MFU above 100% (fp8 and faster formats against the bf16
peak), deployment pins, context limits, small flags and messages."""

import json

import pytest

from planner.config import load_plan

H100_8B = ("--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "8")
# A model wide enough that fp8 prefill on 8 H100s passes 100% MFU against the bf16 peak (8B's
# per-token work outside the matmuls keeps it below: token_overhead_s)
H100_70B = ("--model", "llama-3-70b", "--cluster", "h100-sxm", "--chips", "8")


def test_min_mfu_above_100_percent_is_accepted_when_a_format_searched_reaches_it(planner):
    code, out, err = planner(
        "plan", *H100_70B, "--phase", "prefill", "--weights", "fp8", "--min-mfu", "110%", "--format", "json"
    )
    assert code == 0, err
    points = json.loads(out)["frontier"]["prefill"]
    assert points and all(p["mfu"] >= 1.1 for p in points)


def test_min_mfu_out_of_reach_of_the_formats_searched_says_so(planner):
    code, out, err = planner("plan", *H100_8B, "--phase", "prefill", "--weights", "bf16", "--min-mfu", "140%")
    assert code == 2 and out == ""
    assert "at most 100.0%" in err and "bf16 peak" in err
    code, _, err = planner("plan", *H100_8B, "--min-mfu", "40")
    assert code == 2 and "did you mean 40%?" in err


def test_min_mfu_in_a_plan_file_above_100_percent(tmp_path, planner):
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "model: llama-3-70b\ncluster: h100-sxm\n"
        "workload: {input_tokens: 2048, output_tokens: 64, context: 2048}\n"
        "search: {chips: [8], weights: [bf16], phases: [prefill]}\nconstraints:\n  min_mfu: 110%\n"
    )
    code, _, err = planner("plan", str(plan))
    assert code == 2 and f"{plan}:6" in err and "out of reach" in err
    plan.write_text(plan.read_text().replace("[bf16]", "[fp8]"))
    assert planner("plan", str(plan))[0] == 0


def test_explain_gives_the_share_of_the_formats_own_peak(planner):
    args = ("explain", *H100_8B, "--phase", "prefill", "--batch", "8", "--ffn", "ws1d", "--attention", "heads")
    fp8 = json.loads(planner(*args, "--weights", "fp8", "--format", "json")[1])
    bf16 = json.loads(planner(*args, "--weights", "bf16", "--format", "json")[1])
    # H100 SXM: dense fp8 1979 TFLOP/s, bf16 989 TFLOP/s (configs/clusters/h100-sxm.yaml)
    assert fp8["mfu_of_format_peak"] == pytest.approx(fp8["mfu"] * 989 / 1979, rel=1e-5)
    assert bf16["mfu_of_format_peak"] == bf16["mfu"]
    assert "of the fp8 peak" in planner(*args, "--weights", "fp8")[1]


def test_plan_legend_says_why_mfu_passes_100_percent(planner):
    out = planner("plan", *H100_70B, "--phase", "prefill", "--weights", "fp8", "--min-mfu", "100%")[1]
    assert "MFU above 100%" in " ".join(out.split())
    out = planner("plan", *H100_8B, "--phase", "prefill", "--weights", "bf16")[1]
    assert "MFU above 100%" not in " ".join(out.split())


def test_llama_3_8b_refuses_a_prompt_beyond_its_8k_context(planner):
    code, out, err = planner("plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--input-tokens", "200k")
    assert code == 2 and out == "" and "maximum context of 8192" in err


def test_presets_say_their_context_where_a_source_gives_it():
    """Every preset has max_context but PaLM (the paper's tests plan long prompts on it; the paper
    gives no serving limit) and llama-3-405b (released only as Llama 3.1, with 128k)."""
    from planner.config import list_presets, load_model

    without = {name for name in list_presets("models") if load_model(name).max_context is None}
    assert without == {"palm-8b", "palm-62b", "palm-540b", "llama-3-405b"}


def test_single_chip_explain_lists_no_collectives(planner):
    """On one chip every collective spans one chip and moves nothing: no row, no bytes on the net."""
    args = (
        "explain",
        "--model",
        "mistral-7b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "1",
        "--phase",
        "decode",
        "--batch",
        "1",
        "--weights",
        "bf16",
        "--ffn",
        "ws1d",
        "--attention",
        "batch",
    )
    data = json.loads(planner(*args, "--format", "json")[1])
    assert data["layers"] and all(not row["collective"] and row["comm_bytes"] == 0 for row in data["layers"])
    out = planner(*args)[1]
    assert "all-to-all Q to batch" not in out and "reduce-scatter(" not in out and "decode: 1 chip (mesh 1)" in out
    # on 8 chips the collectives are there
    multi = json.loads(planner(*args[:6], "8", *args[7:-1], "heads", "--format", "json")[1])
    assert any(row["collective"] for row in multi["layers"])


@pytest.mark.parametrize(
    "flags, says",
    [
        (("--load-imbalance", "1.3"), "mixtures of experts only"),
        (("--batch", "1,,2"), "empty item"),
        (("--chips", "8,"), "empty item"),
    ],
)
def test_flags_that_do_not_apply_or_are_malformed_are_refused(planner, flags, says):
    code, out, err = planner("plan", *H100_8B[:4], *flags)
    assert code == 2 and out == "" and says in err


def test_load_imbalance_still_applies_to_moe(planner):
    code, _, err = planner(
        "plan",
        "--model",
        "mixtral-8x7b",
        "--cluster",
        "h100-sxm",
        "--chips",
        "8",
        "--phase",
        "decode",
        "--batch",
        "64",
        "--load-imbalance",
        "1.3",
    )
    assert code == 0, err


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("2048", 2048),
        ("2k", 2048),
        ("2k tokens", 2048),
        ("2048 tokens", 2048),
        ("1M", 1024 * 1024),
        ("0.5M tokens", 512 * 1024),
        ("128K", 131072),
    ],
)
def test_token_counts_take_a_tokens_suffix_and_m(text, tokens):
    from planner.units import parse_tokens

    assert parse_tokens(text) == tokens


def test_token_count_that_cannot_be_read_lists_the_forms(tmp_path, capsys):
    from planner.cli.main import run

    plan = tmp_path / "p.yaml"
    plan.write_text("model: palm-540b\ncluster: tpu-v4\nworkload: {input_tokens: '2 kB', output_tokens: 64}\n")
    assert run(["plan", str(plan)]) == 2
    err = capsys.readouterr().err
    assert "p.yaml:3:" in err and "workload.input_tokens" in err and "2k, 128k or 1M" in err
    assert run(["plan", "palm-540b-tpu-v4", "--input-tokens", "2m"]) == 2
    assert "--input-tokens:" in capsys.readouterr().err
    plan.write_text(
        "model: palm-540b\ncluster: tpu-v4\nworkload: {input_tokens: 2k tokens, output_tokens: 64, context: 1M}\n"
    )
    assert (load_plan(str(plan)).workload.input_tokens, load_plan(str(plan)).workload.context) == (2048, 1024 * 1024)


def test_min_mfu_hint_follows_what_was_typed(capsys):
    """--min-mfu 900% is 9 x the bf16 peak, not a bare 9: no 'did you mean 9%?'; a bare 9 or 3
    still gets it; a percentage out of reach (300% on TPU v4) gets none."""
    from planner.cli.main import run

    base = ["plan", "palm-540b-tpu-v4", "--chips", "64", "--batch", "64", "--min-mfu"]
    cases = {
        "900%": (["at most 800%", "found 900%"], "did you mean"),
        "9": (["did you mean 9%?"], None),
        "300%": (["out of reach"], "did you mean"),
        "3": (["out of reach", "did you mean 3%?"], None),
    }
    for text, (present, absent) in cases.items():
        assert run(base + [text]) == 2
        err = capsys.readouterr().err
        assert all(p in err for p in present), (text, err)
        assert absent is None or absent not in err, (text, err)


def test_both_stands_alone_in_a_phase_list(planner):
    run = planner("plan", "llama-3-70b-h100", "--phase", "both,decode")
    assert run.code == 2 and "'both' stands alone" in run.err and "give --phase both" in run.err


def test_a_prompt_that_fills_the_context_asks_for_a_shorter_prompt(planner):
    run = planner(
        "plan", "--model", "llama-3-8b", "--cluster", "h100-sxm", "--chips", "1", "--batch", "1",
        "--input-tokens", "8192", "--context", "8192",
    )  # fmt: skip
    assert run.code == 2 and "at most 0 output tokens" not in run.err
    assert "give at most 8191 input tokens" in run.err
