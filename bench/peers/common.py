"""What the peer scripts (torch_sdpa.py, ort_mha.py) and their driver (run.py) share: attend_bench's
shapes and FLOP counts, the timing loop, and the line protocol of a peer worker (`--serve`).

Stdlib only: run.py imports it without numpy, torch or onnxruntime.
"""
import json
import math
import os
import sys
import time

# name: (B, Hq, Hkv, Nq, Nk, D, causal, decode), as kShapes in bench/attend_bench.cpp. causal is
# top-left (PyTorch's is_causal=True); the only causal shape is square, where top-left and
# bottom-right agree. decode rows are bound by memory bandwidth: compare them by time and bytes.
SHAPES = {
    "bsr_time": (62, 8, 8, 801, 801, 64, False, False),
    "bsr_freq": (801, 8, 8, 62, 62, 64, False, False),
    "long4k": (1, 8, 8, 4096, 4096, 64, False, False),
    "causal2k_d128": (1, 16, 16, 2048, 2048, 128, True, False),
    "decode_gqa": (1, 32, 8, 1, 4096, 128, False, True),
    "long16k": (1, 1, 1, 16384, 16384, 64, False, False),
}
ELEMENT_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "f64": 8}
PROTOCOL_PREFIX = "@@peer "  # a worker's answers on stdout start with this; other lines are ignored


def flops(shape, direction="fwd"):
    """attend_bench's FLOP count of one call: forward 4*B*Hq*Nq*Nk*D, backward
    2*B*Hq*Nq*Nk*(3*D + 2*Dv) (recomputed scores, dV, dP, dQ, dK); half for the causal square shape."""
    B, Hq, _Hkv, Nq, Nk, D, causal, _decode = SHAPES[shape]
    Dv = D
    f = 4.0 * B * Hq * Nq * Nk * D if direction == "fwd" else 2.0 * B * Hq * Nq * Nk * (3 * D + 2 * Dv)
    return f / 2 if causal and Nq == Nk else f


def kv_bytes(shape, typ):
    """Bytes of K and V that one call reads (attend_bench's bytes_per_second for decode rows)."""
    B, _Hq, Hkv, _Nq, Nk, D, _causal, _decode = SHAPES[shape]
    return 2.0 * B * Hkv * Nk * D * ELEMENT_BYTES[typ]


def l3_bytes():
    try:
        v = os.sysconf("SC_LEVEL3_CACHE_SIZE")
        if v and v > 0:
            return v
    except (ValueError, OSError):
        pass
    return 32 << 20


def kv_copies(shape, typ):
    """How many copies of K and V a decode row rotates through so that every call reads them from
    DRAM, as attend_bench does (>= 4x the L3); 1 for the other shapes."""
    if not SHAPES[shape][7]:
        return 1
    return max(2, int(4.0 * l3_bytes() / kv_bytes(shape, typ)) + 1)


def time_calls(call, min_time=0.2, threads=1, max_time=None):
    """Times call() as Google Benchmark times attend_bench's rows: one untimed warm-up call, then
    batches of calls until one batch lasts at least min_time seconds; the last batch's mean wall
    time per call is the result. Also cpu_util: process CPU seconds / (wall seconds x threads) over
    that batch, as attend_bench's counter (about 1 when the call had its cores to itself).
    `call(i)` gets the call's index (decode rows use it to rotate their inputs)."""
    max_time = max_time if max_time is not None else max(10.0, 20 * min_time)
    t0 = time.perf_counter()
    call(0)
    first = time.perf_counter() - t0
    n = max(1, int(math.ceil(min_time / max(first, 1e-7))))
    i = 1
    while True:
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            call(i)
            i += 1
        wall = time.perf_counter() - w0
        cpu = time.process_time() - c0
        if wall >= min_time or wall * 2 > max_time:
            break
        # Next batch: enough calls for min_time with 40 % to spare, at most 10x more (as GB does).
        n = int(min(10 * n, max(n + 1, math.ceil(1.4 * n * min_time / max(wall, 1e-9)))))
    return {"seconds": wall / n, "iterations": n, "cpu_util": cpu / (max(wall, 1e-9) * threads),
            "first_call_seconds": first}


def serve(measure, info):
    """A worker's loop: one JSON request per stdin line, one answer per stdout line (prefixed with
    PROTOCOL_PREFIX; stdout also carries whatever the libraries print). Requests:
      {"op": "info"}                                   -> info()
      {"op": "measure", "variant": V, "direction": "fwd"|"bwd", "shape": S, "type": T,
       "threads": N, "min_time": s}                    -> measure(...): a dict with "seconds", ...
    Any exception becomes {"ok": false, "reason": "..."}; the worker goes on."""
    out = sys.stdout
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if req.get("op") == "info":
                ans = {"ok": True, **info()}
            elif req.get("op") == "measure":
                ans = {"ok": True, **measure(req["variant"], req.get("direction", "fwd"), req["shape"], req["type"],
                                              int(req["threads"]), float(req.get("min_time", 0.2)))}
            elif req.get("op") == "quit":
                break
            else:
                ans = {"ok": False, "reason": f"unknown request {req!r}"}
        except Unavailable as e:
            ans = {"ok": False, "reason": str(e)}
        except Exception as e:  # noqa: BLE001 - a peer that cannot serve a row says why and goes on
            msg = str(e).strip().splitlines()
            ans = {"ok": False, "reason": f"{type(e).__name__}: {msg[0] if msg else ''}"[:300]}
        out.write(PROTOCOL_PREFIX + json.dumps(ans) + "\n")
        out.flush()


class Unavailable(Exception):
    """A peer does not offer this row (for example a type its kernels lack); the message says why."""
