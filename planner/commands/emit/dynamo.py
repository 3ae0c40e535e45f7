"""NVIDIA Dynamo over an engine: the OpenAI front end (`python -m dynamo.frontend`) and the
engine's workers (`python -m dynamo.vllm`, `dynamo.sglang`, `dynamo.trtllm`), prefill and decode
workers with their counts for disaggregated rows, benchmarked by the row's engine's own client
against the front end (AIPerf's flags are in no pinned list yet: the notes name it).

The vLLM and SGLang workers take their engine's own flags (the pinned vllm.json / sglang.json)
beside Dynamo's (dynamo.json; `--disaggregation-mode` of the vLLM worker is
components/src/dynamo/vllm/backend_args.py's, which dynamo.json does not read but names); the TensorRT-LLM worker has its own flags and reads the same extra
options YAML as `trtllm-serve`. What a worker runs is its engine's entry of
planner.specs.engine_layouts.
"""

from __future__ import annotations

from planner.commands.emit import sglang, trtllm, vllm
from planner.commands.emit.core import Bench, Command, Context, Engine, File, Launch, Pool, Runnable, whole_counts

VERSION = "ai-dynamo/dynamo@0243c51b (frontend; worker arguments at the commits dynamo.json records)"
PINNED = (
    "Dynamo flags: components/src/dynamo/frontend/frontend_args.py at ai-dynamo/dynamo@0243c51b, the common "
    "runtime and router groups and the sglang and trtllm backend_args.py (tests/data/engine_flags/dynamo.json)"
)
PORT = 8000


def _worker(base: str, pool: Pool, run: Runnable, ctx: Context) -> Command:
    if base == "vllm":
        argv, notes = vllm.args(pool, run, ctx)
        if pool.role in ("prefill", "decode"):
            argv += ["--disaggregation-mode", pool.role, "--kv-transfer-config", vllm.NIXL]
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
    extra, running, tokens, notes = trtllm.options(pool, run, ctx)
    tp, pp, ep = trtllm.sizes(run)
    argv = ["python", "-m", "dynamo.trtllm", "--model-path", "$MODEL", "--tensor-parallel-size", str(tp)]
    argv += ["--pipeline-parallel-size", str(pp), "--expert-parallel-size", str(ep)]
    argv += ["--max-batch-size", str(running), "--max-num-tokens", str(tokens)]
    argv += ["--max-seq-len", str(ctx.max_len), "--extra-engine-args", trtllm.extra_file(pool)]
    if pool.role in ("prefill", "decode"):
        argv += ["--disaggregation-mode", pool.role]
    if ctx.nodes(pool) > 1:
        argv += ["--gpus-per-node", str(ctx.node_gpus)]
        notes.append(trtllm.multi_node_note(pool, ctx))
    return Command(
        argv=tuple(argv), flags=("dynamo",), files=(File(name=trtllm.extra_file(pool), data=extra),), notes=tuple(notes)
    )


def _bench(base: str, b: Bench) -> tuple[Command, str]:
    """The row's engine's own client against the front end (OpenAI-compatible), so that the result
    file is one `planner calibrate` reads and every flag is in a pinned list."""
    url = f"http://localhost:{PORT}"
    cmd, result_file = {"vllm": vllm.bench_command, "sglang": sglang.bench_command, "trtllm": trtllm.bench_command}[
        base
    ](b, url)
    note = (
        "the benchmark talks to Dynamo's front end; AIPerf (`aiperf profile`, its profile_export_aiperf.json read as "
        "aiperf) measures the same, but its flags are not in the pinned lists, so it is not emitted"
    )
    return Command(argv=cmd.argv, flags=cmd.flags, notes=(*cmd.notes, note)), result_file


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
    if not ctx.disaggregated:
        return (frontend, *launches), ()
    prefill = next(x for x in launches if x.role == "prefill")
    decode = next(x for x in launches if x.role == "decode")
    p, d = whole_counts(prefill.count)
    total = p * prefill.chips + d * decode.chips
    return (frontend, *launches), (
        f"in all: {p} prefill worker(s) of {prefill.chips} GPUs and {d} decode worker(s) of {decode.chips} GPUs, "
        f"{total} GPUs",
    )


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
        reader=base.reader,
        policy=base.policy,
        launch=launch,
        benchmark=lambda b: _bench(base.name, b),
        front=_front,
        over=base.name,
    )
