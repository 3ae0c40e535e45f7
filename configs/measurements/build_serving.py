"""Build the serving calibration set from the reference file of measured serving runs.

    python configs/measurements/build_serving.py PATH/TO/serving-measurements.yaml [--out DIR]

(the reference is ../shared/reference/serving-measurements.yaml beside a checkout; CI does not
have it, so the file this writes is committed). Writes DIR/serving.yaml (default: this
directory), read by `planner calibrate configs/measurements/serving.yaml`.

Format `planner-serving/1`: `source`, `notes`, `sources` (each reference section's `about`,
copied whole), `conventions` and `runs`. Each run has `kind`:

  steady          a closed-loop run at a fixed `concurrency` (InferenceX): cluster, model, engine,
                  image, policy, weights, kv_cache, mode (colocated | disaggregated), the layout
                  (colocated: chips, tp, ep, dp_attention; disaggregated: `prefill` and `decode`
                  pools, each chips per worker, workers, tp, ep, dp_attention), input_tokens and
                  output_tokens (nominal), output_tokens_mean_derived (Little's law, below),
                  spec_decode, and the measured medians ttft_s and tpot_s and
                  output_tok_s_per_gpu (output tokens/s over ALL the system's GPUs);
                  admission_limited: the reason, where the run is not in steady state
  max_throughput  an offline maximum-throughput run (TensorRT-LLM perf-overview, trtllm-bench):
                  cluster, model, chips, tp, weights, kv_cache, input_tokens, output_tokens,
                  output_tok_s_per_gpu

Nothing is fitted here; values are copied. Derived, and named so:
- output_tokens_mean_derived = output tokens/s (all GPUs) x mean end-to-end latency / concurrency
  (Little's law: the mean real output length; the source says it is ~0.9 of the nominal);
- output_tok_s_per_gpu of a disaggregated run = the source's derived_output_tok_s_per_gpu_all.
Assumptions, stated per run: the model preset (DeepSeek-R1-0528 has deepseek-v3's shape; Llama
3.3 70B has Llama 3.1 70B's), the KV-cache format (not recorded by InferenceX: the engines'
default for the block-FP8 checkpoint, bf16; the TensorRT-LLM ModelOpt FP8 checkpoints quantise
the KV cache to fp8), and the prefill policy (SGLang: prefill-first, its default; TensorRT-LLM:
in-flight batching of prompt tokens with decode steps under max_num_tokens, chunked).
A run is admission-limited when its median TTFT is at least ADMISSION_TTFT_S, the source's "TTFT
of tens of seconds (queueing)": the engine admits fewer requests than are in flight.
Identical rows of a table (the reference repeats a few) are kept once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CLUSTERS = {"h100": "h100-sxm", "h200": "h200-sxm", "mi300x": "mi300x"}
MODELS = {
    "deepseek-r1-0528": "deepseek-v3",
    "llama-3.3-70b-instruct": "llama-3.1-70b",
    "llama-3.1-405b-instruct": "llama-3.1-405b",
    "llama-3.1-8b-instruct": "llama-3.1-8b",
    "qwen3-235b-a22b": "qwen3-235b-a22b",
}
ENGINES = {
    "sglang": ("SGLang", "prefill-first"),
    "trt": ("TensorRT-LLM (trtllm-serve)", "chunked"),
    "dynamo-sglang": ("NVIDIA Dynamo disaggregated over SGLang", "prefill-first"),
    "dynamo-trt": ("NVIDIA Dynamo disaggregated over TensorRT-LLM", "chunked"),
}
ADMISSION_TTFT_S = 10.0
INFERENCEX, TRT = "inferencex_deepseek_r1", "tensorrt_llm_max_throughput"


def sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def _pool(p: dict, chips: int | None = None) -> dict:
    out = {"tp": p["tp"], "ep": p.get("ep", 1), "dp_attention": bool(p.get("dp_attn", False))}
    if chips is not None:
        out = {"chips": chips, **out}
    return out


def steady(row: dict) -> dict:
    engine, policy = ENGINES[row["framework"]]
    disagg = row["mode"] == "disagg"
    total = row["derived_output_tok_s_total"]
    out = {
        "kind": "steady",
        "name": f"{row['framework']} {row['gpu']} {row['spec_decode']} {row['isl']}/{row['osl']} "
        f"C{row['concurrency']} {row['num_gpus']} GPUs",
        "source": f"{INFERENCEX} run {row['run']} ({row['date']})",
        "engine": engine,
        "framework": row["framework"],
        "image": row["image"],
        "policy": policy,
        "cluster": CLUSTERS[row["gpu"]],
        "model": MODELS[row["model"]],
        "model_published": row["model"],
        "weights": row["precision"],
        "kv_cache": "bf16",
        "mode": "disaggregated" if disagg else "colocated",
        "gpus": row["num_gpus"],
    }
    if disagg:
        for phase in ("prefill", "decode"):
            p = row[phase]
            out[phase] = {"chips": p["gpus"] // p["workers"], "workers": p["workers"], **_pool(p)}
    else:
        out.update(_pool(row["parallel"], chips=row["num_gpus"]))
    out.update(
        {
            "input_tokens": row["isl"],
            "output_tokens": row["osl"],
            "output_tokens_mean_derived": round(total * row["mean_e2el_s"] / row["concurrency"]),
            "concurrency": row["concurrency"],
            "spec_decode": row["spec_decode"],
            "ttft_s": row["median_ttft_s"],
            "tpot_s": row["median_tpot_s"],
            "output_tok_s_per_gpu": row["derived_output_tok_s_per_gpu_all"] if disagg else row["output_tput_per_gpu"],
        }
    )
    if row["median_ttft_s"] >= ADMISSION_TTFT_S:
        out["admission_limited"] = (
            f"median TTFT {row['median_ttft_s']:.3g} s, tens of seconds: requests wait "
            "for admission (the source's note), not steady state"
        )
    return out


def max_throughput(row: dict) -> dict:
    return {
        "kind": "max_throughput",
        "name": f"TRT-LLM {row['model']} {row['gpu']} tp{row['parallel']['tp']} {row['isl']}/{row['osl']}",
        "source": TRT,
        "engine": "TensorRT-LLM v1.0 trtllm-bench (offline, all requests queued)",
        "policy": "chunked",
        "cluster": CLUSTERS[row["gpu"]],
        "model": MODELS[row["model"]],
        "model_published": row["model"],
        "weights": row["precision"],
        "kv_cache": "fp8",
        "chips": row["num_gpus"],
        "tp": row["parallel"]["tp"],
        "input_tokens": row["isl"],
        "output_tokens": row["osl"],
        "output_tok_s_per_gpu": sig(row["output_tok_s_total"] / row["num_gpus"]),
    }


def build(reference: dict) -> dict:
    runs = [steady(r) for r in reference[INFERENCEX]["rows"]]
    seen = []
    for r in reference[TRT]["rows"]:
        if r not in seen:
            seen.append(r)
    runs += [max_throughput(r) for r in seen]
    return {
        "format": "planner-serving/1",
        "source": "SemiAnalysis InferenceX nightly serving runs (DeepSeek-R1-0528 on H200 and MI300X) and the "
        "TensorRT-LLM perf-overview maximum-throughput tables (H100, H200), via the shared reference",
        "notes": "Measured serving runs of current engines. `planner calibrate` fits the engine profiles "
        "(configs/engines/) to the TPOT of the steady H200 runs without MTP, then MTP's mean accepted length; "
        "TTFT and output tokens/s are not fitted. Admission-limited runs are listed apart. Runs with DP "
        "attention run FFN dp with attention batch (the dense weights replicated, as the engines do).",
        "conventions": {
            "times": "seconds; ttft_s and tpot_s are the run's medians",
            "output_tok_s_per_gpu": "output tokens/s over all the system's GPUs (disaggregated: prefill and "
            "decode GPUs)",
            "output_tokens_mean_derived": "Little's law: output tokens/s x mean end-to-end latency / concurrency",
            "chips": "GPUs per worker (one tensor-parallel group); workers: replicas of it",
            "admission_ttft_s": ADMISSION_TTFT_S,
        },
        "sources": {INFERENCEX: {"about": reference[INFERENCEX]["about"]}, TRT: {"about": reference[TRT]["about"]}},
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference")
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args()
    data = build(yaml.safe_load(Path(args.reference).read_text(encoding="utf-8")))
    steady_runs = [r for r in data["runs"] if r["kind"] == "steady"]
    header = (
        f"# Serving calibration set: written by configs/measurements/build_serving.py from\n"
        f"# serving-measurements.yaml of the shared reference; do not edit by hand. Runs: {len(steady_runs)} "
        f"steady, {len(data['runs']) - len(steady_runs)} max_throughput.\n"
    )
    body = yaml.safe_dump(data, sort_keys=False, width=120, allow_unicode=True)
    (Path(args.out) / "serving.yaml").write_text(header + body, encoding="utf-8")


if __name__ == "__main__":
    main()
