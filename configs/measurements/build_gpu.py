"""Build the GPU calibration files from the reference file of published GPU measurements.

    python configs/measurements/build_gpu.py PATH/TO/gpu-measurements.yaml [--out DIR]

(the reference is ../shared/reference/gpu-measurements.yaml beside a checkout; CI does not have
it, so the files this writes are committed). Writes, under DIR (default: this directory),
a100-80gb.yaml, h100-sxm.yaml and h200-sxm.yaml, one per cluster preset. Model shapes, with
their citations, come from gpu_models.py and are written into each file's `models:` mapping.

Only calibration-set data: the reference's FasterTransformer and TensorRT-LLM tables, the
aiconfigurator kernel tables and the two-node nccl-tests runs on InfiniBand. Left out on purpose:
the GCP A3 Mega two-node runs (GPUDirect-TCPXO at 25 GB/s per GPU, not the presets' InfiniBand:
they would calibrate a network the presets do not have).

Format ("planner measurements, version 2"): the existing file's top-level keys (cluster, source,
notes, measurements) plus `format`, `conventions`, `sources`, `models` and `infeasible`. Every
measurement row has `kind` and `source`:

  latency     end-to-end time of ONE fixed batch: prefill of input_tokens + decode of
              output_tokens, `latency_s` (chips, tp, pp, batch, input_tokens, output_tokens,
              weights, kv_cache, ffn/attention = the layout tensor parallelism implies)
  ttft        time to first token (batch 1: prefill + first sampling step), `ttft_s`
  throughput  fixed-batch output tokens/s, stored BOTH as `tokens_per_s_total` (all GPUs) and
              `tokens_per_s_per_gpu`, with `published_as` (what the source's column said) and the
              derived end-to-end `latency_s_derived` = batch*output_tokens/tokens_per_s_total
  collective  `collective` (all-reduce|all-gather|reduce-scatter), `implementation`, `gpus`,
              `nodes`, `dtype`, `elements`, `bytes`, `seconds`; `bytes` is the full buffer per GPU
              as nccl-tests sizes it (all-reduce: the buffer; all-gather: the gathered OUTPUT;
              reduce-scatter: the unreduced INPUT), which is the planner's bytes_per_chip D
  gemm        `m` (tokens), `n`, `k`, `dtype`, `seconds` of y[m,n] = x[m,k] W[k,n]

Nothing is fitted here; the reference values are copied and only converted (ms -> s,
elements -> bytes, per-GPU <-> total).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import yaml
from gpu_models import MODELS, model_of, params

HERE = Path(__file__).resolve().parent  # configs/measurements
CLUSTERS = ("a100-80gb", "h100-sxm", "h200-sxm")
GPU_TO_CLUSTER = {"A100": "a100-80gb", "H100": "h100-sxm", "H200": "h200-sxm"}
DTYPE_BYTES = {"half": 2, "fp16": 2, "bf16": 2, "bfloat16": 2, "float": 4, "float32": 4, "fp8": 1, "int8": 1}
TP_LAYOUT = {"ffn": "ws1d", "attention": "heads"}  # Megatron tensor parallelism = 1D weight-stationary


def sig(x: float, digits: int = 9) -> float:
    """Round to `digits` significant digits (drops float noise such as 0.009980000000000001)."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def short_commit(c: str) -> str:
    return c[:8]


# ---------------------------------------------------------------------------------------------
# Per-section converters: each returns {cluster: [rows]} and {cluster: [infeasible rows]}


def fastertransformer(sec: dict):
    s = sec["source"]
    where = f"{s['repo']}@{short_commit(s['commit'])}:{s['path']} ({s['section']}"
    rows, infeasible = [], []
    for t in sec["tables"]:
        model = model_of(t["model"]["name"])
        cols = t["columns"]
        tp_cols = [(c, int(c[2]) if c.startswith("tp") else 1) for c in cols[3:]]
        for r in t["rows"]:
            b, inp, out = r[0], r[1], r[2]
            for (col, tp), v in zip(tp_cols, r[3:]):
                base = dict(
                    model=model,
                    chips=tp,
                    tp=tp,
                    pp=1,
                    batch=b,
                    input_tokens=inp,
                    output_tokens=out,
                    weights="fp16",
                    kv_cache="fp16",
                    **TP_LAYOUT,
                    framework="FasterTransformer (version not stated)",
                    sampling="top_p 0.9",
                )
                src = f"{where}, table {t['table']}, column {col})"
                if v == "OOM" or v is None:
                    infeasible.append(dict(kind="latency", **base, result="OOM" if v == "OOM" else "null", source=src))
                    continue
                rows.append(
                    dict(
                        kind="latency",
                        name=f"FT {t['model']['name']} tp{tp} b{b} {inp}/{out}",
                        **base,
                        latency_s=sig(v / 1e3),
                        source=src,
                    )
                )
    return {"a100-80gb": rows}, {"a100-80gb": infeasible}


