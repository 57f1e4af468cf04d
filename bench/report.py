#!/usr/bin/env python3
"""Turn attend_bench's JSON output into a markdown table (python3, standard library only).

    build-bench/bench/attend_bench --full --benchmark_out=full.json --benchmark_out_format=json
    python3 bench/report.py full.json > table.md

Several files may be given; a row in a later file replaces the same row from an earlier one
(with --prefer-util, the row with the highest cpu_util is kept instead: on a shared machine, run
the benchmark a few times and keep each row's quietest run).
With repetitions (--benchmark_repetitions=N) the "median" aggregate is used when present, else
the median of the repetitions. Rows that failed are listed under the table.

Columns: path, type, shape, threads, ms per call, GFLOP/s, peak_frac (of the fp32 FMA peak for
that many threads, measured by attend_bench at startup), bw_frac (decode rows: K and V bytes per
second over the measured read bandwidth). A row whose cpu_util (the share of its cores it kept
busy) was below --util-min (0.9) is marked with a dagger: the machine was shared and its numbers
are low, or the call itself left a thread idle (see the top of bench/attend_bench.cpp).
Options:
    --no-context   leave out the line describing the machine and its measured ceilings
    --util         add a cpu_util column
    --util-min=X   threshold of the dagger (0 turns it off)
    --unloaded     estimate what a quiet machine would give: time x cpu_util, rates / cpu_util
                   (an estimate: it ignores the caches the other work evicted)
    --prefer-util  across files, keep each row's run with the highest cpu_util
    --order=json   keep the order of the JSON instead of sorting by shape, type, path, threads
"""

import argparse
import json
import statistics
import sys

SHAPES = ["bsr_time", "bsr_freq", "long4k", "causal2k_d128", "decode_gqa", "long16k"]
TYPES = ["f32", "bf16", "f16", "f64"]
PATHS = ["flash", "mem_efficient", "math"]
UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def rank(order, x):
    return order.index(x) if x in order else len(order)


def parse_name(run_name):
    """'flash/f32/bsr_time/2/real_time' -> ('flash', 'f32', 'bsr_time', 2)."""
    parts = run_name.split("/")
    if len(parts) < 4:
        return None
    try:
        threads = int(parts[3])
    except ValueError:
        return None
    return parts[0], parts[1], parts[2], threads


def load(paths, prefer_util=False):
    rows = {}  # key -> dict of metrics
    errors = {}
    context = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        context.update(data.get("context", {}))
        runs = {}  # run_name -> {"median": bench or None, "iters": [bench]}
        for b in data.get("benchmarks", []):
            run_name = b.get("run_name", b["name"])
            key = parse_name(run_name)
            if key is None:
                continue
            if b.get("error_occurred"):
                errors[key] = b.get("error_message", "error")
                rows.pop(key, None)
                continue
            slot = runs.setdefault(key, {"median": None, "iters": []})
            if b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == "median":
                    slot["median"] = b
            else:
                slot["iters"].append(b)
        for key, slot in runs.items():
            if slot["median"] is not None:
                picked = [slot["median"]]
            elif slot["iters"]:
                picked = slot["iters"]
            else:
                continue
            errors.pop(key, None)
            new = summarize(picked)
            old = rows.get(key)
            if prefer_util and old is not None and (old["cpu_util"] or 0) > (new["cpu_util"] or 0):
                continue
            rows[key] = new
    return rows, errors, context


def summarize(benches):
    def med(field, scale=1.0):
        vals = [b[field] * scale for b in benches if field in b]
        return statistics.median(vals) if vals else None

    ms = statistics.median(b["real_time"] * UNIT_MS.get(b.get("time_unit", "ns"), 1e-6) for b in benches)
    return {
        "ms": ms,
        "gflops": med("FLOPS", 1e-9),
        "peak_frac": med("peak_frac"),
        "bw_frac": med("bw_frac"),
        "cpu_util": med("cpu_util"),
        "reps": len(benches),
    }


