#!/usr/bin/env python3
"""Chart of one attention call's time and peak memory against sequence length (bench/sweep.py's JSON).

    python3 bench/sweep.py --out bench/results/zen4_2core_scaling.json
    python3 bench/plot_scaling.py bench/results/zen4_2core_scaling.json -o docs/images/scaling.png

Needs Python 3 and matplotlib (Debian: apt-get install python3-matplotlib).

Two panels, both log-log, one line per path: the call's time in ms (the fastest of the sweep's calls
at that size), and the process's peak resident memory in MiB, with q, k, v and out together as a
dotted reference line. The title names the machine (--machine, else the sweep's context).
Options: -o/--out PATH (.png or .svg; may be repeated), --dpi (default 100), --title TEXT.
"""

import argparse
import json
import os
import sys

COLORS = {"flash": "#1f77b4", "mem_efficient": "#2ca02c", "math": "#d62728"}
ORDER = ["flash", "mem_efficient", "math"]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="bench/sweep.py output")
    ap.add_argument("-o", "--out", action="append", required=True, help="output image (.png or .svg)")
    ap.add_argument("--machine", help="machine description for the title")
    ap.add_argument("--title", help="the whole title (overrides the default)")
    ap.add_argument("--dpi", type=int, default=100)
    args = ap.parse_args(argv)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    with open(args.json, encoding="utf-8") as f:
        data = json.load(f)
    ctx, rows = data.get("context", {}), data.get("rows", [])
    if not rows:
        sys.exit(f"plot_scaling.py: no rows in {args.json}")
    paths = sorted({r["path"] for r in rows}, key=lambda p: (ORDER.index(p) if p in ORDER else 9, p))
    first = rows[0]

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10.5, 4.3))
    io = {}
    for path in paths:
        pr = sorted((r for r in rows if r["path"] == path), key=lambda r: r["N"])
        ns = [r["N"] for r in pr]
        ax_t.plot(ns, [r["time_s"] * 1e3 for r in pr], "o-", color=COLORS.get(path), label=path)
        ax_m.plot(ns, [r["peak_rss_mib"] for r in pr], "o-", color=COLORS.get(path), label=f"{path}: peak RSS")
        for r in pr:
            if r.get("io_mib") is not None:
                io[r["N"]] = r["io_mib"]
        last = pr[-1]
        ax_t.annotate(f"{last['time_s'] * 1e3:.0f} ms", (last["N"], last["time_s"] * 1e3), fontsize=8,
                      xytext=(-4, 6), textcoords="offset points", ha="right")
        ax_m.annotate(f"{last['peak_rss_mib']:.0f} MiB", (last["N"], last["peak_rss_mib"]), fontsize=8,
                      xytext=(-4, 6), textcoords="offset points", ha="right")
    if io:
        ns = sorted(io)
        ax_m.plot(ns, [io[n] for n in ns], ":", color="gray", label="q, k, v, out")

    ns_all = sorted({r["N"] for r in rows})
    fmt_n = FuncFormatter(lambda x, _: f"{int(x)}" if x < 1024 else f"{int(x) // 1024}k")
    for ax in (ax_t, ax_m):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ns_all)
        ax.xaxis.set_major_formatter(fmt_n)
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xlabel("sequence length N (Nq = Nk)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    ax_t.set_ylabel("time of one call (ms)")
    ax_t.set_title("time: both do 4·N²·D FLOPs", fontsize=10)
    ax_m.set_ylabel("process peak resident memory (MiB)")
    ax_m.set_title("memory: math materialises N×N scores, flash works in tiles", fontsize=10)

    machine = args.machine or ctx.get("machine") or f"{ctx.get('num_cpus', '?')} CPUs, {ctx.get('cpu', '')}"
    shape = f"B 1, H 1, D 64, {first.get('type', 'f32')}, {first.get('threads', 1)} thread" + \
            ("s" if first.get("threads", 1) > 1 else "")
    fig.suptitle(args.title or f"attend: one call against sequence length ({shape}), {machine}", fontsize=11)
    fig.tight_layout()
    for out in args.out:
        os.makedirs(os.path.dirname(os.path.abspath(out)) or ".", exist_ok=True)
        fig.savefig(out, dpi=args.dpi, metadata={"Software": None} if out.endswith(".png") else None)
        print(f"plot_scaling.py: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