TRT_UNITS = {
    # table: (published_as, how to get per-GPU and total, note)
    "v0_5_throughput": ("out tok/s (total; every row is tp 1, so total = per GPU)", "total"),
    "v0_6_1_peak_throughput": ("out tok/s/GPU", "per_gpu"),
    "v0_6_1_peak_throughput A100": (
        "'(out tok/s)' in commit 138f96d4, '(out tok/s/GPU)' in the cited "
        "commit 77d24b5f; read as per GPU (only that reading gives the tp 2 "
        "rows the HBM efficiency of the tp 1 rows, see the unit_ambiguous flag)",
        "per_gpu",
    ),
    "v0_9_peak_throughput": ("out tok/s/GPU", "per_gpu"),
    "h200_launch_blog_v0_5": ("out tok/s/GPU", "per_gpu"),
}


def tensorrt_llm(sec: dict):
    vers = sec["source"]["versions"]
    where = {
        "v0_5_throughput": f"NVIDIA/TensorRT-LLM release/0.5.0:{vers['v0_5']['path']}",
        "v0_5_first_token_latency": f"NVIDIA/TensorRT-LLM release/0.5.0:{vers['v0_5']['path']}",
        "v0_6_1_peak_throughput": f"NVIDIA/TensorRT-LLM@{short_commit(vers['v0_6_1']['commit'])}:{vers['v0_6_1']['path']}",
        "v0_9_peak_throughput": f"NVIDIA/TensorRT-LLM v0.9.0:{vers['v0_9_0']['path']}",
        "v0_9_first_token_latency": f"NVIDIA/TensorRT-LLM v0.9.0:{vers['v0_9_0']['path']}",
        "h200_launch_blog_v0_5": f"NVIDIA/TensorRT-LLM@{short_commit(vers['h200_launch_blog']['commit'])}:"
        f"{vers['h200_launch_blog']['path']}",
    }
    out: dict[str, list] = {c: [] for c in CLUSTERS}
    for t in sec["tables"]:
        name = t["table"]
        cols = t["columns"]
        for r in t["rows"]:
            v = dict(zip(cols, r))
            cluster = GPU_TO_CLUSTER[v["gpu"]]
            fmt = v["precision"]
            model = model_of(v["model"])
            base = dict(model=model, chips=v["tp"], tp=v["tp"], pp=1, batch=v["batch"], input_tokens=v["input_tokens"])
            common = dict(
                weights=fmt,
                activations=fmt,
                kv_cache=fmt,
                **TP_LAYOUT,
                framework=t["framework"] + " gptSessionBenchmark (static batch)",
            )
            if cluster == "a100-80gb":
                common["sku_note"] = "A100 80GB, SXM presumed (not stated by the source)"
            src = f"{where[name]} (table {name})"
            if "ttft_ms" in v:
                out[cluster].append(
                    dict(
                        kind="ttft",
                        name=f"TRT-LLM {name[:4]} {v['gpu']} {v['model']} ttft in {v['input_tokens']}",
                        **base,
                        **common,
                        ttft_s=sig(v["ttft_ms"] / 1e3),
                        ttft_resolution_s=1e-3 if isinstance(v["ttft_ms"], int) else 1e-4,
                        includes="context phase + first sampling step (batch 1, output length 1)",
                        source=src,
                    )
                )
                continue
            published, how = TRT_UNITS.get(f"{name} {v['gpu']}", TRT_UNITS[name])
            value = next(v[c] for c in cols if c.startswith("out_tok_per_s"))
            tp = v["tp"]
            total = value if how == "total" else value * tp
            per_gpu = total / tp
            row = dict(
                kind="throughput",
                name=f"TRT-LLM {name[:4]} {v['gpu']} {v['model']} tp{tp} b{v['batch']} "
                f"{v['input_tokens']}/{v['output_tokens']}",
                **base,
                output_tokens=v["output_tokens"],
                **common,
                tokens_per_s_total=sig(total),
                tokens_per_s_per_gpu=sig(per_gpu),
                published_value=value,
                published_as=published,
                latency_s_derived=sig(v["batch"] * v["output_tokens"] / total, 6),
                source=src,
            )
            if name == "v0_6_1_peak_throughput" and v["gpu"] == "A100" and tp > 1:
                row["unit_ambiguous"] = True
            out[cluster].append(row)
    return out


