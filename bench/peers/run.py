#!/usr/bin/env python3
"""attend beside PyTorch's CPU SDPA and ONNX Runtime in one run, interleaved: the side-by-side table
and chart. Usually started by scripts/peers.sh, which makes the virtual environment and builds
attend_bench; by hand, with a Python that has torch, onnxruntime, onnx, numpy and matplotlib:

    python bench/peers/run.py --attend-bench build-peers/bench/attend_bench            # 3 sweeps
    python bench/peers/run.py --attend-bench ... --repeats 1 --shapes bsr_freq --types f32
    python bench/peers/run.py --render bench/results/peers_<name>.json                 # no run

What runs: the rows of `attend_bench --benchmark_list_tests=true --full` with a path of
--attend-paths (default flash), a type of --types (f32,bf16), a shape of --shapes (every shape but
long16k) and a thread count of --threads (1,2) make the cells (shape, type, threads); a cell with no
attend row (bf16 causal2k_d128) is not run. Each cell runs, back to back: one attend_bench process
for its attend rows (which also measures the fp32 FMA peak, and for decode the read bandwidth, of
that thread count), PyTorch's SDPA with the flash and the math backend, and ONNX Runtime's operator
for the shape (bench/peers/ort_mha.py). The order of the four rotates from sweep to sweep, and the
whole sweep runs --repeats times (3), so that the machine's noise falls on all of them alike; the
table has each row's median. Backward: when attend_bench lists `<path>_bwd/...` rows (or with
--backward on, to try PyTorch's side alone), their cells run attend's backward against PyTorch's
(flash and math; torch.autograd.grad on a forward graph built once); ONNX Runtime has none.
PyTorch and ONNX Runtime run in worker processes (torch_sdpa.py / ort_mha.py --serve) that stay up
for the whole run; only one thing runs at a time.

Timing: every implementation as attend_bench's rows (Google Benchmark): a warm-up call, then
batches until one lasts --min-time seconds (0.2); the mean wall time per call. cpu_util is process
CPU seconds / (wall seconds x threads) over that batch: below 0.9 the row shared its cores (marked
* in the table, hatched in the chart). decode rows rotate through copies of K and V (>= 4x the L3),
in every implementation, so that each call reads them from memory.

Output: --json (every measurement, the peaks, versions; --render rebuilds the rest from it), --md
(the tables, also printed), --png (the chart). Defaults: bench/results/peers_<name>.json and .md,
docs/images/peers.png, with --name from the CPU model and CPU count.
"""
import argparse
import datetime
import json
import os
import platform
import re
import select
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from common import PROTOCOL_PREFIX, SHAPES, flops, kv_bytes  # noqa: E402

SHAPE_ORDER = list(SHAPES)


def memory_bound(direction, shape):
    """The decode step's forward reads all of K and V for one query: GB/s and the read bandwidth.
    Its backward (attend_bench's flash_bwd/*/decode_gqa rows) is reported as the others, in GFLOP/s
    of the fp32 FMA peak, with its time beside."""
    return direction == "fwd" and SHAPES[shape][7]

UTIL_MIN = 0.9
PEER_IMPLS = ["torch/flash", "torch/math", "ort"]
LABEL = {"torch/flash": "torch flash", "torch/math": "torch math", "ort": "ORT"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Peer workers


class Worker:
    """A peer's --serve process; request() sends one JSON request and waits for its answer."""

    def __init__(self, name, script, logdir):
        self.name, self.script, self.logdir = name, script, logdir
        self.proc, self.dead_reason, self.info = None, None, None

    def start(self, timeout):
        self.errlog = open(os.path.join(self.logdir, f"{self.name}.stderr"), "a")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, self.script), "--serve"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errlog,
                                     text=True, bufsize=1, cwd=REPO)
        ans = self._ask({"op": "info"}, timeout)
        if not ans.get("ok"):
            self.dead_reason = ans.get("reason", "did not start")
            self.stop()
        else:
            self.info = ans

    def _stderr_tail(self):
        try:
            with open(self.errlog.name) as f:
                lines = [ln.strip() for ln in f.read().splitlines() if ln.strip()]
            return lines[-1][:200] if lines else ""
        except OSError:
            return ""

    def _ask(self, req, timeout):
        if self.proc is None or self.proc.poll() is not None:
            return {"ok": False, "reason": f"{self.name} worker not running"}
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return {"ok": False, "reason": f"{self.name} worker exited: {self._stderr_tail()}"}
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stop()
                return {"ok": False, "reason": f"timed out after {timeout:.0f} s", "timeout": True}
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                self.proc = None
                return {"ok": False, "reason": f"{self.name} worker exited ({code}): {self._stderr_tail()}"}
            if line.startswith(PROTOCOL_PREFIX):
                return json.loads(line[len(PROTOCOL_PREFIX):])

    def request(self, req, timeout):
        if self.dead_reason:
            return {"ok": False, "reason": self.dead_reason}
        if self.proc is None:  # restarted after a time-out or a crash
            self.start(timeout=180)
            if self.dead_reason:
                return {"ok": False, "reason": self.dead_reason}
        return self._ask(req, timeout)

    def stop(self):
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
            self.proc = None


