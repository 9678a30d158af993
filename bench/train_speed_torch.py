#!/usr/bin/python3
"""train_speed_torch.py: PyTorch eager's training speed on tutor's benchmark model, the
anchor that tutor's own training step is timed against (docs/reference.md).

The model is an mBART-style encoder-decoder (pre-LN, final encoder/decoder LayerNorm,
sqrt(d) embedding scale, learned positions, exact GELU, tied output embedding), float32,
d_model 256, 4+4 layers, 4 heads, FFN 1024, vocabulary 8000; batches of 16 random
sequences, source 128 and target 32 tokens, no padding, no dropout, AdamW.

  --serve          for a C driver that alternates steps with tutor's: prints `ready`, then
                   for each stdin line `step` runs one step and prints its seconds (%.6f);
                   `quit` (or end of input) exits.
  --standalone N   2 warm-up steps + N timed ones; prints the median step and target
                   tokens/s.
  --arch nn        the same sizes built from torch.nn.Transformer, for comparison.
  --threads N      torch's intra-op (OpenMP) threads and OpenBLAS's threads (default 2).

OpenMP workers wait passively (OMP_WAIT_POLICY=PASSIVE unless set): Debian's torch runs
matrix products on OpenBLAS's own pthreads, and spinning OpenMP workers fight them for the
two cores (measured: 3-4x slower steps under load with the default policy).
"""

import argparse
import math
import os
import statistics
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", action="store_true")
    mode.add_argument("--standalone", type=int, metavar="N")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", choices=("own", "nn"), default="own",
                    help="own: the model above; nn: built from torch.nn.Transformer")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


if __name__ == "__main__":
    # The thread runtimes read these when torch loads them, so they are set before import.
    ARGS = parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

VOCAB, D_MODEL, LAYERS, HEADS, FFN = 8000, 256, 4, 4, 1024
BATCH, SRC_LEN, TGT_LEN = 16, 128, 32
PAD, START = 1, 2


class Attention(nn.Module):
    """Multi-head attention with fused projections (q|k|v for self-attention, k|v for
    cross-attention), the same mathematics as separate q/k/v projections. Activations are
    sequence-first [T, B, d], as in nn.MultiheadAttention: splitting heads is then a view,
    not a copy."""

    def __init__(self, d, heads, cross):
        super().__init__()
        self.heads, self.head_dim, self.cross = heads, d // heads, cross
        if cross:
            self.q = nn.Linear(d, d)
            self.kv = nn.Linear(d, 2 * d)
        else:
            self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)

    def _split(self, x):   # [T, B, d] -> [B*H, T, hd] (a strided view, no copy)
        t, b, _ = x.shape
        return x.reshape(t, b * self.heads, self.head_dim).transpose(0, 1)

    def forward(self, x, memory=None, mask=None):
        t, b, d = x.shape
        if self.cross:
            q = self.q(x)
            k, v = self.kv(memory).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = self._split(q), self._split(k), self._split(v)
        scale = self.head_dim ** -0.5
        if mask is None:
            w = torch.bmm(q * scale, k.transpose(1, 2))
        else:   # additive mask fused into the product
            w = torch.baddbmm(mask.expand(q.shape[0], -1, -1), q, k.transpose(1, 2),
                              alpha=scale)
        o = torch.bmm(F.softmax(w, dim=-1), v)
        return self.out(o.transpose(0, 1).reshape(t, b, d))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(d), Attention(d, heads, cross=False)
        self.ln2, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, h):
        h = h + self.attn(self.ln1(h))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


class DecoderLayer(nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(d), Attention(d, heads, cross=False)
        self.ln2, self.cross_attn = nn.LayerNorm(d), Attention(d, heads, cross=True)
        self.ln3, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, h, memory, causal):
        h = h + self.self_attn(self.ln1(h), mask=causal)
        h = h + self.cross_attn(self.ln2(h), memory=memory)
        return h + self.fc2(F.gelu(self.fc1(self.ln3(h))))


