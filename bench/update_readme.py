#!/usr/bin/env python3
"""Regenerate the performance tables in docs/performance.md and README.md from bench/results (stdlib only).

    python3 bench/update_readme.py          # rewrites the text between the markers of both files

docs/performance.md, between <!-- perf:begin --> and <!-- perf:end -->: every session in SESSIONS,
in full (bench/report.py, and bench/compare.py where a peer was measured in the same session), and
the long16k memory probe.

README.md, between <!-- perf-summary:begin --> and <!-- perf-summary:end -->: one table, one row per
shape, of one element type and thread count from the files in SUMMARY (GFLOP/s of each path, and
flash's fraction of the ceiling measured in the same run), headed by the machine and the commit
named in SUMMARY. To show a new session, add its files to bench/results/ (and a line to
bench/results/README.md), then point SUMMARY and SESSIONS at them.

Every number between the markers comes from a benchmark output file; nothing there is typed by hand.
"""
import contextlib
import io
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import compare  # noqa: E402
import report  # noqa: E402

PERF_MD = os.path.join(ROOT, "docs", "performance.md")
README_MD = os.path.join(ROOT, "README.md")
FULL_MARKERS = ("<!-- perf:begin -->", "<!-- perf:end -->")
SUMMARY_MARKERS = ("<!-- perf-summary:begin -->", "<!-- perf-summary:end -->")

# The README's table: one session's files (merged as report.py --prefer-util does), the machine and
# the commit they were measured at (bench/results/README.md), and the rows to show.
# "avx2_files" (optional): the same rows from attend_bench built for x86-64-v3 (AVX2 + FMA) in the
# same session, shown as flash's fraction of the AVX2 build's own measured peak. The backward column
# shows the flash backward's rows (flash_bwd/...) of "files" where they exist.
# "peers" (optional): bench/peers output of the same session; the table then shows attend's flash
# throughput over PyTorch's (forward, and backward where both ran).
SUMMARY = {
    "files": ["results/xeon16_s3_attend.json"],
    "avx2_files": ["results/xeon16_s3_avx2.json"],
    "peers": ["results/xeon16_s3_torch.txt"],
    "machine": "16-core Intel Xeon (Sapphire/Emerald Rapids class, AVX-512 with AVX512_BF16, KVM)",
    "commit": "1c4569c",
    "type": "f32",
    "threads": 1,
}

# What each benchmark shape is (bench/attend_bench.cpp has the full list).
SHAPE_NOTES = {
    "bsr_time": "BS-RoFormer time axis: B 62, H 8, N 801, D 64",
    "bsr_freq": "BS-RoFormer frequency axis: B 801, H 8, N 62, D 64",
    "long4k": "B 1, H 8, N 4096, D 64",
    "causal2k_d128": "B 1, H 16, N 2048, D 128, causal",
    "decode_gqa": "one decode step: Hq 32, Hkv 8, Nq 1, Nk 4096, D 128",
    "long16k": "B 1, H 1, N 16384, D 64",
}

# (heading, report.py arguments, compare.py arguments or None)
SESSIONS = [
    ("16-core Intel Xeon, session 3 (this work's final kernels at 1c4569c, forward and backward), 1, 2 and 16 threads",
     ["results/xeon16_s3_attend.json"],
     ["results/xeon16_s3_attend.json", "results/xeon16_s3_torch.txt", "results/xeon16_s3_ort.txt"]),
    ("16-core Intel Xeon, session 3, attend_bench built for x86-64-v3 (the AVX2 + FMA kernels; ceilings of the same build)",
     ["results/xeon16_s3_avx2.json"], None),
    ("16-core Intel Xeon, session 3, bf16 with fp32 products (the same kernels built with -mno-avx512bf16: what bf16 runs on Intel CPUs since 073199a)",
     ["results/xeon16_s3_bf16_fp32products.json"], None),
    ("2-core AMD Zen 4 (AVX-512 with AVX512_BF16; this project's development and CI machine), every path and type, 1 and 2 threads",
     ["--util", "--prefer-util", "results/zen4_2core_s4.json", "results/zen4_2core_s4_rerun.json"], None),
    ("16-core Intel Xeon, session 2 (the first session's final kernels: before bf16 products and streamed outputs), 1, 2 and 16 threads",
     ["results/xeon16_s2_attend.json"], ["results/xeon16_s2_attend.json", "results/xeon16_s2_torch.txt"]),
    ("16-core Intel Xeon, session 1 (earlier kernels; a quieter host at 16 threads)",
     ["results/xeon16_s1_attend.json"], ["results/xeon16_s1_attend.json", "results/xeon16_s1_torch.txt"]),
]


