"""kd_ref.py: float64 PyTorch reference of tutor's word-level KD objectives, written from
their definitions (the gradients come from autograd). Reads a JSON case list on stdin:
[{"kind", "tau", "beta", "skew", "top_p", "teacher": [V], "student": [V]}, ...]
and writes [{"loss": x, "grad": [V]}, ...] on stdout."""
import json
import sys

import torch


def nucleus(p, top_p):
    # HF's rule: sort descending, keep while the mass before a token is below top_p
    if top_p >= 1:
        return p
    sp, idx = torch.sort(p, descending=True, stable=True)
    before = torch.cumsum(sp, 0) - sp
    keep_sorted = before < top_p
    keep = torch.zeros_like(p, dtype=torch.bool)
    keep[idx[keep_sorted]] = True
    q = torch.where(keep, p, torch.zeros_like(p))
    return q / q.sum()


def kl(a, b):
    # sum a log(a / b) with 0 log 0 = 0
    mask = a > 0
    return torch.sum(torch.where(mask, a * (torch.log(torch.where(mask, a, torch.ones_like(a))) - torch.log(b)),
                                 torch.zeros_like(a)))


def loss_of(c, z):
    tau = c["tau"]
    t = torch.tensor(c["teacher"], dtype=torch.float64)
    p = nucleus(torch.softmax(t / tau, 0), c["top_p"])
    q = torch.softmax(z / tau, 0)
    k = c["kind"]
    if k == "jsd" and c["beta"] == 0:
        k = "fkl"
    if k == "jsd" and c["beta"] == 1:
        k = "rkl"
    if k == "fkl":
        d = kl(p, q)
    elif k == "rkl":
        d = kl(q, p)
    elif k == "jsd":
        b = c["beta"]
        m = b * p + (1 - b) * q
        d = b * kl(p, m) + (1 - b) * kl(q, m)
    elif k == "tvd":
        d = 0.5 * torch.sum(torch.abs(p - q))
    elif k == "skl":
        a = c["skew"]
        d = kl(p, a * p + (1 - a) * q)
    elif k == "srkl":
        a = c["skew"]
        d = kl(q, a * q + (1 - a) * p)
    else:
        raise ValueError(k)
    return tau * tau * d


out = []
for c in json.load(sys.stdin):
    z = torch.tensor(c["student"], dtype=torch.float64, requires_grad=True)
    L = loss_of(c, z)
    L.backward()
    out.append({"loss": L.item(), "grad": z.grad.tolist()})
json.dump(out, sys.stdout)
