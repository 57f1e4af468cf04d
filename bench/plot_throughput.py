#!/usr/bin/env python3
"""Chart of attend_bench's throughput: GFLOP/s per path and shape, with the measured FMA peak.

    build-bench/bench/attend_bench --full --benchmark_out=full.json --benchmark_out_format=json
    python3 bench/plot_throughput.py full.json -o docs/images/throughput.png

Needs Python 3 and matplotlib (Debian: apt-get install python3-matplotlib). Rows are read with
bench/report.py's parser, so the same files work: several files merge as in report.py (a later file's
row replaces an earlier one's; with --prefer-util the row with the highest cpu_util is kept), and
with repetitions the median is used.

One group of bars per shape, one bar per path (flash, mem_efficient, math), for one element type
(--type, default f32) and thread count (--threads, default 2); --threads=2,1 draws one panel per
thread count, side by side. Each panel has the fp32 FMA peak that attend_bench measured for that
thread count (the context's attend_fp32_peak_GFLOPS_<n>t) as a labelled horizontal line. Bars of
rows whose cpu_util was below --util-min (0.9: the cores were shared) are hatched. The title names
the machine: --machine (a name, e.g. "2-core AMD Zen 4") and the JSON context's CPU count, clock
and widest SIMD set. Shapes are labelled with B·H × Nq × Nk (D 64; causal2k: D 128, causal;
decode_gqa: one query against 4096 keys, bound by memory bandwidth, not FLOPs).

Options: -o/--out PATH (.png or .svg; several -o write several files), --dpi (default 100),
--shapes a,b,c (default: every shape present, in report.py's order), --title TEXT.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402  (bench/report.py: the parser of attend_bench's JSON)

COLORS = {"flash": "#1f77b4", "mem_efficient": "#2ca02c", "math": "#d62728"}
SHAPE_LABEL = {  # name, then B·H x Nq x Nk
    "bsr_time": "bsr_time\n496 × 801²",
    "bsr_freq": "bsr_freq\n6408 × 62²",
    "long4k": "long4k\n8 × 4096²",
    "causal2k_d128": "causal2k\n16 × 2048²",
    "decode_gqa": "decode_gqa\n32 × 1 × 4096",
    "long16k": "long16k\n1 × 16384²",
}


def machine_title(ctx, name):
    """'<name> (2 CPUs @ 2596 MHz, AVX512)': the given name, then what the JSON context says."""
    bits = [f"{ctx.get('num_cpus', '?')} CPUs @ {ctx.get('mhz_per_cpu', '?')} MHz"]
    simd = ctx.get("attend_simd", "")
    if simd:
        bits.append(simd.split(",")[0].strip())  # the widest set: AVX512, AVX2, ...
    return f"{name} ({', '.join(bits)})" if name else ", ".join(bits)


def peak_for(ctx, threads):
    v = ctx.get(f"attend_fp32_peak_GFLOPS_{threads}t")
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="attend_bench --benchmark_out files (JSON)")
    ap.add_argument("-o", "--out", action="append", required=True, help="output image (.png or .svg)")
    ap.add_argument("--type", default="f32", help="element type (f32, bf16, f16, f64)")
    ap.add_argument("--threads", default="2", help="thread count, or two (e.g. 2,1) for two panels")
    ap.add_argument("--shapes", help="comma-separated shapes, in this order")
    ap.add_argument("--prefer-util", action="store_true", help="across files, keep each row's quietest run")
    ap.add_argument("--util-min", type=float, default=0.9, help="hatch bars below this cpu_util")
    ap.add_argument("--machine", help="machine description for the title")
    ap.add_argument("--title", help="the whole title (overrides the default)")
    ap.add_argument("--dpi", type=int, default=100)
    args = ap.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows, _errors, ctx = report.load(args.json, args.prefer_util)
    threads_list = [int(t) for t in args.threads.split(",") if t]
    sel = {k: r for k, r in rows.items() if k[1] == args.type and k[3] in threads_list}
    if not sel:
        sys.exit(f"plot_throughput.py: no {args.type} rows at {args.threads} thread(s) in {' '.join(args.json)}")
    if args.shapes:
        shapes = [s for s in args.shapes.split(",") if any(k[2] == s for k in sel)]
    else:
        shapes = sorted({k[2] for k in sel}, key=lambda s: (report.rank(report.SHAPES, s), s))
    paths = sorted({k[0] for k in sel}, key=lambda p: (report.rank(report.PATHS, p), p))

    fig, axes = plt.subplots(1, len(threads_list), figsize=(5.2 * len(threads_list) + 1.4, 4.6),
                             sharey=True, squeeze=False)
    ymax = 0.0
    for th in threads_list:
        ymax = max([ymax, peak_for(ctx, th) or 0.0] +
                   [r["gflops"] or 0.0 for k, r in sel.items() if k[3] == th])
    width = 0.8 / max(1, len(paths))
    shared_any = False
    for ax, th in zip(axes[0], threads_list):
        for i, path in enumerate(paths):
            xs, ys, hatches = [], [], []
            for j, shape in enumerate(shapes):
                r = sel.get((path, args.type, shape, th))
                if r is None or r["gflops"] is None:
                    continue
                xs.append(j - 0.4 + width * (i + 0.5))
                ys.append(r["gflops"])
                shared = r["cpu_util"] is not None and r["cpu_util"] < args.util_min
                shared_any |= shared
                hatches.append("//" if shared else "")
            bars = ax.bar(xs, ys, width * 0.92, color=COLORS.get(path, None), label=path)
            for b, h, y in zip(bars, hatches, ys):
                b.set_hatch(h)
                ax.annotate(f"{y:.0f}" if y >= 10 else f"{y:.1f}", (b.get_x() + b.get_width() / 2, y),
                            ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
        peak = peak_for(ctx, th)
        if peak:
            ax.axhline(peak, color="black", linestyle="--", linewidth=1)
            ax.text(len(shapes) - 0.55, peak, f"fp32 FMA peak, {th} thread{'s' if th > 1 else ''}: {peak:.0f} GFLOP/s",
                    ha="right", va="bottom", fontsize=8)
        ax.set_xticks(range(len(shapes)))
        ax.set_xticklabels([SHAPE_LABEL.get(s, s) for s in shapes], fontsize=7)
        ax.set_xlim(-0.5, len(shapes) - 0.5)
        ax.set_title(f"{args.type}, {th} thread{'s' if th > 1 else ''}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0][0].set_ylabel("GFLOP/s (4·B·H·Nq·Nk·D per call)")
    axes[0][0].set_ylim(0, ymax * 1.12)
    handles = [Patch(color=COLORS.get(p), label=p) for p in paths]
    if shared_any:
        handles.append(Patch(facecolor="white", edgecolor="gray", hatch="//",
                             label=f"cpu_util < {args.util_min} (shared cores)"))
    axes[0][-1].legend(handles=handles, fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.93))
    title = args.title or f"attend throughput by path, {machine_title(ctx, args.machine)}"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    for out in args.out:
        os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
        fig.savefig(out, dpi=args.dpi, metadata={"Software": None} if out.endswith(".png") else None)
        print(f"plot_throughput.py: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
