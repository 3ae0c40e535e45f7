"""NVIDIA Dynamo over an engine: the OpenAI front end (`python -m dynamo.frontend`) and the
engine's workers (`python -m dynamo.vllm`, `dynamo.sglang`, `dynamo.trtllm`), prefill and decode
workers with their counts for disaggregated rows, benchmarked with AIPerf (`aiperf profile`, whose
`profile_export_aiperf.json` `planner calibrate` reads).

The vLLM and SGLang workers take their engine's own flags (the pinned vllm.json / sglang.json)
beside Dynamo's (dynamo.json); the TensorRT-LLM worker has its own flags and reads the same extra
options YAML as `trtllm-serve`. What a worker runs is its engine's entry of
planner.specs.engine_layouts.
"""

from __future__ import annotations

from planner.commands.emit import sglang, trtllm, vllm
from planner.commands.emit.core import Bench, Command, Context, Engine, File, Launch, Pool, Runnable

VERSION = "NVIDIA Dynamo at the commit tests/data/engine_flags/dynamo.json records"
PINNED = "Dynamo flags: components/src/dynamo/{frontend,vllm,sglang,trtllm} argument definitions (dynamo.json)"
PORT = 8000


def _worker(base: str, pool: Pool, run: Runnable, ctx: Context) -> Command:
    if base == "vllm":
        argv, notes = vllm.args(pool, run, ctx)
        if pool.role == "prefill":
            argv += ["--is-prefill-worker"]
        return Command(
            argv=("python", "-m", "dynamo.vllm", "--model", "$MODEL", *argv),
            flags=("dynamo", "vllm"),
            notes=tuple(notes),
        )
    if base == "sglang":
        argv, notes = sglang.args(pool, run, ctx)
        if pool.role in ("prefill", "decode"):
            argv += ["--disaggregation-mode", pool.role, "--disaggregation-transfer-backend", "nixl"]
        return Command(
            argv=("python", "-m", "dynamo.sglang", "--model-path", "$MODEL", *argv),
            flags=("dynamo", "sglang"),
            notes=tuple(notes),
        )
    extra, running, notes = trtllm.options(pool, run, ctx)
    tp, pp, ep = trtllm.sizes(run)
    argv = ["python", "-m", "dynamo.trtllm", "--model-path", "$MODEL", "--tensor-parallel-size", str(tp)]
    argv += ["--pipeline-parallel-size", str(pp), "--expert-parallel-size", str(ep)]
    argv += ["--max-batch-size", str(running), "--max-num-tokens", str(pool.batched_tokens)]
    argv += ["--max-seq-len", str(ctx.max_len), "--extra-engine-args", trtllm.extra_file(pool)]
    if pool.role in ("prefill", "decode"):
        argv += ["--disaggregation-mode", pool.role]
    return Command(
        argv=tuple(argv), flags=("dynamo",), files=(File(name=trtllm.extra_file(pool), data=extra),), notes=tuple(notes)
    )


def bench_command(b: Bench) -> tuple[Command, str]:
    """`aiperf profile` against the front end at the row's ISL/OSL, closed loop at its concurrency."""
    argv = ["aiperf", "profile", "--model", "$MODEL", "--url", f"http://localhost:{PORT}"]
    argv += ["--endpoint-type", "chat", "--streaming"]
    argv += ["--synthetic-input-tokens-mean", str(b.input_tokens), "--synthetic-input-tokens-stddev", "0"]
    argv += ["--output-tokens-mean", str(b.output_tokens), "--output-tokens-stddev", "0"]
    argv += ["--extra-inputs", "ignore_eos:true", "--concurrency", str(b.concurrency)]
    argv += ["--request-count", str(b.prompts), "--artifact-dir", b.tag]
    return Command(argv=tuple(argv), flags=("aiperf",)), f"{b.tag}/profile_export_aiperf.json"


def _front(launches: tuple[Launch, ...], ctx: Context) -> tuple[tuple[Launch, ...], tuple[str, ...]]:
    frontend = Launch(
        role="frontend",
        count=1.0,
        layout="",
        runnable="",
        command=("python", "-m", "dynamo.frontend", "--http-port", str(PORT)),
        notes=("the OpenAI-compatible front end: it finds the workers through Dynamo's discovery (etcd, NATS)",),
        nearest=(),
        flags=("dynamo",),
    )
    return (frontend, *launches), ()


def over(base: Engine) -> Engine:
    """Dynamo with `base`'s workers."""

    def launch(pool: Pool, run: Runnable, ctx: Context) -> Command:
        return _worker(base.name, pool, run, ctx)

    return Engine(
        name="dynamo",
        table=base.table,
        label=f"NVIDIA Dynamo over {base.label}",
        version=f"{VERSION}; workers {base.version}",
        pinned=f"{PINNED}; {base.pinned}",
        tpu=False,
        reader="aiperf",
        policy=base.policy,
        launch=launch,
        benchmark=bench_command,
        front=_front,
        over=base.name,
    )
