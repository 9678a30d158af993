#!/usr/bin/python3
"""torch_ref.py: the PyTorch reference that tutor's C engine is checked against.

GPT-2, BART and mBART are written here from Hugging Face transformers 4.36's definitions
with torch.nn.functional (no `transformers` package on this machine), read from a model
directory in HF's layout (config.json + model.safetensors), and checked against outputs
that the real HF library computed (tests/fixtures/hf). `parity` then writes the logits,
loss, every gradient and several AdamW updates for a batch, for tutor's tests to compare.

  /usr/bin/python3 tests/reference/torch_ref.py check-fixtures [--dir tests/fixtures/hf]
  /usr/bin/python3 tests/reference/torch_ref.py parity --model DIR --batch batch.json \
      --out ref.safetensors [--steps 5 --lr 1e-3 ... --float64]

See docs/reference.md.
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------
# safetensors, by hand: u64 LE header length N, N bytes of JSON (space-padded to a multiple
# of 8), then the raw little-endian C-order data, each tensor at [begin, end) of it.

ST_NUMPY = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
    "I8": "i1", "U8": "u1", "BOOL": "?",
}
NUMPY_ST = {np.dtype(v).newbyteorder("<").str: k for k, v in ST_NUMPY.items()}


def st_read(path):
    """Returns {name: numpy array} (BF16 widened to float32) and the metadata dict."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    data = memoryview(buf)[8 + n:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        shape = [int(s) for s in info["shape"]]
        if not 0 <= begin <= end <= len(data):
            raise ValueError(f"{path}: {name}: data offsets out of range")
        raw = data[begin:end]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in ST_NUMPY:
            arr = np.frombuffer(raw, dtype=ST_NUMPY[info["dtype"]])
        else:
            raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: {name}: {arr.size} elements for shape {shape}")
        tensors[name] = arr.reshape(shape).copy()
    return tensors, header.get("__metadata__") or {}


def st_write(path, tensors, metadata=None):
    """Writes {name: numpy array} atomically, sorted by name, with format=pt metadata."""
    meta = {"format": "pt"}
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    header = {"__metadata__": meta}
    blobs, offset = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        dtype = NUMPY_ST.get(arr.dtype.str)
        if dtype is None:
            raise ValueError(f"{name}: no safetensors dtype for numpy {arr.dtype}")
        raw = arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".torch_ref-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(head)))
            f.write(head)
            for raw in blobs:
                f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------
# Pieces shared by the models.

def activation(name):
    if name == "gelu":                    # exact, erf form
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        # HF's NewGELUActivation, written as HF writes it so rounding matches.
        c = math.sqrt(2.0 / math.pi)
        return lambda x: 0.5 * x * (1.0 + torch.tanh(c * (x + 0.044715 * torch.pow(x, 3.0))))
    if name == "relu":
        return F.relu
    raise ValueError(f"activation_function {name!r} is not supported")


def padding_mask_4d(attention_mask, tgt_len, dtype):
    """[B, S] of 1/0 -> additive [B, 1, tgt_len, S]: 0 where kept, finfo.min where padded,
    as HF's _prepare_4d_attention_mask makes it."""
    b, s = attention_mask.shape
    expanded = attention_mask[:, None, None, :].expand(b, 1, tgt_len, s).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


def causal_mask_4d(t, dtype):
    """Additive [1, 1, t, t]: 0 on and below the diagonal, finfo.min above."""
    mask = torch.full((t, t), torch.finfo(dtype).min, dtype=dtype)
    cond = torch.arange(t)
    mask.masked_fill_(cond < (cond + 1).view(t, 1), 0)
    return mask[None, None]


class ParamLoader:
    """Reads named parameters from a model.safetensors, falling back to the names HF
    ties to them when the canonical name is absent."""

    def __init__(self, tensors, dtype):
        self.tensors, self.dtype, self.used = tensors, dtype, set()

    def get(self, name, shape, fallbacks=(), default=None):
        for n in (name,) + tuple(fallbacks):
            if n in self.tensors:
                arr = self.tensors[n]
                if list(arr.shape) != list(shape):
                    raise ValueError(f"{n}: shape {list(arr.shape)}, expected {list(shape)}")
                self.used.add(n)
                return torch.tensor(arr, dtype=self.dtype).requires_grad_(True)
        if default is not None:
            return default.to(self.dtype).requires_grad_(True)
        raise ValueError(f"model.safetensors has no {name}")


