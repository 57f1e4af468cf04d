#!/usr/bin/env python3
"""ONNX Runtime's CPU MultiHeadAttention (com.microsoft) on attend_bench's non-causal shapes.

Runs where onnxruntime and onnx are installed (the project's CI does not need them):
    python3 bench/peers/ort_mha.py --threads 1,2,16 > ort.txt
Prints one line per (shape, threads): median seconds of 5 timed runs after 2 warm-ups and GFLOP/s
with attend_bench's FLOP count (4*B*H*Nq*Nk*D). Inputs use ORT's (B, N, H*D) layout; the layout
change is not timed.
"""
import argparse
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

SHAPES = {  # name: (B, H, Nq, Nk, D)
    "bsr_time": (62, 8, 801, 801, 64),
    "bsr_freq": (801, 8, 62, 62, 64),
    "long4k": (1, 8, 4096, 4096, 64),
}


def model(H):
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", s, "HD"])
              for n, s in (("q", "Nq"), ("k", "Nk"), ("v", "Nk"))]
    out = helper.make_tensor_value_info("o", TensorProto.FLOAT, ["B", "Nq", "HD"])
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft", num_heads=H)
    graph = helper.make_graph([node], "mha", inputs, [out])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    # onnx 1.23 writes IR version 14, which onnxruntime 1.30 refuses ("max supported IR version: 13").
    m.ir_version = min(m.ir_version, 10)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    for name in args.shapes.split(","):
        B, H, Nq, Nk, D = SHAPES[name]
        feeds = {"q": rng.standard_normal((B, Nq, H * D), dtype=np.float32),
                 "k": rng.standard_normal((B, Nk, H * D), dtype=np.float32),
                 "v": rng.standard_normal((B, Nk, H * D), dtype=np.float32)}
        flops = 4.0 * B * H * Nq * Nk * D
        blob = model(H).SerializeToString()
        for t in [int(x) for x in args.threads.split(",")]:
            so = ort.SessionOptions()
            so.intra_op_num_threads = t
            so.inter_op_num_threads = 1
            try:
                sess = ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])
                for _ in range(2):
                    sess.run(None, feeds)
                ts = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    sess.run(None, feeds)
                    ts.append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - report and go on
                print(f"ort/mha/f32/{name}/{t} unavailable: {str(e).splitlines()[0]}")
                continue
            s = statistics.median(ts)
            print(f"ort/mha/f32/{name}/{t} median_s={s:.6f} GFLOPS={flops / s / 1e9:.1f}", flush=True)


if __name__ == "__main__":
    main()
