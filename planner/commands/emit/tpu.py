"""TPU engines: vLLM on TPU (`vllm serve` with the TPU backend, benchmarked by `vllm bench serve`)
and JetStream (MaxText's `maxengine_server`, benchmarked by JetStream's `benchmark_serving.py`).

vLLM on TPU takes vLLM's flags (the pinned vllm.json) and runs tensor parallelism over the slice
(FFN `ws1d`, attention `heads`). JetStream serves MaxText, configured by `key=value` overrides of
`src/MaxText/configs/base.yml`: `ici_tensor_parallelism` is the same layout, with MoE experts
tensor-parallel (`tp`: MaxText's `ici_expert_parallelism` is a mesh axis of its own, whose product
with `ici_tensor_parallelism` is the slice, so expert parallelism over the whole slice beside
tensor-parallel attention is not emitted), `quantization=int8` and `quantize_kvcache` store int8
weights and KV cache. What each runs is its entry of planner.specs.engine_layouts.
"""

from __future__ import annotations

from planner.commands.emit import vllm
from planner.commands.emit.core import Bench, Command, Context, Engine, Launch, Pool, Runnable, token_budget

JETSTREAM_VERSION = "AI-Hypercomputer/maxtext@09d2025b (server), AI-Hypercomputer/JetStream@07a443b3 (benchmark)"
JETSTREAM_PINNED = (
    "MaxText keys: src/MaxText/configs/base.yml at AI-Hypercomputer/maxtext@09d2025b; JetStream benchmark flags: "
    "benchmarks/benchmark_serving.py at AI-Hypercomputer/JetStream@07a443b3"
)


def _vllm_tpu(pool: Pool, run: Runnable, ctx: Context) -> Command:
    notes = []
    argv = ["vllm", "serve", "$MODEL", "--tensor-parallel-size", str(run.per_stage)]
    if run.stages > 1:
        argv += ["--pipeline-parallel-size", str(run.stages)]
    if pool.weights == "int8":
        argv += ["--quantization", "tpu_int8"]
    else:
        argv += ["--dtype", "bfloat16"]
    budget = token_budget(pool, 1)
    argv += ["--max-num-seqs", str(max(1, pool.running)), "--max-num-batched-tokens", str(budget.per_rank)]
    notes += [budget.note] if budget.note else []
    argv += ["--enable-chunked-prefill", "--max-model-len", str(ctx.max_len)]
    if ctx.hosts(pool) > 1:
        how = (
            "vLLM on TPU runs a slice over its hosts with Ray: `ray start --head` on host 0 ($HEAD_IP), `ray start "
            "--address $HEAD_IP:6379` on the others, then this command on host 0"
        )
        notes.append(ctx.hosts_note(pool, how))
    if pool.role in ("prefill", "decode"):
        notes.append("vLLM on TPU has no prefill/decode disaggregation: this pool runs as a server of its own")
    return Command(argv=tuple(argv), flags=("vllm",), notes=tuple(notes))


def _no_front(launches: tuple[Launch, ...], ctx: Context) -> tuple[tuple[Launch, ...], tuple[str, ...]]:
    if not ctx.disaggregated:
        return launches, ()
    return launches, ("the TPU engines emitted here disaggregate no prefill and decode pools: each pool is a server",)


VLLM_TPU = Engine(
    name="vllm-tpu",
    table="vllm-tpu",
    label="vLLM on TPU",
    version=vllm.VERSION + " with its TPU backend",
    pinned=vllm.PINNED,
    tpu=True,
    reader="vllm",
    policy="chunked",
    launch=_vllm_tpu,
    benchmark=lambda b: vllm.bench_command(b),
    front=_no_front,
)


def _jetstream(pool: Pool, run: Runnable, ctx: Context) -> Command:
    n = run.per_stage
    notes = []
    argv = ["python", "-m", "MaxText.maxengine_server", "src/MaxText/configs/base.yml", "model_name=$MODEL"]
    argv += ["tokenizer_path=$TOKENIZER", "load_parameters_path=$CHECKPOINT", "scan_layers=false"]
    argv += ["ici_fsdp_parallelism=1", "ici_autoregressive_parallelism=1", f"ici_tensor_parallelism={n}"]
    per_chip = pool.running / n
    argv += [f"per_device_batch_size={per_chip:g}"]
    argv += [f"max_prefill_predict_length={ctx.input_tokens}", f"max_target_length={ctx.max_len}"]
    if pool.weights == "int8":
        argv += ["quantization=int8"]
    if run.kv_cache == "int8":
        argv += ["quantize_kvcache=true", "kv_quant_dtype=int8"]
    if ctx.hosts(pool) > 1:
        how = "run this command on every host of the slice (JAX's multi-host runtime joins them: e.g. --worker=all)"
        notes.append(ctx.hosts_note(pool, how))
    if run.stages > 1:
        notes.append("JetStream (MaxText) has no pipeline parallelism for serving: the stages run as one slice")
    if not per_chip.is_integer():
        notes.append(f"per_device_batch_size {per_chip:g}: MaxText takes a fraction; the slice runs {pool.running}")
    if pool.role in ("prefill", "decode"):
        notes.append(
            "JetStream's prefill/decode split (interleaved or disaggregated slices) is not emitted: one server"
        )
    return Command(argv=tuple(argv), flags=("jetstream",), notes=tuple(notes))


def _jetstream_bench(b: Bench) -> tuple[Command, str]:
    argv = ["python", "-m", "benchmarks.benchmark_serving", "--tokenizer", "$TOKENIZER", "--model", "$MODEL"]
    argv += ["--dataset", "sharegpt", "--dataset-path", "$SHAREGPT", "--num-prompts", str(b.prompts)]
    argv += ["--max-output-length", str(b.output_tokens), "--request-rate", "inf", "--save-result"]
    notes = (
        "JetStream's benchmark_serving sends ShareGPT prompts (not fixed-length ones at the row's "
        f"{b.input_tokens} tokens) at a request rate (inf: all at once), not a closed loop at the row's concurrency "
        f"{b.concurrency}; its --save-result file nests the figures under `metrics` and its TPOT is the request's "
        "latency over its output tokens, TTFT included. `planner calibrate` has no reader for it: write the run's "
        "median TTFT and TPOT (first token excluded) into a serving-runs file (planner-serving/1), or benchmark "
        "JetStream's OpenAI-compatible endpoint with `vllm bench serve`",
    )
    return Command(argv=tuple(argv), flags=("jetstream-bench",), notes=notes), "JetStream-infqps-$MODEL-DATE.json"


JETSTREAM = Engine(
    name="jetstream",
    table="jetstream",
    label="JetStream (MaxText)",
    version=JETSTREAM_VERSION,
    pinned=JETSTREAM_PINNED,
    tpu=True,
    reader="",
    policy="prefill-first",
    launch=_jetstream,
    benchmark=_jetstream_bench,
    front=_no_front,
)