class MBartStyle(nn.Module):
    """Source ids [B, S], decoder ids [B, T] -> logits [B, T, V] (inside: [T, B, d])."""

    def __init__(self, arch):
        super().__init__()
        d = D_MODEL
        self.arch = arch
        self.embed_scale = math.sqrt(d)
        self.shared = nn.Embedding(VOCAB, d)
        self.enc_pos = nn.Embedding(SRC_LEN + 2, d)
        self.dec_pos = nn.Embedding(TGT_LEN + 2, d)
        self.enc_ln_embed, self.dec_ln_embed = nn.LayerNorm(d), nn.LayerNorm(d)
        if arch == "own":
            self.enc = nn.ModuleList(EncoderLayer(d, HEADS, FFN) for _ in range(LAYERS))
            self.dec = nn.ModuleList(DecoderLayer(d, HEADS, FFN) for _ in range(LAYERS))
            self.enc_ln, self.dec_ln = nn.LayerNorm(d), nn.LayerNorm(d)
        else:   # torch.nn.Transformer adds the final encoder/decoder LayerNorms itself
            self.transformer = nn.Transformer(
                d_model=d, nhead=HEADS, num_encoder_layers=LAYERS, num_decoder_layers=LAYERS,
                dim_feedforward=FFN, dropout=0.0, activation="gelu", batch_first=False,
                norm_first=True)
        self.final_logits_bias = nn.Parameter(torch.zeros(VOCAB))
        causal = torch.full((TGT_LEN, TGT_LEN), float("-inf")).triu(1)
        self.register_buffer("causal", causal)
        nn.init.normal_(self.shared.weight, std=0.02)

    def _embed(self, ids, pos, ln):   # ids [B, T] -> [T, B, d]
        positions = torch.arange(ids.shape[1], device=ids.device) + 2
        x = self.shared(ids.t()) * self.embed_scale + pos(positions)[:, None]
        return ln(x)

    def forward(self, src, dec_in):
        h = self._embed(src, self.enc_pos, self.enc_ln_embed)
        y = self._embed(dec_in, self.dec_pos, self.dec_ln_embed)
        if self.arch == "own":
            for layer in self.enc:
                h = layer(h)
            memory = self.enc_ln(h)
            for layer in self.dec:
                y = layer(y, memory, self.causal)
            y = self.dec_ln(y).transpose(0, 1)
        else:
            y = self.transformer(h, y, tgt_mask=self.causal).transpose(0, 1)
        return F.linear(y, self.shared.weight, self.final_logits_bias)


def make_optimizer(model):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    kw = {}
    if "foreach" in torch.optim.AdamW.__init__.__code__.co_varnames:
        kw["foreach"] = True
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=1e-4, betas=(0.9, 0.999), eps=1e-8, **kw)


class Trainer:
    def __init__(self, arch, seed):
        torch.manual_seed(seed)
        self.model = MBartStyle(arch)
        self.model.train()
        self.opt = make_optimizer(self.model)
        self.src = torch.randint(4, VOCAB, (BATCH, SRC_LEN))
        self.labels = torch.randint(4, VOCAB, (BATCH, TGT_LEN))
        self.dec_in = torch.cat([torch.full((BATCH, 1), START), self.labels[:, :-1]], dim=1)

    def step(self):
        """One training step; returns (seconds, loss)."""
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(self.src, self.dec_in)
        loss = F.cross_entropy(logits.view(-1, VOCAB), self.labels.view(-1))
        loss.backward()
        self.opt.step()
        return time.perf_counter() - t0, float(loss)


def serve(trainer):
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "step":
            seconds, _ = trainer.step()
            print(f"{seconds:.6f}", flush=True)
        elif cmd == "quit":
            break
        elif cmd:
            print(f"train_speed_torch.py: unknown command {cmd!r}", file=sys.stderr)
            return 1
    return 0


def standalone(trainer, n, arch, threads):
    n_params = sum(p.numel() for p in trainer.model.parameters())
    for _ in range(2):
        trainer.step()
    times, losses = [], []
    cpu0 = time.process_time()
    for _ in range(n):
        seconds, loss = trainer.step()
        times.append(seconds)
        losses.append(loss)
    # CPU seconds per step over all threads: on a machine shared with other work, the wall
    # time says how loaded it was, this says how much work a step is.
    cpu_per_step = (time.process_time() - cpu0) / n
    median = statistics.median(times)
    print(f"arch {arch}  params {n_params}  threads {threads}  steps {n}  "
          f"median step {median:.3f} s  (min {min(times):.3f}, max {max(times):.3f})  "
          f"cpu {cpu_per_step:.3f} s/step  loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    print(f"target tokens/s {BATCH * TGT_LEN / median:.1f}  "
          f"(source+target tokens/s {BATCH * (SRC_LEN + TGT_LEN) / median:.1f})")
    return 0


def main(args):
    torch.set_num_threads(args.threads)
    trainer = Trainer(args.arch, args.seed)
    if args.serve:
        return serve(trainer)
    return standalone(trainer, args.standalone, args.arch, args.threads)


if __name__ == "__main__":
    sys.exit(main(ARGS))
