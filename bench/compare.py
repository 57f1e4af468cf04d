#!/usr/bin/env python3
"""Side-by-side table of attend's flash path and the peers, from one session's files (stdlib only).

    python3 bench/compare.py bench/results/xeon16_attend.json bench/results/xeon16_torch.txt \
        bench/results/xeon16_ort.txt > compare.md

attend rows come from attend_bench's JSON (flash/f32/<shape>/<threads>), peer rows from the lines
`torch/flash/f32/<shape>/<threads> ... GFLOPS=x` and `ort/mha/f32/<shape>/<threads> ... GFLOPS=x`
that bench/peers/*.py print. Columns: GFLOP/s of each, and attend's ratio to the best peer.
"""
import json
import re
import sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
from report import load  # noqa: E402  (same directory)

SHAPES = ["bsr_time", "bsr_freq", "long4k", "causal2k_d128", "decode_gqa"]


def main(argv):
    jsons = [a for a in argv if a.endswith(".json")]
    texts = [a for a in argv if not a.endswith(".json")]
    rows, _, _ = load(jsons)
    attend = {}
    for key, row in rows.items():
        path, typ, shape, threads = key
        if path == "flash" and typ == "f32":
            attend[(shape, threads)] = row["gflops"]
    peers = {}
    names = []
    line_re = re.compile(r"^(\w+)/(\w+)/f32/(\w+)/(\d+) .*GFLOPS=([0-9.]+)")
    for t in texts:
        with open(t) as f:
            for line in f:
                m = line_re.match(line.strip())
                if not m:
                    continue
                peer = f"{m.group(1)} {m.group(2)}"
                if peer not in names:
                    names.append(peer)
                peers[(peer, m.group(3), int(m.group(4)))] = float(m.group(5))
    head = "| shape | threads | attend flash | " + " | ".join(names) + " | attend / best peer |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for shape in SHAPES:
        for threads in sorted({t for (s, t) in attend if s == shape}):
            a = attend[(shape, threads)]
            vals = [peers.get((p, shape, threads)) for p in names]
            best = max([v for v in vals if v], default=None)
            cells = " | ".join(f"{v:.1f}" if v else "n/a" for v in vals)
            ratio = f"{a / best:.2f}x" if best and a else "n/a"
            print(f"| {shape} | {threads} | {a:.1f} | {cells} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1:])