# ----------------------------------------------------------------------------------------
# GPT-2 (GPT2LMHeadModel): pre-LN, Conv1D weights [in, out], c_attn = q | k | v,
# tanh GELU, lm_head tied to wte.

class Gpt2Ref:
    def __init__(self, cfg, tensors, dtype):
        self.dtype = dtype
        self.d = cfg["n_embd"]
        self.n_head = cfg["n_head"]
        self.n_layer = cfg["n_layer"]
        self.n_pos = cfg["n_positions"]
        self.vocab = cfg["vocab_size"]
        self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        self.inner = cfg.get("n_inner") or 4 * self.d
        self.act = activation(cfg.get("activation_function", "gelu_new"))
        self.scale_weights = cfg.get("scale_attn_weights", True)
        if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("reorder_and_upcast_attn"):
            raise ValueError("GPT-2 attention variants (inverse layer idx, upcast) not supported")
        self.eos = cfg.get("eos_token_id")
        d, inner = self.d, self.inner
        # A bare GPT2Model checkpoint has no "transformer." prefix.
        bare = "wte.weight" in tensors and "transformer.wte.weight" not in tensors
        load = ParamLoader(tensors, dtype)
        p = {}

        def add(name, shape, fallbacks=()):
            alts = tuple(fallbacks) + ((name[len("transformer."):],) if bare else ())
            p[name] = load.get(name, shape, alts)

        add("transformer.wte.weight", [self.vocab, d], ["lm_head.weight"])
        add("transformer.wpe.weight", [self.n_pos, d])
        for i in range(self.n_layer):
            h = f"transformer.h.{i}."
            for ln in ("ln_1", "ln_2"):
                add(h + ln + ".weight", [d])
                add(h + ln + ".bias", [d])
            add(h + "attn.c_attn.weight", [d, 3 * d])
            add(h + "attn.c_attn.bias", [3 * d])
            add(h + "attn.c_proj.weight", [d, d])
            add(h + "attn.c_proj.bias", [d])
            add(h + "mlp.c_fc.weight", [d, inner])
            add(h + "mlp.c_fc.bias", [inner])
            add(h + "mlp.c_proj.weight", [inner, d])
            add(h + "mlp.c_proj.bias", [d])
        add("transformer.ln_f.weight", [d])
        add("transformer.ln_f.bias", [d])
        self.params = p

    def _conv1d(self, x, name):
        # HF's Conv1D: addmm(bias, x, W) with W [in, out].
        w, b = self.params[name + ".weight"], self.params[name + ".bias"]
        out = torch.addmm(b, x.reshape(-1, x.shape[-1]), w)
        return out.view(x.shape[:-1] + (w.shape[1],))

    def _ln(self, x, name):
        p = self.params
        return F.layer_norm(x, (self.d,), p[name + ".weight"], p[name + ".bias"], self.eps)

    def logits(self, input_ids, attention_mask=None, position_ids=None):
        """input_ids [B, T] -> logits [B, T, V]."""
        p, dt = self.params, self.dtype
        b, t = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(t).unsqueeze(0)
        h = F.embedding(input_ids, p["transformer.wte.weight"]) + \
            F.embedding(position_ids, p["transformer.wpe.weight"])
        pad = None
        if attention_mask is not None:
            pad = (1.0 - attention_mask[:, None, None, :].to(dt)) * torch.finfo(dt).min
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool)).view(1, 1, t, t)
        min_value = torch.full([], torch.finfo(dt).min, dtype=dt)
        nh, hd = self.n_head, self.d // self.n_head

        def heads(x):   # [B, T, d] -> [B, H, T, hd]
            return x.view(b, t, nh, hd).permute(0, 2, 1, 3)

        for i in range(self.n_layer):
            pre = f"transformer.h.{i}."
            x = self._ln(h, pre + "ln_1")
            q, k, v = self._conv1d(x, pre + "attn.c_attn").split(self.d, dim=2)
            q, k, v = heads(q), heads(k), heads(v)
            w = torch.matmul(q, k.transpose(-1, -2))
            if self.scale_weights:
                w = w / torch.full([], v.size(-1) ** 0.5, dtype=dt)
            w = torch.where(causal, w, min_value)
            if pad is not None:
                w = w + pad
            w = F.softmax(w, dim=-1)
            a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous().view(b, t, self.d)
            h = self._conv1d(a, pre + "attn.c_proj") + h
            x = self._ln(h, pre + "ln_2")
            x = self._conv1d(self.act(self._conv1d(x, pre + "mlp.c_fc")), pre + "mlp.c_proj")
            h = h + x
        h = self._ln(h, "transformer.ln_f")
        return F.linear(h, p["transformer.wte.weight"])

    def forward(self, batch):
        """batch: input_ids, attention_mask, labels (tensors) -> (logits, loss)."""
        logits = self.logits(batch["input_ids"], batch.get("attention_mask"))
        labels = batch.get("labels")
        if labels is None:
            labels = batch["input_ids"]
        loss = F.cross_entropy(logits[:, :-1, :].reshape(-1, self.vocab),
                               labels[:, 1:].reshape(-1), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def greedy(self, input_ids, attention_mask, n_new):
        """One row: input_ids [T] -> n_new greedy tokens (stops early at eos, as HF does).
        Positions come from the mask, as HF's prepare_inputs_for_generation makes them."""
        ids, mask, out = input_ids.clone(), attention_mask.clone(), []
        for _ in range(n_new):
            pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 1)
            logits = self.logits(ids[None], mask[None], pos[None])
            tok = int(logits[0, -1].argmax())
            out.append(tok)
            if tok == self.eos:
                break
            ids = torch.cat([ids, torch.tensor([tok])])
            mask = torch.cat([mask, torch.ones(1, dtype=mask.dtype)])
        return out


