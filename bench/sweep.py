#!/usr/bin/env python3
"""Time and peak memory of one attention call against sequence length (python3, standard library).

    python3 bench/sweep.py --out bench/results/zen4_2core_scaling.json
    python3 bench/plot_scaling.py bench/results/zen4_2core_scaling.json -o docs/images/scaling.png

For each path (default flash and math) and each N (default 256, 512, ..., 16384), it runs ONE process
`attend_bench --memory_probe=PATH --probe_n=N` (shape B 1, H 1, Nq = Nk = N, D 64; f32, 1 thread by
default) under /usr/bin/time -v, and records:

    time_s       the fastest of --probe_reps calls in that process (reps chosen so that small sizes
                 run for about --target-s seconds; --min-reps calls at the largest sizes), wall clock
    first_s      the first call's time (cold: it also pays for page faults of the path's buffers)
    peak_rss_mib the process's maximum resident set size (/usr/bin/time -v; the probe's own VmHWM
                 when /usr/bin/time is missing): inputs, outputs, the path's buffers and the
                 process's ~4-5 MiB of code and libraries
    call_mib     what the call added at its peak (the probe's VmHWM after the call minus its RSS
                 before the call)
    io_mib       q, k, v and out together

The output is JSON: {"context": {...}, "rows": [{path, N, ...}, ...]}; with --csv also a CSV.
Run it on a quiet machine: the processes run one after another, never concurrently.
Options: --bench PATH (default build-bench/bench/attend_bench), --paths flash,math, --n-min 256,
--n-max 16384, --type f32, --threads 1, --target-s 0.5, --min-reps 3, --max-reps 50, --machine TEXT.
A run takes about a minute on a 2-core Zen 4 (math at N = 16384: about 4 s and 2 GiB per call).
"""

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys

# Rough rates (FLOP/s) used only to choose how many calls to time at each size.
GUESS_RATE = {"flash": 50e9, "mem_efficient": 50e9, "math": 10e9}


def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_probe(bench, path, n, typ, threads, reps):
    cmd = [bench, f"--memory_probe={path}", f"--probe_n={n}", f"--probe_type={typ}",
           f"--probe_threads={threads}", f"--probe_reps={reps}"]
    timer = shutil.which("time", path="/usr/bin:/bin")
    full = ([timer, "-v"] if timer else []) + cmd
    proc = subprocess.run(full, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"sweep.py: {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    out = proc.stdout
    m = re.search(r"took (\w+)\) .* time=([0-9.]+) s(?: best=([0-9.]+) s of (\d+) calls)?", out)
    if not m:
        sys.exit(f"sweep.py: cannot parse the probe's output:\n{out}")
    took, first = m.group(1), float(m.group(2))
    best = float(m.group(3)) if m.group(3) else first

    def mib(label):
        mm = re.search(label + r"\s+([0-9.]+) MiB", out)
        return float(mm.group(1)) if mm else None

    rss_before = mib("VmRSS before call")
    hwm_after = mib("VmHWM after call")
    peak = None
    mm = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if mm:
        peak = int(mm.group(1)) / 1024.0
    elif hwm_after is not None:
        peak = hwm_after
    return {
        "path": path, "took": took, "N": n, "type": typ, "threads": threads, "reps": reps,
        "time_s": best, "first_s": first,
        "peak_rss_mib": round(peak, 2) if peak is not None else None,
        "call_mib": round(max(0.0, hwm_after - rss_before), 2) if None not in (hwm_after, rss_before) else None,
        "io_mib": mib("q,k,v,out"),
        "peak_source": "/usr/bin/time -v" if mm else "VmHWM",
    }


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", default="build-bench/bench/attend_bench", help="the attend_bench executable")
    ap.add_argument("--paths", default="flash,math", help="comma-separated paths")
    ap.add_argument("--n-min", type=int, default=256)
    ap.add_argument("--n-max", type=int, default=16384)
    ap.add_argument("--type", default="f32", choices=["f32", "f64", "bf16", "f16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--target-s", type=float, default=0.5, help="seconds of calls to time per point (about)")
    ap.add_argument("--min-reps", type=int, default=3)
    ap.add_argument("--max-reps", type=int, default=50)
    ap.add_argument("--machine", default="", help="a description of the machine for the context")
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--csv", help="also write the rows as CSV here")
    args = ap.parse_args(argv)

    if not os.access(args.bench, os.X_OK):
        sys.exit(f"sweep.py: {args.bench} is not an executable; build attend_bench first (see scripts/plots.sh)")
    ns = []
    n = args.n_min
    while n <= args.n_max:
        ns.append(n)
        n *= 2
    rows = []
    for path in args.paths.split(","):
        for n in ns:
            flops = 4.0 * n * n * 64
            guess = flops / GUESS_RATE.get(path, 10e9)
            # At least 2: the probe prints the best call to the microsecond, a single call to the ms.
            reps = max(args.min_reps, 2, min(args.max_reps, math.ceil(args.target_s / guess)))
            row = run_probe(args.bench, path, n, args.type, args.threads, reps)
            rows.append(row)
            print(f"{path:>13} N={n:>6}  {row['time_s'] * 1e3:10.3f} ms (best of {reps})  "
                  f"peak RSS {row['peak_rss_mib']:8.1f} MiB  call added {row['call_mib']} MiB", flush=True)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    context = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": args.machine,
        "cpu": cpu_model(),
        "num_cpus": os.cpu_count(),
        "load_avg_after": [round(x, 2) for x in load] if load else None,
        "command": "attend_bench --memory_probe=PATH --probe_n=N --probe_type=%s --probe_threads=%d --probe_reps=R"
                   % (args.type, args.threads),
        "shape": "B 1, H 1, Nq = Nk = N, D 64",
        "time": "fastest of R calls in one process, wall clock",
        "memory": "peak_rss_mib: the process's maximum resident set size",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"context": context, "rows": rows}, f, indent=1)
        f.write("\n")
    if args.csv:
        keys = list(rows[0].keys())
        with open(args.csv, "w", encoding="utf-8") as f:
            f.write(",".join(keys) + "\n")
            for r in rows:
                f.write(",".join("" if r[k] is None else str(r[k]) for k in keys) + "\n")
    print(f"sweep.py: wrote {args.out}" + (f" and {args.csv}" if args.csv else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