def nccl_public(sec: dict):
    srcs = sec["source"]
    rows = []
    for t in sec["tables"]:
        cols = t["columns"]
        if t["table"].startswith("a3mega"):
            continue  # TCPXO, not InfiniBand (see the module docstring)
            s = srcs[0]
            src = f"{s['repo']}@{short_commit(s['commit'])}:{s['path']} (nccl-tests all_reduce_perf, out-of-place)"
            extra = dict(
                device="H100 80GB HBM3",
                network="GCP A3 Mega GPUDirect-TCPXO (not InfiniBand; "
                "inferred from the platform), 8 NICs x 200 Gb/s per node = 25 GB/s per GPU",
                caveat="inter-node fabric differs from the h100-sxm preset (400 Gb/s IB per GPU)",
            )
        else:
            src = f"{srcs[1]['url']} (nccl-tests, NCCL 2.21.5, NCCL_ALGO=NVLSTree, out-of-place)"
            extra = dict(
                device="H20 (Hopper, NVLink4/NVSwitch)",
                network="16 x ConnectX-7 IB NDR per 2 nodes",
                caveat="H20 is not H100: proxy for the IB small-message latency only (uncertain)",
            )
        for r in t["rows"]:
            v = dict(zip(cols, r))
            dtype_bytes = v["size_bytes"] // v["count_elements"]
            assert dtype_bytes == 4, v
            rows.append(
                dict(
                    kind="collective",
                    collective="all-reduce",
                    implementation="nccl",
                    gpus=16,
                    nodes=2,
                    dtype="float32",
                    elements=v["count_elements"],
                    bytes=f"{v['size_bytes']} B",
                    seconds=sig(v["oop_time_us"] / 1e6),
                    **extra,
                    source=src,
                )
            )
    return {"h100-sxm": rows}


KIND = {"all_reduce": "all-reduce", "all_gather": "all-gather", "reduce_scatter": "reduce-scatter"}
SYSTEM = {"h100_sxm": "h100-sxm", "h200_sxm": "h200-sxm", "a100_sxm": "a100-80gb"}


def aiconfigurator(sec: dict):
    s = sec["source"]
    out: dict[str, list] = {c: [] for c in CLUSTERS}
    for t in sec["tables"]:
        name = t["table"]
        system = next(k for k in SYSTEM if k in name)
        cluster = SYSTEM[system]
        src = f"{s['repo']}@{short_commit(s['commit'])}:{t['file']}"
        cols = t["columns"]
        for r in t["rows"]:
            v = dict(zip(cols, r))
            if name.startswith("nccl"):
                lat = v["latency_ms"] if isinstance(v["latency_ms"], list) else [v["latency_ms"]]
                for run, ms in enumerate(lat, 1):
                    row = dict(
                        kind="collective",
                        collective=KIND[v["op"]],
                        implementation="nccl",
                        gpus=v["num_gpus"],
                        nodes=1,
                        dtype="fp16",
                        elements=v["message_size_elements"],
                        bytes=f"{v['message_size_elements'] * DTYPE_BYTES['half']} B",
                        seconds=sig(ms / 1e3),
                        device=t["device"],
                        nccl_version=t["nccl_version_in_rows"][0],
                    )
                    if len(lat) > 1:
                        row["run"] = run
                    out[cluster].append(dict(**row, source=src))
            elif name.startswith("trtllm_custom_allreduce"):
                out[cluster].append(
                    dict(
                        kind="collective",
                        collective="all-reduce",
                        implementation="trtllm-custom",
                        gpus=v["num_gpus"],
                        nodes=1,
                        dtype="bf16",
                        elements=v["message_size_elements"],
                        bytes=f"{v['message_size_elements'] * DTYPE_BYTES['bf16']} B",
                        seconds=sig(v["latency_ms"] / 1e3),
                        device=t["device"],
                        source=src,
                    )
                )
            elif name.startswith("gemm"):
                dtype = "fp8" if name.endswith("fp8") else "bf16"
                row = dict(
                    kind="gemm",
                    m=v["m"],
                    n=v["n"],
                    k=v["k"],
                    dtype=dtype,
                    seconds=sig(v["latency_ms"] / 1e3),
                    device=t["device"],
                    framework="TensorRT-LLM Linear, CUDA-graph timed, weights > L2",
                )
                if dtype == "fp8":
                    row["includes"] = "dynamic per-tensor quantisation of x (bf16 in, bf16 out)"
                    row["activation_quantisation"] = "dynamic-per-tensor"
                out[cluster].append(dict(**row, source=src))
            else:
                raise ValueError(name)
    return out


