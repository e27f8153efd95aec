#!/usr/bin/env python3
"""GPT-2 Hugging Face folders between numpy and nabla (ctest gpt2_hf_numpy, tests/gpt2/run.sh).

  hf_numpy_check.py make <folder>    a randomly initialised GPT-2 as transformers' save_pretrained
                                     writes it (config.json, model.safetensors: float32, names with
                                     "transformer.", Conv1D weights [in, out], no lm_head.weight,
                                     metadata format=pt), plus ref.safetensors: input ids and the
                                     logits of a float64 numpy GPT-2 forward on those weights
  hf_numpy_check.py check <folder>   a folder nabla's save_pretrained wrote, read as transformers
                                     would, plus io.safetensors (ids, nabla's logits): the logits
                                     recomputed in numpy must agree

The forward is transformers' modeling_gpt2 eager path written in numpy, independently of nabla.
"""
import json
import math
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file


def make(folder):
    rng = np.random.default_rng(2026)
    L, C, H, V, P = 3, 48, 4, 101, 32
    cfg = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
           "bos_token_id": 100, "embd_pdrop": 0.1, "eos_token_id": 100, "initializer_range": 0.02,
           "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": P, "n_embd": C, "n_head": H, "n_inner": None,
           "n_layer": L, "n_positions": P, "reorder_and_upcast_attn": False, "resid_pdrop": 0.1,
           "scale_attn_by_inverse_layer_idx": False, "scale_attn_weights": True, "summary_activation": None,
           "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
           "summary_use_proj": True, "torch_dtype": "float32", "transformers_version": "4.46.0", "use_cache": True,
           "vocab_size": V}
    W = {"transformer.wte.weight": rng.normal(0, 0.5, (V, C)), "transformer.wpe.weight": rng.normal(0, 0.1, (P, C)),
         "transformer.ln_f.weight": 1 + rng.normal(0, 0.1, C), "transformer.ln_f.bias": rng.normal(0, 0.1, C)}
    for i in range(L):
        p = f"transformer.h.{i}"
        for ln in ("ln_1", "ln_2"):
            W[f"{p}.{ln}.weight"] = 1 + rng.normal(0, 0.1, C)
            W[f"{p}.{ln}.bias"] = rng.normal(0, 0.1, C)
        for name, (i_, o_) in {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C),
                               "mlp.c_proj": (4 * C, C)}.items():
            W[f"{p}.{name}.weight"] = rng.normal(0, 0.2, (i_, o_))
            W[f"{p}.{name}.bias"] = rng.normal(0, 0.1, o_)
    W = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in W.items()}
    os.makedirs(folder, exist_ok=True)
    json.dump(cfg, open(f"{folder}/config.json", "w"), indent=2)
    save_file(W, f"{folder}/model.safetensors", metadata={"format": "pt"})
    ids = rng.integers(0, V, (2, 17)).astype(np.int64)
    logits = forward(cfg, {k: v.astype(np.float64) for k, v in W.items()}, ids)
    save_file({"ids": ids, "logits": logits}, f"{folder}/ref.safetensors")
    print(f"wrote a random GPT-2 ({L} layers, {C} wide, vocab {V}) to {folder}, with numpy logits {logits.shape}")
    return 0


def forward(cfg, W, ids):
    """transformers' GPT2LMHeadModel forward (eager attention, eval mode), float64 numpy."""
    L, C, H = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
    eps = cfg["layer_norm_epsilon"]
    B, T = ids.shape
    D = C // H

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * W[p + ".weight"] + W[p + ".bias"]

    def conv1d(x, p):  # transformers' Conv1D: x @ weight + bias, weight [in, out]
        return x @ W[p + ".weight"] + W[p + ".bias"]

    def gelu_new(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][:T]
    causal = np.tril(np.ones((T, T), dtype=bool))
    for i in range(L):
        p = f"transformer.h.{i}"
        q, k, v = np.split(conv1d(ln(x, p + ".ln_1"), p + ".attn.c_attn"), 3, axis=-1)
        heads = lambda t: t.reshape(B, T, H, D).transpose(0, 2, 1, 3)
        q, k, v = heads(q), heads(k), heads(v)
        w = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)
        w = np.where(causal, w, np.finfo(np.float64).min)
        w = np.exp(w - w.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        a = (w @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x = x + conv1d(a, p + ".attn.c_proj")
        x = x + conv1d(gelu_new(conv1d(ln(x, p + ".ln_2"), p + ".mlp.c_fc")), p + ".mlp.c_proj")
    return ln(x, "transformer.ln_f") @ W["transformer.wte.weight"].T  # lm_head tied to wte


def check(folder):
    cfg = json.load(open(f"{folder}/config.json"))
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"], cfg
    with safe_open(f"{folder}/model.safetensors", framework="np") as f:
        meta = f.metadata()
    assert meta.get("format") == "pt", f"metadata {meta}: transformers refuses files without format=pt"
    W = {k: v.astype(np.float64) for k, v in load_file(f"{folder}/model.safetensors").items()}
    L, C, H = cfg["n_layer"], cfg["n_embd"], cfg["n_head"]
    inner = cfg["n_inner"] or 4 * C
    eps = cfg["layer_norm_epsilon"]
    want = {"transformer.wte.weight": (cfg["vocab_size"], C), "transformer.wpe.weight": (cfg["n_positions"], C),
            "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for i in range(L):
        p = f"transformer.h.{i}"
        want.update({f"{p}.ln_1.weight": (C,), f"{p}.ln_1.bias": (C,), f"{p}.ln_2.weight": (C,), f"{p}.ln_2.bias": (C,),
                     f"{p}.attn.c_attn.weight": (C, 3 * C), f"{p}.attn.c_attn.bias": (3 * C,),
                     f"{p}.attn.c_proj.weight": (C, C), f"{p}.attn.c_proj.bias": (C,),
                     f"{p}.mlp.c_fc.weight": (C, inner), f"{p}.mlp.c_fc.bias": (inner,),
                     f"{p}.mlp.c_proj.weight": (inner, C), f"{p}.mlp.c_proj.bias": (C,)})
    got = {k: tuple(v.shape) for k, v in W.items()}
    assert got == want, f"names/shapes differ: extra {set(got) - set(want)}, missing {set(want) - set(got)}"

    io = load_file(f"{folder}/io.safetensors")
    ids, expected = io["ids"], io["logits"].astype(np.float64)
    B, T = ids.shape
    logits = forward(cfg, W, ids)
    rel = np.abs(logits - expected).max() / np.abs(logits).max()
    print(f"nabla's save_pretrained folder {folder} read as transformers reads it: {L} layers, {C} wide, {H} heads; "
          f"logits [{B}, {T}, {logits.shape[-1]}]: max |numpy - nabla| / max |numpy| = {rel:.2e}")
    return 0 if rel < 1e-5 else 1


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    sys.exit(make(sys.argv[2]) if sys.argv[1] == "make" else check(sys.argv[2]))
