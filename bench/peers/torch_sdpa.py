#!/usr/bin/env python3
"""PyTorch's CPU scaled_dot_product_attention on attend_bench's shapes, for a side-by-side table.

Runs where PyTorch is installed (the project's own CI does not need it):
    python3 bench/peers/torch_sdpa.py --threads 1,2,16 > torch.txt
    python3 bench/peers/torch_sdpa.py --types f32,bf16 --backward --shapes long4k
Prints one line per (backend, type, shape, threads), forward and, with --backward, backward:
    torch/flash/f32/long4k/2 mean_s=0.0xxxxx GFLOPS=x cpu_util=x
    torch/flash_bwd/f32/long4k/2 ...
Timing as attend_bench's (bench/peers/common.py time_calls): one warm-up call, then batches until
one lasts --min_time seconds; mean wall time per call of that batch. GFLOP/s with attend_bench's
FLOP counts (forward 4*B*Hq*Nq*Nk*D; backward 2*B*Hq*Nq*Nk*(3*D + 2*Dv); half for the causal square
shape). Inputs are uniform in [-1, 1), (B, H, N, D) contiguous, as attend_bench's; decode forward rows
rotate through copies of K and V (>= 4x the L3), as attend_bench's do; backward rows use one copy,
as attend_bench's _bwd rows do. The backward times
torch.autograd.grad(out, (q, k, v), dout, retain_graph=True) on a forward graph built once, that is
the backward kernel alone.

--serve: a worker for bench/peers/run.py (JSON requests on stdin, see common.serve).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SHAPES, Unavailable, flops, kv_copies, serve, time_calls  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "f64": torch.float64}
BACKENDS = {"flash": torch.nn.attention.SDPBackend.FLASH_ATTENTION, "math": torch.nn.attention.SDPBackend.MATH}

_inputs = {"key": None}


def inputs(shape, typ):
    """q, [k copies], [v copies] for (shape, type), uniform in [-1, 1); one (shape, type) kept at a time."""
    key = (shape, typ)
    if _inputs["key"] != key:
        _inputs.clear()
        _inputs["key"] = None
        B, Hq, Hkv, Nq, Nk, D, _causal, _decode = SHAPES[shape]
        g = torch.Generator().manual_seed(1)
        dt = DTYPES[typ]

        def uniform(*size):
            return (torch.rand(*size, generator=g) * 2 - 1).to(dt)

        q = uniform(B, Hq, Nq, D)
        n = kv_copies(shape, typ)
        ks = [uniform(B, Hkv, Nk, D) for _ in range(n)]
        vs = [uniform(B, Hkv, Nk, D) for _ in range(n)]
        _inputs.update(key=key, q=q, k=ks, v=vs)
    return _inputs["q"], _inputs["k"], _inputs["v"]


def measure(variant, direction, shape, typ, threads, min_time):
    """Times one row; returns {"seconds", "iterations", "cpu_util", ...}. variant: flash or math."""
    if variant not in BACKENDS:
        raise Unavailable(f"unknown torch backend {variant}")
    if typ not in DTYPES:
        raise Unavailable(f"unknown type {typ}")
    _B, Hq, Hkv, _Nq, _Nk, _D, causal, _decode = SHAPES[shape]
    torch.set_num_threads(threads)
    q, ks, vs = inputs(shape, typ)
    gqa = Hq != Hkv

    def sdpa(q_, k_, v_):
        return F.scaled_dot_product_attention(q_, k_, v_, is_causal=causal, enable_gqa=gqa)

    with torch.nn.attention.sdpa_kernel(BACKENDS[variant]):
        if direction == "fwd":
            with torch.no_grad():
                def call(i):
                    c = i % len(ks)
                    sdpa(q, ks[c], vs[c])

                r = time_calls(call, min_time, threads)
        else:
            # One forward graph on the first copy of K and V, as attend_bench's _bwd rows (their
            # backward reads in->k[0] and in->v[0] on every call, decode rows included: no rotation
            # through copies); the timed part is the backward alone. dout is bf16 for bf16 rows, as
            # attend's, so both produce bf16 gradients from bf16 inputs.
            g = torch.Generator().manual_seed(7)
            qq, kk, vv = (t.detach().clone().requires_grad_(True) for t in (q, ks[0], vs[0]))
            out = sdpa(qq, kk, vv)
            dout = (torch.rand(out.shape, generator=g) * 2 - 1).to(out.dtype)
            leaves = (qq, kk, vv)

            def call(i):
                torch.autograd.grad(out, leaves, dout, retain_graph=True)

            r = time_calls(call, min_time, threads)
            del out, leaves
    r["flops"] = flops(shape, direction)
    return r


def info():
    return {"peer": "torch", "version": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "parallel": torch.__config__.parallel_info().splitlines()[-1].strip()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default=",".join(s for s in SHAPES if s != "long16k"))
    ap.add_argument("--backends", default="flash,math")
    ap.add_argument("--types", default="f32")
    ap.add_argument("--backward", action="store_true", help="also time the backward")
    ap.add_argument("--min_time", type=float, default=0.2)
    ap.add_argument("--serve", action="store_true", help="worker for bench/peers/run.py")
    args = ap.parse_args()
    if args.serve:
        serve(measure, info)
        return
    directions = ["fwd", "bwd"] if args.backward else ["fwd"]
    for direction in directions:
        for typ in args.types.split(","):
            for name in args.shapes.split(","):
                for backend in args.backends.split(","):
                    for t in [int(x) for x in args.threads.split(",")]:
                        row = f"torch/{backend}{'_bwd' if direction == 'bwd' else ''}/{typ}/{name}/{t}"
                        try:
                            r = measure(backend, direction, name, typ, t, args.min_time)
                        except (RuntimeError, Unavailable) as e:  # a backend that cannot serve the shape
                            print(f"{row} unavailable: {str(e).splitlines()[0]}", flush=True)
                            continue
                        s = r["seconds"]
                        print(f"{row} mean_s={s:.6f} GFLOPS={r['flops'] / s / 1e9:.1f} cpu_util={r['cpu_util']:.2f}",
                              flush=True)


if __name__ == "__main__":
    main()
