"""TensorRT-LLM: `trtllm-serve` per pool (PyTorch backend) with its extra options YAML, and its
`benchmark_serving` client (vLLM's, forked: the same result file).

Flags are the names of `trtllm-serve`'s options (`tensorrt_llm/commands/serve.py`) and the fields
of `TorchLlmArgs` (`tensorrt_llm/llmapi/llm_args.py`, the extra options YAML's keys) at the
commit tests/data/engine_flags/trtllm.json records; the client's are trtllm-bench.json's. In the
planner's words: `--tp_size N` is FFN `ws1d` with attention `heads`; `enable_attention_dp`
splits the batch over attention ranks with the dense FFN whole on each (FFN `dp`, attention
`batch`); `--ep_size N` puts the experts expert-parallel over the worker (`ep`). Weights are
quantised in the checkpoint (ModelOpt), not by a flag. Prefill/decode pools are context and
generation servers behind `trtllm-serve disaggregated`.
"""

from __future__ import annotations

import math

from planner.commands.emit.core import (
    Bench,
    Command,
    Context,
    Engine,
    File,
    Launch,
    Pool,
    Runnable,
    token_budget,
    whole_counts,
)

SERVE_COMMIT, ARGS_COMMIT = "00209af1", "00043967"
VERSION = f"NVIDIA/TensorRT-LLM@{SERVE_COMMIT} (trtllm-serve), @{ARGS_COMMIT} (llm_args), PyTorch backend"
PINNED = (
    f"TensorRT-LLM flags: tensorrt_llm/commands/serve.py (trtllm-serve) at NVIDIA/TensorRT-LLM@{SERVE_COMMIT}, "
    f"tensorrt_llm/llmapi/llm_args.py TorchLlmArgs (extra options keys) at @{ARGS_COMMIT}; benchmark_serving: "
    "tensorrt_llm/serve/scripts/benchmark_serving.py (tests/data/engine_flags/trtllm-bench.json)"
)
PORTS = {"prefill": 8001, "decode": 8002}  # the context and generation servers, as disagg-config.yaml names them
_CHECKPOINT = {
    "fp8": "fp8 weights: serve an FP8 checkpoint (ModelOpt, or the model's own FP8 release); TensorRT-LLM reads its "
    "quantisation config, no flag",
    "int8": "int8 weights: serve an int8 weight-only checkpoint (ModelOpt W8A16); TensorRT-LLM reads its "
    "quantisation config, no flag",
    "fp4": "fp4 weights: serve an NVFP4 checkpoint (ModelOpt); TensorRT-LLM reads its quantisation config, no flag",
}


def options(pool: Pool, run: Runnable, ctx: Context) -> tuple[dict, int, int, list[str]]:
    """The extra options (TorchLlmArgs keys), the running sequences and the step's tokens per
    attention rank (max_batch_size and max_num_tokens are each rank's), and notes."""
    notes = [_CHECKPOINT[pool.weights]] if pool.weights in _CHECKPOINT else []
    ranks = run.attention_ranks
    running = max(1, math.ceil(pool.running / ranks))  # max_batch_size is per attention rank
    budget = token_budget(pool, ranks)  # max_num_tokens too
    notes += [budget.note] if budget.note else []
    extra: dict = {
        "enable_attention_dp": run.dp_attention,
        "enable_chunked_prefill": True,
        "cuda_graph_config": {"enable_padding": True, "max_batch_size": running},
        "kv_cache_config": {"dtype": "fp8" if run.kv_cache == "fp8" else "auto"},
    }
    if run.expert_parallel:
        # the planner prices `ep` as wide EP with DeepEP-style dispatch and combine: TensorRT-LLM's
        # WIDEEP MoE backend (its own all-to-all; the default CUTLASS backend all-gathers tokens)
        extra["moe_config"] = {"backend": "WIDEEP"}
    if ctx.draft_tokens:
        # TensorRT-LLM's MTP config sets max_draft_len from num_nextn_predict_layers (default 1)
        extra["speculative_config"] = {"decoding_type": "MTP", "num_nextn_predict_layers": ctx.draft_tokens}
        notes.append("speculative decoding: the model's own MTP layers (num_nextn_predict_layers draft tokens)")
    if pool.role in ("prefill", "decode"):
        extra["cache_transceiver_config"] = {"backend": "DEFAULT"}
    if pool.role == "prefill":
        extra["disable_overlap_scheduler"] = True
    return extra, running, budget.per_rank, notes


def sizes(run: Runnable) -> tuple[int, int, int]:
    """(tensor, pipeline, expert) parallel sizes."""
    n = run.per_stage
    return n, run.stages, n if run.expert_parallel else 1


