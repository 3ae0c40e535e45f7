"""Shapes of every model referenced by the GPU measurements, with citations.

One dict per model, in the planner's model-config keys (configs/models/*.yaml): layers, d_model,
d_ff, heads, kv_heads, d_head, vocab, ffn (gelu|swiglu), block (parallel|serial),
tied_embeddings, plus `aliases` (the names the reference tables use), `notes` and `source`.
`build_gpu.py` writes them into the `models:` mapping of each GPU measurements file.
"""

from __future__ import annotations

REF = "/work/shared/reference/gpu-measurements.yaml"

MODELS: dict[str, dict] = {
    # ---- FasterTransformer GPT guide (Megatron-style GPT, learned positions, MHA, GeLU) ----
    "gpt-350m": dict(
        aliases=["GPT 350M"],
        layers=24,
        d_model=1024,
        d_ff=4096,
        heads=16,
        kv_heads=16,
        d_head=64,
        vocab=51200,
        ffn="gelu",
        block="serial",
        tied_embeddings=True,
        source="NVIDIA/FasterTransformer docs/gpt_guide.md @bc4139e6 (Performance: head_num 16, "
        "size_per_head 64, num_layers 24, vocab 51200); d_ff = 4*d_model is the Megatron-LM "
        "default (ffn_hidden_size = 4*hidden_size), not stated by the guide",
        notes="d_model derived as head_num*size_per_head; learned position table (2048 x d_model, "
        "a lookup) not counted",
    ),
    "gpt-1.3b": dict(
        aliases=["GPT 1.3B"],
        layers=24,
        d_model=2048,
        d_ff=8192,
        heads=32,
        kv_heads=32,
        d_head=64,
        vocab=51200,
        ffn="gelu",
        block="serial",
        tied_embeddings=True,
        source="NVIDIA/FasterTransformer docs/gpt_guide.md @bc4139e6 (head_num 32, size_per_head 64, "
        "num_layers 24, vocab 51200); d_ff = 4*d_model assumed (Megatron default)",
        notes="d_model derived",
    ),
    "gpt-6.7b": dict(
        aliases=["GPT 6.7B"],
        layers=32,
        d_model=4096,
        d_ff=16384,
        heads=32,
        kv_heads=32,
        d_head=128,
        vocab=51200,
        ffn="gelu",
        block="serial",
        tied_embeddings=True,
        source="NVIDIA/FasterTransformer docs/gpt_guide.md @bc4139e6 (head_num 32, size_per_head 128, "
        "num_layers 32, vocab 51200); d_ff = 4*d_model assumed (Megatron default)",
        notes="d_model derived",
    ),
    "gpt-20b": dict(
        aliases=["GPT 20B"],
        layers=44,
        d_model=6144,
        d_ff=24576,
        heads=48,
        kv_heads=48,
        d_head=128,
        vocab=51200,
        ffn="gelu",
        block="serial",
        tied_embeddings=True,
        source="NVIDIA/FasterTransformer docs/gpt_guide.md @bc4139e6 (head_num 48, size_per_head 128, "
        "num_layers 44, vocab 51200); d_ff = 4*d_model assumed (Megatron default)",
        notes="d_model derived; 12*L*E^2 = 19.9e9 layer parameters, consistent with the name",
    ),
    # ---- TensorRT-LLM static-batch tables ----
    "gpt-j-6b": dict(
        aliases=["GPT-J 6B"],
        layers=28,
        d_model=4096,
        d_ff=16384,
        heads=16,
        kv_heads=16,
        d_head=256,
        vocab=50400,
        ffn="gelu",
        block="parallel",
        tied_embeddings=False,
        source="kingoflolz/mesh-transformer-jax configs/6B_roto_256.json @12fe80b6 (layers 28, d_model "
        "4096, n_heads 16, n_vocab 50400, rotary dims 64); HF EleutherAI/gpt-j-6b config.json "
        "(n_inner null = 4*n_embd, tie_word_embeddings false); reference file notes",
        notes="parallel attention+FFN off one LayerNorm; separate lm_head (with bias); rotary on 64 of 256 head dims",
    ),
    "llama-2-7b": dict(
        aliases=["LLaMA 7B"],
        layers=32,
        d_model=4096,
        d_ff=11008,
        heads=32,
        kv_heads=32,
        d_head=128,
        vocab=32000,
        ffn="swiglu",
        block="serial",
        tied_embeddings=False,
        source="reference file notes (TensorRT-LLM v0.9 build configs: Llama-2-7B, 32 layers, 4096 "
        "hidden, 11008 ffn, 32 heads, MHA); HF meta-llama/Llama-2-7b-hf config.json (vocab 32000)",
        notes="TensorRT-LLM docs call it 'LLaMA 7B'",
    ),
    "llama-2-13b": dict(
        aliases=["llama_13b"],
        layers=40,
        d_model=5120,
        d_ff=13824,
        heads=40,
        kv_heads=40,
        d_head=128,
        vocab=32000,
        ffn="swiglu",
        block="serial",
        tied_embeddings=False,
        source="NVIDIA/TensorRT-LLM docs/source/blogs/H200launch.md @1555478c ('Llama2-13B'); shape "
        "from HF meta-llama/Llama-2-13b-hf config.json (hidden 5120, intermediate 13824, 40 "
        "layers, 40 heads, 40 KV heads, vocab 32000); Touvron et al. 2023 (LLaMA) Table 2 "
        "(13B: dim 5120, 40 heads, 40 layers)",
        notes="not given by the reference file; shape from the HF config",
    ),
    "mistral-7b": dict(
        aliases=["Mistral 7B"],
        layers=32,
        d_model=4096,
        d_ff=14336,
        heads=32,
        kv_heads=8,
        d_head=128,
        vocab=32000,
        ffn="swiglu",
        block="serial",
        tied_embeddings=False,
        source="Jiang et al. 2023, Mistral 7B (arXiv 2310.06825) Table 1; HF mistralai/Mistral-7B-v0.1 "
        "config.json (vocab 32000, tie_word_embeddings false, sliding_window 4096); reference "
        "file notes",
        notes="sliding-window attention (4096) has no effect here: the longest context in the tables is "
        "2048+2048 = 4096",
    ),
}


