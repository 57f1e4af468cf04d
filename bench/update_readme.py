#!/usr/bin/env python3
"""Regenerate README.md's performance tables from the files in bench/results (stdlib only).

    python3 bench/update_readme.py          # rewrites the text between the perf markers

Every number in that part of the README comes from a benchmark output file through bench/report.py
and bench/compare.py; nothing there is typed by hand. The sessions listed below are the inputs.
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

BEGIN, END = "<!-- perf:begin -->", "<!-- perf:end -->"

# (heading, report.py arguments, compare.py arguments or None)
SESSIONS = [
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


def main():
    os.chdir(HERE)
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
    memory = "results/zen4_long16k_memory.txt"
    if os.path.exists(memory):
        lines = [l.rstrip() for l in open(memory, encoding="utf-8")]
        parts.append(f"#### {lines[0].lstrip('# ')}\n")
        parts.append("```\n" + "\n".join(l.strip() for l in lines[1:]) + "\n```\n")
    readme = os.path.join(ROOT, "README.md")
    text = open(readme, encoding="utf-8").read()
    if BEGIN not in text or END not in text:
        sys.exit(f"README.md has no {BEGIN} ... {END} section")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = "\n".join(parts)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(head + BEGIN + "\n" + body + "\n" + END + tail)


if __name__ == "__main__":
    main()