# ----------------------------------------------------------------------------------------
# BART / mBART (…ForConditionalGeneration): linear weights [out, in], learned positions
# offset by 2, optional sqrt(d) embedding scale, layernorm_embedding, q scaled after its
# bias; BART is post-LN, mBART pre-LN with a final LayerNorm on encoder and decoder.

class BartRef:
    def __init__(self, cfg, tensors, dtype, pre_ln):
        self.dtype, self.pre_ln = dtype, pre_ln
        self.d = cfg["d_model"]
        self.vocab = cfg["vocab_size"]
        self.n_pos = cfg["max_position_embeddings"]
        self.enc_layers, self.dec_layers = cfg["encoder_layers"], cfg["decoder_layers"]
        self.enc_heads = cfg["encoder_attention_heads"]
        self.dec_heads = cfg["decoder_attention_heads"]
        self.enc_ffn, self.dec_ffn = cfg["encoder_ffn_dim"], cfg["decoder_ffn_dim"]
        self.act = activation(cfg.get("activation_function", "gelu"))
        self.embed_scale = math.sqrt(self.d) if cfg.get("scale_embedding", False) else 1.0
        self.eps = 1e-5
        self.pad = cfg.get("pad_token_id", 1)
        self.start = cfg.get("decoder_start_token_id", 2)
        self.eos = cfg.get("eos_token_id", 2)
        self.forced_eos = cfg.get("forced_eos_token_id")
        self.forced_bos = cfg.get("forced_bos_token_id")
        d = self.d
        load = ParamLoader(tensors, dtype)
        p = {}

        def add(name, shape, fallbacks=(), default=None):
            p[name] = load.get(name, shape, fallbacks, default)

        add("model.shared.weight", [self.vocab, d],
            ["model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight",
             "lm_head.weight"])
        add("final_logits_bias", [1, self.vocab], default=torch.zeros(1, self.vocab))

        def ln(name):
            add(name + ".weight", [d])
            add(name + ".bias", [d])

        def linear(name, n_out, n_in):
            add(name + ".weight", [n_out, n_in])
            add(name + ".bias", [n_out])

        def attention(name):
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                linear(f"{name}.{proj}", d, d)

        for side, n_layers, ffn in (("encoder", self.enc_layers, self.enc_ffn),
                                    ("decoder", self.dec_layers, self.dec_ffn)):
            add(f"model.{side}.embed_positions.weight", [self.n_pos + 2, d])
            ln(f"model.{side}.layernorm_embedding")
            for i in range(n_layers):
                pre = f"model.{side}.layers.{i}."
                attention(pre + "self_attn")
                ln(pre + "self_attn_layer_norm")
                if side == "decoder":
                    attention(pre + "encoder_attn")
                    ln(pre + "encoder_attn_layer_norm")
                linear(pre + "fc1", ffn, d)
                linear(pre + "fc2", d, ffn)
                ln(pre + "final_layer_norm")
            if pre_ln:
                ln(f"model.{side}.layer_norm")
        self.params = p

    def _ln(self, x, name):
        p = self.params
        return F.layer_norm(x, (self.d,), p[name + ".weight"], p[name + ".bias"], self.eps)

    def _linear(self, x, name):
        return F.linear(x, self.params[name + ".weight"], self.params[name + ".bias"])

    def _attention(self, name, x, kv, mask, n_heads):
        """x [B, Tq, d], kv [B, Tk, d], additive mask [B or 1, 1, Tq, Tk] -> [B, Tq, d]."""
        b, tq, d = x.shape
        tk = kv.shape[1]
        hd = d // n_heads

        def heads(y, t):   # [B, t, d] -> [B*H, t, hd]
            return y.view(b, t, n_heads, hd).transpose(1, 2).contiguous().view(b * n_heads, t, hd)

        q = heads(self._linear(x, name + ".q_proj") * hd ** -0.5, tq)
        k = heads(self._linear(kv, name + ".k_proj"), tk)
        v = heads(self._linear(kv, name + ".v_proj"), tk)
        w = torch.bmm(q, k.transpose(1, 2))
        w = (w.view(b, n_heads, tq, tk) + mask).view(b * n_heads, tq, tk)
        w = F.softmax(w, dim=-1)
        o = torch.bmm(w, v).view(b, n_heads, tq, hd).transpose(1, 2).reshape(b, tq, d)
        return self._linear(o, name + ".out_proj")

    def _embed(self, side, ids):
        p = self.params
        x = F.embedding(ids, p["model.shared.weight"]) * self.embed_scale
        pos = torch.arange(ids.shape[1]) + 2
        x = x + F.embedding(pos, p[f"model.{side}.embed_positions.weight"])
        return self._ln(x, f"model.{side}.layernorm_embedding")

    def _ffn(self, x, pre):
        return self._linear(self.act(self._linear(x, pre + "fc1")), pre + "fc2")

    def encode(self, input_ids, attention_mask):
        """input_ids [B, S] -> encoder states [B, S, d]."""
        h = self._embed("encoder", input_ids)
        s = input_ids.shape[1]
        mask = padding_mask_4d(attention_mask, s, self.dtype) if attention_mask is not None \
            else torch.zeros(1, 1, s, s, dtype=self.dtype)
        for i in range(self.enc_layers):
            pre = f"model.encoder.layers.{i}."
            h = self._sublayer(h, pre + "self_attn_layer_norm",
                               lambda x: self._attention(pre + "self_attn", x, x, mask,
                                                         self.enc_heads))
            h = self._sublayer(h, pre + "final_layer_norm", lambda x: self._ffn(x, pre))
        if self.pre_ln:
            h = self._ln(h, "model.encoder.layer_norm")
        return h

    def _sublayer(self, h, ln_name, fn):
        if self.pre_ln:
            return h + fn(self._ln(h, ln_name))
        return self._ln(h + fn(h), ln_name)

    def decode(self, decoder_ids, enc, attention_mask):
        """decoder_ids [B, T], encoder states [B, S, d] -> logits [B, T, V]."""
        t, s = decoder_ids.shape[1], enc.shape[1]
        h = self._embed("decoder", decoder_ids)
        self_mask = causal_mask_4d(t, self.dtype)
        cross_mask = padding_mask_4d(attention_mask, t, self.dtype) \
            if attention_mask is not None else torch.zeros(1, 1, t, s, dtype=self.dtype)
        for i in range(self.dec_layers):
            pre = f"model.decoder.layers.{i}."
            h = self._sublayer(h, pre + "self_attn_layer_norm",
                               lambda x: self._attention(pre + "self_attn", x, x, self_mask,
                                                         self.dec_heads))
            h = self._sublayer(h, pre + "encoder_attn_layer_norm",
                               lambda x: self._attention(pre + "encoder_attn", x, enc,
                                                         cross_mask, self.dec_heads))
            h = self._sublayer(h, pre + "final_layer_norm", lambda x: self._ffn(x, pre))
        if self.pre_ln:
            h = self._ln(h, "model.decoder.layer_norm")
        return F.linear(h, self.params["model.shared.weight"]) + self.params["final_logits_bias"]

    def decoder_inputs(self, labels):
        """HF's shift of labels into decoder inputs (BART's or mBART's)."""
        if self.pre_ln:
            # mBART: -100 -> pad, then the token before the padding (the language code /
            # </s>) wraps to position 0 and the rest shifts right.
            prev = labels.clone().masked_fill(labels == -100, self.pad)
            last = (prev.ne(self.pad).sum(dim=1) - 1).unsqueeze(-1)
            start = prev.gather(1, last).squeeze(-1)
            prev[:, 1:] = prev[:, :-1].clone()
            prev[:, 0] = start
            return prev
        shifted = labels.new_zeros(labels.shape)
        shifted[:, 1:] = labels[:, :-1].clone()
        shifted[:, 0] = self.start
        return shifted.masked_fill(shifted == -100, self.pad)

    def forward(self, batch):
        labels = batch["labels"]
        enc = self.encode(batch["input_ids"], batch.get("attention_mask"))
        logits = self.decode(self.decoder_inputs(labels), enc, batch.get("attention_mask"))
        loss = F.cross_entropy(logits.reshape(-1, self.vocab), labels.reshape(-1),
                               ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def greedy(self, input_ids, attention_mask, n_new):
        """One row: n_new greedy tokens after decoder_start, with HF's forced BOS/EOS logits
        processors (forced EOS as the last of the n_new); stops early at eos."""
        enc = self.encode(input_ids[None], attention_mask[None])
        ids, out = [self.start], []
        max_len = 1 + n_new
        while len(ids) < max_len:
            logits = self.decode(torch.tensor([ids]), enc, attention_mask[None])[0, -1]
            if len(ids) == 1 and self.forced_bos is not None:
                tok = self.forced_bos
            elif len(ids) == max_len - 1 and self.forced_eos is not None:
                tok = self.forced_eos
            else:
                tok = int(logits.argmax())
            ids.append(tok)
            out.append(tok)
            if tok == self.eos:
                break
        return out


# ----------------------------------------------------------------------------------------

def load_model(model_dir, dtype=torch.float32):
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    tensors, _ = st_read(os.path.join(model_dir, "model.safetensors"))
    kind = cfg.get("model_type")
    if kind == "gpt2":
        return Gpt2Ref(cfg, tensors, dtype)
    if kind in ("bart", "mbart"):
        return BartRef(cfg, tensors, dtype, pre_ln=(kind == "mbart"))
    raise ValueError(f"{model_dir}: model_type {kind!r} is not supported")


def load_batch(path):
    with open(path) as f:
        raw = json.load(f)
    return {k: torch.tensor(raw[k], dtype=torch.long)
            for k in ("input_ids", "attention_mask", "labels") if k in raw}


def check_fixtures(args):
    failed = False
    for name in ("bart", "mbart", "gpt2"):
        folder = os.path.join(args.dir, name)
        model = load_model(folder)
        batch = load_batch(os.path.join(folder, "inputs.json"))
        with open(os.path.join(folder, "expected.json")) as f:
            want = json.load(f)
        with torch.no_grad():
            logits, loss = model.forward(batch)
        ref = np.asarray(want["logits"], dtype=np.float64)
        got = logits.double().numpy()
        if list(got.shape) != list(ref.shape):
            print(f"{name}: FAIL logits shape {list(got.shape)}, expected {list(ref.shape)}")
            failed = True
            continue
        max_diff = float(np.max(np.abs(got - ref)))
        max_ref = float(np.max(np.abs(ref)))
        loss_rel = abs(float(loss) - want["loss"]) / abs(want["loss"])
        row = batch["input_ids"][0]
        mask = batch["attention_mask"][0] if "attention_mask" in batch else torch.ones_like(row)
        greedy = model.greedy(row, mask, 6)
        ok_logits = max_diff <= 1e-5 * max_ref
        ok_loss = loss_rel <= 1e-6
        ok_greedy = greedy == want["greedy_first_row_6_tokens"]
        ok = ok_logits and ok_loss and ok_greedy
        failed |= not ok
        print(f"{name}: {'ok' if ok else 'FAIL'}  max|logit diff| {max_diff:.3e} "
              f"(limit {1e-5 * max_ref:.3e} = 1e-5 * {max_ref:.3f})  "
              f"loss {float(loss):.9f} vs {want['loss']:.9f} (rel {loss_rel:.2e})  "
              f"greedy {greedy} vs {want['greedy_first_row_6_tokens']}")
    return 1 if failed else 0


def parity(args):
    dtype = torch.float64 if args.float64 else torch.float32
    torch.manual_seed(0)
    model = load_model(args.model, dtype)
    batch = load_batch(args.batch)
    params = model.params
    names = sorted(params)

    logits, loss = model.forward(batch)
    loss.backward()
    # Copies: .numpy() of a float32 tensor shares its memory, and the steps below reuse
    # the gradient buffers.
    out = {"logits": logits.detach().float().numpy().copy(),
           "loss": np.array([float(loss)], dtype=np.float32)}
    for n in names:
        out["grad." + n] = params[n].grad.detach().float().numpy().copy()

    # Decay only matrices (ndim >= 2): never biases, LayerNorm or final_logits_bias.
    # tutor's rule (ParamInfo.decay): matrices and embeddings decay; biases, LayerNorm and
    # final_logits_bias (a [1, V] bias) do not.
    def decays(n):
        return params[n].dim() >= 2 and n != "final_logits_bias"
    decay = [params[n] for n in names if decays(n)]
    no_decay = [params[n] for n in names if not decays(n)]
    opt_kw = {}
    if "foreach" in torch.optim.AdamW.__init__.__code__.co_varnames:
        opt_kw["foreach"] = False   # the plain per-tensor loop, the clearest reference
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps, **opt_kw)
    before = {n: params[n].detach().clone() for n in names}
    for _ in range(args.steps):
        opt.zero_grad()
        _, step_loss = model.forward(batch)
        step_loss.backward()
        opt.step()
    for n in names:
        out["update." + n] = (params[n].detach() - before[n]).float().numpy().copy()

    meta = {"model": args.model, "steps": args.steps, "lr": args.lr, "beta1": args.beta1,
            "beta2": args.beta2, "eps": args.eps, "weight_decay": args.weight_decay,
            "precision": "float64" if args.float64 else "float32",
            "torch": torch.__version__}
    st_write(args.out, out, meta)
    print(f"parity: {args.model}: loss {float(loss):.9f}, {len(names)} parameters, "
          f"{args.steps} AdamW steps -> {args.out}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    cf = sub.add_parser("check-fixtures", help="compare with HF's own outputs")
    here = os.path.dirname(os.path.abspath(__file__))
    cf.add_argument("--dir", default=os.path.join(here, "..", "fixtures", "hf"))
    pa = sub.add_parser("parity", help="logits, loss, gradients and AdamW updates")
    pa.add_argument("--model", required=True)
    pa.add_argument("--batch", required=True)
    pa.add_argument("--out", required=True)
    pa.add_argument("--steps", type=int, default=5)
    pa.add_argument("--lr", type=float, default=1e-3)
    pa.add_argument("--beta1", type=float, default=0.9)
    pa.add_argument("--beta2", type=float, default=0.999)
    pa.add_argument("--eps", type=float, default=1e-8)
    pa.add_argument("--weight-decay", type=float, default=0.01)
    pa.add_argument("--float64", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        return check_fixtures(args) if args.command == "check-fixtures" else parity(args)
    except (OSError, ValueError, KeyError) as e:
        print(f"torch_ref.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