def multi_node_note(pool: Pool, ctx: Context) -> str:
    how = (
        f"TensorRT-LLM runs over them under MPI, one rank per GPU: `mpirun -np {pool.chips} --hostfile HOSTS "
        f"trtllm-llmapi-launch` before this command (Slurm: `srun -N {ctx.nodes(pool)} --ntasks-per-node "
        f"{ctx.node_gpus} trtllm-llmapi-launch ...`)"
    )
    return ctx.nodes_note(pool, how)


def extra_file(pool: Pool) -> str:
    return f"extra-llm-api-{pool.role}.yaml"


def _launch(pool: Pool, run: Runnable, ctx: Context) -> Command:
    extra, running, tokens, notes = options(pool, run, ctx)
    tp, pp, ep = sizes(run)
    argv = ["trtllm-serve", "serve", "$MODEL", "--backend", "pytorch", "--tp_size", str(tp), "--pp_size", str(pp)]
    argv += ["--ep_size", str(ep), "--max_batch_size", str(running), "--max_num_tokens", str(tokens)]
    argv += ["--max_seq_len", str(ctx.max_len), "--extra_llm_api_options", extra_file(pool)]
    if pool.role in PORTS:  # where the disaggregated server's config finds it
        argv += ["--host", "0.0.0.0", "--port", str(PORTS[pool.role])]
    if ctx.nodes(pool) > 1:
        argv += ["--gpus_per_node", str(ctx.node_gpus)]
        notes.append(multi_node_note(pool, ctx))
    return Command(
        argv=tuple(argv), flags=("trtllm",), files=(File(name=extra_file(pool), data=extra),), notes=tuple(notes)
    )


def bench_command(b: Bench, base_url: str | None = None) -> tuple[Command, str]:
    """TensorRT-LLM's `benchmark_serving` (vLLM's client, forked: its --save-result file is vLLM's)."""
    result_file = f"{b.tag}.json"
    argv = ["python", "-m", "tensorrt_llm.serve.scripts.benchmark_serving", "--model", "$MODEL"]
    if base_url:
        argv += ["--base-url", base_url]
    argv += ["--backend", "openai", "--dataset-name", "random", "--random-input-len", str(b.input_tokens)]
    # every prompt exactly that long: TensorRT-LLM's random dataset draws lengths from [X(1-r), X(1+r)] and
    # rejects r >= 1; --random-ids samples token ids (without it, it asserts a --download-path dataset)
    argv += ["--random-output-len", str(b.output_tokens), "--random-range-ratio", "0", "--random-ids"]
    argv += ["--num-prompts", str(b.prompts), "--max-concurrency", str(b.concurrency), "--ignore-eos"]
    argv += ["--percentile-metrics", "ttft,tpot,itl,e2el", "--save-result", "--result-filename", result_file]
    return Command(argv=tuple(argv), flags=("trtllm-bench",)), result_file


def _front(launches: tuple[Launch, ...], ctx: Context) -> tuple[tuple[Launch, ...], tuple[str, ...]]:
    """Disaggregated rows: `trtllm-serve disaggregated` over the context and generation servers."""
    if not ctx.disaggregated:
        return launches, ()
    prefill = next(x for x in launches if x.role == "prefill")
    p, d = whole_counts(prefill.count)
    config = {
        "hostname": "localhost",
        "port": 8000,
        "backend": "pytorch",
        "context_servers": {"num_instances": p, "urls": [f"CONTEXT{i}:{PORTS['prefill']}" for i in range(p)]},
        "generation_servers": {"num_instances": d, "urls": [f"GENERATION{i}:{PORTS['decode']}" for i in range(d)]},
    }
    front = Launch(
        role="frontend",
        count=1.0,
        layout="",
        runnable="",
        command=("trtllm-serve", "disaggregated", "--config_file", "disagg-config.yaml"),
        notes=(
            f"the context servers listen on port {PORTS['prefill']}, the generation servers on {PORTS['decode']} "
            "(their --port); write each one's host in the config's urls (CONTEXTi, GENERATIONi)",
        ),
        nearest=(),
        flags=("trtllm",),
        files=(File(name="disagg-config.yaml", data=config),),
    )
    return (*launches, front), (
        f"disaggregated: {p} context (prefill) and {d} generation (decode) servers, KV caches through the cache "
        "transceiver; the benchmark talks to the disaggregated server",
    )


ENGINE = Engine(
    name="trtllm",
    table="trtllm",
    label="TensorRT-LLM",
    version=VERSION,
    pinned=PINNED,
    tpu=False,
    reader="vllm",
    policy="chunked",
    launch=_launch,
    benchmark=bench_command,
    front=_front,
)
