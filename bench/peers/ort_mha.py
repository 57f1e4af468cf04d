#!/usr/bin/env python3
"""ONNX Runtime's CPU attention operators on attend_bench's shapes, for a side-by-side table.

Runs where onnxruntime and onnx are installed (the project's CI does not need them):
    python3 bench/peers/ort_mha.py --threads 1,2,16 > ort.txt
Prints one line per (operator, type, shape, threads):
    ort/mha/f32/long4k/2 mean_s=0.0xxxxx GFLOPS=x cpu_util=x
Operators (com.microsoft contrib ops, the ones ONNX Runtime's transformer models use on CPU):
    mha  MultiHeadAttention: the non-causal shapes with as many key heads as query heads.
    gqa  GroupQueryAttention: causal2k_d128 (a causal prefill without past; the op is causal) and
         decode_gqa (one query token appended to a KV cache of Nk - 1 tokens, attending to all Nk;
         the cache is bound as both past and present, as in ORT's generation loop, so nothing is
         copied). MultiHeadAttention could only mask a causal shape (unidirectional=1: measured
         about 3x slower than without it) and needs Hkv == Hq.
--ops mha,gqa forces operators (a shape that an operator cannot express is reported unavailable).
Inputs use ORT's (B, N, H*D) layout (the cache: (B, Hkv, Nk, D)); the layout change is not timed.
Timing as attend_bench's (common.time_calls); decode rows rotate through copies of the cache
(>= 4x the L3), as attend_bench's do. Before an operator's first row, a small instance of it is
checked against a NumPy reference; a mismatch makes its rows unavailable.
bf16: ORT's CPU kernels of these operators take float and float16 only (its rows say so).

--serve: a worker for bench/peers/run.py (JSON requests on stdin, see common.serve).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SHAPES, Unavailable, flops, kv_copies, serve, time_calls  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

ONNX_TYPES = {"f32": (TensorProto.FLOAT, np.float32), "f16": (TensorProto.FLOAT16, np.float16),
              "bf16": (TensorProto.BFLOAT16, None), "f64": (TensorProto.DOUBLE, np.float64)}


def _model(nodes, inputs, outputs):
    graph = helper.make_graph(nodes, "attention", inputs, outputs)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    # onnx 1.23 writes IR version 14, which onnxruntime 1.30 refuses ("max supported IR version: 13").
    m.ir_version = min(m.ir_version, 10)
    return m.SerializeToString()


def mha_model(H, tt, unidirectional=0):
    inputs = [helper.make_tensor_value_info(n, tt, ["B", s, "HD"]) for n, s in (("q", "Nq"), ("k", "Nk"), ("v", "Nk"))]
    out = helper.make_tensor_value_info("o", tt, ["B", "Nq", "HD"])
    attrs = {"num_heads": H}
    if unidirectional:
        attrs["unidirectional"] = 1
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft", **attrs)
    return _model([node], inputs, [out])


def gqa_model(Hq, Hkv, D, tt, past):
    """GroupQueryAttention; with past, the cache (B, Hkv, M, D) is an input and the present output."""
    inputs = [helper.make_tensor_value_info("q", tt, ["B", "S", Hq * D]),
              helper.make_tensor_value_info("k", tt, ["B", "S", Hkv * D]),
              helper.make_tensor_value_info("v", tt, ["B", "S", Hkv * D])]
    names = ["q", "k", "v"]
    if past:
        inputs += [helper.make_tensor_value_info(n, tt, ["B", Hkv, "M", D]) for n in ("past_k", "past_v")]
        names += ["past_k", "past_v"]
    else:
        names += ["", ""]
    inputs += [helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, ["B"]),
               helper.make_tensor_value_info("total", TensorProto.INT32, [])]
    names += ["seqlens_k", "total"]
    outs = [helper.make_tensor_value_info(n, tt, None) for n in ("o", "present_k", "present_v")]
    node = helper.make_node("GroupQueryAttention", names, ["o", "present_k", "present_v"], domain="com.microsoft",
                            num_heads=Hq, kv_num_heads=Hkv)
    return _model([node], inputs, outs)


def session(blob, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(blob, so, providers=["CPUExecutionProvider"])


def default_op(shape):
    _B, Hq, Hkv, _Nq, _Nk, _D, causal, decode = SHAPES[shape]
    return "gqa" if causal or decode or Hq != Hkv else "mha"


def uniform(rng, shape, npt):
    return (rng.random(shape, dtype=np.float32) * 2 - 1).astype(npt)


class Runner:
    """Builds one (op, shape, type, threads) session and its inputs; run(i) makes the i-th call."""

    def __init__(self, op, shape, typ, threads, B=None, Hq=None, Hkv=None, Nq=None, Nk=None, D=None, causal=None,
                 decode=None, copies=None, seed=0):
        s = SHAPES.get(shape)
        B, Hq, Hkv, Nq, Nk, D, causal, decode = [x if x is not None else y for x, y in
                                                 zip((B, Hq, Hkv, Nq, Nk, D, causal, decode), s)]
        if typ not in ONNX_TYPES:
            raise Unavailable(f"unknown type {typ}")
        tt, npt = ONNX_TYPES[typ]
        rng = np.random.default_rng(seed)
        self.op = op
        if op == "mha":
            if Hq != Hkv:
                raise Unavailable("MultiHeadAttention needs as many key heads as query heads (GQA: use gqa)")
            if causal and Nq != Nk:
                raise Unavailable("MultiHeadAttention's unidirectional mask is for square shapes")
            self.sess = self._session(mha_model(Hq, tt, 1 if causal else 0), threads, "MultiHeadAttention", typ)
            self.feeds = {"q": uniform(rng, (B, Nq, Hq * D), npt), "k": uniform(rng, (B, Nk, Hq * D), npt),
                          "v": uniform(rng, (B, Nk, Hq * D), npt)}
            self.run = lambda i: self.sess.run(None, self.feeds)
        elif op == "gqa":
            if decode:
                if Nq != 1:
                    raise Unavailable("the gqa decode row takes one query token")
                self.sess = self._session(gqa_model(Hq, Hkv, D, tt, past=True), threads, "GroupQueryAttention", typ)
                n = copies if copies is not None else kv_copies(shape, typ)
                q = uniform(rng, (B, 1, Hq * D), npt)
                knew, vnew = uniform(rng, (B, 1, Hkv * D), npt), uniform(rng, (B, 1, Hkv * D), npt)
                seqlens = np.full((B,), Nk - 1, np.int32)  # total length - 1: Nk - 1 cached + 1 new
                total = np.array(Nk, np.int32)
                self.caches, self.bindings = [], []
                for _ in range(n):
                    pk = ort.OrtValue.ortvalue_from_numpy(uniform(rng, (B, Hkv, Nk, D), npt))
                    pv = ort.OrtValue.ortvalue_from_numpy(uniform(rng, (B, Hkv, Nk, D), npt))
                    b = self.sess.io_binding()
                    b.bind_cpu_input("q", q)
                    b.bind_cpu_input("k", knew)
                    b.bind_cpu_input("v", vnew)
                    b.bind_ortvalue_input("past_k", pk)
                    b.bind_ortvalue_input("past_v", pv)
                    b.bind_cpu_input("seqlens_k", seqlens)
                    b.bind_cpu_input("total", total)
                    b.bind_output("o")
                    b.bind_ortvalue_output("present_k", pk)  # the same buffer: ORT appends in place
                    b.bind_ortvalue_output("present_v", pv)
                    self.caches.append((pk, pv))
                    self.bindings.append(b)
                self.inputs = (q, knew, vnew)
                self.run = lambda i: self.sess.run_with_iobinding(self.bindings[i % len(self.bindings)])
            else:
                if not causal or Nq != Nk:
                    raise Unavailable("GroupQueryAttention is causal (a square causal prefill or a decode step)")
                self.sess = self._session(gqa_model(Hq, Hkv, D, tt, past=False), threads, "GroupQueryAttention", typ)
                self.feeds = {"q": uniform(rng, (B, Nq, Hq * D), npt), "k": uniform(rng, (B, Nk, Hkv * D), npt),
                              "v": uniform(rng, (B, Nk, Hkv * D), npt),
                              "seqlens_k": np.full((B,), Nk - 1, np.int32), "total": np.array(Nk, np.int32)}
                self.run = lambda i: self.sess.run(["o"], self.feeds)
        else:
            raise Unavailable(f"unknown ORT operator {op}")
        self.dims = (B, Hq, Hkv, Nq, Nk, D, causal, decode)

    @staticmethod
    def _session(blob, threads, opname, typ):
        try:
            return session(blob, threads)
        except Exception as e:  # noqa: BLE001
            if "NOT_IMPLEMENTED" in str(e):
                raise Unavailable(f"ORT's CPU {opname} has no {typ} kernel") from None
            raise

    def output(self, i=0):
        if self.op == "gqa" and self.dims[7]:
            b = self.bindings[i % len(self.bindings)]
            self.sess.run_with_iobinding(b)
            return b.get_outputs()[0].numpy()
        return self.run(i)[0]

    def reference(self, i=0):
        """NumPy attention over this runner's inputs (after call i for decode: the cache then holds
        the new token at its last position), in the (B, Nq, Hq*D) layout."""
        B, Hq, Hkv, Nq, Nk, D, causal, decode = self.dims
        if self.op == "gqa" and decode:
            q = self.inputs[0].astype(np.float64).reshape(B, 1, Hq, D).transpose(0, 2, 1, 3)
            k = self.caches[i % len(self.caches)][0].numpy().astype(np.float64)
            v = self.caches[i % len(self.caches)][1].numpy().astype(np.float64)
        else:
            q = self.feeds["q"].astype(np.float64).reshape(B, Nq, Hq, D).transpose(0, 2, 1, 3)
            k = self.feeds["k"].astype(np.float64).reshape(B, Nk, Hkv, D).transpose(0, 2, 1, 3)
            v = self.feeds["v"].astype(np.float64).reshape(B, Nk, Hkv, D).transpose(0, 2, 1, 3)
        k, v = np.repeat(k, Hq // Hkv, axis=1), np.repeat(v, Hq // Hkv, axis=1)
        s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(D)
        if causal:
            s = np.where(np.tril(np.ones((Nq, Nk), bool)), s, -np.inf)
        p = np.exp(s - s.max(-1, keepdims=True))
        o = (p / p.sum(-1, keepdims=True)) @ v
        return o.transpose(0, 2, 1, 3).reshape(B, Nq, Hq * D)


_checked = {}


def self_check(op, shape):
    """A small instance of what `op` does for `shape`, against NumPy; raises Unavailable on a mismatch."""
    _B, Hq, Hkv, _Nq, _Nk, _D, causal, decode = SHAPES[shape]
    kind = (op, causal, decode, Hq != Hkv)
    if kind not in _checked:
        small = dict(B=2, Hq=4 if Hq != Hkv else 2, Hkv=2, Nq=1 if decode else 7, Nk=9 if decode else 7, D=8,
                     causal=causal, decode=decode)
        if not decode and not causal:
            small["Nk"] = 11
        try:
            r = Runner(op, shape, "f32", 1, copies=2, seed=5, **small)
            got = r.output(0)
            err = float(np.max(np.abs(got - r.reference(0))))
            _checked[kind] = None if err < 1e-4 else f"ORT {op} failed its self-check on {shape}'s kind (max error {err:.2g})"
        except Unavailable as e:
            _checked[kind] = str(e)
    if _checked[kind]:
        raise Unavailable(_checked[kind])


def measure(variant, direction, shape, typ, threads, min_time):
    if direction != "fwd":
        raise Unavailable("ONNX Runtime's inference operators have no backward")
    op = default_op(shape) if variant in ("auto", "", None) else variant
    self_check(op, shape)
    runner = Runner(op, shape, typ, threads)
    r = time_calls(runner.run, min_time, threads)
    r["flops"] = flops(shape, direction)
    r["op"] = op
    return r


def info():
    return {"peer": "ort", "version": ort.__version__, "onnx_version": onnx.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--shapes", default=",".join(s for s in SHAPES if s != "long16k"))
    ap.add_argument("--types", default="f32")
    ap.add_argument("--ops", default="auto", help="auto (per shape, see above) or a list of mha,gqa")
    ap.add_argument("--min_time", type=float, default=0.2)
    ap.add_argument("--serve", action="store_true", help="worker for bench/peers/run.py")
    args = ap.parse_args()
    if args.serve:
        serve(measure, info)
        return
    for typ in args.types.split(","):
        for name in args.shapes.split(","):
            ops = [default_op(name)] if args.ops == "auto" else args.ops.split(",")
            for op in ops:
                for t in [int(x) for x in args.threads.split(",")]:
                    row = f"ort/{op}/{typ}/{name}/{t}"
                    try:
                        r = measure(op, "fwd", name, typ, t, args.min_time)
                    except Exception as e:  # noqa: BLE001 - report and go on
                        print(f"{row} unavailable: {str(e).splitlines()[0]}", flush=True)
                        continue
                    s = r["seconds"]
                    print(f"{row} mean_s={s:.6f} GFLOPS={r['flops'] / s / 1e9:.1f} cpu_util={r['cpu_util']:.2f}",
                          flush=True)


if __name__ == "__main__":
    main()