# ---------------------------------------------------------------------------------------------
# Output


CONVENTIONS = {
    "times": "seconds",
    "latency": "latency_s = one fixed batch end to end: prefill of input_tokens then decode of output_tokens "
    "(FasterTransformer: whether the first output token comes from the prefill pass is not stated)",
    "ttft": "ttft_s = batch 1, output length 1: prefill + first sampling step",
    "throughput": "output tokens/s of one fixed batch; tokens_per_s_total over all `chips`, tokens_per_s_per_gpu "
    "= total / chips; latency_s_derived = batch * output_tokens / tokens_per_s_total (derived)",
    "collective_bytes": "full buffer per GPU as nccl-tests sizes it (all-reduce: the buffer; all-gather: the "
    "gathered output; reduce-scatter: the unreduced input) = planner bytes_per_chip D; "
    "ring traffic per GPU = D(k-1)/k (all-gather, reduce-scatter) or 2D(k-1)/k (all-reduce)",
    "gemm": "y[m,n] = x[m,k] @ W[k,n]; m = tokens; FLOPs = 2mnk",
    "weights": "fp16 is the planner's bf16 (2 bytes, same peak); fp8 = weights, activations and KV cache in fp8 "
    "(the planner has no fp8 weight format yet)",
    "layout": "ffn ws1d + attention heads = Megatron tensor parallelism over `tp` GPUs (pp 1 throughout)",
}

NOTES = {
    "a100-80gb": """\
FasterTransformer GPT 350M..20B (fp16, top_p sampling, Triton serving overhead possible for large
models) and TensorRT-LLM v0.5/v0.6.1/v0.9 fp16 tables for GPT-J 6B, Llama-2-7B, Mistral 7B; NCCL
and GEMM kernel tables from aiconfigurator (A100-SXM4-80GB, NCCL 2.27.3, TRT-LLM 1.0.0).
Pitfalls: the FT tables give no separate prefill/decode times (the (input, output) pairs
20/8, 60/20, 128/20, 80/200, 200/200 of GPT 20B separate them); TTFT values of v0.5 are whole
milliseconds (+-0.5 ms, +-4% at 12 ms); the v0.6.1 A100 column is labelled per GPU in one commit
and total in another: the three tp 2 rows are stored per GPU (flag unit_ambiguous). The A100 GEMM
table has shape-dependent outliers (m 256-1024) that no roofline form reproduces (docs/accuracy.md).""",
    "h100-sxm": """\
TensorRT-LLM fp8 (weights+activations+KV) tables for GPT-J 6B, Llama-2-7B, Mistral 7B on H100 SXM;
aiconfigurator NCCL (rows say NCCL 2.29.2 though the directory says 2.27.3; every key measured
twice, both kept as run 1/2), TRT-LLM custom all-reduce, bf16 and fp8 GEMMs (fp8 latency includes
the dynamic quantisation of x). Two-node all-reduce: H20 2x8 NDR IB small messages only (a proxy
for the InfiniBand latency; the GCP A3 Mega runs of the reference are TCPXO, not InfiniBand, and are
left out).""",
    "h200-sxm": """\
TensorRT-LLM fp8 tables (v0.9 and the v0.5 H200 launch blog, Llama-2-13B) and aiconfigurator NCCL
(2.29.2) and bf16 GEMM tables. No fp8 GEMM table and no cross-node collectives for H200.""",
}


