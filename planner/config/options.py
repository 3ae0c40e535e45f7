"""Every command-line option, defined once: its flags, metavar, help, how its text is read, which
commands take it and, for a planning option, the plan field it sets (a `PlanOverrides` field, a
`load_plan` keyword). Plain data: `planner.cli.options` turns it into typer parameters and hands
each command one `Options` record; `load_plan` names flags in its messages from here.

Every planning option (`plans=True`) is taken by every planning command (plan, explain, serve,
compare); a command for which one does not apply says so (exit 2), it never ignores it.

To add an option (e.g. serve's `--concurrency`, or `--redundant-experts` for MoE plans):
1. one `Option(...)` entry in OPTIONS below, in the place its --help should list it; `commands`
   says which commands take it (PLANNING for a planning option), `parse` how its text is read
   (`planner.config.flagtext`), `per_command` any command's own help or metavar;
2. a planning option also gets the same-named field in `PlanOverrides` below, which `load_plan`
   merges into the plan (`planner.config.plans`; checks of its range in `planner.config.overrides`);
   a command option is read by its command as `opts.<name>` (or `opts.parsed("<name>")`).
Nothing else: the commands' signatures, --help and the record are built from this table, and
tests/test_structure.py checks that every planning command takes every planning option.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from planner.config.flagtext import int_list, lower, phase_list, same, seconds_flag, tokens_flag, word_list

PLANNING = frozenset({"plan", "explain", "serve", "compare"})  # commands that plan: every planning option


@dataclass(frozen=True, kw_only=True)
class Option:
    """One command-line option (or positional argument)."""

    name: str  # the record's attribute; a planning option's PlanOverrides field
    flags: tuple[str, ...] = ()  # () for a positional argument
    metavar: str | None = None
    help: str = ""
    parse: Callable[[Any, str], Any] = same  # (text as typed, flag) -> value; UsageError naming the flag
    kind: type = str  # str, int, float, bool (a switch) or Path
    default: Any = None
    commands: frozenset[str] = PLANNING
    plans: bool = False  # sets the PlanOverrides field `name`
    complete: str | None = None  # shell completion: preset kind ("models", "clusters", "plans")
    per_command: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # command -> fields

    @property
    def flag(self) -> str:
        """The name messages use: the first long flag (`--output` for `-o/--output`)."""
        return next((f for f in self.flags if f.startswith("--")), self.metavar or self.name)

    def value(self, text: Any) -> Any:
        return self.parse(text, self.flag)


def _opt(name: str, flags: str | tuple[str, ...], metavar: str | None, help: str, **more: Any) -> Option:
    return Option(name=name, flags=(flags,) if isinstance(flags, str) else flags, metavar=metavar, help=help, **more)


def _plan(name: str, flag: str, metavar: str | None, help: str, **more: Any) -> Option:
    return _opt(name, flag, metavar, help, plans=True, **more)


_ONE = "explain"  # explain without --row takes one value per axis
WEIGHTS_HELP = (
    "Weight formats: bf16, int8 (weight-only), fp8 (W8A8), int8-w8a8, int4 (weight-only), "
    "fp4 (W4A4), or all (every one the chip has a peak for) [default: the chip's default formats, e.g. bf16,fp8 on H100; the header names them]."
)
_WITH_ROW = "With --row: as in `planner plan`"
_NOT_SERVE = "Not for serve: a request's decode steps attend to input + 1 to input + output tokens."
_SERVE_TARGETS = "Not for serve: its targets are --ttft, --tpot and --e2e."

OPTIONS: tuple[Option, ...] = (
    # positional arguments
    Option(
        name="plan_file",
        metavar="PLAN",
        complete="plans",
        commands=frozenset({"plan", "explain", "serve"}),
        help="Plan: preset name or YAML file. Optional when --model and --cluster are given; flags "
        "override its fields.",
        per_command={
            "explain": {"help": "Plan: preset name or YAML file (optional; flags override it).", "complete": None},
            "serve": {
                "help": "Plan: preset name or YAML file (its model, cluster, workload and "
                "search space; both phases are always planned). Optional when "
                "--model and --cluster are given."
            },
        },
    ),
    Option(
        name="first",
        metavar="PLAN|BASELINE.json",
        commands=frozenset({"compare"}),
        help="A plan (preset name or YAML path), or the baseline run; optional when --model and --cluster are given.",
    ),
    Option(
        name="second",
        metavar="PLAN|CURRENT.json",
        commands=frozenset({"compare"}),
        help="With a baseline: a plan to search now, or a saved run.",
    ),
    Option(
        name="measurements",
        metavar="MEASUREMENTS",
        default=...,
        commands=frozenset({"calibrate"}),
        help=(
            "Measurements YAML (e.g. configs/measurements/pope2022-tpu-v4.yaml), or benchmark results: a result "
            "file of vllm bench serve, SGLang bench_serving, genai-perf, AIPerf or InferenceX with its sidecar "
            "<file>.planner.yaml, or a sidecar (format: planner-bench/1) listing result files."
        ),
    ),
    Option(
        name="config",
        metavar="CONFIG",
        default=...,
        commands=frozenset({"models"}),
        help="A Hugging Face config.json, or the model folder holding it.",
    ),
    _opt(
        "deployment",
        "--deployment",
        None,
        "Check the plan's pinned deployment.",
        kind=bool,
        default=False,
        commands=frozenset({"compare"}),
    ),
    # the plan: model, cluster, search space, workload, constraints
    _plan(
        "model",
        "--model",
        "NAME|FILE",
        "Model: preset name (see 'planner presets'), YAML file, or a Hugging "
        "Face config.json (or the folder holding it).",
        complete="models",
    ),
    _plan(
        "cluster",
        "--cluster",
        "NAME|FILE",
        "Cluster: preset name (see 'planner presets') or YAML file.",
        complete="clusters",
        commands=PLANNING | {"calibrate"},
    ),
    _opt(
        "row",
        "--row",
        "N",
        "",
        kind=int,
        commands=frozenset({"explain", "serve"}),
        per_command={
            "explain": {
                "help": "Explain row N (the # column) of `planner plan` run with the same plan and flags; "
                "then --chips, --phase, --batch, --ffn, --attention, --weights, --experts, --stages "
                "and the constraints take lists and limits as in `planner plan`."
            },
            "serve": {"help": "Explain row N (the # column): its prefill and decode layouts."},
        },
    ),
    _opt(
        "emit",
        "--emit",
        "ENGINE",
        "With --row: print what runs the row on ENGINE (vllm, sglang, trtllm, dynamo; on TPUs "
        "vllm-tpu, jetstream): each pool's launch command at the pinned flags, the layout the engine "
        "runs where it cannot run the row's (and its figures beside), and the engine's benchmark "
        "command and result sidecar for `planner calibrate`.",
        parse=lower,
        commands=frozenset({"serve", "explain"}),
        per_command={
            "explain": {
                "help": "Print what runs the explained layout on ENGINE (vllm, sglang, trtllm, dynamo; on "
                "TPUs vllm-tpu, jetstream): its launch command at the pinned flags, the layout the engine "
                "runs where it cannot run this one (and its figures beside), and the engine's benchmark "
                "command and result sidecar for `planner calibrate`."
            }
        },
    ),
    _plan(
        "chips",
        "--chips",
        "N[,N...]",
        "Chip counts to search [chips; default: every slice the cluster offers].",
        parse=int_list,
        per_command={
            _ONE: {"metavar": "N", "help": "Chip count [chips; required without --row]."},
            "serve": {"help": "Chip counts per pool [chips; default: the plan's]."},
            "compare": {"metavar": "LIST", "help": "Chip counts, comma list [chips] (default: the plan's)."},
        },
    ),
    _plan(
        "phases",
        "--phase",
        "PHASE",
        "prefill, decode or both [default: both].",
        parse=phase_list,
        per_command={
            _ONE: {"help": "prefill or decode."},
            "serve": {"help": "Both phases are always served (both is accepted) [default: both]."},
            "compare": {"help": "prefill, decode or both (default: the plan's)."},
        },
    ),
    _plan(
        "batches",
        "--batch",
        "B[,B...]",
        "Batch sizes to search [sequences; default 1,2,4,...,1024].",
        parse=int_list,
        per_command={
            _ONE: {"metavar": "B", "help": "Batch size [sequences]."},
            "compare": {"metavar": "LIST", "help": "Batch sizes, comma list [sequences] (default: the plan's)."},
        },
    ),
    _plan(
        "weights",
        "--weights",
        "FMT[,FMT...]",
        WEIGHTS_HELP,
        parse=word_list,
        per_command={
            _ONE: {"metavar": "FMT", "help": "Weight format: bf16, int8, fp8, int8-w8a8, int4 or fp4."},
            "compare": {
                "metavar": "LIST",
                "help": "Weight formats, comma list: bf16, int8, fp8, int8-w8a8, int4, "
                "fp4, or all (default: the plan's).",
            },
        },
    ),
    _plan(
        "ffn",
        "--ffn",
        "NAME[,NAME...]",
        "FFN layouts: ws1d, ws2d, wg-x, wg-xy, wg-xyz, dp (MoE models) [default: all].",
        parse=word_list,
        per_command={
            _ONE: {"metavar": "NAME", "help": "FFN layout: ws1d, ws2d, wg-x, wg-xy, wg-xyz or dp (MoE models)."},
            "compare": {
                "flags": ("--layouts", "--ffn"),
                "metavar": "LIST",
                "help": "FFN layouts, comma list (ws1d, ws2d, wg-x, wg-xy, wg-xyz, dp); side by side also "
                "takes ffn+attention, e.g. ws2d+batch.",
            },
        },
    ),
    _plan(
        "attention",
        "--attention",
        "NAME[,NAME...]",
        "Attention layouts: heads, batch [default: both].",
        parse=word_list,
        per_command={
            _ONE: {"metavar": "NAME", "help": "Attention layout: heads or batch."},
            "compare": {
                "metavar": "LIST",
                "help": "Attention layouts, comma list: heads, batch (default: the plan's).",
            },
        },
    ),
    _plan(
        "kv_cache",
        "--kv-cache",
        "FMT[,FMT...]",
        "KV-cache formats: bf16, fp8, int8 (scales included) [default: bf16].",
        parse=word_list,
        per_command={_ONE: {"metavar": "FMT", "help": "KV-cache format: bf16, fp8 or int8 [default: bf16]."}},
    ),
    _plan(
        "sparsity",
        "--sparsity",
        "dense|2:4",
        "2:4: what-if of 2:4 structured sparsity (weight matmuls at the "
        "chip's sparse peak, weights at half plus indices; quality not modelled).",
    ),
    _plan(
        "experts",
        "--experts",
        "NAME[,NAME...]",
        "Expert layouts of MoE models: ep, ep-xy+tp-z, ep-x+tp-yz, ep-yz, tp, wg [default: all].",
        parse=word_list,
        per_command={
            _ONE: {
                "metavar": "NAME",
                "help": "MoE models: expert layout (ep, ep-xy+tp-z, ep-x+tp-yz, ep-yz, tp, wg) [default: the fastest].",
            }
        },
    ),
    _plan(
        "load_imbalance",
        "--load-imbalance",
        "RHO",
        "MoE models: the busiest chip's expert work over the mean "
        "chip's (1 / SGLang's balancedness) [>= 1; default 1, balanced as DeepSeek's profiles]. Published for "
        "DeepSeek-V3 on H100s: EPLB gave 1.49x prefill and 2.54x decode throughput over none at EP32-72, "
        "perfect balance 1.18x more in prefill (lmsys.org/blog/2025-05-05-large-scale-ep): about 1.2 with "
        "EPLB, 1.2-1.5 or more without.",
        kind=float,
    ),
    _plan(
        "redundant_experts",
        "--redundant-experts",
        "N",
        "MoE models: redundant expert copies held for load "
        "balancing (EPLB); experts + N must divide over each EP size [default: the fewest that make it "
        "divide, e.g. 32 for 256 experts at EP72; 0 where it divides].",
        kind=int,
    ),
    _plan(
        "engine",
        "--engine",
        "NAME",
        "Engine profile: the serving software's fixed times per layer and per token and whether "
        "collectives hide under compute (configs/engines/): sglang, trtllm (fitted to the serving set), vllm "
        "(sglang's by rule), static-batch (the cluster file's own, fitted to static-batch runs), or a path "
        "[default: sglang on a GPU with fitted or borrowed constants; static-batch on a TPU or with ideal "
        "constants].",
        complete="engines",
        commands=PLANNING | {"calibrate"},
        per_command={
            "calibrate": {
                "help": "With --fit on serving runs or benchmark results: the engine profile (a name in "
                "configs/engines/ or a path) whose named constants are refitted, every other constant kept; "
                "-o writes the refined profile for --engine."
            }
        },
    ),
    _plan(
        "runnable_on",
        "--runnable-on",
        "ENGINE",
        "Search only what ENGINE runs as it is: its layouts (FFN+attention pairs, expert layouts) and its "
        "weight and KV-cache formats (planner/specs/engine_layouts.py): vllm, sglang, trtllm on GPUs, vllm-tpu, "
        "jetstream on TPUs [default: every layout; a plan file's search key runnable_on].",
        parse=lower,
    ),
    _plan(
        "stages",
        "--stages",
        "P[,P...]",
        "Pipeline stage counts to search, over the outermost level (whole "
        "nodes; torus slices) [default: 1, and where the chips span more than one node of a switched cluster, every count dividing the nodes; 1 for no pipeline].",
        parse=int_list,
        per_command={
            _ONE: {
                "metavar": "P",
                "help": "Pipeline stages over the outermost level (nodes; torus slices) [default 1].",
            },
            "serve": {"help": "Pipeline stages per pool: serve plans one (1 is accepted) [default 1]."},
            "compare": {
                "help": "Pipeline stage counts, comma list; a pipelined layout is shown as PP2 "
                "ffn+attention (default: the plan's)."
            },
        },
    ),
    _plan(
        "input_tokens",
        "--input-tokens",
        "TOKENS",
        "Prompt length processed by prefill [tokens per sequence, "
        "k = 1024, M = 1024k: 2048, 2k or '2k tokens'; default 1024, or the plan file's].",
        parse=tokens_flag,
    ),
    _plan(
        "output_tokens",
        "--output-tokens",
        "TOKENS",
        "Tokens generated by decode [tokens per sequence; default 1024, or the plan file's]. Decode only.",
        parse=tokens_flag,
    ),
    _plan(
        "context",
        "--context",
        "TOKENS",
        "KV-cache length a decode step attends to [tokens, e.g. 128k; default: input + output tokens, the longest a request reaches]. Decode only.",
        parse=tokens_flag,
        per_command={"serve": {"help": _NOT_SERVE}},
    ),
    _plan(
        "allow_short_context",
        "--allow-short-context",
        None,
        "Allow a decode context shorter than the prompt (a KV cache that intentionally drops tokens).",
        kind=bool,
        default=False,
        per_command={"serve": {"help": _NOT_SERVE}},
    ),
    _plan(
        "max_latency_s",
        "--max-latency",
        "TIME",
        "Drop points slower than this [s, or with a unit: '200 ms']: a prefill pass, or all of decode's output tokens.",
        parse=seconds_flag,
        per_command={_ONE: {"help": f"{_WITH_ROW} [s]."}, "serve": {"help": _SERVE_TARGETS}},
    ),
    _plan(
        "max_step_latency_s",
        "--max-step-latency",
        "TIME",
        "Drop decode points whose step (time per output token) is slower than this [s, or '50 ms'].",
        parse=seconds_flag,
        per_command={_ONE: {"help": f"{_WITH_ROW} [s]."}, "serve": {"help": _SERVE_TARGETS}},
    ),
    _plan(
        "min_mfu",
        "--min-mfu",
        "FRACTION",
        "Drop points below this MFU [fraction 0.4 or '40%'; of the bf16 peak, so fp8/fp4 points may pass 100%].",
        per_command={_ONE: {"help": f"{_WITH_ROW} [fraction]."}, "serve": {"help": _SERVE_TARGETS}},
    ),
    # serve
    _opt(
        "mode",
        "--mode",
        "MODE[,MODE...]",
        "static, colocated, disaggregated [default: all three].",
        parse=word_list,
        commands=frozenset({"serve"}),
    ),
    _opt("ttft", "--ttft", "TIME", "Target time to first token [s, or '500ms'].", commands=frozenset({"serve"})),
    _opt("tpot", "--tpot", "TIME", "Target time per output token [s, or '30ms'].", commands=frozenset({"serve"})),
    _opt("e2e", "--e2e", "TIME", "Target end-to-end request latency [s, or '10s'].", commands=frozenset({"serve"})),
    _opt(
        "price",
        "--price",
        "USD/h",
        "Price per chip-hour, e.g. 2.50/h [USD; default: the cluster file's "
        "price_usd_per_chip_hour, else no cost columns].",
        commands=frozenset({"serve"}),
    ),
    _opt(
        "all",
        "--all",
        None,
        "Every deployment meeting the targets, not only the frontier.",
        kind=bool,
        default=False,
        commands=frozenset({"serve"}),
    ),
    _opt(
        "concurrency",
        "--concurrency",
        "C[,C...]",
        "Serve at these concurrencies as engines run it (closed-loop "
        "clients, C requests in flight): each deployment's curve of TTFT, TPOT, tok/s/user, tok/s/GPU and "
        "$/Mtok instead of the frontier.",
        commands=frozenset({"serve"}),
    ),
    _opt(
        "policy",
        "--policy",
        "POLICY",
        "With --concurrency, how prompts are scheduled: prefill-first (SGLang's "
        "default) or chunked (a token budget per step, as vLLM and TensorRT-LLM; chunked:4096 sets the budget) "
        "[default: prefill-first; budget 8192].",
        commands=frozenset({"serve"}),
    ),
    _opt(
        "max_running",
        "--max-running",
        "N",
        "With --concurrency, an engine's maximum running requests per decode pool [default: what fits in HBM].",
        kind=int,
        commands=frozenset({"serve"}),
    ),
    _opt(
        "speculative",
        "--speculative",
        "K",
        "With --concurrency, speculative decoding: K draft tokens per step (MTP or EAGLE: a drafter of one "
        "layer of the model's shape). A step verifies K + 1 tokens per sequence at the decode step's cost plus "
        "the drafter's K passes; TPOT = step / the mean accepted length.",
        kind=int,
        commands=frozenset({"serve"}),
    ),
    _opt(
        "accepted_length",
        "--accepted-length",
        "A",
        "With --speculative, mean tokens accepted per step (1 to K + 1) [default: MTP's 1.889 at K = 3, fitted "
        "to the serving set's DeepSeek-R1 MTP runs; EAGLE or a draft model: give it].",
        kind=float,
        commands=frozenset({"serve"}),
    ),
    _opt(
        "draft_model",
        "--draft-model",
        "NAME|CONFIG",
        "With --speculative, a separate draft model (a preset or a Hugging Face config.json): the drafter is K "
        "of its decode steps on the same chips (tensor-parallel) instead of one layer of the model's shape; "
        "give --accepted-length. Its weights' HBM is not taken from the target's.",
        commands=frozenset({"serve"}),
    ),
    # compare
    _opt(
        "latency_tolerance",
        "--latency-tolerance",
        "PERCENT",
        "Gate: allowed latency rise [%] (default 1).",
        kind=float,
        commands=frozenset({"compare"}),
    ),
    _opt(
        "mfu_tolerance",
        "--mfu-tolerance",
        "POINTS",
        "Gate: allowed MFU fall [percentage points] (default 0.5).",
        kind=float,
        commands=frozenset({"compare"}),
    ),
    _opt(
        "throughput_tolerance",
        "--throughput-tolerance",
        "PERCENT",
        "Gate of serve runs: allowed fall of "
        "tokens/s per chip, or rise of $/Mtok [%] (default 1); TTFT and TPOT take --latency-tolerance.",
        kind=float,
        commands=frozenset({"compare"}),
    ),
    _opt(
        "allow_different_model",
        "--allow-different-model",
        None,
        "Gate: compare runs of different models.",
        kind=bool,
        default=False,
        commands=frozenset({"compare"}),
    ),
    _opt(
        "max_gap",
        "--max-gap",
        "PERCENT",
        "Deployment: allowed gap [%] (default 5).",
        kind=float,
        commands=frozenset({"compare"}),
    ),
    _opt(
        "gap_to",
        "--gap-to",
        "REFERENCE",
        "Deployment: 'layout' (fastest layout on the pin's chips, batch and "
        "weights; default) or 'frontier' (fastest frontier point with at least the pin's MFU).",
        commands=frozenset({"compare"}),
    ),
    # calibrate
    _opt(
        "bandwidth_model",
        "--bandwidth-model",
        "MODEL",
        "Torus bandwidth model to fit with: chip or axes (default: the cluster's).",
        commands=frozenset({"calibrate"}),
    ),
    _opt(
        "fit",
        "--fit",
        "NAME[,NAME...]",
        "Refine, not replace: refit only these calibration constants of --cluster to a points "
        "file (from one point up), keeping every other constant of the cluster as it is "
        "(e.g. --fit layer_overhead_s); with --engine PROFILE on serving runs or benchmark results, "
        "refit that profile's constants (layer_overhead_s, token_overhead_s, overlap) and any chip constant named.",
        commands=frozenset({"calibrate"}),
    ),
    # output
    _opt(
        "format",
        "--format",
        "FORMAT",
        "Output format: table, json, csv or markdown.",
        parse=lower,
        default="table",
        commands=PLANNING | {"calibrate"},
    ),
    _opt(
        "output",
        ("-o", "--output"),
        "FILE",
        "Write to FILE instead of stdout (atomically: a complete file or none).",
        kind=Path,
        commands=PLANNING | {"models", "calibrate"},
        per_command={
            "calibrate": {
                "help": "Write the calibrated cluster YAML to FILE (atomically; with --engine and --fit, "
                "the refined engine profile); the residual report still goes to stdout in --format."
            }
        },
    ),
    _opt(
        "report",
        "--report",
        "FILE",
        "Write the accuracy page (Markdown, both bandwidth models) to FILE.",
        kind=Path,
        commands=frozenset({"calibrate"}),
    ),
    _opt(
        "other_models",
        "--other-models",
        "NAME[,NAME...]",
        "With --report: models to predict with the fitted constants (not fitted), comma list.",
        commands=frozenset({"calibrate"}),
    ),
    _opt(
        "plot",
        "--plot",
        None,
        "Draw each phase's frontier (MFU against latency on a log axis, one mark per FFN "
        "layout) instead of the tables.",
        kind=bool,
        default=False,
        commands=frozenset({"plan", "serve"}),
        per_command={
            "serve": {
                "kind": Path,
                "default": None,
                "metavar": "FILE.svg|FILE.png",
                "help": "Also draw the frontiers to a picture file (needs matplotlib: pip install "
                "matplotlib, or pip install '.[plot]' in a checkout of planner).",
            }
        },
    ),
    _opt(
        "ascii",
        "--ascii",
        None,
        "Draw tables and plots with ASCII characters only.",
        kind=bool,
        default=False,
        commands=PLANNING | {"calibrate", "presets"},
    ),
)


@dataclass(frozen=True, kw_only=True)
class PlanOverrides:
    """The command line's planning options (None: not given; the file's or the default holds).
    Lists are tuples of names or counts; `min_mfu` is a fraction or the text typed ('40%')."""

    model: str | None = None
    cluster: str | None = None
    phases: tuple[str, ...] | None = None
    chips: tuple[int, ...] | None = None
    batches: tuple[int, ...] | None = None
    weights: tuple[str, ...] | None = None
    ffn: tuple[str, ...] | None = None
    attention: tuple[str, ...] | None = None
    kv_cache: tuple[str, ...] | None = None
    sparsity: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    context: int | None = None
    max_latency_s: float | None = None
    max_step_latency_s: float | None = None
    min_mfu: float | str | None = None
    experts: tuple[str, ...] | None = None
    load_imbalance: float | None = None
    redundant_experts: int | None = None
    stages: tuple[int, ...] | None = None
    allow_short_context: bool = False
    engine: str | None = None
    runnable_on: str | None = None

    def given(self) -> dict[str, Any]:
        """The fields given (not None; a switch when on), by name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not None and getattr(self, f.name) is not False
        }


BY_NAME: Mapping[str, Option] = {option.name: option for option in OPTIONS}
# PlanOverrides field -> the flag messages name
FLAGS: Mapping[str, str] = {option.name: option.flag for option in OPTIONS if option.plans}


def for_command(command: str) -> tuple[Option, ...]:
    """The options `command` takes, in --help order, with its own help, metavar or parsing."""
    return tuple(replace(o, **o.per_command.get(command, {})) for o in OPTIONS if command in o.commands)


def option(name: str, command: str) -> Option:
    """Option `name` as `command` takes it."""
    o = BY_NAME[name]
    return replace(o, **o.per_command.get(command, {}))


def planning() -> tuple[Option, ...]:
    return tuple(o for o in OPTIONS if o.plans)


__all__ = ["FLAGS", "OPTIONS", "PLANNING", "Option", "PlanOverrides", "Path", "for_command", "option", "planning"]
