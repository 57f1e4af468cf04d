#!/usr/bin/env python3
"""Side-by-side table of attend's flash path and the peers, from one session's files (stdlib only).

    python3 bench/compare.py bench/results/xeon16_attend.json bench/results/xeon16_torch.txt \
        bench/results/xeon16_ort.txt > compare.md

attend rows come from attend_bench's JSON (flash/<type>/<shape>/<threads>, and the backward's
flash_bwd/...), peer rows from the lines `torch/flash/<type>/<shape>/<threads> ... GFLOPS=x`,
`torch/flash_bwd/...` and `ort/gqa/...` that bench/peers/*.py print. Columns: GFLOP/s of each, and
attend's ratio to the best peer. f32 forward rows are shown always; others where a peer ran them.
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
    # (direction, type, shape, threads) -> GFLOP/s; direction "forward" (flash/...) or "backward"
    # (flash_bwd/...).
    attend = {}
    for (path, typ, shape, threads), row in rows.items():
        if path in ("flash", "flash_bwd") and row["gflops"]:
            attend[("backward" if path == "flash_bwd" else "forward", typ, shape, threads)] = row["gflops"]
    peers = {}
    names = []
    # torch/flash/f32/long4k/2 ..., torch/flash_bwd/bf16/..., ort/gqa/f32/... (torch's math backend,
    # when it was run, is not a peer row here: it is PyTorch's fallback, not its best).
    line_re = re.compile(r"^(\w+)/(\w+)/(\w+)/(\w+)/(\d+) .*GFLOPS=([0-9.]+)")
    for t in texts:
        with open(t) as f:
            for line in f:
                m = line_re.match(line.strip())
                if not m or m.group(2) == "math":
                    continue
                peer = m.group(1)
                if peer not in names:
                    names.append(peer)
                direction = "backward" if m.group(2).endswith("_bwd") else "forward"
                peers[(peer, direction, m.group(3), m.group(4), int(m.group(5)))] = float(m.group(6))
    head = "| shape | type | pass | threads | attend flash | " + " | ".join(names) + " | attend / best peer |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for direction in ("forward", "backward"):
        for typ in ("f32", "bf16", "f16"):
            for shape in SHAPES:
                for threads in sorted({k[3] for k in attend if k[:3] == (direction, typ, shape)}):
                    a = attend[(direction, typ, shape, threads)]
                    vals = [peers.get((p, direction, typ, shape, threads)) for p in names]
                    if not any(vals) and not (direction == "forward" and typ == "f32"):
                        continue
                    best = max([v for v in vals if v], default=None)
                    cells = " | ".join(f"{v:.1f}" if v else "n/a" for v in vals)
                    ratio = f"{a / best:.2f}x" if best and a else "n/a"
                    print(f"| {shape} | {typ} | {direction} | {threads} | {a:.1f} | {cells} | {ratio} |")


if __name__ == "__main__":
    main(sys.argv[1:])