def model_entry(key: str) -> dict:
    m = MODELS[key]
    return (
        {"name": key}
        | {
            k: m[k]
            for k in (
                "layers",
                "d_model",
                "d_ff",
                "heads",
                "kv_heads",
                "d_head",
                "vocab",
                "ffn",
                "block",
                "tied_embeddings",
            )
        }
        | {"params": params(key)["total"], "source": m["source"]}
    )


def flow(obj) -> str:
    if not isinstance(obj, (dict, list)):
        return json.dumps(obj)  # a JSON scalar is YAML too (safe_dump would append a '...' end marker)
    return yaml.safe_dump(obj, default_flow_style=True, width=10**9, sort_keys=False).strip()


def write_file(path: Path, cluster: str, rows: list[dict], infeasible: list[dict], ref: dict, ref_path: str):
    used = sorted({r["model"] for r in rows + infeasible if "model" in r})
    kinds = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    header = [
        f"# GPU calibration measurements for {cluster}: written by configs/measurements/build_gpu.py",
        f"# from {Path(ref_path).name} of the shared reference; do not edit by hand. Rows: "
        + ", ".join(f"{n} {k}" for k, n in kinds.items())
        + f"; {len(infeasible)} infeasible (OOM).",
        "# Format version 2 extends configs/measurements/pope2022-tpu-v4.yaml: each row has `kind`",
        "# (latency | ttft | throughput | collective | gemm) and `source`; see `conventions`.",
    ]
    doc_head = {
        "format": "planner-measurements/2",
        "cluster": cluster,
        "source": "NVIDIA FasterTransformer and TensorRT-LLM docs, ai-dynamo/aiconfigurator kernel data, "
        "public nccl-tests runs (per row)",
        "notes": NOTES[cluster],
    }
    lines = header + [f"{k}: {flow(v)}" for k, v in doc_head.items() if k != "notes"]
    lines.append("notes: |")
    lines += ["  " + line for line in doc_head["notes"].splitlines()]
    lines.append("conventions:")
    lines += [f"  {k}: {flow(v)}" for k, v in CONVENTIONS.items()]
    lines.append("sources:")
    for sec_name, sec in ref.items():
        lines.append(f"  {sec_name}: {flow(sec['source'])}")
    lines.append("models:")
    lines += [f"  {k}: {flow(model_entry(k))}" for k in used]
    lines.append("measurements:")
    order = ("latency", "ttft", "throughput", "collective", "gemm")
    for kind in order:
        sel = [r for r in rows if r["kind"] == kind]
        if sel:
            lines.append(f"  # --- {kind} ({len(sel)} rows)")
            lines += [f"  - {flow(r)}" for r in sel]
    lines.append("infeasible:" + ("" if infeasible else " []"))
    lines += [f"  - {flow(r)}" for r in infeasible]
    text = "\n".join(lines) + "\n"
    back = yaml.safe_load(text)  # round trip: the file must load and hold every row unchanged
    assert back["measurements"] == rows_sorted(rows, order) and (back["infeasible"] or []) == infeasible
    path.write_text(text)


def rows_sorted(rows, order):
    return [r for kind in order for r in rows if r["kind"] == kind]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference", help="gpu-measurements.yaml of the shared reference")
    ap.add_argument("--out", default=str(HERE))
    a = ap.parse_args(argv)
    ref = yaml.safe_load(open(a.reference))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {c: [] for c in CLUSTERS}
    infeasible = {c: [] for c in CLUSTERS}
    ft_rows, ft_inf = fastertransformer(ref["fastertransformer_gpt_guide"])
    for part in (
        ft_rows,
        tensorrt_llm(ref["tensorrt_llm_static_batch_docs"]),
        nccl_public(ref["nccl_tests_public_runs"]),
        aiconfigurator(ref["aiconfigurator_measured_kernels"]),
    ):
        for c, rs in part.items():
            rows[c] += rs
    for c, rs in ft_inf.items():
        infeasible[c] += rs
    for c in CLUSTERS:
        write_file(out / f"{c}.yaml", c, rows[c], infeasible[c], ref, a.reference)
        counts = {}
        for r in rows[c]:
            counts[r["kind"]] = counts.get(r["kind"], 0) + 1
        print(f"{c}: {counts}, infeasible {len(infeasible[c])}")


if __name__ == "__main__":
    main()
