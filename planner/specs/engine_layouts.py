"""What each serving engine can run, in the planner's layout names (issue 28): the (FFN, attention)
pairs, expert layouts, KV-cache and weight formats its launch flags express. `--emit` runs, for a
row the engine cannot run, the runnable layout the cost model predicts fastest that fits in HBM
(planner.commands.emit.choose.runnable), `nearest` where none fits; `--runnable-on` keeps the
search to these.

One table, read the same way for every engine; how each engine spells a layout is in
planner.commands.emit. The rules, in the planner's words:

- tensor parallelism over a worker's GPUs is FFN `ws1d` with attention `heads`;
- DP attention (the batch split over attention ranks) is attention `batch`; with the dense FFN
  replicated beside it that is FFN `dp` (vLLM `--data-parallel-size`, SGLang `--enable-dp-attention
  --moe-dense-tp-size 1`, TensorRT-LLM `enable_attention_dp`), with the dense FFN tensor-parallel it
  is FFN `ws1d` (SGLang's default under `--enable-dp-attention`);
- experts expert-parallel over every GPU of the worker are `ep`, tensor-parallel `tp`, two
  overlapped micro-batches `+tbo` (vLLM `--enable-dbo`, SGLang `--enable-two-batch-overlap`);
- no engine runs the 2D weight-stationary (`ws2d`) or weight-gathered (`wg-*`) FFN on GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class EngineLayouts:
    name: str  # the --emit / --runnable-on name
    label: str  # as users name the engine
    dense: frozenset[tuple[str, str]]  # (FFN, attention) pairs it runs
    experts: frozenset[str]  # expert layouts it runs
    kv_cache: frozenset[str]  # KV-cache format labels it stores
    weights: frozenset[str]  # weight format labels it serves
    tpu: bool = False  # runs on TPU slices (else GPUs)
    nvidia_only: bool = False  # runs on NVIDIA GPUs only (TensorRT-LLM)
    fallback_dense: tuple[str, str] = ("ws1d", "heads")  # nearest (FFN, attention) for any other pair
    fallback_kv: str = "bf16"

    def reasons(self, ffn: str, attention: str, experts: str, kv_cache: str, weights: str) -> tuple[str, ...]:
        """Why this engine cannot run the layout, one line each (empty: it runs it as it is)."""
        why = []
        if (ffn, attention) not in self.dense:
            if ffn in ("ws2d", "wg-x", "wg-xy", "wg-xyz"):
                why.append(f"{self.label} has no {ffn} FFN (2D weight-stationary or weight-gathered)")
            else:
                why.append(f"{self.label} has no {attention} attention beside {ffn} FFN weights")
        if experts and experts not in self.experts:
            why.append(f"{self.label} runs experts as {', '.join(sorted(self.experts))}: not {experts}")
        if kv_cache not in self.kv_cache:
            why.append(f"{self.label} has no {kv_cache} KV cache")
        if weights not in self.weights:
            why.append(f"{self.label} serves no {weights} weights")
        return tuple(why)

    def runs(self, ffn: str, attention: str, experts: str, kv_cache: str, weights: str) -> bool:
        return not self.reasons(ffn, attention, experts, kv_cache, weights)

    def nearest(self, ffn: str, attention: str, experts: str, kv_cache: str) -> tuple[str, str, str, str]:
        """(FFN, attention, experts, KV cache) of a layout it runs, without the cost model (`--emit`'s
        fallback where no runnable layout fits in HBM; its KV format everywhere): the same where it can,
        else its tensor-parallel layout, expert parallelism over the whole worker (kept overlapped
        where it overlaps), and its nearest KV format."""
        if (ffn, attention) not in self.dense:
            ffn, attention = self.fallback_dense
        if experts and experts not in self.experts:
            overlapped = experts.endswith("+tbo") and "ep+tbo" in self.experts
            experts = "ep+tbo" if overlapped else ("ep" if "ep" in self.experts else "tp")
        if kv_cache not in self.kv_cache:
            kv_cache = self.fallback_kv if self.fallback_kv in self.kv_cache else sorted(self.kv_cache)[0]
        return ffn, attention, experts, kv_cache


AMD_CHIP_WORDS = ("instinct", "amd", "mi300", "mi325", "mi355")


def is_amd(chip_name: str, cluster_name: str = "") -> bool:
    """An AMD GPU (ROCm software): the chip's or cluster's name says so (a cluster file has no
    vendor key; configs/clusters/mi300x.yaml's chip is "Instinct MI300X")."""
    names = f"{chip_name} {cluster_name}".lower()
    return any(w in names for w in AMD_CHIP_WORDS)


_GPU_KV = frozenset({"bf16", "fp8"})
# weights the GPU engines serve from a quantised checkpoint or flag: int8 and int4 weight-only
# (GPTQ/AWQ), int8 weights and activations (w8a8), fp8, and fp4 (NVFP4, on Blackwell)
_GPU_WEIGHTS = frozenset({"bf16", "fp8", "int8", "int8-w8a8", "int4", "fp4"})
ENGINE_LAYOUTS = {
    e.name: e
    for e in (
        EngineLayouts(
            name="vllm",
            label="vLLM",
            dense=frozenset({("ws1d", "heads"), ("dp", "batch")}),
            experts=frozenset({"tp", "ep", "ep+tbo"}),
            kv_cache=_GPU_KV,
            weights=_GPU_WEIGHTS,
            fallback_kv="fp8",
        ),
        EngineLayouts(
            name="sglang",
            label="SGLang",
            dense=frozenset({("ws1d", "heads"), ("ws1d", "batch"), ("dp", "batch")}),
            experts=frozenset({"tp", "ep", "ep+tbo"}),
            kv_cache=_GPU_KV,
            weights=_GPU_WEIGHTS,
            fallback_kv="fp8",
        ),
        EngineLayouts(
            name="trtllm",
            label="TensorRT-LLM",
            dense=frozenset({("ws1d", "heads"), ("dp", "batch")}),
            experts=frozenset({"tp", "ep"}),
            kv_cache=_GPU_KV,
            weights=frozenset({"bf16", "fp8", "int8", "int8-w8a8", "int4", "fp4"}),
            fallback_kv="fp8",
            nvidia_only=True,
        ),
        EngineLayouts(
            name="vllm-tpu",
            label="vLLM on TPU",
            dense=frozenset({("ws1d", "heads")}),
            experts=frozenset({"tp"}),
            kv_cache=frozenset({"bf16"}),
            weights=frozenset({"bf16", "int8"}),
            tpu=True,
        ),
        EngineLayouts(
            name="jetstream",
            label="JetStream (MaxText)",
            dense=frozenset({("ws1d", "heads")}),
            # MaxText's expert axis (ici_expert_parallelism) is a mesh axis of its own beside the tensor
            # axis: the emitted launch runs the experts tensor-parallel over the slice
            experts=frozenset({"tp"}),
            kv_cache=frozenset({"bf16", "int8"}),
            weights=frozenset({"bf16", "int8"}),
            tpu=True,
        ),
    )
}
