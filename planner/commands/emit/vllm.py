"""vLLM: `vllm serve` per pool and `vllm bench serve` (issue 28).

Flags are the names of vLLM's `EngineArgs` fields at vllm-project/vllm
99d7eb5d6a512cfcc5a2b104f24ebf2d6cda772b (`vllm/engine/arg_utils.py`) and of `vllm bench serve`
at def9ce85ba1079af970a58ed3d42dd861ae35d58 (`vllm/benchmarks/serve.py` with the dataset flags of
`vllm/benchmarks/datasets.py`); tests/data/engine_flags/
lists them and a test checks every emitted flag is there.

In the planner's words: tensor parallelism over a worker's GPUs is FFN `ws1d` with attention
`heads`; `--data-parallel-size` replicates the dense weights and splits the batch (FFN `dp`,
attention `batch`); `--enable-expert-parallel` puts the experts expert-parallel over every GPU of
the worker (`ep`; tensor parallel otherwise, `tp`); `--enable-dbo` overlaps two micro-batches
(`+tbo`). What it cannot run is planner.specs.engine_layouts' `vllm` entry.
"""

from __future__ import annotations

import json
import math

from planner.commands.emit.core import (
    NO_DEEPEP_NOTE,
    Bench,
    Command,
    Context,
    Engine,
    Pool,
    Runnable,
    front_note,
    token_budget,
)

VERSION = "vllm-project/vllm@99d7eb5d (engine), @def9ce85 (vllm bench serve)"
PINNED = (
    "vLLM flags: vllm/engine/arg_utils.py EngineArgs at vllm-project/vllm@99d7eb5d; "
    "vllm bench serve: vllm/benchmarks/serve.py at vllm-project/vllm@def9ce85"
)
_ALL2ALL = {"prefill": "deepep_high_throughput", "decode": "deepep_low_latency", "server": "deepep_high_throughput"}
NIXL = json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"})


