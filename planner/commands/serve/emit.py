"""`serve --row N --emit ENGINE`: what realises a serve row on an engine, as data: each pool's
launch command (parallel sizes, quantisation, KV-cache dtype, running sequences and batched
tokens), the engine's benchmark command at the row's workload (closed loop at the row's running
batch, writing a result file `planner calibrate` reads, with its sidecar), and, for each pool
whose layout the engine cannot express, the nearest layout it can and that layout's figures.

Engines: `vllm` only so far. Its flags are the names of vLLM's `EngineArgs` fields at
vllm-project/vllm 99d7eb5d6a512cfcc5a2b104f24ebf2d6cda772b (`vllm/engine/arg_utils.py`) and of
`vllm bench serve` at def9ce85ba1079af970a58ed3d42dd861ae35d58 (`vllm/benchmarks/serve.py`);
tests/data/engine_flags/ lists them and a test checks every emitted flag is there.

What vLLM runs, in the planner's words: tensor parallelism over a worker's GPUs is FFN `ws1d`
with attention `heads`; `--data-parallel-size` replicates the dense weights and splits the batch
(FFN `dp`, attention `batch`); `--enable-expert-parallel` puts the experts expert-parallel over
every GPU of the worker (`ep`; tensor parallel otherwise, `tp`), `--enable-dbo` overlaps two
micro-batches (`+tbo`). It has no 2D weight-stationary or weight-gathered FFN, no batch-sharded
attention beside tensor-parallel FFN weights, no expert parallelism over part of the worker,
no weight-gathered experts, no int8 KV cache, and no flag for int8 weight-only (an int8
checkpoint carries its own quantisation config).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import numpy as np

from planner.commands.serve.modes import Mode
from planner.commands.serve.steady_state import DEFAULT_TOKEN_BUDGET
from planner.cost.costmodel import evaluate
from planner.cost.layouts import ATTENTION_LAYOUTS, EXPERT_LAYOUTS, FFN_LAYOUTS
from planner.errors import UsageError
from planner.specs.formats import KvFormat
from planner.specs.hardware import Torus
from planner.specs.plan import Workload

ENGINES = ("vllm",)
PINS = {
    "vllm": "vLLM flags: vllm/engine/arg_utils.py EngineArgs at vllm-project/vllm@99d7eb5d; "
    "vllm bench serve: vllm/benchmarks/serve.py at vllm-project/vllm@def9ce85",
}
_DENSE_OK = {("ws1d", "heads"), ("dp", "batch")}
_EXPERTS_OK = {"tp", "ep", "ep+tbo"}


@dataclass(frozen=True, kw_only=True)
class Launch:
    """One pool's launch: how many of it, the command's words and flags, and what it cannot say."""

    role: str  # "server" (colocated), "prefill" or "decode" (disaggregated)
    count: float  # pools of it per decode pool (disaggregated prefill); 1 otherwise
    layout: str  # the row's layout of this pool
    runnable: str  # the layout the command runs (the same when the engine can express it)
    command: tuple[str, ...]  # argv, model as $MODEL
    notes: tuple[str, ...]
    nearest: tuple[dict, ...]  # per phase where the runnable layout differs: its figures beside the row's


@dataclass(frozen=True, kw_only=True)
class Emission:
    engine: str
    pinned: str
    launches: tuple[Launch, ...]
    benchmark: tuple[str, ...]
    result_file: str
    sidecar: str  # the sidecar YAML `planner calibrate RESULT` reads the result with
    notes: tuple[str, ...]


def _name(stage) -> str:
    return f"{stage.ffn}+{stage.attention}" + (f"+{stage.experts}" if stage.experts else "")


def _nearest(stage) -> tuple[str, str, str, list[str]]:
    """(ffn, attention, experts, why) of the nearest layout vLLM runs."""
    ffn, attention, experts, why = stage.ffn, stage.attention, stage.experts, []
    if (ffn, attention) not in _DENSE_OK:
        if ffn in ("ws2d", "wg-x", "wg-xy", "wg-xyz"):
            why.append(f"vLLM has no {ffn} FFN (2D weight-stationary or weight-gathered)")
        else:
            why.append(f"vLLM has no {attention} attention beside {ffn} FFN weights (DP attention replicates them)")
        ffn, attention = "ws1d", "heads"
    if experts and experts not in _EXPERTS_OK:
        why.append(f"vLLM puts experts expert-parallel over every GPU of the worker or none: no {experts}")
        experts = "ep+tbo" if experts.endswith("+tbo") else "ep"
    return ffn, attention, experts, why


def _figures(result, stage, ffn: str, attention: str, experts: str, kv: KvFormat) -> dict:
    """The stage's step (or pass) at the runnable layout, beside the row's, by the cost model."""
    c = dataclasses.replace(
        stage.candidate,
        ffn=FFN_LAYOUTS[ffn],
        attention=ATTENTION_LAYOUTS[attention],
        experts=EXPERT_LAYOUTS[experts] if experts else stage.candidate.experts,
        kv_cache=kv,
    )
    plan = result.request.plan
    w = plan.workload
    work = Workload(
        input_tokens=w.input_tokens, output_tokens=w.output_tokens, context=stage.context, routing=w.routing
    )
    ev = evaluate(plan.model, plan.cluster, work, c, np.array([stage.batch]))
    step = float(ev.step_s[0])
    return {
        "phase": stage.phase.value,
        "row_layout": _name(stage),
        "layout": f"{ffn}+{attention}" + (f"+{experts}" if experts else ""),
        "kv_cache": kv.label,
        "step_s": step,
        "row_step_s": stage.step_latency_s,
        "slower": step / stage.step_latency_s - 1.0,
        "fits": bool(ev.hbm_bytes[0] <= plan.cluster.chip.usable_hbm_bytes),
    }


def _launch(result, stage, role: str, count: float, prefill_tokens: int, max_len: int, also=None) -> Launch:
    """One pool's launch; `also`: the other phase's stage run on the same server (colocated)."""
    ffn, attention, experts, why = _nearest(stage)
    kv = next(k for k in KvFormat if k.label == stage.kv_cache)
    notes = list(why)
    if kv is KvFormat.INT8:
        notes.append("vLLM has no int8 KV cache: nearest fp8")
        kv = KvFormat.FP8
    n = stage.chips
    dp = n if (ffn, attention) == ("dp", "batch") else 1
    argv = ["vllm", "serve", "$MODEL", "--tensor-parallel-size", str(n // dp)]
    if dp > 1:
        argv += ["--data-parallel-size", str(dp)]
    if experts.startswith("ep"):
        argv += ["--enable-expert-parallel"]
    if experts.endswith("+tbo"):
        argv += ["--enable-dbo"]
    if stage.weights == "fp8":
        argv += ["--quantization", "fp8"]
    elif stage.weights == "int8":
        notes.append("int8 weights: serve an int8 checkpoint (vLLM reads its quantisation config; no flag)")
    else:
        argv += ["--dtype", "bfloat16"]
    if kv is KvFormat.FP8:
        argv += ["--kv-cache-dtype", "fp8"]
    running = max(1, math.ceil(stage.batch / dp))  # per data-parallel rank
    budget = max(DEFAULT_TOKEN_BUDGET, math.ceil(prefill_tokens / dp))
    argv += ["--max-num-seqs", str(running), "--max-num-batched-tokens", str(budget)]
    argv += ["--max-model-len", str(max_len)]
    if role != "server":
        argv += ["--kv-transfer-config", json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"})]
    row_layout = _name(stage)
    runnable = f"{ffn}+{attention}" + (f"+{experts}" if experts else "")
    nearest = tuple(
        _figures(result, s, ffn, attention, experts, kv)
        for s in ((also, stage) if also is not None else (stage,))
        if _name(s) != runnable or kv.label != s.kv_cache
    )
    return Launch(
        role=role,
        count=count,
        layout=f"{n} GPUs {row_layout} {stage.weights}" + (f" KV {stage.kv_cache}" if stage.kv_cache != "bf16" else ""),
        runnable=f"{n} GPUs {runnable}",
        command=tuple(argv),
        notes=tuple(notes),
        nearest=nearest,
    )


def emit_row(result, d, engine: str, row: int) -> Emission:
    """What realises deployment `d` (row `row` of `result`) on `engine`."""
    if engine not in ENGINES:
        raise UsageError(
            f"--emit: expected one of {', '.join(ENGINES)}, got {engine!r}\n  hint: sglang, trtllm, dynamo, "
            "vllm-tpu and jetstream are not emitted yet"
        )
    if isinstance(result.request.plan.cluster.topology, Torus):
        raise UsageError(
            f"--emit {engine}: {result.request.plan.cluster.name} is a TPU cluster\n  hint: the TPU engines "
            "(vllm-tpu, jetstream) are not emitted yet"
        )
    plan = result.request.plan
    w = plan.workload
    I, O = w.input_tokens, w.output_tokens
    max_len = I + O
    notes = []
    prefill_tokens = d.prefill.batch * I  # one prefill pass of the row
    if d.mode is Mode.DISAGGREGATED:
        launches = (
            _launch(result, d.prefill, "prefill", d.prefill_pools_per_decode_pool or 1.0, prefill_tokens, max_len),
            _launch(result, d.decode, "decode", 1.0, prefill_tokens, max_len),
        )
        notes.append(
            "disaggregated: launch the prefill and decode instances with the KV connector and put vLLM's "
            "disaggregated-serving proxy (or NVIDIA Dynamo) in front; the benchmark talks to the proxy"
        )
    else:
        launches = (_launch(result, d.decode, "server", 1.0, prefill_tokens, max_len, also=d.prefill),)
        if d.prefill.ffn != d.decode.ffn or d.prefill.attention != d.decode.attention:
            notes.append(
                f"the row's prefill layout ({_name(d.prefill)}) differs from its decode layout: one vLLM server runs "
                "one layout for both; `planner serve --ffn/--attention/--experts` with one value each plans rows "
                "the engine runs as they are"
            )
        if d.mode is Mode.STATIC:
            notes.append("vLLM schedules a running batch: the row's static batch is its --max-num-seqs")
    concurrency = d.decode.batch
    result_file = f"row{row}-vllm-c{concurrency}.json"
    bench = (
        "vllm",
        "bench",
        "serve",
        "--model",
        "$MODEL",
        "--input-len",
        str(I),
        "--output-len",
        str(O),
        "--max-concurrency",
        str(concurrency),
        "--ignore-eos",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--save-result",
        "--result-filename",
        result_file,
    )
    return Emission(
        engine=engine,
        pinned=PINS[engine],
        launches=launches,
        benchmark=bench,
        result_file=result_file,
        sidecar=_sidecar(plan, d, launches),
        notes=tuple(notes),
    )


def _sidecar(plan, d, launches) -> str:
    decode = d.decode
    moe = plan.model.experts is not None
    lines = [
        "format: planner-bench/1",
        "reader: vllm",
        "engine: vLLM",
        "policy: chunked",
        f"cluster: {plan.cluster.name}",
        f"model: {plan.model.name}",
        f"weights: {decode.weights}",
        f"kv_cache: {'fp8' if decode.kv_cache == 'int8' else decode.kv_cache}",
        f"chips: {decode.chips}",
        f"tp: {decode.chips}",
    ]
    if moe:
        argv = launches[-1].command
        lines.append(f"ep: {decode.chips if '--enable-expert-parallel' in argv else 1}")
        lines.append(f"dp_attention: {'true' if '--data-parallel-size' in argv else 'false'}")
    if d.mode is Mode.DISAGGREGATED:
        lines.insert(0, "# a disaggregated run: write its pools in a serving-runs file (planner-serving/1) instead")
    return "\n".join(lines) + "\n"


def emission_dict(e: Emission) -> dict:
    """The JSON of an emission (keys are a contract: add, never rename)."""
    return {
        "engine": e.engine,
        "pinned": e.pinned,
        "launches": [
            {
                "role": x.role,
                "count": x.count,
                "layout": x.layout,
                "runnable": x.runnable,
                "command": list(x.command),
                "notes": list(x.notes),
                "nearest": list(x.nearest),
            }
            for x in e.launches
        ],
        "benchmark": list(e.benchmark),
        "result_file": e.result_file,
        "sidecar": e.sidecar,
        "notes": list(e.notes),
    }
