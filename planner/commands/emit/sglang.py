"""SGLang: `python -m sglang.launch_server` per pool and `python -m sglang.bench_serving`.

Flags are the names of SGLang's `ServerArgs` (`python/sglang/srt/server_args.py`) at
sgl-project/sglang 001067ff and of `python/sglang/bench_serving.py` at 0033168f (the newer tree
splits the client into sglang/benchmark/; tests/data/engine_flags/sglang.json, sglang-bench.json). In the planner's words: `--tp-size N` is FFN `ws1d` with
attention `heads`; `--enable-dp-attention --dp-size N` splits the batch over attention ranks
(attention `batch`) with the dense FFN tensor-parallel (`ws1d`), or whole on every GPU with
`--moe-dense-tp-size 1` (`dp`); `--ep-size N` puts the experts expert-parallel over the worker
(`ep`), `--enable-two-batch-overlap` overlaps two micro-batches (`+tbo`). Prefill/decode pools are
`--disaggregation-mode prefill|decode` behind SGLang's router.
"""

from __future__ import annotations

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

COMMIT, BENCH_COMMIT = "001067ff", "0033168f"
VERSION = f"sgl-project/sglang@{COMMIT} (server), @{BENCH_COMMIT} (bench_serving)"
PINNED = (
    f"SGLang flags: python/sglang/srt/server_args.py ServerArgs at sgl-project/sglang@{COMMIT}; "
    f"bench_serving: python/sglang/bench_serving.py at sgl-project/sglang@{BENCH_COMMIT}"
)
_DEEPEP_MODE = {"prefill": "normal", "decode": "low_latency", "server": "auto"}


def args(pool: Pool, run: Runnable, ctx: Context) -> tuple[list[str], list[str]]:
    """SGLang's server flags for the pool (after the model), and notes on what they cannot say."""
    notes = []
    n = run.per_stage
    argv = ["--tp-size", str(n)]
    if run.stages > 1:
        argv += ["--pp-size", str(run.stages)]
    if run.dp_attention:
        argv += ["--enable-dp-attention", "--dp-size", str(n)]
        if run.dense_replicated:
            argv += ["--moe-dense-tp-size", "1"]
    if run.expert_parallel:
        # the planner prices `ep` as wide EP with DeepEP's dispatch and combine: its normal kernels
        # for prefill, low-latency for decode, each by batch on a server running both
        argv += ["--ep-size", str(n)]
        if ctx.nvidia:
            argv += ["--moe-a2a-backend", "deepep", "--deepep-mode", _DEEPEP_MODE[pool.role]]
        else:
            notes.append(NO_DEEPEP_NOTE.format(engine="SGLang"))
    if run.two_batch_overlap:
        argv += ["--enable-two-batch-overlap"]
    if pool.weights == "fp8":
        argv += ["--quantization", "fp8"]
    elif pool.weights == "int8":
        notes.append("int8 weights: serve an int8 weight-only checkpoint (SGLang reads its quantisation config)")
    else:
        argv += ["--dtype", "bfloat16"]
    if run.kv_cache == "fp8":
        argv += ["--kv-cache-dtype", "fp8_e4m3"]
    argv += ["--max-running-requests", str(max(1, pool.running))]
    # --chunked-prefill-size is the server's: SGLang divides it by --dp-size under DP attention;
    # --max-prefill-tokens is each rank's scheduler's
    budget = token_budget(pool, run.attention_ranks)
    argv += ["--chunked-prefill-size", str(budget.total), "--max-prefill-tokens", str(budget.per_rank)]
    notes += [budget.note] if budget.note else []
    argv += ["--context-length", str(ctx.max_len)]
    if ctx.nodes(pool) > 1:
        argv += ["--nnodes", str(ctx.nodes(pool)), "--node-rank", "$NODE_RANK", "--dist-init-addr", "$HEAD_IP:5000"]
        how = (
            f"run this command on every node with $NODE_RANK 0 to {ctx.nodes(pool) - 1}; $HEAD_IP is node 0's "
            "address, where the server listens"
        )
        notes.append(ctx.nodes_note(pool, how))
    if ctx.draft_tokens:
        k = ctx.draft_tokens
        argv += ["--speculative-algorithm", "EAGLE", "--speculative-num-steps", str(k)]
        argv += ["--speculative-eagle-topk", "1", "--speculative-num-draft-tokens", str(k + 1)]
        notes.append("speculative decoding: EAGLE over the model's MTP head (DeepSeek's NextN), one draft chain")
    return argv, notes


def _launch(pool: Pool, run: Runnable, ctx: Context) -> Command:
    argv, notes = args(pool, run, ctx)
    if pool.role in ("prefill", "decode"):
        argv += ["--disaggregation-mode", pool.role, "--disaggregation-transfer-backend", "nixl"]
    return Command(
        argv=("python", "-m", "sglang.launch_server", "--model-path", "$MODEL", *argv),
        flags=("sglang",),
        notes=tuple(notes),
    )


def bench_command(b: Bench, base_url: str | None = None) -> tuple[Command, str]:
    """`sglang.bench_serving` at the row's ISL/OSL (random prompts of exactly that length), closed
    loop at its concurrency, appending one JSONL line to its output file."""
    result_file = f"{b.tag}.jsonl"
    argv = ["python", "-m", "sglang.bench_serving", "--backend", "sglang-oai" if base_url else "sglang"]
    if base_url:  # another server's OpenAI-compatible completions endpoint
        argv += ["--base-url", base_url]
    argv += ["--dataset-name", "random", "--random-input-len", str(b.input_tokens)]
    argv += ["--random-output-len", str(b.output_tokens), "--random-range-ratio", "1"]
    argv += ["--num-prompts", str(b.prompts), "--max-concurrency", str(b.concurrency)]
    argv += ["--output-file", result_file]
    return Command(argv=tuple(argv), flags=("sglang-bench",)), result_file


ENGINE = Engine(
    name="sglang",
    table="sglang",
    label="SGLang",
    version=VERSION,
    pinned=PINNED,
    tpu=False,
    reader="sglang",
    policy="prefill-first",  # SGLang's scheduler runs a waiting prefill before decode steps (the planner's --policy)
    launch=_launch,
    benchmark=bench_command,
    front=front_note(
        "disaggregated: launch the prefill and decode servers (KV over NIXL), then SGLang's router in front: "
        "`python -m sglang_router.launch_router --pd-disaggregation --prefill http://PREFILL:30000 "
        "--decode http://DECODE:30000` (one --prefill/--decode per server; the router's flags are not in the "
        "pinned lists); the benchmark talks to the router"
    ),
)