# ---------------------------------------------------------------------------------------------
# attend_bench


def list_attend_rows(bench, threads):
    out = subprocess.run([bench, "--benchmark_list_tests=true", "--full", f"--threads={threads}"],
                         check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.split():
        parts = line.split("/")
        if len(parts) >= 4 and parts[3].isdigit():
            rows.append((parts[0], parts[1], parts[2], int(parts[3])))
    return rows


def run_attend(bench, paths, cell, min_time, tmpdir, timeout, have):
    """One attend_bench process for a cell's rows; returns ({path: record}, context). `have`: the
    rows attend_bench lists; paths without a row are n/a without a run."""
    direction, shape, typ, threads = cell
    suffix = "_bwd" if direction == "bwd" else ""
    missing = {p: {"ok": False, "reason": f"attend_bench has no {p}{suffix} row (yet)"} for p in paths
               if (p + suffix, typ, shape, threads) not in have}
    paths = [p for p in paths if p not in missing]
    if not paths:
        return missing, {}
    names = "|".join(re.escape(p + suffix) for p in paths)
    out = os.path.join(tmpdir, "attend.json")
    if os.path.exists(out):
        os.remove(out)
    cmd = [bench, f"--threads={threads}", f"--benchmark_filter=^({names})/{typ}/{shape}/{threads}/",
           f"--benchmark_min_time={min_time}", f"--benchmark_out={out}", "--benchmark_out_format=json"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {p_: {"ok": False, "reason": f"attend_bench timed out after {timeout:.0f} s"} for p_ in paths}, {}
    if p.returncode != 0 or not os.path.exists(out):
        msg = (p.stderr.strip().splitlines() or ["?"])[-1][:200]
        return {p_: {"ok": False, "reason": f"attend_bench failed ({p.returncode}): {msg}"} for p_ in paths}, {}
    with open(out) as f:
        data = json.load(f)
    recs = {}
    for b in data.get("benchmarks", []):
        path = b["name"].split("/")[0]
        if suffix:
            path = path[: -len(suffix)]
        if b.get("error_occurred"):
            recs[path] = {"ok": False, "reason": f"attend_bench: {b.get('error_message', 'error')}"}
            continue
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
        rec = {"ok": True, "seconds": b["real_time"] * scale, "iterations": b.get("iterations"),
               "cpu_util": b.get("cpu_util")}
        for k in ("peak_frac", "bw_frac", "FLOPS", "bytes_per_second"):
            if k in b:
                rec[k] = b[k]
        recs[path] = rec
    for p_ in paths:
        recs.setdefault(p_, {"ok": False, "reason": "attend_bench has no such row"})
    recs.update(missing)
    return recs, data.get("context", {})


# ---------------------------------------------------------------------------------------------
# The run


def cpu_flags(wanted=("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")):
    """The CPU features that decide which kernels run (attend's and the peers'), from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def load_avg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_name():
    model, cpus = "cpu", os.cpu_count() or 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    slug = re.sub(r"\((r|tm)\)|\bprocessor\b|\bcpu\b|@.*$|\d+-core", "", model, flags=re.I)
    slug = re.sub(r"[^a-z0-9]+", "_", slug.lower()).strip("_")
    return f"{slug or 'cpu'}_{cpus}cpu", model


def git_describe():
    try:
        sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def plan_cells(rows, args):
    """The cells, in sweep order: forward (type, shape, threads), then backward."""
    shapes = [s for s in args.shapes.split(",") if s]
    types = [t for t in args.types.split(",") if t]
    threads = [int(t) for t in args.threads.split(",") if t]
    paths = [p for p in args.attend_paths.split(",") if p]
    have = set(rows)
    cells, skipped = [], []
    for direction in ("fwd", "bwd"):
        suffix = "_bwd" if direction == "bwd" else ""
        attend_bwd = any(r[0].endswith("_bwd") for r in rows)
        if direction == "bwd" and (args.backward == "off" or (args.backward == "auto" and not attend_bwd)):
            continue
        for typ in types:
            for shape in shapes:
                for th in threads:
                    if any((p + suffix, typ, shape, th) in have for p in paths):
                        cells.append((direction, shape, typ, th))
                    elif direction == "bwd" and args.backward == "on" and not SHAPES[shape][7] and \
                            any((p, typ, shape, th) in have for p in paths):
                        cells.append((direction, shape, typ, th))  # PyTorch's side alone, for now
                    elif not (direction == "bwd" and SHAPES[shape][7]):  # no backward of a decode step
                        skipped.append((direction, shape, typ, th))
    return cells, skipped


def run(args):
    bench = os.path.abspath(args.attend_bench)
    if not os.access(bench, os.X_OK):
        sys.exit(f"run.py: no attend_bench at {bench} (scripts/peers.sh builds it)")
    rows = list_attend_rows(bench, args.threads)
    cells, skipped = plan_cells(rows, args)
    if not cells:
        sys.exit("run.py: no cells to run (check --shapes, --types, --threads, --attend-paths)")
    paths = [p for p in args.attend_paths.split(",") if p]
    torch_backends = [b for b in args.torch_backends.split(",") if b]
    impls = ["attend"] + [f"torch/{b}" for b in torch_backends] + ([] if args.no_ort else ["ort"])
    log(f"run.py: {len(cells)} cells x {args.repeats} sweeps; each cell: {', '.join(impls)}")
    if skipped:
        log("run.py: no attend row, not run: " + ", ".join("/".join(map(str, c)) for c in skipped))
    if args.dry_run:
        for c in cells:
            print("/".join(map(str, c)))
        return None

    tmpdir = tempfile.mkdtemp(prefix="attend-peers-")
    workers = {}
    if torch_backends:
        workers["torch"] = Worker("torch", "torch_sdpa.py", tmpdir)
    if not args.no_ort:
        workers["ort"] = Worker("ort", "ort_mha.py", tmpdir)
    for w in workers.values():
        w.start(timeout=300)
        log(f"run.py: {w.name}: " + (json.dumps(w.info) if w.info else f"unavailable ({w.dead_reason})"))

    name, model = machine_name()
    result = {
        "schema": "attend-peers/1",
        "meta": {
            "name": args.name or name, "cpu_model": model, "cpus": os.cpu_count(), "host": platform.node(),
            "attend_git": git_describe(), "argv": sys.argv[1:], "repeats": args.repeats, "min_time": args.min_time,
            "attend_paths": paths, "torch_backends": torch_backends, "threads": args.threads, "types": args.types,
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "peers": {k: w.info or {"unavailable": w.dead_reason} for k, w in workers.items()},
            "python": platform.python_version(), "skipped_cells": ["/".join(map(str, c)) for c in skipped],
            "cpu_flags": cpu_flags(), "load_start": load_avg(),
        },
        "measurements": [], "contexts": [],
    }
    t_start = time.monotonic()
    timed_out = set()
    try:
        for rep in range(args.repeats):
            for ci, cell in enumerate(cells):
                direction, shape, typ, th = cell
                k = rep % len(impls)
                order = impls[k:] + impls[:k]
                line = []
                for impl in order:
                    base = {"repeat": rep, "direction": direction, "shape": shape, "type": typ, "threads": th,
                            "time": round(time.monotonic() - t_start, 2)}
                    if impl == "attend":
                        recs, ctx = run_attend(bench, paths, cell, args.min_time, tmpdir, args.timeout, set(rows))
                        if ctx:
                            result["contexts"].append({"repeat": rep, "cell": "/".join(map(str, cell)),
                                                       **{c: v for c, v in ctx.items() if c.startswith("attend_")},
                                                       "load_avg": ctx.get("load_avg")})
                        for p in paths:
                            result["measurements"].append({**base, "impl": f"attend/{p}", **recs[p]})
                            line.append(summary_word(f"attend/{p}", recs[p], cell))
                        continue
                    key = (impl, cell)
                    if key in timed_out:
                        rec = {"ok": False, "reason": "timed out in an earlier sweep"}
                    else:
                        peer, _, variant = impl.partition("/")
                        rec = workers[peer].request({"op": "measure", "variant": variant or "auto",
                                                     "direction": direction, "shape": shape, "type": typ,
                                                     "threads": th, "min_time": args.min_time}, args.timeout)
                        if rec.get("timeout"):
                            timed_out.add(key)
                    rec.pop("flops", None)
                    result["measurements"].append({**base, "impl": impl, **rec})
                    line.append(summary_word(impl, rec, cell))
                log(f"[{rep + 1}/{args.repeats} {ci + 1:2d}/{len(cells)}] {direction} {typ}/{shape}/{th}: " +
                    "  ".join(line))
    finally:
        for w in workers.values():
            w.stop()
    result["meta"]["elapsed_s"] = round(time.monotonic() - t_start, 1)
    result["meta"]["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    result["meta"]["load_end"] = load_avg()
    log(f"run.py: measured in {result['meta']['elapsed_s']:.0f} s; worker logs in {tmpdir}")
    return result


def summary_word(impl, rec, cell):
    if not rec.get("ok"):
        return f"{impl} n/a"
    direction, shape, typ, _th = cell
    s = rec["seconds"]
    if memory_bound(direction, shape):
        v = f"{kv_bytes(shape, typ) / s / 1e9:.1f} GB/s"
    else:
        v = f"{flops(shape, direction) / s / 1e9:.1f} GFLOP/s"
    util = rec.get("cpu_util")
    return f"{impl} {v}" + (f" (util {util:.2f})" if util is not None else "")


# ---------------------------------------------------------------------------------------------
# Summary, table, chart


def median_or_none(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def ceilings(result):
    """{threads: median fp32 peak GFLOP/s}, {threads: median read GB/s}, from attend_bench's contexts."""
    peaks, bws = {}, {}
    for ctx in result["contexts"]:
        for key, v in ctx.items():
            m = re.fullmatch(r"attend_fp32_peak_GFLOPS_(\d+)t", key)
            if m:
                peaks.setdefault(int(m.group(1)), []).append(float(v))
            m = re.fullmatch(r"attend_read_bw_GBps_(\d+)t", key)
            if m:
                bws.setdefault(int(m.group(1)), []).append(float(v))
    return ({t: statistics.median(v) for t, v in peaks.items()}, {t: statistics.median(v) for t, v in bws.items()})


def summarize(result):
    """{(direction, shape, type, threads): {impl: summary}}: medians over the sweeps."""
    peaks, bws = ceilings(result)
    groups = {}
    for m in result["measurements"]:
        cell = (m["direction"], m["shape"], m["type"], m["threads"])
        groups.setdefault(cell, {}).setdefault(m["impl"], []).append(m)
    out = {}
    for cell, by_impl in groups.items():
        direction, shape, typ, th = cell
        decode = memory_bound(direction, shape)
        out[cell] = {}
        for impl, ms in by_impl.items():
            ok = [m for m in ms if m.get("ok")]
            if not ok:
                reasons = [m.get("reason", "?") for m in ms]
                out[cell][impl] = {"ok": False, "reason": max(set(reasons), key=reasons.count)}
                continue
            s = statistics.median(m["seconds"] for m in ok)
            gflops = flops(shape, direction) / s / 1e9
            gbps = kv_bytes(shape, typ) / s / 1e9
            secs = [m["seconds"] for m in ok]
            rec = {"ok": True, "seconds": s, "gflops": gflops, "gbps": gbps, "n": len(ok), "of": len(ms),
                   "spread": (max(secs) - min(secs)) / s, "by_repeat": {m["repeat"]: m["seconds"] for m in ok},
                   "cpu_util": median_or_none(m.get("cpu_util") for m in ok),
                   "op": ok[0].get("op")}
            # Fraction of the machine's ceiling, the same one for every implementation: the median
            # over the run of attend_bench's measurements for this thread count, so that two bars
            # compare as their throughputs do (attend_bench's own per-process peak_frac and bw_frac
            # counters stay in the measurements).
            ceiling = bws.get(th) if decode else peaks.get(th)
            rec["frac"] = (gbps if decode else gflops) / ceiling if ceiling else None
            out[cell][impl] = rec
    return out, peaks, bws


def best_peer(recs, decode):
    best = None
    for impl in PEER_IMPLS:
        r = recs.get(impl)
        if r and r["ok"] and (best is None or r["seconds"] < recs[best]["seconds"]):
            best = impl
    return best


class Notes:
    """Numbered footnotes for n/a cells."""

    def __init__(self):
        self.items = []

    def ref(self, text):
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def fmt_value(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def cell_text(rec, decode, notes, show_ms=None):
    if rec is None:
        return "–"
    if not rec["ok"]:
        return "n/a " + notes.ref(rec["reason"])
    v = fmt_value(rec["gbps"] if decode else rec["gflops"])
    extra = [f"{rec['seconds'] * 1e3:.2f} ms"] if (decode if show_ms is None else show_ms) else []
    if rec.get("op") and rec["op"] != "mha":
        extra.append(rec["op"])
    if extra:
        v += f" ({', '.join(extra)})"
    if rec.get("cpu_util") is not None and rec["cpu_util"] < UTIL_MIN:
        v += "*"
    return v


NOISY_SPREAD = 0.15


def sweep_ratios(a, b):
    """The best peer's time over attend's within each sweep (the two ran seconds apart, so load that
    lasts longer than a cell falls on both): the ratio's own noise, whatever the load did to the
    absolute numbers."""
    ra, rb = a.get("by_repeat", {}), b.get("by_repeat", {})
    return [rb[k] / ra[k] for k in sorted(ra, key=int) if k in rb]


def ratio(a, b):
    """attend (a) against a peer (b): the median of the per-sweep ratios of b's time over a's (the
    ratio of the two median times would pair a quiet sweep's attend with a loaded sweep's peer)."""
    rs = sweep_ratios(a, b)
    return statistics.median(rs) if rs else b["seconds"] / a["seconds"]


def ratio_spread(a, b):
    rs = sweep_ratios(a, b)
    return (max(rs) - min(rs)) / statistics.median(rs) if len(rs) > 1 else 0.0


def noisy(a, b):
    """A ratio that should not be read closely: its per-sweep ratios spread by more than
    NOISY_SPREAD of their median."""
    return ratio_spread(a, b) > NOISY_SPREAD


def amx_note(meta):
    """bf16 rows on a CPU with AMX: PyTorch's products run there (oneDNN), attend's do not."""
    flags = meta.get("cpu_flags") or []
    if "amx_bf16" not in flags:
        return None
    return ("bf16 on this CPU (AMX-BF16): PyTorch's bf16 SDPA takes its products from oneDNN's brgemm ukernel, "
            "which oneDNN runs on AMX tiles where the CPU has them (its ISA here: \"Intel AVX10.1 and Intel AMX with "
            "bfloat16\"; PyTorch's bf16 matmul reaches ~1.2 TFLOP/s on one core of this machine, 11x what it does with "
            "ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16); attend's bf16 on Intel CPUs widens to fp32 and takes fp32 FMA products "
            "(include/attend/detail/arch/avx512_bf16.hpp), so these rows compare an fp32-product kernel with an "
            "AMX one. An AMX kernel for attend is in progress separately.")


def load_text(result):
    meta = result["meta"]
    loads = [c["load_avg"][0] for c in result.get("contexts", []) if c.get("load_avg")]
    parts = []
    if meta.get("load_start"):
        parts.append(f"{meta['load_start'][0]:.2f} at the start")
    if meta.get("load_end"):
        parts.append(f"{meta['load_end'][0]:.2f} at the end")
    if loads:
        parts.append(f"{min(loads):.1f}-{max(loads):.1f} (median {statistics.median(loads):.1f}) at the "
                     f"{len(loads)} attend_bench starts")
    return ("Load (1-minute average, 2 CPUs means 2.0 is full): " + ", ".join(parts) + ".") if parts else ""


def markdown(result):
    summary, peaks, bws = summarize(result)
    meta = result["meta"]
    paths = meta["attend_paths"]
    lead = f"attend/{paths[0]}"
    peers = [i for i in PEER_IMPLS if any(i in recs for recs in summary.values())]
    notes = Notes()
    pinfo = meta.get("peers", {})
    tv = pinfo.get("torch", {}).get("version")
    ov = pinfo.get("ort", {}).get("version")
    flags = meta.get("cpu_flags")
    out = [f"### attend beside PyTorch and ONNX Runtime: {meta['cpu_model']}, {meta['cpus']} CPUs"
           + (f" ({', '.join(flags)})" if flags else ""), ""]
    out.append(f"attend {meta['attend_git']}" + (f", PyTorch {tv} (CPU SDPA)" if tv else "") +
               (f", ONNX Runtime {ov} (CPU)" if ov else "") +
               f"; medians of {meta['repeats']} interleaved sweep{'s' if meta['repeats'] != 1 else ''}, {meta.get('started', '')[:10]}"
               f" (`bench/peers/run.py`, {meta.get('elapsed_s', 0) / 60:.0f} min).")
    out.append("")
    pk = ", ".join(f"{t} thread{'s' if t > 1 else ''} {v:.1f} GFLOP/s" for t, v in sorted(peaks.items()))
    bw = ", ".join(f"{t} thread{'s' if t > 1 else ''} {v:.1f} GB/s" for t, v in sorted(bws.items()))
    out.append(f"**fp32 FMA peak** (attend_bench, same run): {pk or 'not measured'}." +
               (f" **Read bandwidth**: {bw}." if bw else ""))
    out.append("")
    lt = load_text(result)
    if lt:
        out.append(lt)
        out.append("")
    utils = {}
    for cell, recs in summary.items():
        for r in recs.values():
            if r.get("ok") and r.get("cpu_util") is not None:
                utils.setdefault(cell[3], []).append(r["cpu_util"])
    if utils:
        out.append("Median cpu_util of the rows: " + ", ".join(
            f"{t} thread{'s' if t > 1 else ''} {statistics.median(v):.2f} (min {min(v):.2f})"
            for t, v in sorted(utils.items())) + ". A row below 0.9 (`*`) shared its cores: its GFLOP/s are low by "
            "about that factor and are not the implementation's speed. The ratio is sturdier, since attend and the "
            "peers of a cell run seconds apart and a sweep's load falls on all of them: its range over the sweeps "
            f"is beside it, `noisy` where that range is more than {NOISY_SPREAD:.0%} of the median.")
        out.append("")
    amx = amx_note(meta)

    def ratio_text(recs, decode):
        a = recs.get(lead)
        b = best_peer(recs, decode)
        if not a or not a["ok"] or b is None:
            return "n/a"
        t = f"{ratio(a, recs[b]):.2f}x ({LABEL[b]})"
        rs = sweep_ratios(a, recs[b])
        if len(rs) > 1:
            t += f"; sweeps {min(rs):.2f}-{max(rs):.2f}" + (", noisy" if noisy(a, recs[b]) else "")
        return t

    def table(title, cells, decode, unit_note):
        if not cells:
            return
        out.append(f"#### {title}")
        out.append("")
        out.append(unit_note)
        out.append("")
        acols = [f"attend {p}" for p in paths]
        frac = "bw_frac" if decode else "peak_frac"
        head = ["shape", "type", "threads"] + [acols[0], frac] + acols[1:] + [LABEL[p] for p in peers] + \
               [f"attend {paths[0]} / best peer"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|")
        for cell in cells:
            recs = summary[cell]
            direction, shape, typ, th = cell
            a = recs.get(lead)
            fr = f"{a['frac']:.2f}" if a and a["ok"] and a.get("frac") is not None else "–"
            row = [shape, typ + ("†" if typ == "bf16" and amx else ""), str(th),
                   cell_text(a, decode, notes, SHAPES[shape][7]), fr]
            row += [cell_text(recs.get(f"attend/{p}"), decode, notes, SHAPES[shape][7]) for p in paths[1:]]
            row += [cell_text(recs.get(p), decode, notes, SHAPES[shape][7]) for p in peers]
            row.append(ratio_text(recs, decode))
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    order = sorted(summary, key=lambda c: (c[0] != "fwd", SHAPE_ORDER.index(c[1]) if c[1] in SHAPE_ORDER else 99,
                                            c[2] != "f32", c[2], c[3]))
    fwd = [c for c in order if c[0] == "fwd" and not memory_bound(c[0], c[1])]
    dec = [c for c in order if memory_bound(c[0], c[1])]
    bwd = [c for c in order if c[0] == "bwd"]
    table("Forward, GFLOP/s", fwd, False,
          "GFLOP/s with attend_bench's count, 4·B·Hq·Nq·Nk·D per call (half for the causal square shape); "
          "peak_frac: attend's GFLOP/s over the fp32 FMA peak of as many threads above (bf16 rows too).")
    table("Decode (memory-bound), GB/s of K and V", dec, True,
          "GB/s: bytes of K and V per call over the time per call (in brackets); bw_frac: attend's over the "
          "read bandwidth of as many threads above. Every implementation reads K and V from memory (copies >= 4x the L3).")
    table("Backward, GFLOP/s", bwd, False,
          "Backward only (PyTorch: torch.autograd.grad on a forward graph built once), "
          "2·B·Hq·Nq·Nk·(3·D + 2·Dv) per call (half for the causal square shape).")
    if amx:
        out.append("† " + amx)
        out.append("")
    out.append("Ratio: the best peer's time over attend's (above 1: attend is faster), the median of the "
               "per-sweep ratios (best peer: the fastest by median time); sweeps: the lowest and highest of them. "
               f"`*`: cpu_util below {UTIL_MIN} (the row shared its cores; its number is low by about that "
               "factor). ORT runs MultiHeadAttention unless another operator is named (gqa: GroupQueryAttention, "
               "for the causal and the decode shapes).")
    if meta.get("skipped_cells"):
        out.append(f"Not run (attend_bench has no such row): {', '.join(meta['skipped_cells'])}.")
    for i, n in enumerate(notes.items):
        out.append(f"[{i + 1}] {n}")
    return "\n".join(out) + "\n"


SHORT = {"torch/flash": "flash", "torch/math": "math", "ort": "ORT"}


def ratio_grid(result, json_name=None):
    """The README's summary: one row per shape, one column per (type, direction, threads), each the
    best peer's time over attend's, the peer named, '~' where the row is noisy."""
    summary, peaks, _bws = summarize(result)
    meta = result["meta"]
    lead = f"attend/{meta['attend_paths'][0]}"
    amx = amx_note(meta) is not None
    cols = sorted({(c[2], c[0], c[3]) for c in summary}, key=lambda k: (k[1] != "fwd", k[0] != "f32", k[0], k[2]))
    shapes = [s_ for s_ in SHAPE_ORDER if any(c[1] == s_ for c in summary)]
    pinfo = meta.get("peers", {})
    flags = [f for f in meta.get("cpu_flags") or [] if f in ("avx512f", "avx512_bf16", "amx_bf16")]
    load = load_text(result)
    out = [f"_{meta['cpu_model']}, {meta['cpus']} vCPUs" + (f" ({', '.join(flags)})" if flags else "") +
           f", {meta.get('started', '')[:10]}: attend {meta['attend_git']} ({meta['attend_paths'][0]}) beside "
           f"PyTorch {pinfo.get('torch', {}).get('version', '?')} CPU SDPA (flash and math backends) and ONNX Runtime "
           f"{pinfo.get('ort', {}).get('version', '?')}; medians of {meta['repeats']} interleaved sweeps, "
           f"{meta.get('elapsed_s', 0) / 60:.0f} min" + (f" (`bench/results/{json_name}`)" if json_name else "") + "._",
           ""]
    if load:
        out += [load, ""]
    head = ["shape"] + [f"{'fwd' if d == 'fwd' else 'bwd'} {t}{'†' if t == 'bf16' and amx else ''} {th}t"
                        for t, d, th in cols]
    out.append("| " + " | ".join(head) + " |")
    out.append("|---|" + "|".join(["---:"] * len(cols)) + "|")
    for shape in shapes:
        row = [shape]
        for t, d, th in cols:
            recs = summary.get((d, shape, t, th))
            if not recs:
                row.append("–")
                continue
            a, b = recs.get(lead), best_peer(recs, memory_bound(d, shape))
            if not a or not a.get("ok") or b is None:
                row.append("n/a")
                continue
            row.append(f"{ratio(a, recs[b]):.2f} {SHORT[b]}" + ("~" if noisy(a, recs[b]) else ""))
        out.append("| " + " | ".join(row) + " |")
    out.append("")
    out.append("Each cell: the best peer's time over attend's (above 1: attend is faster; the median of the per-sweep "
               "ratios) and which peer that was "
               "(flash, math: PyTorch's SDPA backends; ORT: ONNX Runtime's MultiHeadAttention or GroupQueryAttention, "
               "f32 forward only). `~`: noisy, the ratio's three sweeps (attend and the peer run seconds apart in "
               f"each) spread by more than {NOISY_SPREAD:.0%} of their median. decode_gqa forward compares time for the same bytes of K and V; "
               "its backward is attend_bench's flash_bwd row (one copy of K and V, as PyTorch's).")
    if amx:
        out.append("† PyTorch's bf16 products run on AMX tiles here (oneDNN brgemm); attend's bf16 on Intel CPUs "
                   "runs fp32 FMA products, so the bf16 columns are an fp32-product kernel against an AMX one.")
    return "\n".join(out) + "\n"


def update_between_markers(path, blocks):
    """Replaces the text between <!-- KEY:begin --> and <!-- KEY:end --> in path for each KEY of
    blocks that the file has; returns the keys replaced."""
    with open(path) as f:
        text = f.read()
    done = []
    for key, body in blocks.items():
        m = re.search(rf"(<!-- {key}:begin -->\n).*?(<!-- {key}:end -->)", text, flags=re.S)
        if m:
            text = text[: m.end(1)] + body + text[m.start(2):]
            done.append(key)
    with open(path, "w") as f:
        f.write(text)
    return done


COLORS = {"attend/flash": "#1f77b4", "attend/mem_efficient": "#2ca02c", "attend/math": "#17becf",
          "torch/flash": "#ff7f0e", "torch/math": "#d62728", "ort": "#9467bd"}


def chart(result, path, dpi=100):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    summary, peaks, bws = summarize(result)
    meta = result["meta"]
    lead = f"attend/{meta['attend_paths'][0]}"
    impls = [f"attend/{p}" for p in meta["attend_paths"]] + PEER_IMPLS
    impls = [i for i in impls if any(i in r for r in summary.values())]
    panels = sorted({(c[0], c[2]) for c in summary}, key=lambda p: (p[0] != "fwd", p[1] != "f32", p[1]))
    threads = sorted({c[3] for c in summary})
    fig, axes = plt.subplots(len(panels), len(threads), figsize=(5.6 * len(threads) + 0.6, 3.5 * len(panels) + 0.8),
                             sharey="row", squeeze=False)
    width = 0.8 / max(1, len(impls))
    hatched = False
    # One y scale per row (direction, type): PyTorch's bf16 on AMX can pass the fp32 FMA peak, which
    # would flatten the f32 rows under a scale shared by all.
    row_max = {}
    for (direction, _shape, typ, _th), recs in summary.items():
        for r in recs.values():
            if r.get("ok") and r.get("frac") is not None:
                row_max[(direction, typ)] = max(row_max.get((direction, typ), 0.1), r["frac"])
    amx = amx_note(meta) is not None
    for (direction, typ), axrow in zip(panels, axes):
        for th, ax in zip(threads, axrow):
            shapes = [s for s in SHAPE_ORDER if (direction, s, typ, th) in summary]
            for j, shape in enumerate(shapes):
                recs = summary[(direction, shape, typ, th)]
                for i, impl in enumerate(impls):
                    x = j - 0.4 + width * (i + 0.5)
                    r = recs.get(impl)
                    if r is None:
                        continue
                    if not r["ok"] or r.get("frac") is None:
                        ax.text(x, 0.005, "n/a", rotation=90, ha="center", va="bottom", fontsize=6, color="gray")
                        continue
                    shared = r.get("cpu_util") is not None and r["cpu_util"] < UTIL_MIN
                    hatched |= shared
                    ax.bar(x, r["frac"], width * 0.92, color=COLORS.get(impl), hatch="//" if shared else None,
                           edgecolor="white" if shared else None, linewidth=0)
                a, b = recs.get(lead), best_peer(recs, memory_bound(direction, shape))
                if a and a["ok"] and b:
                    top = max(r["frac"] for r in recs.values() if r.get("ok") and r.get("frac") is not None)
                    ax.text(j, top + 0.015 * row_max[(direction, typ)], f"{ratio(a, recs[b]):.2f}x",
                            ha="center", va="bottom", fontsize=8, fontweight="bold")
            ax.set_xticks(range(len(shapes)))
            ax.set_xticklabels([s + ("\n(of read bandwidth)" if memory_bound(direction, s) else "") for s in shapes],
                               fontsize=7)
            ax.set_xlim(-0.5, max(len(shapes), 1) - 0.5)
            pk = peaks.get(th)
            ax.set_title(f"{'backward' if direction == 'bwd' else 'forward'}, {typ}, {th} thread{'s' if th > 1 else ''}"
                         + (f" (fp32 peak {pk:.0f} GFLOP/s)" if pk else "")
                         + ("\nPyTorch: AMX products; attend: fp32 products" if typ == "bf16" and amx else ""),
                         fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            ax.set_axisbelow(True)
    for (direction, typ), axrow in zip(panels, axes):
        axrow[0].set_ylabel("fraction of the fp32 FMA peak\n(decode forward: of read bandwidth)", fontsize=8)
        axrow[0].set_ylim(0, row_max.get((direction, typ), 0.1) * 1.18)
    for ax in axes[-1]:
        ax.set_xlabel("shape (bench/peers/common.py SHAPES)", fontsize=8)
    handles = [Patch(color=COLORS.get(i), label=LABEL.get(i, i.replace("/", " "))) for i in impls]
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor="gray", hatch="//", label=f"cpu_util < {UTIL_MIN}"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    pinfo = meta.get("peers", {})
    flags = [f for f in meta.get("cpu_flags") or [] if f in ("avx512f", "avx512_bf16", "amx_bf16")]
    load = ""
    if meta.get("load_start") and meta.get("load_end"):
        load = f", load {meta['load_start'][0]:.1f} -> {meta['load_end'][0]:.1f}"
    lines = [f"attend {meta['attend_git']} beside PyTorch {pinfo.get('torch', {}).get('version', '?')} (CPU SDPA) and "
             f"ONNX Runtime {pinfo.get('ort', {}).get('version', '?')}",
             f"{meta['cpu_model']}, {meta['cpus']} vCPUs" + (f" ({', '.join(flags)})" if flags else "") +
             f", {meta.get('started', '')[:10]}{load}",
             f"bars: fraction of the measured fp32 FMA peak (decode forward: of the read bandwidth), medians of "
             f"{meta['repeats']} interleaved sweeps",
             f"above each shape: best peer's time / attend {meta['attend_paths'][0]}'s, median of the sweeps' ratios "
             f"(above 1: attend faster); hatched: cpu_util < {UTIL_MIN}"]
    fig.suptitle("\n".join(lines), fontsize=9)
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": None})
    plt.close(fig)


# ---------------------------------------------------------------------------------------------


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attend-bench", default=os.path.join(REPO, "build-peers", "bench", "attend_bench"))
    ap.add_argument("--repeats", type=int, default=3, help="interleaved sweeps (medians over them)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--types", default="f32,bf16")
    ap.add_argument("--shapes", default=",".join(s for s in SHAPES if s != "long16k"),
                    help="default: all but long16k")
    ap.add_argument("--attend-paths", default="flash", help="attend paths; the first is compared (e.g. flash,mem_efficient)")
    ap.add_argument("--torch-backends", default="flash,math", help="PyTorch SDPA backends ('' for none)")
    ap.add_argument("--no-ort", action="store_true", help="leave ONNX Runtime out")
    ap.add_argument("--backward", choices=["auto", "on", "off"], default="auto",
                    help="auto: when attend_bench has _bwd rows; on: PyTorch's backward even without them")
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds of the timed batch of every row")
    ap.add_argument("--timeout", type=float, default=300, help="seconds for one row before it counts as n/a")
    ap.add_argument("--name", help="machine name in the default file names (default: CPU model and count)")
    ap.add_argument("--json", help="default bench/results/peers_<name>.json")
    ap.add_argument("--md", help="default bench/results/peers_<name>.md")
    ap.add_argument("--png", help="default docs/images/peers.png ('' for none)")
    ap.add_argument("--render", metavar="JSON", help="no run: table and chart from this run.py JSON")
    ap.add_argument("--dry-run", action="store_true", help="print the cells and stop")
    ap.add_argument("--docs", nargs="*", metavar="MD",
                    help="also rewrite these files between <!-- peers-grid:begin/end --> (the ratio grid) and "
                         "<!-- peers-table:begin/end --> (the full tables), where they have those markers "
                         "(e.g. README.md docs/performance.md)")
    args = ap.parse_args(argv)

    if args.render:
        with open(args.render) as f:
            result = json.load(f)
    else:
        result = run(args)
        if result is None:
            return 0
    name = args.name or result["meta"]["name"]
    json_path = args.json or os.path.join(REPO, "bench", "results", f"peers_{name}.json")
    md_path = args.md or os.path.join(REPO, "bench", "results", f"peers_{name}.md")
    png_path = os.path.join(REPO, "docs", "images", "peers.png") if args.png is None else args.png
    if not args.render:
        os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
        with open(json_path, "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        log(f"run.py: wrote {json_path}")
    md = markdown(result)
    grid = ratio_grid(result, os.path.basename(json_path))
    with open(md_path, "w") as f:
        f.write(md + "\n#### Summary: best peer's time over attend's\n\n" + grid)
    log(f"run.py: wrote {md_path}")
    for doc in args.docs or []:
        # In the docs the tables sit one heading level lower than in the .md (### -> ####).
        table = re.sub(r"^(#+) ", lambda m: m.group(1) + "# ", md, flags=re.M)
        keys = update_between_markers(doc, {"peers-grid": grid, "peers-table": table})
        log(f"run.py: {doc}: " + (", ".join(keys) if keys else "no peers markers"))
    if png_path:
        try:
            chart(result, png_path)
            log(f"run.py: wrote {png_path}")
        except ImportError as e:
            log(f"run.py: no chart ({e}); pip install matplotlib")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
