#!/usr/bin/env python3
"""PyTorch's CPU scaled_dot_product_attention on attend_bench's shapes, for a side-by-side table.

Runs where PyTorch is installed (the project's own CI does not need it):
    python3 bench/peers/torch_sdpa.py --threads 1,2,16 > torch.txt
Prints one line per (backend, shape, threads): median seconds of 5 timed calls after 2 warm-ups,
GFLOP/s with attend_bench's FLOP count (4*B*Hq*Nq*Nk*D, half for the causal square shape).
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

SHAPES = {  # name: (B, Hq, Hkv, Nq, Nk, D, causal)
    "bsr_time": (62, 8, 8, 801, 801, 64, False),
    "bsr_freq": (801, 8, 8, 62, 62, 64, False),
    "long4k": (1, 8, 8, 4096, 4096, 64, False),
    "causal2k_d128": (1, 16, 16, 2048, 2048, 128, True),
    "decode_gqa": (1, 32, 8, 1, 4096, 128, False),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--backends", default="flash,math")
    args = ap.parse_args()
    torch.manual_seed(0)
    for name in args.shapes.split(","):
        B, Hq, Hkv, Nq, Nk, D, causal = SHAPES[name]
        q = torch.randn(B, Hq, Nq, D)
        k = torch.randn(B, Hkv, Nk, D)
        v = torch.randn(B, Hkv, Nk, D)
        flops = 4.0 * B * Hq * Nq * Nk * D / (2 if causal else 1)
        for backend in args.backends.split(","):
            kind = {"flash": torch.nn.attention.SDPBackend.FLASH_ATTENTION,
                    "math": torch.nn.attention.SDPBackend.MATH}[backend]
            for t in [int(x) for x in args.threads.split(",")]:
                torch.set_num_threads(t)
                with torch.nn.attention.sdpa_kernel(kind):
                    def call():
                        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=Hq != Hkv)
                    try:
                        for _ in range(2):
                            call()
                        ts = []
                        for _ in range(5):
                            t0 = time.perf_counter()
                            call()
                            ts.append(time.perf_counter() - t0)
                    except RuntimeError as e:  # a backend that cannot serve the shape
                        print(f"torch/{backend}/f32/{name}/{t} unavailable: {str(e).splitlines()[0]}")
                        continue
                s = statistics.median(ts)
                print(f"torch/{backend}/f32/{name}/{t} median_s={s:.6f} GFLOPS={flops / s / 1e9:.1f}", flush=True)


if __name__ == "__main__":
    main()