def fmt(x, spec):
    return "–" if x is None else format(x, spec)


def fmt_ms(x):
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def context_line(ctx):
    peaks = sorted((int(k.rsplit("_", 1)[1][:-1]), v) for k, v in ctx.items()
                   if k.startswith("attend_fp32_peak_GFLOPS_"))
    bws = sorted((int(k.rsplit("_", 1)[1][:-1]), v) for k, v in ctx.items()
                 if k.startswith("attend_read_bw_GBps_"))
    bits = []
    if ctx.get("host_name") or ctx.get("num_cpus"):
        bits.append(f"{ctx.get('num_cpus', '?')} CPUs @ {ctx.get('mhz_per_cpu', '?')} MHz"
                    + (f" ({ctx['attend_simd']})" if ctx.get("attend_simd") else ""))
    if peaks:
        bits.append("fp32 FMA peak " + ", ".join(f"{v} GFLOP/s ({t} thr)" for t, v in peaks))
    if bws:
        bits.append("read bandwidth " + ", ".join(f"{v} GB/s ({t} thr)" for t, v in bws))
    if ctx.get("date"):
        bits.append(ctx["date"])
    return "; ".join(bits)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="attend_bench --benchmark_out files (JSON)")
    ap.add_argument("--no-context", action="store_true", help="omit the machine line")
    ap.add_argument("--order", choices=["shape", "json"], default="shape")
    ap.add_argument("--util", action="store_true", help="add a cpu_util column")
    ap.add_argument("--util-min", type=float, default=0.9, help="mark rows below this cpu_util")
    ap.add_argument("--unloaded", action="store_true", help="correct each row by its cpu_util (estimate)")
    ap.add_argument("--prefer-util", action="store_true",
                    help="across files, keep each row's run with the highest cpu_util")
    args = ap.parse_args(argv)

    rows, errors, ctx = load(args.json, args.prefer_util)
    keys = list(rows)
    if args.order == "shape":
        keys.sort(key=lambda k: (rank(SHAPES, k[2]), k[2], rank(TYPES, k[1]), rank(PATHS, k[0]), k[3]))

    out = []
    if not args.no_context:
        line = context_line(ctx)
        if line:
            out.append(f"_{line}_")
            out.append("")
    head = "| path | type | shape | threads | ms | GFLOP/s | peak_frac | bw_frac |"
    rule = "|---|---|---|---:|---:|---:|---:|---:|"
    if args.util:
        head += " cpu_util |"
        rule += "---:|"
    if args.unloaded:
        out.append("_Estimated for a quiet machine: each row's time x its cpu_util, rates / cpu_util._")
        out.append("")
    out.append(head)
    out.append(rule)
    shared = False
    for k in keys:
        r = dict(rows[k])
        mark = ""
        if args.unloaded and r["cpu_util"]:
            u = min(1.0, r["cpu_util"])
            r["ms"] *= u
            for f in ("gflops", "peak_frac", "bw_frac"):
                if r[f] is not None:
                    r[f] /= u
        elif r["cpu_util"] is not None and r["cpu_util"] < args.util_min:
            mark, shared = " †", True
        line = (f"| {k[0]} | {k[1]} | {k[2]} | {k[3]}{mark} | {fmt_ms(r['ms'])} | {fmt(r['gflops'], '.1f')} "
                f"| {fmt(r['peak_frac'], '.3f')} | {fmt(r['bw_frac'], '.3f')} |")
        if args.util:
            line += f" {fmt(r['cpu_util'], '.2f')} |"
        out.append(line)
    if shared:
        out.append("")
        out.append(f"† cpu_util below {args.util_min}: the row shared its cores with other work (its numbers are "
                   "low), or the call left a thread idle.")
    if errors:
        out.append("")
        for k, msg in sorted(errors.items()):
            out.append(f"- `{'/'.join(map(str, k))}` did not run: {msg}")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
