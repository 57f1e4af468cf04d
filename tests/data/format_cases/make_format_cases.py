#!/usr/bin/env python3
"""Format-coverage cases for the golden runner (usage: make_format_cases.py DIR).

Same layout and semantics as ../golden (see its README.md), but made without numpy or torch: the
reference is a naive float64 attention in pure Python (math.fsum sums), written here so that the
runner's reading of the *format* is exercised beyond the public case list: masks of rank 1, 2 and 3,
a bool mask with a broadcast query dimension, an additive mask combined with bottom_right causality
on a tall problem, a numeric (and a negative) scale, GQA with Dv != D, Nk = 0, a head wider than the
tiled kernels take (D = 1030), comment lines and unknown keys.
Only out and lse are written (the runner reads nothing else).
"""
import math
import os
import random
import struct
import sys

NEG_INF = float("-inf")


def save_npy(path, shape, values, dtype="<f8"):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        dtype, "".join(f"{d}, " for d in shape) if len(shape) != 1 else f"{shape[0]},")
    header = header.replace(", )", ")")
    pad = 16 - (10 + len(header) + 1) % 16
    header = header + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1"))
        if dtype == "<f8":
            f.write(struct.pack("<%dd" % len(values), *values))
        else:
            f.write(bytes(1 if v else 0 for v in values))


def index(shape, idx):
    off = 0
    for d, i in zip(shape, idx):
        off = off * d + i
    return off


def mask_at(mshape, mvals, b, h, i, j):
    full = (b, h, i, j)[4 - len(mshape):]
    idx = tuple(0 if d == 1 else x for d, x in zip(mshape, full))
    return mvals[index(mshape, idx)]


def attention(B, Hq, Hkv, Nq, Nk, D, Dv, q, k, v, scale, causal, mkind, mshape, mvals):
    g = Hq // Hkv
    out, lse = [], []
    for b in range(B):
        for h in range(Hq):
            hk = h // g
            for i in range(Nq):
                s = []
                for j in range(Nk):
                    x = scale * math.fsum(q[index((B, Hq, Nq, D), (b, h, i, d))] *
                                          k[index((B, Hkv, Nk, D), (b, hk, j, d))] for d in range(D))
                    vis = True
                    if causal == "top_left":
                        vis = j <= i
                    elif causal == "bottom_right":
                        vis = j <= i + (Nk - Nq)
                    if mkind == "bool":
                        vis = vis and bool(mask_at(mshape, mvals, b, h, i, j))
                    elif mkind == "additive":
                        x = x + mask_at(mshape, mvals, b, h, i, j)
                    if not math.isfinite(x):
                        vis = False
                    s.append(x if vis else NEG_INF)
                m = max(s) if s else NEG_INF
                if m == NEG_INF:
                    out.extend([0.0] * Dv)
                    lse.append(NEG_INF)
                    continue
                p = [math.exp(x - m) if x != NEG_INF else 0.0 for x in s]
                l = math.fsum(p)
                lse.append(m + math.log(l))
                for d in range(Dv):
                    out.append(math.fsum(p[j] * v[index((B, Hkv, Nk, Dv), (b, hk, j, d))] for j in range(Nk)) / l)
    return out, lse


def case(root, name, B, Hq, Hkv, Nq, Nk, D, Dv, scale=None, causal="none", mkind="none", mshape=None,
         mfn=None, seed=0):
    rnd = random.Random(seed)
    q = [rnd.gauss(0, 1) for _ in range(B * Hq * Nq * D)]
    k = [rnd.gauss(0, 1) for _ in range(B * Hkv * Nk * D)]
    v = [rnd.gauss(0, 1) for _ in range(B * Hkv * Nk * Dv)]
    mvals = []
    if mkind != "none":
        n = 1
        for d in mshape:
            n *= d
        mvals = [mfn(rnd, t) for t in range(n)]
    eff = scale if scale is not None else 1.0 / math.sqrt(D)
    out, lse = attention(B, Hq, Hkv, Nq, Nk, D, Dv, q, k, v, eff, causal, mkind, mshape, mvals)
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    save_npy(os.path.join(d, "q.npy"), (B, Hq, Nq, D), q)
    save_npy(os.path.join(d, "k.npy"), (B, Hkv, Nk, D), k)
    save_npy(os.path.join(d, "v.npy"), (B, Hkv, Nk, Dv), v)
    save_npy(os.path.join(d, "out.npy"), (B, Hq, Nq, Dv), out)
    save_npy(os.path.join(d, "lse.npy"), (B, Hq, Nq), lse)
    if mkind == "bool":
        save_npy(os.path.join(d, "mask.npy"), mshape, mvals, "|b1")
    elif mkind == "additive":
        save_npy(os.path.join(d, "mask.npy"), mshape, mvals)
    with open(os.path.join(d, "case.txt"), "w") as f:
        f.write("# attend format case; reference: naive float64 in pure Python\n")
        f.write(f"name {name}\n\n# sizes\nbatch {B}\nheads_q {Hq}\nheads_kv {Hkv}\nq_len {Nq}\nkv_len {Nk}\n")
        f.write(f"head_dim {D}\nhead_dim_v {Dv}\n")
        f.write(f"scale {'default' if scale is None else repr(float(scale))}\nscale_value {eff!r}\n")
        f.write(f"causal {causal}\nmask {mkind}\n")
        if mkind != "none":
            f.write("mask_shape " + " ".join(str(s) for s in mshape) + "\n")
        f.write("generator make_format_cases.py\nsome_future_key with several words\n")


def main(root):
    # rank-1 bool mask (Nk,): a key-padding mask shared by every batch, head and query; GQA, Dv != D.
    case(root, "rank1_bool_gqa", 2, 4, 2, 6, 9, 4, 3, scale=0.7, mkind="bool", mshape=(9,),
         mfn=lambda r, t: t not in (2, 5, 8), seed=1)
    # rank-2 additive mask (Nq, Nk) with -inf entries, bottom_right on a tall problem (dead rows).
    case(root, "rank2_additive_bottom_right_tall", 1, 2, 2, 10, 5, 5, 7, causal="bottom_right",
         mkind="additive", mshape=(10, 5), mfn=lambda r, t: NEG_INF if r.random() < 0.2 else r.gauss(0, 2), seed=2)
    # rank-3 bool mask (Hq, 1, Nk): per-head key mask broadcast over queries; head 1 sees nothing.
    case(root, "rank3_bool_broadcast_queries", 1, 2, 1, 7, 11, 8, 8, mkind="bool", mshape=(2, 1, 11),
         mfn=lambda r, t: t < 11 and r.random() < 0.7, seed=3)
    # top_left with Nq > Nk, a negative scale, and a rank-4 additive mask broadcast over B and heads.
    case(root, "top_left_tall_negative_scale", 2, 1, 1, 12, 8, 6, 2, scale=-0.4, causal="top_left",
         mkind="additive", mshape=(1, 1, 12, 8), mfn=lambda r, t: r.uniform(-1, 1), seed=4)
    # no keys at all: out 0, lse -inf everywhere.
    case(root, "no_keys", 1, 2, 2, 3, 0, 4, 5, seed=5)
    # a head wider than the tiled kernels' limit (1024): only the math path can serve it.
    case(root, "wide_head", 1, 1, 1, 2, 3, 1030, 4, seed=6)


if __name__ == "__main__":
    main(sys.argv[1])