def args(pool: Pool, run: Runnable, ctx: Context) -> tuple[list[str], list[str]]:
    """vLLM's engine flags for the pool (after the model), and notes on what they cannot say."""
    notes = []
    n = run.per_stage
    dp = n if run.dense_replicated and run.dp_attention else 1
    argv = ["--tensor-parallel-size", str(n // dp)]
    if dp > 1:
        argv += ["--data-parallel-size", str(dp)]
    if run.stages > 1:
        argv += ["--pipeline-parallel-size", str(run.stages)]
    if run.expert_parallel:
        argv += ["--enable-expert-parallel"]
        if dp == 1:
            notes.append(
                "expert parallelism without data parallelism: vLLM runs no all-to-all (its all-to-all kernels act "
                "only with --data-parallel-size above 1), so no --all2all-backend; the planner prices `ep` with "
                "DeepEP's dispatch and combine"
            )
        elif not ctx.nvidia:
            notes.append(NO_DEEPEP_NOTE.format(engine="vLLM"))
        else:
            # the planner prices `ep` as wide EP with DeepEP's all-to-all (vLLM's default is all-gather and
            # reduce-scatter): its high-throughput kernels for prefill, low-latency for decode
            argv += ["--all2all-backend", _ALL2ALL[pool.role]]
            if pool.role == "server":
                notes.append(
                    "all-to-all deepep_high_throughput: a colocated step carries a prefill chunk (up to the token "
                    "budget per rank), more than DeepEP's low-latency kernels dispatch (they suit decode-only "
                    "steps: deepep_low_latency for a decode-heavy mix)"
                )
    if run.two_batch_overlap:
        argv += ["--enable-dbo"]
    if pool.weights == "fp8":
        argv += ["--quantization", "fp8"]
    elif pool.weights == "int8":
        notes.append("int8 weights: serve an int8 checkpoint (vLLM reads its quantisation config; no flag)")
    else:
        argv += ["--dtype", "bfloat16"]
    if run.kv_cache == "fp8":
        argv += ["--kv-cache-dtype", "fp8"]
    running = max(1, math.ceil(pool.running / dp))  # per data-parallel rank
    budget = token_budget(pool, dp)  # per data-parallel rank
    argv += ["--max-num-seqs", str(running), "--max-num-batched-tokens", str(budget.per_rank)]
    notes += [budget.note] if budget.note else []
    argv += ["--enable-chunked-prefill", "--max-model-len", str(ctx.max_len)]
    argv += _multi_node(pool, ctx, dp, notes)
    if ctx.draft_tokens:
        spec = {"method": "mtp", "num_speculative_tokens": ctx.draft_tokens}
        argv += ["--speculative-config", json.dumps(spec, sort_keys=True)]
        notes.append("speculative decoding: the model's own MTP head; another draft model goes in --speculative-config")
    return argv, notes


def _multi_node(pool: Pool, ctx: Context, dp: int, notes: list[str]) -> list[str]:
    """Flags of a pool spanning nodes (appending its note): data-parallel ranks spread over the
    nodes (the head node's command; the others run it headless), else Ray over the nodes."""
    nodes = ctx.nodes(pool)
    if nodes == 1:
        return []
    if dp > 1 and dp % nodes == 0:
        local = dp // nodes
        how = (
            f"this is the head node's command ({local} data-parallel ranks on each node; $HEAD_IP is its address); "
            f"on node k = 1..{nodes - 1} run it with --headless --data-parallel-start-rank (its first rank, {local} x k) added"
        )
        notes.append(ctx.nodes_note(pool, how))
        return ["--data-parallel-size-local", str(local), "--data-parallel-address", "$HEAD_IP"]
    how = (
        "vLLM runs tensor and pipeline parallelism across nodes over Ray: `ray start --head` on the head node "
        "($HEAD_IP), `ray start --address $HEAD_IP:6379` on the others, then this command on the head node"
    )
    notes.append(ctx.nodes_note(pool, how))
    return ["--distributed-executor-backend", "ray"]


def _launch(pool: Pool, run: Runnable, ctx: Context) -> Command:
    argv, notes = args(pool, run, ctx)
    if pool.role in ("prefill", "decode"):
        argv += ["--kv-transfer-config", NIXL]
    return Command(argv=("vllm", "serve", "$MODEL", *argv), flags=("vllm",), notes=tuple(notes))


def bench_command(b: Bench, base_url: str | None = None) -> tuple[Command, str]:
    """`vllm bench serve` at the row's ISL/OSL, closed loop at its concurrency, saving its result."""
    result_file = f"{b.tag}.json"
    argv = ["vllm", "bench", "serve", "--model", "$MODEL"]
    if base_url:
        argv += ["--base-url", base_url]
    argv += ["--dataset-name", "random", "--random-input-len", str(b.input_tokens)]
    argv += ["--random-output-len", str(b.output_tokens), "--random-range-ratio", "0"]  # 0: every prompt that long
    argv += ["--num-prompts", str(b.prompts), "--max-concurrency", str(b.concurrency), "--ignore-eos"]
    argv += ["--percentile-metrics", "ttft,tpot,itl,e2el"]
    argv += ["--save-result", "--result-filename", result_file]
    return Command(argv=tuple(argv), flags=("vllm-bench",)), result_file


ENGINE = Engine(
    name="vllm",
    table="vllm",
    label="vLLM",
    version=VERSION,
    pinned=PINNED,
    tpu=False,
    reader="vllm",
    policy="chunked",
    launch=_launch,
    benchmark=bench_command,
    front=front_note(
        "disaggregated: the prefill and decode instances exchange KV caches over NIXL "
        "(--kv-transfer-config); put vLLM's disaggregated-serving proxy "
        "(examples/online_serving/disaggregated_serving) or NVIDIA Dynamo (--emit dynamo) in front; "
        "the benchmark talks to the proxy"
    ),
)