def model_of(name: str) -> str:
    """Model key for a reference-table name (e.g. 'GPT 20B', 'LLaMA 7B')."""
    for key, m in MODELS.items():
        if name == key or name in m["aliases"]:
            return key
    raise KeyError(name)


def params(key: str) -> dict[str, float]:
    """Parameter counts: per layer (matmul weights), embedding, lm head, total."""
    m = MODELS[key]
    E, F, H, K, dh, V, L = (m[k] for k in ("d_model", "d_ff", "heads", "kv_heads", "d_head", "vocab", "layers"))
    attn = E * H * dh * 2 + E * K * dh * 2  # Q, O and K, V
    ffn = (3 if m["ffn"] == "swiglu" else 2) * E * F
    layer = attn + ffn
    emb = V * E
    head = 0 if m["tied_embeddings"] else V * E  # a separate output matrix
    return dict(
        layer=layer, layers=L * layer, embedding=emb, head=head, total=L * layer + emb + head, matmul=L * layer + V * E
    )


def kv_bytes_per_token(key: str, bytes_per_element: float = 2.0) -> float:
    m = MODELS[key]
    return 2 * m["layers"] * m["kv_heads"] * m["d_head"] * bytes_per_element


def layer_gemms(key: str, tp: int = 1) -> list[tuple[int, int]]:
    """(n, k) of the weight matmuls of one layer on one of `tp` GPUs (Megatron 1D tensor parallel:
    column-parallel QKV and FFN-in, row-parallel O and FFN-out)."""
    m = MODELS[key]
    E, F, H, K, dh = (m[k] for k in ("d_model", "d_ff", "heads", "kv_heads", "d_head"))
    qkv = ((H + 2 * K) * dh // tp, E)
    o = (E, H * dh // tp)
    up = ((2 if m["ffn"] == "swiglu" else 1) * F // tp, E)
    down = (E, F // tp)
    return [qkv, o, up, down]
