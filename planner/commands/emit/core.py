"""What realises a planned layout on a serving engine, engine-neutral: the records an emission is
made of (the layout each engine runs instead of one it cannot is planner.commands.emit.choose's),
the sidecar `planner calibrate` reads a
benchmark's result file with, and the emission's JSON (a contract: add keys, never rename).

Each engine family has its module (vllm, sglang, trtllm, dynamo, tpu) with one `Engine` record:
how it spells a pool's launch, its benchmark client and, for prefill/decode pools, its own
disaggregation. `planner.commands.emit.emit` builds the pools of a serve row or an explained layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from planner.commands.serve.steady_state import DEFAULT_TOKEN_BUDGET
from planner.cost.costmodel import Candidate
from planner.specs.engine_layouts import is_amd
from planner.specs.hardware import Switched
from planner.specs.plan import Plan, Workload

# The most tokens one rank's step batches (a chunk of prefill with the running decodes). A row's
# prefill pass can batch far more (a prefill pool's whole batch of prompts: 2M tokens); engines
# chunk long prompts, so that pass runs as several chunks of this size, each a step. 16384 is
# SGLang's default max_prefill_tokens and within what vLLM and TensorRT-LLM deployments set; a
# larger step mostly holds more activation memory.
MAX_TOKENS_PER_RANK = 16384


@dataclass(frozen=True, kw_only=True)
class Step:
    """One phase a pool runs, as the row costed it: for the nearest layout's figures beside it."""

    phase: str  # "prefill" or "decode"
    candidate: Candidate
    batch: int
    workload: Workload  # the context the row's figures are at
    step_s: float  # the row's step (decode) or pass (prefill)

    @property
    def parts(self) -> tuple[str, str, str]:
        """(FFN, attention, experts) of the phase as the row costed it ("" experts: a dense model)."""
        c = self.candidate
        return c.ffn.name, c.attention.name, c.experts.name if c.experts else ""

    @property
    def layout(self) -> str:
        return layout_label(*self.parts)

    @property
    def kv_cache(self) -> str:
        return self.candidate.kv_cache.label


@dataclass(frozen=True, kw_only=True)
class Pool:
    """One pool of the row, engine-neutral."""

    role: str  # "server" (both phases), "prefill" or "decode" (disaggregated)
    count: float  # pools of it per decode pool (disaggregated prefill); 1 otherwise
    chips: int  # GPUs (TPU chips) of one pool, every pipeline stage
    stages: int  # pipeline stages
    ffn: str
    attention: str
    experts: str  # "" for a dense model
    weights: str
    kv_cache: str
    running: int  # sequences the pool runs at once (the row's batch)
    batched_tokens: int  # tokens one step or prefill pass batches (at least the engines' 8192 default)
    steps: tuple[Step, ...]

    @property
    def phases_differ(self) -> bool:
        """A colocated row whose prefill and decode layouts differ (one server runs one of them)."""
        return len({s.parts for s in self.steps}) > 1

    @property
    def layout(self) -> str:
        """The row's layout, each phase's own where they differ."""
        if self.phases_differ:
            return ", ".join(f"{s.phase} {s.layout}" for s in self.steps)
        return layout_label(self.ffn, self.attention, self.experts)


@dataclass(frozen=True, kw_only=True)
class Runnable:
    """The layout a pool runs on one engine: the row's where the engine runs it, else its nearest."""

    chips: int
    stages: int
    ffn: str
    attention: str
    experts: str
    kv_cache: str
    why: tuple[str, ...]  # why the row's layout is not run as it is (empty: it is)

    @property
    def per_stage(self) -> int:
        """GPUs of one pipeline stage: the tensor/expert/data-parallel group."""
        return self.chips // self.stages

    @property
    def dp_attention(self) -> bool:
        return self.attention == "batch"

    @property
    def attention_ranks(self) -> int:
        """Ranks with a scheduler of their own: the DP-attention ranks (1 without DP attention)."""
        return self.per_stage if self.dp_attention else 1

    @property
    def dense_replicated(self) -> bool:
        """The dense FFN whole on every GPU beside DP attention (FFN `dp`)."""
        return self.ffn == "dp"

    @property
    def expert_parallel(self) -> bool:
        return self.experts.startswith("ep")

    @property
    def two_batch_overlap(self) -> bool:
        return self.experts.endswith("+tbo")

    @property
    def layout(self) -> str:
        return layout_label(self.ffn, self.attention, self.experts)


