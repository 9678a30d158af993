#!/usr/bin/python3
"""decode_speed_torch.py: PyTorch eager's generation speed on tutor's benchmark model (the
one in train_speed_torch.py), the anchor that tutor's decoding is timed against.

Greedy and beam search over a batch of random sources, with what a fast decoder does:
the source is encoded once, cross-attention keys/values are computed once per source,
self-attention keys/values are cached (one preallocated [N, H, T, hd] buffer per layer,
reordered by beam origin each step, as HF's _reorder_cache does). Every sequence generates
exactly --new tokens (random weights: no EOS handling, no length penalty).

  --standalone     1 warm-up + --repeat timed runs of greedy and of beam-4; prints
                   generated tokens/s (batch * new / median seconds; a beam counts once).
  --serve          prints `ready`; each stdin line `greedy` or `beam` runs one decode of
                   the batch and prints its seconds (%.6f); `quit` exits.
"""

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--serve", action="store_true")
    mode.add_argument("--standalone", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=128)
    ap.add_argument("--new", type=int, default=32, help="tokens generated per sequence")
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


if __name__ == "__main__":
    # Read by the thread runtimes when torch loads them; see train_speed_torch.py.
    ARGS = parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import train_speed_torch as ts  # noqa: E402


class Decoder:
    """Incremental decoding with the weights of a ts.MBartStyle (arch "own")."""

    def __init__(self, model, max_new):
        self.m, self.max_new = model, max_new
        self.heads, self.hd = ts.HEADS, ts.D_MODEL // ts.HEADS

    def _heads(self, x):   # [N, T, d] -> [N, H, T, hd]
        n, t, _ = x.shape
        return x.view(n, t, self.heads, self.hd).transpose(1, 2)

    def start(self, src, beams):
        """Encodes src [B, S] once; cross keys/values for B * beams rows; empty caches."""
        m = self.m
        h = m._embed(src, m.enc_pos, m.enc_ln_embed)      # [S, B, d]
        for layer in m.enc:
            h = layer(h)
        memory = m.enc_ln(h).transpose(0, 1).repeat_interleave(beams, dim=0)   # [N, S, d]
        n = memory.shape[0]
        self.cross, self.cache = [], []
        for layer in m.dec:
            k, v = layer.cross_attn.kv(memory).chunk(2, dim=-1)
            self.cross.append((self._heads(k).contiguous(), self._heads(v).contiguous()))
            shape = (n, self.heads, self.max_new, self.hd)
            self.cache.append((torch.empty(shape), torch.empty(shape)))

    def step(self, tokens, t):
        """tokens [N] at position t -> logits [N, V]."""
        m = self.m
        scale = self.hd ** -0.5
        pos = torch.tensor([t + 2])
        y = m.dec_ln_embed(m.shared(tokens)[:, None] * m.embed_scale + m.dec_pos(pos))
        for layer, (kc, vc), (ks, vs) in zip(m.dec, self.cross, self.cache):
            q, k, v = layer.self_attn.qkv(layer.ln1(y)).chunk(3, dim=-1)
            ks[:, :, t:t + 1] = self._heads(k)
            vs[:, :, t:t + 1] = self._heads(v)
            w = torch.matmul(self._heads(q), ks[:, :, :t + 1].transpose(-1, -2)) * scale
            o = torch.matmul(F.softmax(w, dim=-1), vs[:, :, :t + 1])
            y = y + layer.self_attn.out(o.transpose(1, 2).reshape(y.shape))
            q = self._heads(layer.cross_attn.q(layer.ln2(y)))
            w = torch.matmul(q, kc.transpose(-1, -2)) * scale
            o = torch.matmul(F.softmax(w, dim=-1), vc)
            y = y + layer.cross_attn.out(o.transpose(1, 2).reshape(y.shape))
            y = y + layer.fc2(F.gelu(layer.fc1(layer.ln3(y))))
        y = m.dec_ln(y[:, 0])
        return F.linear(y, m.shared.weight, m.final_logits_bias)

    def reorder(self, origin):
        for i, (ks, vs) in enumerate(self.cache):
            self.cache[i] = (ks.index_select(0, origin), vs.index_select(0, origin))


@torch.no_grad()
def greedy(dec, src, n_new):
    dec.start(src, 1)
    tokens = torch.full((src.shape[0],), ts.START)
    out = []
    for t in range(n_new):
        tokens = dec.step(tokens, t).argmax(dim=-1)
        out.append(tokens)
    return torch.stack(out, dim=1)


@torch.no_grad()
def beam_search(dec, src, n_new, beams):
    b = src.shape[0]
    dec.start(src, beams)
    scores = torch.full((b, beams), float("-inf"))
    scores[:, 0] = 0.0       # all beams start identical: expand only the first
    tokens = torch.full((b * beams,), ts.START)
    history = torch.empty((b * beams, 0), dtype=torch.long)
    base = (torch.arange(b) * beams)[:, None]
    for t in range(n_new):
        logp = F.log_softmax(dec.step(tokens, t), dim=-1).view(b, beams, -1)
        vocab = logp.shape[-1]
        scores, idx = (scores[:, :, None] + logp).view(b, -1).topk(beams, dim=-1)
        origin = (base + idx // vocab).view(-1)
        tokens = (idx % vocab).view(-1)
        history = torch.cat([history.index_select(0, origin), tokens[:, None]], dim=1)
        dec.reorder(origin)
    best = scores.argmax(dim=-1) + base[:, 0]
    return history.index_select(0, best)


def main(args):
    if not 1 <= args.src_len <= ts.SRC_LEN or not 1 <= args.new <= ts.TGT_LEN:
        print(f"decode_speed_torch.py: --src-len must be 1..{ts.SRC_LEN}, --new 1..{ts.TGT_LEN} "
              "(the model's position tables)", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = ts.MBartStyle("own").eval()
    dec = Decoder(model, args.new)
    src = torch.randint(4, ts.VOCAB, (args.batch, ts.SRC_LEN))[:, :args.src_len]

    def run(kind):
        t0 = time.perf_counter()
        if kind == "greedy":
            greedy(dec, src, args.new)
        else:
            beam_search(dec, src, args.new, args.beams)
        return time.perf_counter() - t0

    if args.serve:
        print("ready", flush=True)
        for line in sys.stdin:
            cmd = line.strip()
            if cmd in ("greedy", "beam"):
                print(f"{run(cmd):.6f}", flush=True)
            elif cmd == "quit":
                break
            elif cmd:
                print(f"decode_speed_torch.py: unknown command {cmd!r}", file=sys.stderr)
                return 1
        return 0
    for kind in ("greedy", "beam"):
        run(kind)
        times = [run(kind) for _ in range(args.repeat)]
        med = statistics.median(times)
        label = "greedy" if kind == "greedy" else f"beam-{args.beams}"
        print(f"{label}: batch {args.batch} x {args.new} new tokens (source {args.src_len}), "
              f"threads {args.threads}: median {med:.3f} s, "
              f"{args.batch * args.new / med:.1f} generated tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
