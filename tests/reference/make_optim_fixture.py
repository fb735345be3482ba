"""Trajectories of torch.optim.AdamW and torch.optim.SGD for tests/test_optim.c.

Run once with PyTorch (Debian's python3-torch) to regenerate
tests/fixtures/optim/*.npy; the C test replays the same gradients through
moelat's optimizers and compares every step's parameters.

Cases:
  adamw      lr 1e-2, weight decay 1e-2, betas (0.9, 0.999), eps 1e-8
  adamw_clip the same with clip_grad_norm_(max_norm=0.5) before each step
  adamw_cos  lr 1e-2 with 3 warm-up steps then cosine decay to 1e-3 at step 12
             (LambdaLR with the schedule moelat documents)
  sgd        lr 5e-2, momentum 0.9, weight decay 1e-3
"""
import math
import os
import sys

import numpy as np
import torch

T, N = 12, 37
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "fixtures", "optim")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20261205)
p0 = rng.normal(0, 1, N).astype(np.float32)
grads = (rng.normal(0, 1, (T, N)) * np.linspace(0.1, 3, T)[:, None]).astype(np.float32)
np.save(os.path.join(out, "p0.npy"), p0)
np.save(os.path.join(out, "grads.npy"), grads)


def cosine(step, lr, warmup, total, min_lr):
    if warmup > 0 and step <= warmup:
        return lr * step / warmup
    progress = min(1.0, (step - warmup) / (total - warmup))
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * progress))


def run(name, make_opt, clip=0.0, lr_fn=None):
    p = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = make_opt([p])
    sched = None
    if lr_fn is not None:
        base = opt.param_groups[0]["lr"]
        # LambdaLR multiplies the base rate; step t of the optimizer uses lambda(t).
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: lr_fn(e + 1) / base)
    traj = []
    for t in range(T):
        p.grad = torch.from_numpy(grads[t].copy())
        if clip > 0:
            torch.nn.utils.clip_grad_norm_([p], max_norm=clip)
        opt.step()
        if sched is not None:
            sched.step()
        traj.append(p.detach().numpy().copy())
    np.save(os.path.join(out, name + ".npy"), np.stack(traj).astype(np.float32))


run("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2, betas=(0.9, 0.999), eps=1e-8))
run("adamw_clip", lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2), clip=0.5)
run("adamw_cos", lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=1e-2),
    lr_fn=lambda s: cosine(s, 1e-2, 3, 12, 1e-3))
run("sgd", lambda ps: torch.optim.SGD(ps, lr=5e-2, momentum=0.9, weight_decay=1e-3))
print("torch", torch.__version__, "->", os.path.abspath(out))