@dataclass(frozen=True, kw_only=True)
class File:
    """A file a command reads (TensorRT-LLM's extra options, a disaggregation config), as data."""

    name: str
    data: dict


@dataclass(frozen=True, kw_only=True)
class Command:
    argv: tuple[str, ...]  # the model as $MODEL
    flags: tuple[str, ...]  # the pinned flag lists (tests/data/engine_flags/NAME.json) its flags are in
    files: tuple[File, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Launch:
    """One pool's launch: how many of it, the command's words and flags, and what it cannot say."""

    role: str  # "server", "prefill", "decode", or a front end ("frontend", "proxy")
    count: float  # per decode pool (disaggregated prefill); 1 otherwise
    layout: str  # the row's layout of this pool
    runnable: str  # the layout the command runs (the same when the engine can express it)
    command: tuple[str, ...]
    notes: tuple[str, ...]
    nearest: tuple[dict, ...]  # per phase where the runnable layout differs: its figures beside the row's
    flags: tuple[str, ...] = ()
    files: tuple[File, ...] = ()
    chips: int = 0  # GPUs (TPU chips) of one of it; 0 for a front end
    instances: int = 1  # how many of it to launch: whole pool counts nearest the row's ratio (whole_counts)


@dataclass(frozen=True, kw_only=True)
class Emission:
    engine: str
    pinned: str
    launches: tuple[Launch, ...]
    benchmark: tuple[str, ...]
    result_file: str
    sidecar: str  # the sidecar YAML `planner calibrate RESULT` reads the result with
    notes: tuple[str, ...]
    version: str = ""  # the engine versions the flags are pinned at, in words
    benchmark_flags: tuple[str, ...] = ()
    reader: str = ""  # the `calibrate` reader of the result file ("" where none reads it)
    over: str = ""  # dynamo: the engine its workers run
    # what `planner calibrate` will predict for the benchmark's result (planner.commands.emit.expected)
    expected: dict | None = None
    # why the benchmark's result gets no sidecar where the engine's reader would read it ("" else)
    unread: str = ""


def amd(plan: Plan) -> bool:
    """An AMD GPU cluster (ROCm software; planner.specs.engine_layouts.is_amd)."""
    return is_amd(plan.cluster.chip.name, plan.cluster.name)


NO_DEEPEP_NOTE = (
    "no all-to-all backend flag: DeepEP (which the planner prices `ep` with) runs on NVIDIA GPUs only; {engine} on "
    "ROCm uses its default all-to-all for expert parallelism, which the planner's `ep` figures do not price"
)


# Chips of one TPU VM host in a multi-host slice (TPU v4 and v5p hosts hold 4; v5e and v6e multi-host
# slices too): the cluster files do not say, so emissions state it as an assumption
TPU_CHIPS_PER_HOST = 4


@dataclass(frozen=True, kw_only=True)
class Context:
    """What every launch of one emission shares."""

    plan: Plan
    disaggregated: bool
    input_tokens: int
    output_tokens: int
    draft_tokens: int  # speculative decoding's draft tokens per step (0: none)

    @property
    def max_len(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def moe(self) -> bool:
        return self.plan.model.experts is not None

    @property
    def nvidia(self) -> bool:
        """NVIDIA GPUs (DeepEP, TensorRT-LLM): not AMD's (`amd`) nor a TPU slice."""
        return isinstance(self.plan.cluster.topology, Switched) and not amd(self.plan)

    @property
    def node_gpus(self) -> int:
        """GPUs of one node: the cluster's first switched level (NVLink); 0 on a TPU slice."""
        topology = self.plan.cluster.topology
        return (topology.levels[0].size or 0) if isinstance(topology, Switched) else 0

    def nodes(self, pool: Pool) -> int:
        """Nodes one of `pool`'s servers spans (1 where it fits in one)."""
        return math.ceil(pool.chips / self.node_gpus) if self.node_gpus else 1

    def hosts(self, pool: Pool) -> int:
        """TPU hosts one of `pool`'s servers spans (TPU_CHIPS_PER_HOST chips each; 1 on GPUs)."""
        return 1 if self.node_gpus else math.ceil(pool.chips / TPU_CHIPS_PER_HOST)

    def hosts_note(self, pool: Pool, how: str) -> str:
        """What a multi-host TPU launch means: its host count, and `how` the engine runs over them."""
        return (
            f"multi-host: {pool.chips} chips span {self.hosts(pool)} TPU hosts of {TPU_CHIPS_PER_HOST} chips (assumed: "
            f"{self.plan.cluster.name}'s file does not say; a multi-host TPU VM slice holds {TPU_CHIPS_PER_HOST} "
            f"chips per host); {how}"
        )

    def nodes_note(self, pool: Pool, how: str) -> str:
        """What a multi-node launch means: its node count, and `how` the engine runs over them."""
        n = self.nodes(pool)
        level = self.plan.cluster.topology.levels[0].name if self.node_gpus else ""
        return (
            f"multi-node: {pool.chips} GPUs span {n} nodes of {self.node_gpus} ({self.plan.cluster.name}'s {level} "
            f"level; count hosts instead where a host holds fewer GPUs); {how}"
        )


@dataclass(frozen=True, kw_only=True)
class Bench:
    """The benchmark client's run: at the row's workload, closed loop at its concurrency."""

    input_tokens: int
    output_tokens: int
    concurrency: int
    prompts: int  # requests the run sends (ten rounds of the concurrency, at least 100)
    tag: str  # the result file's stem, e.g. row3-sglang-c64


@dataclass(frozen=True, kw_only=True)
class Engine:
    """One `--emit` engine: how it spells a pool, its benchmark client and its disaggregation."""

    name: str  # the --emit name
    table: str  # its ENGINE_LAYOUTS entry
    label: str
    version: str  # the pinned versions, in words
    pinned: str  # where the flag names come from
    tpu: bool
    reader: str  # calibrate's reader of the benchmark's result file ("" where none reads it)
    policy: str  # the sidecar's prefill policy (the engine's scheduling as emitted)
    launch: Callable[[Pool, Runnable, Context], Command]
    benchmark: Callable[[Bench], tuple[Command, str]]  # the command and the result file it writes
    front: Callable[[tuple[Launch, ...], Context], tuple[tuple[Launch, ...], tuple[str, ...]]]
    over: str = ""


def front_note(text: str) -> Callable[[tuple[Launch, ...], Context], tuple[tuple[Launch, ...], tuple[str, ...]]]:
    """An engine's `front` whose disaggregated front end is a note (`text`), not a launch."""

    def front(launches: tuple[Launch, ...], ctx: Context) -> tuple[tuple[Launch, ...], tuple[str, ...]]:
        return launches, ((text,) if ctx.disaggregated else ())

    return front


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Tokens one step batches, per rank with a scheduler of its own, and what capping it means."""

    per_rank: int
    ranks: int
    note: str  # "" where the row's tokens fit in one step

    @property
    def total(self) -> int:
        return self.per_rank * self.ranks


def token_budget(pool: Pool, ranks: int) -> Budget:
    """The step's token budget of `pool` over `ranks` schedulers: the row's tokens per rank (at
    least the engines' default), capped at MAX_TOKENS_PER_RANK."""
    want = max(DEFAULT_TOKEN_BUDGET, math.ceil(pool.batched_tokens / ranks))
    per_rank = min(MAX_TOKENS_PER_RANK, want)
    note = ""
    if want > per_rank:
        chunks = math.ceil(pool.batched_tokens / (per_rank * ranks))
        where = f" on each of {ranks} ranks" if ranks > 1 else ""
        note = (
            f"the row's prefill pass batches {pool.batched_tokens} tokens; the step's token budget is capped at "
            f"{per_rank}{where} (the engine chunks long prompts): the pass runs as {chunks} chunked steps"
        )
    return Budget(per_rank=per_rank, ranks=ranks, note=note)


def layout_label(ffn: str, attention: str, experts: str) -> str:
    return f"{ffn}+{attention}" + (f"+{experts}" if experts else "")


def whole_counts(ratio: float) -> tuple[int, int]:
    """(prefill, decode) pool counts, up to 32 decode pools, nearest the row's prefill-to-decode ratio
    (within 5% where a count up to 32 gets there: the fewest pools that do)."""
    counts = [(max(1, round(ratio * m)), m) for m in range(1, 33)]
    close = [pm for pm in counts if abs(pm[0] / pm[1] / ratio - 1) <= 0.05]
    return close[0] if close else min(counts, key=lambda pm: (abs(pm[0] / pm[1] - ratio), pm[1]))


def bench_of(engine: Engine, row: str, ctx: Context, concurrency: int) -> Bench:
    tag = f"{row}-{engine.name}-c{concurrency}"
    return Bench(
        input_tokens=ctx.input_tokens,
        output_tokens=ctx.output_tokens,
        concurrency=concurrency,
        prompts=max(100, 10 * concurrency),
        tag=tag,
    )


DISAGGREGATED_SIDECAR = (
    "no sidecar: a sidecar describes one pool, and this run has prefill and decode pools; to read its result "
    "file with `planner calibrate`, write the run in a serving-runs file (format: planner-serving/1, "
    "docs/calibration.md) with both pools' layouts and counts, and its measured TTFT, TPOT and throughput"
)


def sidecar(engine: Engine, ctx: Context, pools: tuple[Pool, ...], runs: tuple[Runnable, ...], concurrency: int) -> str:
    """The sidecar YAML beside the result file: what the file lacks (model, cluster, formats, layout);
    "" where no `planner calibrate` reader reads the engine's result file."""
    if not engine.reader or ctx.disaggregated:  # a sidecar describes one pool (DISAGGREGATED_SIDECAR)
        return ""
    decode, run = pools[-1], runs[-1]
    lines = [
        "format: planner-bench/1",
        f"reader: {engine.reader}",
        f"engine: {engine.label}, {engine.version}",
        f"policy: {engine.policy}",
        f"cluster: {ctx.plan.cluster.name}",
        f"model: {ctx.plan.model.name}",
        f"weights: {decode.weights}",
        f"kv_cache: {run.kv_cache}",
        f"chips: {decode.chips}",
        f"tp: {run.per_stage}",
    ]
    if ctx.moe:
        lines.append(f"ep: {run.per_stage if run.expert_parallel else 1}")
        lines.append(f"dp_attention: {'true' if run.dp_attention else 'false'}")
    if ctx.draft_tokens:
        lines.append(f"spec_decode: mtp-{ctx.draft_tokens}")
    return "\n".join(lines) + "\n"


def _launch_dict(x: Launch) -> dict:
    return {
        "role": x.role,
        "count": x.count,
        "layout": x.layout,
        "runnable": x.runnable,
        "command": list(x.command),
        "notes": list(x.notes),
        "nearest": list(x.nearest),
        "flag_lists": list(x.flags),
        "files": [{"name": f.name, "data": f.data} for f in x.files],
        "chips": x.chips,
        "instances": x.instances,
    }


def emission_dict(e: Emission) -> dict:
    """The JSON of an emission (keys are a contract: add, never rename)."""
    return {
        "engine": e.engine,
        "pinned": e.pinned,
        "version": e.version,
        "over": e.over,
        "launches": [_launch_dict(x) for x in e.launches],
        "benchmark": list(e.benchmark),
        "benchmark_flag_lists": list(e.benchmark_flags),
        "result_file": e.result_file,
        "reader": e.reader,
        "sidecar": e.sidecar,
        "notes": list(e.notes),
        "expected": e.expected,
    }
