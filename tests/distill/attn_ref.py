"""attn_ref.py: float64 PyTorch reference of tutor's attention-relation loss (MiniLM v2),
written from the definition; gradients by autograd. Reads JSON on stdin:
{"A": heads, "relations": [{"xt": [B][L][Ct], "xs": [B][L][Cs], "valid": [B][L], "causal": 0/1}, ...]}
and writes {"loss": mean over relations, "grads": [[B][L][Cs] per relation]} on stdout."""
import json
import math
import sys

import torch

case = json.load(sys.stdin)
A = case["A"]
total = 0.0
xs_list = []
losses = []
for r in case["relations"]:
    xt = torch.tensor(r["xt"], dtype=torch.float64)
    xs = torch.tensor(r["xs"], dtype=torch.float64, requires_grad=True)
    valid = torch.tensor(r["valid"], dtype=torch.bool)
    B, L, Ct = xt.shape
    Cs = xs.shape[2]
    ht = xt.view(B, L, A, Ct // A).transpose(1, 2)  # B A L d
    hs = xs.view(B, L, A, Cs // A).transpose(1, 2)
    st = ht @ ht.transpose(-1, -2) / math.sqrt(Ct // A)
    ss = hs @ hs.transpose(-1, -2) / math.sqrt(Cs // A)
    keymask = valid[:, None, None, :].expand(B, A, L, L)
    if r["causal"]:
        keymask = keymask & torch.tril(torch.ones(L, L, dtype=torch.bool))
    neg = torch.tensor(float("-inf"), dtype=torch.float64)
    lpt = torch.log_softmax(torch.where(keymask, st, neg), -1)
    lps = torch.log_softmax(torch.where(keymask, ss, neg), -1)
    pt = lpt.exp()
    kl = torch.where(keymask, pt * (lpt - lps), torch.zeros_like(pt)).sum(-1)  # B A L
    rows = valid[:, None, :].expand(B, A, L)
    n = rows.sum()
    if n == 0:
        continue
    losses.append(kl[rows].sum() / n)
    xs_list.append(xs)
loss = torch.stack(losses).mean()
loss.backward()
json.dump({"loss": loss.item(), "grads": [x.grad.tolist() for x in xs_list]}, sys.stdout)
