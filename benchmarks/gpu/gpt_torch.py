"""PyTorch twin of `gpt train` on a GPU, for gpu-check's GPT-2 step: the same GPT-2 (pre-LN
blocks, tanh GELU, tied lm_head, transformers' initialisation) with the attention through
F.scaled_dot_product_attention(is_causal=True), the same data (characters of a text file, random
windows of block_size + 1), AdamW lr 1e-3 betas (0.9, 0.99) weight decay 0.1 on matrices, grad
clipping at 1.0, no dropout; eager mode; --amp bf16 wraps forward and loss in
torch.autocast("cuda", torch.bfloat16). Prints, like the example, one line per eval interval:

    step S: train loss L, ... N tok/s

(the tokens/s of the steps since the previous line, each step waited for at the line).

    python3 benchmarks/gpu/gpt_torch.py --data input.txt [--n-layer 12 --n-head 12 --n-embd 768]
        [--block-size 1024] [--batch-size 8] [--max-steps 40] [--eval-interval 10] [--amp bf16]
"""
import argparse
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, h):
        super().__init__()
        self.h = h
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, 2)
        q, k, v = (z.view(b, t, self.h, c // self.h).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab, block, c, h, layers):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, c), nn.Embedding(block, c)
        self.h = nn.ModuleList(Block(c, h) for _ in range(layers))
        self.ln_f = nn.LayerNorm(c)
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for b in self.h:
            x = b(x)
        return F.linear(self.ln_f(x), self.wte.weight)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--n-layer", type=int, default=12)
    p.add_argument("--n-head", type=int, default=12)
    p.add_argument("--n-embd", type=int, default=768)
    p.add_argument("--block-size", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-steps", type=int, default=40)
    p.add_argument("--eval-interval", type=int, default=10)
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    a = p.parse_args()
    dev = torch.device("cuda")
    text = open(a.data, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    torch.manual_seed(1)
    model = GPT(len(chars), a.block_size, a.n_embd, a.n_head, a.n_layer).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    params = sum(p.numel() for p in model.parameters())
    print(f"PyTorch {torch.__version__} GPT {a.n_layer} layers, {a.n_embd} wide, context {a.block_size}, "
          f"vocab {len(chars)}: {params / 1e6:.2f}M parameters; batch {a.batch_size}; amp {a.amp}")
    g = torch.Generator().manual_seed(1)
    t0, tokens = time.time(), 0
    for step in range(1, a.max_steps + 1):
        ix = torch.randint(len(data) - a.block_size - 1, (a.batch_size,), generator=g)
        x = torch.stack([data[i:i + a.block_size] for i in ix]).to(dev, non_blocking=True)
        y = torch.stack([data[i + 1:i + 1 + a.block_size] for i in ix]).to(dev, non_blocking=True)
        with torch.autocast("cuda", torch.bfloat16, enabled=a.amp == "bf16"):
            logits = model(x)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += a.batch_size * a.block_size
        if step % a.eval_interval == 0:
            torch.cuda.synchronize()
            dt = time.time() - t0
            print(f"step {step}: train loss {loss.item():.4f}, {tokens / dt:.0f} tok/s; "
                  f"peak GPU memory {torch.cuda.max_memory_allocated() >> 20} MiB")
            t0, tokens = time.time(), 0


if __name__ == "__main__":
    main()
