#!/usr/bin/python3
"""decode_speed_torch.py: PyTorch eager generation with a key/value cache, on the weights of a
tutor/Hugging Face model directory: the anchor that bench/decode-speed.c times tutor against.

Written as a user who wants fast eager decoding would write it, from the model's safetensors:
the source is encoded once; cross-attention keys/values are computed once per source (beams
broadcast over them); self-attention keys/values live in preallocated [N, H, T, hd] tensors per
layer, reordered with index_select after each beam step as Hugging Face's _reorder_cache does;
q|k|v (and cross k|v) projections are fused into one matrix each. Every sequence gets exactly
--new tokens: </s> is suppressed, as min_new_tokens does.

  --serve   prints `ready`; each stdin line `greedy` or `beam` decodes the sources once and
            prints `SECONDS TOKENS...` (the best hypothesis of each source, flattened);
            `encode` (encoder-decoders) times the encoder and cross keys/values alone and
            prints `SECONDS`; `quit` exits.
Sources: --sources FILE, a JSON list of token lists (all the same length). Encoder-decoder
models (BART / mBART layout) and GPT-2 (prompt = the source, batch of any size).
"""

import argparse
import json
import math
import os
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve", action="store_true", required=True)
    ap.add_argument("--model", required=True, help="model directory (config.json, model.safetensors)")
    ap.add_argument("--sources", required=True, help="JSON list of token lists")
    ap.add_argument("--new", type=int, default=32, help="tokens generated per sequence")
    ap.add_argument("--beams", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args(argv)


if __name__ == "__main__":
    # Read by the thread runtimes when torch loads them (see train_speed_torch.py).
    ARGS = parse_args()
    os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from torch_ref import st_read  # noqa: E402


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class EncDec:
    """BART (post-LN) / mBART (pre-LN) generation with fused projections and caches."""

    def __init__(self, cfg, t):
        self.d = cfg["d_model"]
        self.heads = cfg["decoder_attention_heads"]
        self.enc_heads = cfg["encoder_attention_heads"]
        self.pre_ln = cfg["model_type"] == "mbart"
        self.emb_scale = math.sqrt(self.d) if cfg.get("scale_embedding") else 1.0
        self.act = gelu_tanh if cfg.get("activation_function") == "gelu_new" else F.gelu
        self.eos = cfg.get("eos_token_id", 2)
        self.start = cfg.get("decoder_start_token_id", 2)
        self.shared = t["model.shared.weight"]
        self.vocab = self.shared.shape[0]
        self.bias = t["final_logits_bias"].view(-1) if "final_logits_bias" in t else torch.zeros(self.vocab)

        def ln(name):
            return (t[name + ".weight"], t[name + ".bias"])

        def lin(name):
            return (t[name + ".weight"], t[name + ".bias"])

        def fused(prefix, names):
            return (torch.cat([t[f"{prefix}.{n}.weight"] for n in names]).contiguous(),
                    torch.cat([t[f"{prefix}.{n}.bias"] for n in names]).contiguous())

        self.side = {}
        for side, n in (("encoder", cfg["encoder_layers"]), ("decoder", cfg["decoder_layers"])):
            layers = []
            for i in range(n):
                p = f"model.{side}.layers.{i}"
                lay = {"qkv": fused(p + ".self_attn", ("q_proj", "k_proj", "v_proj")),
                       "out": lin(p + ".self_attn.out_proj"), "ln_self": ln(p + ".self_attn_layer_norm"),
                       "fc1": lin(p + ".fc1"), "fc2": lin(p + ".fc2"), "ln_ffn": ln(p + ".final_layer_norm")}
                if side == "decoder":
                    lay["cq"] = lin(p + ".encoder_attn.q_proj")
                    lay["ckv"] = fused(p + ".encoder_attn", ("k_proj", "v_proj"))
                    lay["cout"] = lin(p + ".encoder_attn.out_proj")
                    lay["ln_cross"] = ln(p + ".encoder_attn_layer_norm")
                layers.append(lay)
            self.side[side] = {"layers": layers, "pos": t[f"model.{side}.embed_positions.weight"],
                               "ln_emb": ln(f"model.{side}.layernorm_embedding"),
                               "ln_final": ln(f"model.{side}.layer_norm") if self.pre_ln else None}

    def _ln(self, x, p):
        return F.layer_norm(x, (self.d,), p[0], p[1], 1e-5)

    def _sub(self, x, ln, f):
        if self.pre_ln:
            return x + f(self._ln(x, ln))
        return self._ln(x + f(x), ln)

    def _heads(self, x, h):   # [..., T, d] -> [..., h, T, hd]
        *lead, tt, _ = x.shape
        return x.view(*lead, tt, h, self.d // h).transpose(-3, -2)

    def _merge(self, x):      # [..., h, T, hd] -> [..., T, d]
        *lead, h, tt, hd = x.shape
        return x.transpose(-3, -2).reshape(*lead, tt, h * hd)

    def _embed(self, side, ids, pos):
        s = self.side[side]
        return self._ln(F.embedding(ids, self.shared) * self.emb_scale + s["pos"][pos + 2], s["ln_emb"])

    def encode(self, src):
        """src [B, S] (no padding) -> cross keys/values per layer, each [B, 1, H, S, hd]."""
        s = src.shape[1]
        x = self._embed("encoder", src, torch.arange(s))
        h = self.enc_heads
        scale = (self.d // h) ** -0.5

        def attn(y, lay):
            q, k, v = F.linear(y, *lay["qkv"]).chunk(3, dim=-1)
            w = torch.matmul(self._heads(q, h) * scale, self._heads(k, h).transpose(-1, -2))
            return F.linear(self._merge(torch.matmul(F.softmax(w, dim=-1), self._heads(v, h))), *lay["out"])

        for lay in self.side["encoder"]["layers"]:
            x = self._sub(x, lay["ln_self"], lambda y, lay=lay: attn(y, lay))
            x = self._sub(x, lay["ln_ffn"], lambda y, lay=lay: F.linear(self.act(F.linear(y, *lay["fc1"])), *lay["fc2"]))
        if self.pre_ln:
            x = self._ln(x, self.side["encoder"]["ln_final"])
        cross = []
        for lay in self.side["decoder"]["layers"]:
            k, v = F.linear(x, *lay["ckv"]).chunk(2, dim=-1)
            cross.append((self._heads(k, self.heads).unsqueeze(1).contiguous(),
                          self._heads(v, self.heads).unsqueeze(1).contiguous()))
        return cross

    def start_cache(self, n, t_max):
        hd = self.d // self.heads
        return [(torch.empty(n, self.heads, t_max, hd), torch.empty(n, self.heads, t_max, hd))
                for _ in self.side["decoder"]["layers"]]

    def step(self, tokens, t, cache, cross, b, beams):
        """tokens [b*beams] at position t -> logits [b*beams, V]; writes the caches at t."""
        h, hd = self.heads, self.d // self.heads
        scale = hd ** -0.5
        x = self._embed("decoder", tokens, torch.tensor(t))            # [N, d]
        for lay, (ks, vs), (ck, cv) in zip(self.side["decoder"]["layers"], cache, cross):
            def self_attn(y):
                q, k, v = F.linear(y, *lay["qkv"]).view(-1, 3, h, hd).unbind(1)
                ks[:, :, t] = k
                vs[:, :, t] = v
                w = torch.matmul((q * scale).unsqueeze(2), ks[:, :, :t + 1].transpose(-1, -2))
                return F.linear(torch.matmul(F.softmax(w, dim=-1), vs[:, :, :t + 1]).view(-1, self.d), *lay["out"])

            def cross_attn(y):
                q = (F.linear(y, *lay["cq"]) * scale).view(b, beams, h, 1, hd)
                w = torch.matmul(q, ck.transpose(-1, -2))            # [b, beams, h, 1, S]
                return F.linear(torch.matmul(F.softmax(w, dim=-1), cv).view(-1, self.d), *lay["cout"])

            x = self._sub(x, lay["ln_self"], self_attn)
            x = self._sub(x, lay["ln_cross"], cross_attn)
            x = self._sub(x, lay["ln_ffn"], lambda y: F.linear(self.act(F.linear(y, *lay["fc1"])), *lay["fc2"]))
        if self.pre_ln:
            x = self._ln(x, self.side["decoder"]["ln_final"])
        return F.linear(x, self.shared, self.bias)

    @torch.no_grad()
    def greedy(self, src, n_new):
        b = src.shape[0]
        cross = self.encode(src)
        cache = self.start_cache(b, n_new)
        tokens = torch.full((b,), self.start, dtype=torch.long)
        out = []
        for t in range(n_new):
            logits = self.step(tokens, t, cache, cross, b, 1)
            logits[:, self.eos] = -math.inf
            tokens = logits.argmax(dim=-1)
            out.append(tokens)
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def beam_search(self, src, n_new, beams):
        b = src.shape[0]
        cross = self.encode(src)
        cache = self.start_cache(b * beams, n_new)
        scores = torch.full((b, beams), -math.inf)
        scores[:, 0] = 0.0       # the beams start identical: expand the first only
        tokens = torch.full((b * beams,), self.start, dtype=torch.long)
        history = torch.empty((b * beams, 0), dtype=torch.long)
        base = (torch.arange(b) * beams)[:, None]
        for t in range(n_new):
            logp = F.log_softmax(self.step(tokens, t, cache, cross, b, beams), dim=-1)
            logp[:, self.eos] = -math.inf
            scores, idx = (scores[:, :, None] + logp.view(b, beams, -1)).view(b, -1).topk(beams, dim=-1)
            origin = (base + torch.div(idx, self.vocab, rounding_mode="floor")).view(-1)
            tokens = (idx % self.vocab).view(-1)
            history = torch.cat([history.index_select(0, origin), tokens[:, None]], dim=1)
            cache = [(k.index_select(0, origin), v.index_select(0, origin)) for k, v in cache]
        best = scores.argmax(dim=-1) + base[:, 0]
        return history.index_select(0, best)


class Gpt2:
    """GPT-2 generation: Conv1D weights [in, out], fused c_attn, caches preallocated."""

    def __init__(self, cfg, t):
        self.d, self.heads = cfg["n_embd"], cfg["n_head"]
        self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        self.eos = cfg.get("eos_token_id", 2)
        self.act = F.gelu if cfg.get("activation_function") == "gelu" else gelu_tanh
        self.wte, self.wpe = t["transformer.wte.weight"], t["transformer.wpe.weight"]
        self.layers = []
        for i in range(cfg["n_layer"]):
            p = f"transformer.h.{i}."
            self.layers.append({k: (t[p + n + ".weight"], t[p + n + ".bias"]) for k, n in (
                ("ln_1", "ln_1"), ("ln_2", "ln_2"), ("attn", "attn.c_attn"), ("proj", "attn.c_proj"),
                ("fc", "mlp.c_fc"), ("fc_proj", "mlp.c_proj"))})
        self.ln_f = (t["transformer.ln_f.weight"], t["transformer.ln_f.bias"])

    def _ln(self, x, p):
        return F.layer_norm(x, (self.d,), p[0], p[1], self.eps)

    def forward(self, ids, t0, cache):
        """ids [B, T] at positions t0.. -> last position's logits [B, V]; caches written."""
        b, tt = ids.shape
        h, hd = self.heads, self.d // self.heads
        x = F.embedding(ids, self.wte) + self.wpe[t0:t0 + tt]
        causal = None
        if tt > 1:
            causal = torch.full((tt, tt), -math.inf).triu(1)
        for lay, (ks, vs) in zip(self.layers, cache):
            y = self._ln(x, lay["ln_1"])
            q, k, v = torch.addmm(lay["attn"][1], y.view(-1, self.d), lay["attn"][0]).view(b, tt, 3, h, hd).unbind(2)
            ks[:, :, t0:t0 + tt] = k.transpose(1, 2)
            vs[:, :, t0:t0 + tt] = v.transpose(1, 2)
            w = torch.matmul(q.transpose(1, 2), ks[:, :, :t0 + tt].transpose(-1, -2)) / math.sqrt(hd)
            if causal is not None:
                w = w + causal
            o = torch.matmul(F.softmax(w, dim=-1), vs[:, :, :t0 + tt]).transpose(1, 2).reshape(-1, self.d)
            x = x + torch.addmm(lay["proj"][1], o, lay["proj"][0]).view(b, tt, self.d)
            y = self._ln(x, lay["ln_2"]).view(-1, self.d)
            y = torch.addmm(lay["fc_proj"][1], self.act(torch.addmm(lay["fc"][1], y, lay["fc"][0])), lay["fc_proj"][0])
            x = x + y.view(b, tt, self.d)
        return F.linear(self._ln(x[:, -1], self.ln_f), self.wte)

    @torch.no_grad()
    def greedy(self, prompt, n_new):
        b, p = prompt.shape
        hd = self.d // self.heads
        cache = [(torch.empty(b, self.heads, p + n_new, hd), torch.empty(b, self.heads, p + n_new, hd))
                 for _ in self.layers]
        logits = self.forward(prompt, 0, cache)
        out = []
        for t in range(n_new):
            logits[:, self.eos] = -math.inf
            tok = logits.argmax(dim=-1)
            out.append(tok)
            if t + 1 < n_new:
                logits = self.forward(tok[:, None], p + t, cache)
        return torch.stack(out, dim=1)


def load(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    arrays, _ = st_read(os.path.join(model_dir, "model.safetensors"))
    tensors = {k: torch.from_numpy(v) for k, v in arrays.items()}
    if cfg["model_type"] == "gpt2":
        return Gpt2(cfg, tensors)
    return EncDec(cfg, tensors)


def main(args):
    torch.set_num_threads(args.threads)
    model = load(args.model)
    with open(args.sources) as f:
        src = torch.tensor(json.load(f), dtype=torch.long)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        if cmd not in ("greedy", "beam", "encode"):
            print(f"decode_speed_torch.py: unknown command {cmd!r}", file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        if cmd == "encode":    # the encoder and cross keys/values alone, for the breakdown
            with torch.no_grad():
                model.encode(src)
            print(f"{time.perf_counter() - t0:.6f}", flush=True)
            continue
        if cmd == "greedy":
            out = model.greedy(src, args.new)
        else:
            out = model.beam_search(src, args.new, args.beams)
        dt = time.perf_counter() - t0
        print(f"{dt:.6f} " + " ".join(str(int(x)) for x in out.reshape(-1)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