def run(fn, args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn(args)
    return buf.getvalue().rstrip()


def full_section():
    """The sessions in full, and the memory probe: docs/performance.md's generated part."""
    cwd = os.getcwd()
    os.chdir(HERE)
    try:
        parts = []
        for heading, rep_args, cmp_args in SESSIONS:
            # A session's first file must exist; later ones (reruns of rows that shared their cores) may not.
            files = [a for a in rep_args if not a.startswith("--")]
            if not os.path.exists(files[0]):
                continue
            rep_args = [a for a in rep_args if a.startswith("--") or os.path.exists(a)]
            parts.append(f"#### {heading}\n")
            parts.append(f"`python3 bench/report.py {' '.join('bench/' + a if not a.startswith('--') else a for a in rep_args)}`\n")
            parts.append(run(report.main, rep_args) + "\n")
            if cmp_args and all(os.path.exists(f) for f in cmp_args):
                parts.append(f"attend's flash path beside PyTorch's CPU flash SDPA, same session "
                             f"(`python3 bench/compare.py {' '.join('bench/' + a for a in cmp_args)}`):\n")
                parts.append(run(compare.main, cmp_args) + "\n")
        for memory in ("results/zen4_long16k_memory.txt", "results/xeon2_long16k_backward_memory.txt"):
            if not os.path.exists(memory):
                continue
            lines = [l.rstrip() for l in open(memory, encoding="utf-8")]
            parts.append(f"#### {lines[0].lstrip('# ')}\n")
            parts.append("```\n" + "\n".join(l.strip() for l in lines[1:]) + "\n```\n")
        return "\n".join(parts)
    finally:
        os.chdir(cwd)


def summary_section():
    """One row per shape for SUMMARY's type and thread count: the README's table."""
    files = [os.path.join(HERE, f) for f in SUMMARY["files"] if os.path.exists(os.path.join(HERE, f))]
    if not files:
        sys.exit(f"none of {SUMMARY['files']} exists in bench/")
    rows, _, ctx = report.load(files, prefer_util=True)
    typ, threads = SUMMARY["type"], SUMMARY["threads"]
    peak = ctx.get(f"attend_fp32_peak_GFLOPS_{threads}t")
    bw = ctx.get(f"attend_read_bw_GBps_{threads}t")
    shown = " and ".join(f"`bench/{f}`" for f in SUMMARY["files"])
    head = (f"_{SUMMARY['machine']}, attend at {SUMMARY['commit']} ({shown}): {typ}, {threads} thread{'' if threads == 1 else 's'}, "
            f"GFLOP/s per path"
            + (f"; measured fp32 FMA peak {peak} GFLOP/s" if peak else "")
            + (f", read bandwidth {bw} GB/s" if bw else "") + "._")
    avx2_files = [os.path.join(HERE, f) for f in SUMMARY.get("avx2_files", []) if os.path.exists(os.path.join(HERE, f))]
    avx2 = report.load(avx2_files, prefer_util=True)[0] if avx2_files else None
    backward = any(k[0] == "flash_bwd" and k[1] == typ and k[3] == threads for k in rows)
    torch = peer_rates([os.path.join(HERE, f) for f in SUMMARY.get("peers", [])], "torch", typ, threads)
    paths = [p for p in report.PATHS if any(k[0] == p and k[1] == typ and k[3] == threads for k in rows)]
    columns = ["shape", "what"] + paths + ["flash, fraction of the ceiling"]
    if torch:
        columns.append("flash / PyTorch")
    if backward:
        columns.append("flash backward (fraction of the FMA peak)")
        if torch:
            columns.append("backward / PyTorch")
    if avx2 is not None:
        columns.append("flash built for AVX2 (x86-64-v3), fraction of its ceiling")
    out = [head, "", "| " + " | ".join(columns) + " |",
           "|---|---|" + "---:|" * len(paths) + "---|" * (len(columns) - 2 - len(paths))]
    shapes = sorted({k[2] for k in rows if k[1] == typ and k[3] == threads},
                    key=lambda x: (report.rank(report.SHAPES, x), x))
    shared = False
    for shape in shapes:
        cells = []
        for path in paths:
            r = rows.get((path, typ, shape, threads))
            mark = ""
            if r is not None and r["cpu_util"] is not None and r["cpu_util"] < 0.9:
                mark, shared = " †", True
            cells.append("–" if r is None or r["gflops"] is None else f"{r['gflops']:.1f}{mark}")
        flash = rows.get(("flash", typ, shape, threads))
        cells.append(ceiling_fraction(flash))
        if torch:
            cells.append(ratio(flash, torch.get(("flash", shape))))
        if backward:
            r = rows.get(("flash_bwd", typ, shape, threads))
            cells.append("–" if r is None or r["gflops"] is None else
                         f"{r['gflops']:.1f} ({r['peak_frac']:.2f})" if r["peak_frac"] is not None else f"{r['gflops']:.1f}")
            if torch:
                cells.append(ratio(r, torch.get(("flash_bwd", shape))))
        if avx2 is not None:
            cells.append(ceiling_fraction(avx2.get(("flash", typ, shape, threads)), short=True))
        out.append(f"| {shape} | {SHAPE_NOTES.get(shape, '')} | {' | '.join(cells)} |")
    if shared:
        out += ["", "† cpu_util below 0.9: the row shared its cores with other work (its numbers are low)."]
    return "\n".join(out) + "\n"


def peer_rates(files, peer, typ, threads):
    """{(backend, shape): GFLOP/s} from bench/peers lines such as `torch/flash/f32/long4k/1 ... GFLOPS=x`."""
    rates = {}
    for f in files:
        if not os.path.exists(f):
            continue
        for line in open(f, encoding="utf-8"):
            parts = line.split()
            if not parts or "GFLOPS=" not in line:
                continue
            name = parts[0].split("/")
            if len(name) == 5 and name[0] == peer and name[2] == typ and name[4] == str(threads):
                rates[(name[1], name[3])] = float(line.split("GFLOPS=")[1].split()[0])
    return rates


def ratio(row, peer_gflops):
    if row is None or not row["gflops"] or not peer_gflops:
        return "–"
    return f"{row['gflops'] / peer_gflops:.2f}x"


def ceiling_fraction(row, short=False):
    """A flash row's fraction of the ceiling measured in its run: read bandwidth for decode, else FMA peak."""
    if row is not None and row["bw_frac"] is not None:
        return f"{row['bw_frac']:.2f} of the read bandwidth" + ("" if short else " (memory-bound)")
    if row is not None and row["peak_frac"] is not None:
        return f"{row['peak_frac']:.2f}" + ("" if short else " of the FMA peak")
    return "–"


def replace_between(path, markers, body):
    begin, end = markers
    text = open(path, encoding="utf-8").read()
    if begin not in text or end not in text:
        sys.exit(f"{os.path.relpath(path, ROOT)} has no {begin} ... {end} section")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + begin + "\n" + body + "\n" + end + tail)


def main():
    replace_between(PERF_MD, FULL_MARKERS, full_section())
    replace_between(README_MD, SUMMARY_MARKERS, summary_section())


if __name__ == "__main__":
    main()
