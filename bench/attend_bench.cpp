// attend_bench: throughput of attend's three paths (flash, mem_efficient, math) on the shapes that
// matter to BS-RoFormer / Mel-RoFormer and to long-context inference, next to the machine's own
// ceilings measured in the same process.
//
// Rows are named  <path>/<type>/<shape>/<threads>  (Google Benchmark appends "/real_time"), e.g.
//   flash/f32/bsr_time/2      mem_efficient/bf16/long4k/1      math/f64/bsr_freq/2
// and the backward's  <path>_bwd/<type>/<shape>/<threads>, e.g.  flash_bwd/f32/long4k/2: one
// Attend::backward call (dq, dk, dv from q, k, v, out, lse and dout), the forward run once before.
//
//   shape          B    Hq  Hkv  Nq     Nk     D    notes
//   bsr_time       62   8   8    801    801    64   BS-RoFormer time transformer
//   bsr_freq       801  8   8    62     62     64   BS-RoFormer frequency transformer
//   long4k         1    8   8    4096   4096   64
//   causal2k_d128  1    16  16   2048   2048   128  Causal::top_left
//   decode_gqa     1    32  8    1      4096   128  one decode step, GQA; memory-bound
//   long16k        1    1   1    16384  16384  64   math only with --math16k (needs > 2 GiB)
//
// Counters (JSON: same names; the console prints rates with a "/s" suffix):
//   FLOPS      4·B·Hq·Nq·Nk·D per call (half of that for the causal square shape) per second; for
//              the backward, its five products: 2·B·Hq·Nq·Nk·(3·D + 2·Dv), 2.5 times the forward's.
//   peak_frac  FLOPS / the fp32 FMA peak of this many threads, measured at startup by a
//              register-only FMA loop (3/4 of the SIMD registers as independent accumulators: 24
//              with AVX-512's 32, 12 with AVX2's 16; per thread, all threads at
//              once, best of 7, each thread's FLOPs over its own CPU time, so that a shared machine
//              does not lower the ceiling; the wall-clock peak is in the context too). f64 rows are
//              also divided by the fp32 peak: their own ceiling is 0.5.
//   bw_frac    decode rows only: bytes of K and V read per second / the read bandwidth of this many
//              threads, measured at startup: each thread streams its slice of a buffer much larger
//              than the L3 for the same 0.15 s window, best of 3, again per CPU-second of each
//              thread (on a shared machine the 2-thread figure can overstate what two concurrent
//              streams get, since they may not have overlapped).
//              Decode rows rotate through enough copies of K and V (>= 4x the L3) that every call
//              reads them from DRAM, as a real decode step does.
//   bytes_per_second  decode rows only: K and V bytes per second.
//   cpu_util   process CPU seconds / (wall seconds x threads) over the timed loop: about 1 when the
//              row had its cores to itself and kept them busy. Lower means the machine was shared
//              (the row's numbers are then low by about that factor) or the call left a thread idle
//              (math on one (b, h), as math/f32/long16k/2: 0.5; a 2 ms decode step: 0.8-0.95).
//              Idle pool threads spinning for work count as busy.
// The measured ceilings are printed to stderr and stored in the JSON "context" as
// attend_fp32_peak_GFLOPS_<n>t and attend_read_bw_GBps_<n>t (the denominators), with the
// wall-clock figures beside them: attend_{fp32_peak,read_bw}_wall_{GFLOPS,GBps,cpu_util}_<n>t.
//
// Method: inputs are uniform random in [-1, 1) from a fixed seed, made once per (type, shape) and
// reused by consecutive rows; the output and a Workspace sized by workspace_bytes() are made before
// the timed loop, and (except for math) one untimed warm-up call runs first, so flash and
// mem_efficient allocate nothing in the loop (math allocates its Eigen temporaries on every call,
// as it always does). A path is forced with a FlashAttentionConfig that enables only it
// (flash = true), and Attend::dispatch checks that it is the path taken. threads = n uses
// Eigen::ThreadPool(n) + ThreadPoolDevice in CallOptions::device; threads = 1 passes no device.
// Times are wall-clock (UseRealTime). On a shared machine check cpu_util before trusting a row, or
// run several times and merge with `report.py --prefer-util`.
//
// Flags (ours; everything else goes to Google Benchmark):
//   (none)               quick default set: f32, 2 threads, every shape, all three paths
//                        (no math/long16k), and the flash backward on every shape: 23 rows.
//   --full               every row: f32 on every shape; bf16 and f16 on bsr_time, bsr_freq, long4k,
//                        decode_gqa; f64 on bsr_freq, long4k; threads 1 and 2; all paths:
//                        94 rows, about 100 s (math rows are most of it).
//   --benchmark_filter=R also selects from the full set (R is Google Benchmark's regex).
//   --threads=1,2        thread counts to register (default: 2 quick, 1,2 full).
//   --math16k            also register math/<type>/long16k (scores and probabilities, 16384² floats
//                        each: about 2.1 GiB peak RSS, several seconds a call).
//   --no_peaks           skip the startup peak and bandwidth measurements (no peak_frac, bw_frac).
//   --bw_mib=1024        size of the bandwidth probe buffer in MiB.
//   --cold_malloc        leave glibc's mmap threshold at its start value (see warm_allocator():
//                        math rows then page-fault through their temporaries, ~1.5x slower).
//   --memory_probe=P     no benchmarks: run ONE attention call on path P (flash, mem_efficient, math)
//                        with shape (1, 1, N, N, 64) and print its memory use, for /usr/bin/time -v:
//     --probe_n=16384      N (default 16384)
//     --probe_type=f32     f32, f64, bf16 or f16
//     --probe_threads=1    threads
//     --probe_backward     measure one backward call instead (forward run first, outside the
//                          measurement: the inputs, out, lse, dout and the gradients exist before)
//     --probe_reps=1       calls (the same output each time); with more than one, it also prints
//                          best=<fastest call's seconds>, for bench/sweep.py's small sizes
//   --attend_help        print this list.
// Unless --benchmark_min_time is given, it defaults to 0.2 s per row.
//
// Commands (from the repository root):
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DATTEND_BUILD_BENCHMARKS=ON -DATTEND_BUILD_TESTS=OFF
//   cmake --build build-bench -j2 --target attend_bench
//   build-bench/bench/attend_bench                                    # quick set
//   build-bench/bench/attend_bench --full --benchmark_out=full.json --benchmark_out_format=json
//   build-bench/bench/attend_bench --benchmark_filter='^flash/(bf16|f16)/' --threads=1,2
//   build-bench/bench/attend_bench --full --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//                                                                     # medians of 5
//   python3 bench/report.py full.json > table.md                         # markdown table
//   python3 bench/report.py --prefer-util --util run1.json run2.json     # quietest run per row
//   /usr/bin/time -v build-bench/bench/attend_bench --memory_probe=flash  # peak RSS, long16k
//   /usr/bin/time -v build-bench/bench/attend_bench --memory_probe=math

#include <attend/attend.hpp>
#include <benchmark/benchmark.h>

#include <time.h>    // clock_gettime
#include <unistd.h>  // sysconf

#if defined(ATTEND_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>  // the per-level FMA loops (fma_loop)
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using attend::Index;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Shapes

struct Shape {
  const char* name;
  Index B, Hq, Hkv, Nq, Nk, D;
  attend::Causal causal;
  bool decode;  // memory-bound: report bw_frac
};

const Shape kShapes[] = {
    {"bsr_time", 62, 8, 8, 801, 801, 64, attend::Causal::none, false},
    {"bsr_freq", 801, 8, 8, 62, 62, 64, attend::Causal::none, false},
    {"long4k", 1, 8, 8, 4096, 4096, 64, attend::Causal::none, false},
    {"causal2k_d128", 1, 16, 16, 2048, 2048, 128, attend::Causal::top_left, false},
    {"decode_gqa", 1, 32, 8, 1, 4096, 128, attend::Causal::none, true},
    {"long16k", 1, 1, 1, 16384, 16384, 64, attend::Causal::none, false},
};

double flops_per_call(const Shape& s, bool backward = false) {
  // The shapes have D = Dv.
  const double per = backward ? 2.0 * (3.0 * double(s.D) + 2.0 * double(s.D)) : 4.0 * double(s.D);
  double f = per * double(s.B) * double(s.Hq) * double(s.Nq) * double(s.Nk);
  if (s.causal != attend::Causal::none && s.Nq == s.Nk) f *= 0.5;
  return f;
}

template <typename T>
double kv_bytes_per_call(const Shape& s) {
  return 2.0 * double(s.B) * double(s.Hkv) * double(s.Nk) * double(s.D) * double(sizeof(T));
}

// ---------------------------------------------------------------------------------------------
// Machine ceilings, measured once at startup

std::map<int, double> g_peak_flops;  // threads -> fp32 FLOP/s
std::map<int, double> g_read_bw;     // threads -> bytes/s
std::map<int, double> g_read_bw_util;  // threads -> cpu_util of the best wall-clock bandwidth run
std::map<int, double> g_read_bw_wall;  // threads -> best wall-clock bandwidth
volatile float g_sink = 0;

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

// Runs fn(t) on n threads started together; returns the wall time from the start signal to the
// last thread's end, in seconds.
// `util`, if given, receives the threads' CPU time over n times that wall time; `cpu`, if given,
// each thread's CPU seconds.
double run_concurrently(int n, const std::function<void(int)>& fn, double* util = nullptr,
                        std::vector<double>* cpu_out = nullptr) {
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<Clock::time_point> end(static_cast<std::size_t>(n));
  std::vector<double> cpu(static_cast<std::size_t>(n));
  std::vector<std::thread> threads;
  for (int t = 0; t < n; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) {
      }
      const double c0 = thread_cpu_seconds();
      fn(t);
      end[static_cast<std::size_t>(t)] = Clock::now();
      cpu[static_cast<std::size_t>(t)] = thread_cpu_seconds() - c0;
    });
  }
  while (ready.load() < n) {
  }
  const Clock::time_point start = Clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  const Clock::time_point last = *std::max_element(end.begin(), end.end());
  const double wall = std::chrono::duration<double>(last - start).count();
  if (util != nullptr) {
    double total = 0;
    for (double c : cpu) total += c;
    *util = total / (std::max(wall, 1e-9) * n);
  }
  if (cpu_out != nullptr) *cpu_out = cpu;
  return wall;
}

// Independent accumulators: 3/4 of the vector registers (24 of AVX-512's 32, 12 of AVX2's 16), so
// that they and the two operands stay in registers. 24 chains with 16 registers spill 11 of them
// to the stack and measured the x86-64-v3 peak 13% low (105 against 121 GFLOP/s with 12, one
// Sapphire Rapids thread): every AVX2 peak_frac came out 1.15x too high.
constexpr int kChains = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS * 3 / 4;

// kChains independent FMA chains, `iters` rounds; every accumulator stays in a register.
__attribute__((noinline)) float fma_chains(std::int64_t iters, float seed) {
  using P = Eigen::internal::packet_traits<float>::type;
  using Eigen::internal::padd;
  using Eigen::internal::pmadd;
  using Eigen::internal::pset1;
  P acc[kChains];
#pragma GCC unroll 32
  for (int c = 0; c < kChains; ++c) acc[c] = pset1<P>(seed + float(c));
  const P a = pset1<P>(0.999999f), b = pset1<P>(seed * 1e-7f);
  for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 32
    for (int c = 0; c < kChains; ++c) acc[c] = pmadd(acc[c], a, b);
  }
  P s = acc[0];
#pragma GCC unroll 32
  for (int c = 1; c < kChains; ++c) s = padd(s, acc[c]);
  return Eigen::internal::predux(s);
}

/// The FMA loop the peak is measured with, its FMAs per round and its floats per instruction.
struct FmaLoop {
  float (*run)(std::int64_t iters, float seed);
  int fmas;
  int lanes;
  const char* isa;
};

#if defined(ATTEND_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
// attend::dispatch: this program is built for the baseline, its kernels run at the level the CPU
// supports, so the ceiling is measured with that level's instructions (function target attributes:
// the rest of the program stays baseline). 12 chains for AVX2's 16 registers, 24 for AVX-512's 32:
// enough to cover a 4-cycle FMA latency on two FMA ports (8 in flight) without spilling.
// (kChains is this baseline program's own: 12, for 16 registers.)
constexpr int kChainsAvx512 = 24;
__attribute__((target("avx512f"), noinline)) float fma_chains_avx512(std::int64_t iters, float seed) {
  __m512 acc[kChainsAvx512];
#pragma GCC unroll 32
  for (int c = 0; c < kChainsAvx512; ++c) acc[c] = _mm512_set1_ps(seed + float(c));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(seed * 1e-7f);
  for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 32
    for (int c = 0; c < kChainsAvx512; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  __m512 s = acc[0];
#pragma GCC unroll 32
  for (int c = 1; c < kChainsAvx512; ++c) s = _mm512_add_ps(s, acc[c]);
  return _mm512_reduce_add_ps(s);
}

constexpr int kChainsAvx2 = 12;
__attribute__((target("avx2,fma"), noinline)) float fma_chains_avx2(std::int64_t iters, float seed) {
  __m256 acc[kChainsAvx2];
#pragma GCC unroll 16
  for (int c = 0; c < kChainsAvx2; ++c) acc[c] = _mm256_set1_ps(seed + float(c));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(seed * 1e-7f);
  // Twice per round: 2 · kChainsAvx2 FMAs (FmaLoop::fmas).
  for (std::int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 16
    for (int c = 0; c < kChainsAvx2; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
#pragma GCC unroll 16
    for (int c = 0; c < kChainsAvx2; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  __m256 s = acc[0];
#pragma GCC unroll 16
  for (int c = 1; c < kChainsAvx2; ++c) s = _mm256_add_ps(s, acc[c]);
  float out[8];
  _mm256_storeu_ps(out, s);
  return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

/// The loop for the instruction set `isa` (Dispatch::isa) the kernels run with.
FmaLoop fma_loop([[maybe_unused]] const std::string& isa) {
  constexpr int kLanes = int(sizeof(Eigen::internal::packet_traits<float>::type) / sizeof(float));
#if defined(ATTEND_DISPATCH) && defined(__x86_64__) && defined(__GNUC__)
  if (isa.rfind("avx512", 0) == 0) return {&fma_chains_avx512, kChainsAvx512, 16, "avx512"};
  if (isa == "avx2") return {&fma_chains_avx2, 2 * kChainsAvx2, 8, "avx2"};
#endif
  return {&fma_chains, kChains, kLanes, "this program's own"};
}

FmaLoop g_fma_loop{&fma_chains, kChains, int(sizeof(Eigen::internal::packet_traits<float>::type) / sizeof(float)), ""};

std::map<int, double> g_peak_util;       // threads -> cpu_util of the best wall-clock run
std::map<int, double> g_peak_wall_flops;  // threads -> best wall-clock rate

// The fp32 FMA peak of `threads` threads: the best of 7 runs of Σ_t FLOPs_t / CPU seconds_t, that is
// what the cores do while they run, which a shared machine does not lower. The best wall-clock rate
// (FLOPs of all threads / wall seconds) is kept beside it; on a quiet machine the two agree.
double measure_fp32_peak(int threads) {
  const FmaLoop loop = g_fma_loop;
  const double flops_per_iter = 2.0 * loop.fmas * loop.lanes;
  // Calibrate to ~40 ms a run.
  std::int64_t iters = 100000;
  const double t0 = run_concurrently(1, [&](int) { g_sink = g_sink + loop.run(iters, 1.0f); });
  iters = std::max<std::int64_t>(iters, static_cast<std::int64_t>(double(iters) * 0.04 / std::max(t0, 1e-6)));
  double best = 0, best_wall = 0;
  for (int rep = 0; rep < 7; ++rep) {
    double util = 0;
    std::vector<double> cpu;
    const double t = run_concurrently(
        threads, [&](int th) { g_sink = g_sink + loop.run(iters, 1.0f + float(th)); }, &util, &cpu);
    const double flops = flops_per_iter * double(iters);
    double rate = 0;
    for (double c : cpu) rate += flops / std::max(c, 1e-9);
    best = std::max(best, rate);
    if (flops * threads / t > best_wall) {
      best_wall = flops * threads / t;
      g_peak_util[threads] = util;
    }
  }
  g_peak_wall_flops[threads] = best_wall;
  return best;
}

// Sum of p[0, n), n a multiple of 8 packets (callers read whole 1 MiB chunks).
__attribute__((noinline)) float read_sum(const float* p, std::size_t n) {
  using P = Eigen::internal::packet_traits<float>::type;
  constexpr std::size_t L = sizeof(P) / sizeof(float);
  using Eigen::internal::padd;
  using Eigen::internal::pload;
  P acc[8];
  for (auto& a : acc) a = Eigen::internal::pset1<P>(0.f);
  std::size_t i = 0;
  for (; i + 8 * L <= n; i += 8 * L) {
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) acc[c] = padd(acc[c], pload<P>(p + i + std::size_t(c) * L));
  }
  P s = acc[0];
  for (int c = 1; c < 8; ++c) s = padd(s, acc[c]);
  return Eigen::internal::predux(s);
}

// Read bandwidth of `threads` concurrent streams: for a fixed window (~0.15 s) each thread reads
// its own slice of one buffer much larger than the L3, 1 MiB at a time, wrapping around, so that
// every stream runs for the whole window (slices finishing at different times would otherwise
// leave one stream alone at the end). Best of 3 windows.
void measure_read_bw(const std::vector<int>& thread_counts, std::size_t mib) {
  const std::size_t n = mib * (std::size_t(1) << 20) / sizeof(float);
  float* buf = static_cast<float*>(Eigen::internal::aligned_malloc(n * sizeof(float)));
  std::fill(buf, buf + n, 1.0f);  // touch every page
  constexpr std::size_t kChunk = (std::size_t(1) << 20) / sizeof(float);
  static constexpr double kWindow = 0.15;  // static: GCC 12 calls a captured constexpr local unused
  for (int threads : thread_counts) {
    const std::size_t per = (n / std::size_t(threads)) / kChunk * kChunk;  // whole chunks, aligned
    double best = 0, best_wall = 0;
    for (int rep = 0; rep < 3; ++rep) {
      double util = 0;
      std::vector<double> cpu;
      std::vector<double> bytes(static_cast<std::size_t>(threads), 0.0);
      const double t = run_concurrently(
          threads,
          [&](int th) {
            const std::size_t lo = per * std::size_t(th), hi = lo + per;
            const Clock::time_point deadline =
                Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kWindow));
            std::size_t pos = lo, read = 0;
            float sum = 0;
            do {
              sum += read_sum(buf + pos, kChunk);
              read += kChunk;
              pos += kChunk;
              if (pos == hi) pos = lo;
            } while (Clock::now() < deadline);
            g_sink = g_sink + sum;
            bytes[std::size_t(th)] = double(read * sizeof(float));
          },
          &util, &cpu);
      double rate = 0, total = 0;
      for (int th = 0; th < threads; ++th) {
        rate += bytes[std::size_t(th)] / std::max(cpu[std::size_t(th)], 1e-9);
        total += bytes[std::size_t(th)];
      }
      best = std::max(best, rate);
      if (total / t > best_wall) {
        best_wall = total / t;
        g_read_bw_util[threads] = util;
      }
    }
    g_read_bw[threads] = best;
    g_read_bw_wall[threads] = best_wall;
  }
  Eigen::internal::aligned_free(buf);
}

// glibc serves a request at or above its mmap threshold (128 KiB at start) with a fresh mmap, whose
// pages fault in on first touch, and raises the threshold to the size of any such block freed, up
// to 32 MiB. A long-running program has usually freed a large block already; a fresh benchmark
// process has not, and its math rows would then page-fault through every (Nq, Nk) temporary (a
// third of math/f32/bsr_time's time), or not, depending on which rows ran before. Freeing one
// 31 MiB block at startup puts every row in the long-running state (--cold_malloc skips it).
void warm_allocator() {
  void* p = std::malloc(std::size_t(31) << 20);
  benchmark::DoNotOptimize(p);  // keep the pair from being optimised away
  std::free(p);
}

// ---------------------------------------------------------------------------------------------
// Inputs: one (type, shape) at a time, shared by the consecutive rows that use it

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

template <typename T>
void fill_random(attend::Tensor<T, 4>& t, std::uint64_t seed) {
  std::uint64_t state = seed;
  T* p = t.data();
  const Index n = t.size();
  for (Index i = 0; i < n; ++i) {
    const float u = float(splitmix64(state) >> 40) * (1.0f / float(1 << 24));  // [0, 1)
    p[i] = static_cast<T>(2.0f * u - 1.0f);
  }
}

std::size_t l3_bytes() {
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  return l3 > 0 ? static_cast<std::size_t>(l3) : (std::size_t(32) << 20);
}

template <typename T>
struct Inputs {
  attend::Tensor<T, 4> q;
  std::vector<attend::Tensor<T, 4>> k, v;  // several copies for decode rows (see header)

  explicit Inputs(const Shape& s) : q(s.B, s.Hq, s.Nq, s.D) {
    fill_random(q, 1);
    std::size_t copies = 1;
    if (s.decode) {
      const double kv = kv_bytes_per_call<T>(s);
      copies = std::max<std::size_t>(2, static_cast<std::size_t>(4.0 * double(l3_bytes()) / kv) + 1);
    }
    k.reserve(copies);  // no reallocation: a moved Eigen::Tensor may be copied
    v.reserve(copies);
    for (std::size_t c = 0; c < copies; ++c) {
      k.emplace_back(s.B, s.Hkv, s.Nk, s.D);
      v.emplace_back(s.B, s.Hkv, s.Nk, s.D);
      fill_random(k.back(), 2 + 2 * c);
      fill_random(v.back(), 3 + 2 * c);
    }
  }
};

struct {
  std::string key;
  std::shared_ptr<void> data;
} g_inputs;

template <typename T>
std::shared_ptr<Inputs<T>> inputs_for(const Shape& s) {
  const std::string key = std::string(attend::type_name<T>()) + "/" + s.name;
  if (g_inputs.key != key) {
    g_inputs.data.reset();  // free the previous shape first
    g_inputs.key.clear();
    g_inputs.data = std::make_shared<Inputs<T>>(s);
    g_inputs.key = key;
  }
  return std::static_pointer_cast<Inputs<T>>(g_inputs.data);
}

// ---------------------------------------------------------------------------------------------
// Thread pools, one per thread count, made on first use

const Eigen::ThreadPoolDevice* device_for(int threads) {
  if (threads <= 1) return nullptr;
  struct Pool {
    std::unique_ptr<Eigen::ThreadPool> pool;
    std::unique_ptr<Eigen::ThreadPoolDevice> device;
  };
  static std::map<int, Pool> pools;
  Pool& p = pools[threads];
  if (!p.device) {
    p.pool = std::make_unique<Eigen::ThreadPool>(threads);
    p.device = std::make_unique<Eigen::ThreadPoolDevice>(p.pool.get(), threads);
  }
  return p.device.get();
}

attend::FlashAttentionConfig only(attend::Path path) {
  attend::FlashAttentionConfig c;
  c.enable_flash = path == attend::Path::flash;
  c.enable_mem_efficient = path == attend::Path::mem_efficient;
  c.enable_math = path == attend::Path::math;
  return c;
}

// ---------------------------------------------------------------------------------------------
// The benchmark

template <typename T>
void bm_attention(benchmark::State& state, const Shape& s, attend::Path path, int threads) {
  try {
    const auto in = inputs_for<T>(s);
    const attend::Attend<T> attn(0.0, /*flash=*/true, std::nullopt, only(path));
    attend::Tensor<T, 4> out(s.B, s.Hq, s.Nq, s.D);
    const attend::TensorView<T, 4> out_view(out);
    attend::Workspace ws;
    attend::CallOptions<T> opts;
    opts.causal = s.causal;
    opts.device = device_for(threads);
    opts.workspace = &ws;
    ws.reserve(attn.workspace_bytes(in->q, in->k[0], in->v[0], opts));

    const attend::Dispatch taken = attn.dispatch(in->q, in->k[0], in->v[0], opts);
    if (taken.path != path) {
      state.SkipWithError((std::string("took path ") + attend::path_name(taken.path)).c_str());
      return;
    }
    out.setZero();  // fault the output's pages in
    // Warm-up: pool threads, caches, the workspace's pages. Not for math, which allocates its
    // temporaries on every call anyway and whose calls take seconds.
    if (path != attend::Path::math) attn(in->q, in->k[0], in->v[0], out_view, opts);

    const std::size_t copies = in->k.size();
    std::size_t c = copies > 1 ? 1 : 0;  // decode: the warm-up's copy is cached, start elsewhere
    const double cpu0 = process_cpu_seconds();
    const Clock::time_point wall0 = Clock::now();
    for (auto _ : state) {
      attn(in->q, in->k[c], in->v[c], out_view, opts);
      benchmark::DoNotOptimize(out.data());
      benchmark::ClobberMemory();
      if (++c == copies) c = 0;
    }
    const double wall = std::chrono::duration<double>(Clock::now() - wall0).count();
    // Share of `threads` cores the row had: near 1 on a quiet machine, lower when it was shared.
    state.counters["cpu_util"] = (process_cpu_seconds() - cpu0) / (std::max(wall, 1e-9) * threads);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }

  using benchmark::Counter;
  const double flops = flops_per_call(s);
  state.counters["FLOPS"] = Counter(flops, Counter::kIsIterationInvariantRate);
  if (const auto it = g_peak_flops.find(threads); it != g_peak_flops.end() && it->second > 0) {
    state.counters["peak_frac"] = Counter(flops / it->second, Counter::kIsIterationInvariantRate);
  }
  if (s.decode) {
    const double bytes = kv_bytes_per_call<T>(s);
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes * double(state.iterations())));
    if (const auto it = g_read_bw.find(threads); it != g_read_bw.end() && it->second > 0) {
      state.counters["bw_frac"] = Counter(bytes / it->second, Counter::kIsIterationInvariantRate);
    }
  }
}

/// One backward call per iteration: the forward runs once, untimed, for out and lse.
template <typename T>
void bm_backward(benchmark::State& state, const Shape& s, attend::Path path, int threads) {
  try {
    const auto in = inputs_for<T>(s);
    const attend::Attend<T> attn(0.0, /*flash=*/true, std::nullopt, only(path));
    attend::Tensor<T, 4> out(s.B, s.Hq, s.Nq, s.D), dout(s.B, s.Hq, s.Nq, s.D);
    attend::Tensor<attend::acc_t<T>, 3> lse(s.B, s.Hq, s.Nq);
    attend::Tensor<T, 4> dq(s.B, s.Hq, s.Nq, s.D), dk(s.B, s.Hkv, s.Nk, s.D), dv(s.B, s.Hkv, s.Nk, s.D);
    fill_random(dout, 9);
    attend::Workspace ws;
    attend::CallOptions<T> opts;
    opts.causal = s.causal;
    opts.device = device_for(threads);
    opts.lse = lse;
    attn(in->q, in->k[0], in->v[0], attend::TensorView<T, 4>(out), opts);
    opts.workspace = &ws;
    ws.reserve(attn.backward_workspace_bytes(in->q, in->k[0], in->v[0], opts));
    const attend::Dispatch taken = attn.backward_dispatch(in->q, in->k[0], in->v[0], opts);
    if (taken.path != path) {
      state.SkipWithError((std::string("took path ") + attend::path_name(taken.path)).c_str());
      return;
    }
    const attend::GradientViews<T> grads{dq, dk, dv, {}};
    dq.setZero();
    dk.setZero();
    dv.setZero();
    if (path != attend::Path::math) attn.backward(in->q, in->k[0], in->v[0], out, lse, dout, grads, opts);  // warm-up
    const double cpu0 = process_cpu_seconds();
    const Clock::time_point wall0 = Clock::now();
    for (auto _ : state) {
      attn.backward(in->q, in->k[0], in->v[0], out, lse, dout, grads, opts);
      benchmark::DoNotOptimize(dq.data());
      benchmark::ClobberMemory();
    }
    const double wall = std::chrono::duration<double>(Clock::now() - wall0).count();
    state.counters["cpu_util"] = (process_cpu_seconds() - cpu0) / (std::max(wall, 1e-9) * threads);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  using benchmark::Counter;
  const double flops = flops_per_call(s, /*backward=*/true);
  state.counters["FLOPS"] = Counter(flops, Counter::kIsIterationInvariantRate);
  if (const auto it = g_peak_flops.find(threads); it != g_peak_flops.end() && it->second > 0) {
    state.counters["peak_frac"] = Counter(flops / it->second, Counter::kIsIterationInvariantRate);
  }
}

// ---------------------------------------------------------------------------------------------
// Row selection

enum class Type { f32, bf16, f16, f64 };
const char* type_str(Type t) {
  switch (t) {
    case Type::f32: return "f32";
    case Type::bf16: return "bf16";
    case Type::f16: return "f16";
    case Type::f64: return "f64";
  }
  return "?";
}

struct Row {
  attend::Path path;
  Type type;
  const Shape* shape;
  int threads;
  bool backward = false;
  std::string name() const {
    return std::string(attend::path_name(path)) + (backward ? "_bwd" : "") + "/" + type_str(type) + "/" + shape->name +
           "/" + std::to_string(threads);
  }
};

bool type_runs_on(Type t, const std::string& shape) {
  switch (t) {
    case Type::f32: return true;
    case Type::bf16:
    case Type::f16:
      return shape == "bsr_time" || shape == "bsr_freq" || shape == "long4k" || shape == "decode_gqa";
    case Type::f64: return shape == "bsr_freq" || shape == "long4k";
  }
  return false;
}

std::vector<Row> select_rows(bool full, const std::vector<int>& thread_counts, bool math16k) {
  std::vector<Row> rows;
  const std::vector<Type> types = full ? std::vector<Type>{Type::f32, Type::bf16, Type::f16, Type::f64}
                                       : std::vector<Type>{Type::f32};
  const attend::Path paths[] = {attend::Path::flash, attend::Path::mem_efficient, attend::Path::math};
  // Type-major, then shape: consecutive rows share one set of inputs. The forward rows, then the
  // backward's (the quick set: flash only).
  for (Type t : types)
    for (const Shape& s : kShapes) {
      if (!type_runs_on(t, s.name)) continue;
      for (bool backward : {false, true}) {
        for (attend::Path p : paths) {
          if (p == attend::Path::math && std::string(s.name) == "long16k" && !math16k) continue;
          if (backward && !full && p != attend::Path::flash) continue;
          for (int th : thread_counts) rows.push_back({p, t, &s, th, backward});
        }
      }
    }
  return rows;
}

template <typename T>
benchmark::internal::Benchmark* register_typed(const std::string& name, const Shape& s, attend::Path path, int th,
                                               bool backward) {
  if (backward) {
    return benchmark::RegisterBenchmark(name.c_str(), [&s, path, th](benchmark::State& st) { bm_backward<T>(st, s, path, th); });
  }
  return benchmark::RegisterBenchmark(name.c_str(), [&s, path, th](benchmark::State& st) { bm_attention<T>(st, s, path, th); });
}

void register_row(const Row& r) {
  const std::string name = r.name();
  benchmark::internal::Benchmark* b = nullptr;
  switch (r.type) {
    case Type::f32: b = register_typed<float>(name, *r.shape, r.path, r.threads, r.backward); break;
    case Type::f64: b = register_typed<double>(name, *r.shape, r.path, r.threads, r.backward); break;
    case Type::bf16: b = register_typed<Eigen::bfloat16>(name, *r.shape, r.path, r.threads, r.backward); break;
    case Type::f16: b = register_typed<Eigen::half>(name, *r.shape, r.path, r.threads, r.backward); break;
  }
  b->UseRealTime()->Unit(benchmark::kMillisecond);
}

// ---------------------------------------------------------------------------------------------
// Memory probe: one long call, for /usr/bin/time -v

long proc_status_kib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(f, line)) {
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  }
  return -1;
}

template <typename T>
int memory_probe(attend::Path path, Index N, int threads, int reps, bool backward) {
  const long hwm0 = proc_status_kib("VmHWM");
  attend::Tensor<T, 4> q(1, 1, N, 64), k(1, 1, N, 64), v(1, 1, N, 64), out(1, 1, N, 64);
  fill_random(q, 1);
  fill_random(k, 2);
  fill_random(v, 3);
  out.setZero();
  const attend::Attend<T> attn(0.0, true, std::nullopt, only(path));
  attend::CallOptions<T> opts;
  opts.device = device_for(threads);
  attend::Dispatch taken;
  opts.dispatch = &taken;
  // The backward's inputs (out, lse, dout) and outputs (dq, dk, dv) exist before the measured calls.
  attend::Tensor<attend::acc_t<T>, 3> lse(1, 1, backward ? N : 0);
  attend::Tensor<T, 4> dout(1, 1, backward ? N : 0, 64), dq(1, 1, backward ? N : 0, 64), dk(1, 1, backward ? N : 0, 64),
      dv(1, 1, backward ? N : 0, 64);
  if (backward) {
    fill_random(dout, 9);
    dq.setZero();
    dk.setZero();
    dv.setZero();
    opts.lse = lse;
    attend::Workspace fws(attn.workspace_bytes(q, k, v, opts));
    opts.workspace = &fws;
    attn(q, k, v, attend::TensorView<T, 4>(out), opts);  // out and lse, before the measured calls
    opts.workspace = nullptr;
  }
  const std::size_t ws_bytes =
      backward ? attn.backward_workspace_bytes(q, k, v, opts) : attn.workspace_bytes(q, k, v, opts);
  const long rss_before = proc_status_kib("VmRSS");
  const long hwm_before = proc_status_kib("VmHWM");
  double secs = 0.0, best = 0.0;
  for (int r = 0; r < reps; ++r) {
    const Clock::time_point t0 = Clock::now();
    if (backward) {
      attn.backward(q, k, v, out, lse, dout, attend::GradientViews<T>{dq, dk, dv, {}}, opts);
    } else {
      attn(q, k, v, attend::TensorView<T, 4>(out), opts);
    }
    const double t = std::chrono::duration<double>(Clock::now() - t0).count();
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(dq.data());
    if (r == 0) secs = best = t;
    best = std::min(best, t);
  }
  const long hwm_after = proc_status_kib("VmHWM");
  const double io_mib = (backward ? 7.0 : 4.0) * double(N) * 64 * sizeof(T) / 1048576.0;
  std::printf("memory_probe path=%s%s (took %s) type=%s N=%ld threads=%d time=%.3f s", attend::path_name(path),
              backward ? " backward" : "", attend::path_name(taken.path), attend::type_name<T>(), static_cast<long>(N),
              threads, secs);
  if (reps > 1) std::printf(" best=%.6f s of %d calls", best, reps);
  std::printf("\n");
  std::printf(backward ? "  q,k,v,out,dout,dq,dk,dv %4.1f MiB (lse %.1f MiB)\n" : "  q,k,v,out          %10.1f MiB\n", io_mib,
              double(N) * sizeof(attend::acc_t<T>) / 1048576.0);
  std::printf("  workspace_bytes    %10.3f MiB\n", double(ws_bytes) / 1048576.0);
  std::printf("  VmHWM at start     %10.1f MiB\n", double(hwm0) / 1024.0);
  std::printf("  VmRSS before call  %10.1f MiB (VmHWM %.1f MiB)\n", double(rss_before) / 1024.0, double(hwm_before) / 1024.0);
  std::printf("  VmHWM after call   %10.1f MiB  -> the call added %.1f MiB at its peak\n", double(hwm_after) / 1024.0,
              double(hwm_after - std::max(hwm_before, rss_before)) / 1024.0);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Flags

void print_help() {
  std::fprintf(stderr,
               "attend_bench flags (see the top of bench/attend_bench.cpp):\n"
               "  (none)                quick set: f32, 2 threads, all shapes, all paths (no math/long16k)\n"
               "  --full                every row: f32/bf16/f16/f64, threads 1 and 2\n"
               "  --benchmark_filter=R  select from the full set\n"
               "  --threads=LIST        thread counts, e.g. 1,2\n"
               "  --math16k             also register math/*/long16k (> 2 GiB)\n"
               "  --no_peaks            skip the startup peak and bandwidth measurements\n"
               "  --bw_mib=N            bandwidth probe buffer in MiB (default 1024)\n"
               "  --cold_malloc         do not raise glibc's mmap threshold first (math rows page-fault)\n"
               "  --memory_probe=PATH [--probe_n=16384] [--probe_type=f32] [--probe_threads=1] [--probe_reps=1]\n"
               "                     [--probe_backward]\n"
               "                        run one (1,1,N,N,64) call on PATH and print its memory use\n");
}

bool take_flag(const std::string& arg, const char* name, std::string* value) {
  const std::string n = std::string("--") + name;
  if (arg == n) {
    if (value) value->clear();
    return true;
  }
  if (value && arg.compare(0, n.size() + 1, n + "=") == 0) {
    *value = arg.substr(n.size() + 1);
    return true;
  }
  return false;
}

std::vector<int> parse_ints(const std::string& s) {
  std::vector<int> r;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (!item.empty()) r.push_back(std::max(1, std::atoi(item.c_str())));
  }
  return r;
}

bool parse_path(const std::string& s, attend::Path* p) {
  for (attend::Path c : {attend::Path::flash, attend::Path::mem_efficient, attend::Path::math}) {
    if (s == attend::path_name(c)) {
      *p = c;
      return true;
    }
  }
  return false;
}

// Which rows Google Benchmark's filter will run (an approximation with std::regex, used only to
// decide which ceilings to measure; a leading '-' negates, as in Google Benchmark).
std::vector<Row> filtered(const std::vector<Row>& rows, const std::string& filter) {
  if (filter.empty() || filter == "." || filter == "all") return rows;
  std::string re = filter;
  bool negate = false;
  if (re[0] == '-') {
    negate = true;
    re.erase(0, 1);
  }
  try {
    const std::regex rx(re);
    std::vector<Row> out;
    for (const Row& r : rows) {
      if (std::regex_search(r.name() + "/real_time", rx) != negate) out.push_back(r);
    }
    return out;
  } catch (const std::regex_error&) {
    return rows;
  }
}

std::string fmt(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  bool full = false, math16k = false, peaks = true, has_min_time = false, cold_malloc = false, probe_backward = false;
  std::string filter, probe_path, probe_type = "f32";
  std::vector<int> thread_counts;
  std::size_t bw_mib = 1024;
  Index probe_n = 16384;
  int probe_threads = 1, probe_reps = 1;

  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    std::string v;
    if (take_flag(a, "full", nullptr)) {
      full = true;
    } else if (take_flag(a, "math16k", nullptr)) {
      math16k = true;
    } else if (take_flag(a, "no_peaks", nullptr)) {
      peaks = false;
    } else if (take_flag(a, "cold_malloc", nullptr)) {
      cold_malloc = true;
    } else if (take_flag(a, "attend_help", nullptr)) {
      print_help();
      return 0;
    } else if (take_flag(a, "threads", &v)) {
      thread_counts = parse_ints(v);
    } else if (take_flag(a, "bw_mib", &v)) {
      bw_mib = static_cast<std::size_t>(std::max(1L, std::atol(v.c_str())));
    } else if (take_flag(a, "memory_probe", &v)) {
      probe_path = v;
    } else if (take_flag(a, "probe_n", &v)) {
      probe_n = std::max<Index>(1, std::atol(v.c_str()));
    } else if (take_flag(a, "probe_type", &v)) {
      probe_type = v;
    } else if (take_flag(a, "probe_threads", &v)) {
      probe_threads = std::max(1, std::atoi(v.c_str()));
    } else if (take_flag(a, "probe_backward", nullptr)) {
      probe_backward = true;
    } else if (take_flag(a, "probe_reps", &v)) {
      probe_reps = std::max(1, std::atoi(v.c_str()));
    } else {
      if (take_flag(a, "benchmark_filter", &v)) filter = v;
      if (take_flag(a, "benchmark_min_time", &v)) has_min_time = true;
      if (take_flag(a, "benchmark_list_tests", &v) && v != "false" && v != "0") peaks = false;  // nothing runs
      if (a == "--help" || a == "-h") print_help();
      rest.push_back(argv[i]);
    }
  }

  if (!probe_path.empty()) {
    attend::Path p;
    if (!parse_path(probe_path, &p)) {
      std::fprintf(stderr, "--memory_probe: unknown path '%s' (flash, mem_efficient, math)\n", probe_path.c_str());
      return 2;
    }
    try {
      if (probe_type == "f32") return memory_probe<float>(p, probe_n, probe_threads, probe_reps, probe_backward);
      if (probe_type == "f64") return memory_probe<double>(p, probe_n, probe_threads, probe_reps, probe_backward);
      if (probe_type == "bf16") return memory_probe<Eigen::bfloat16>(p, probe_n, probe_threads, probe_reps, probe_backward);
      if (probe_type == "f16") return memory_probe<Eigen::half>(p, probe_n, probe_threads, probe_reps, probe_backward);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "memory_probe failed: %s\n", e.what());
      return 1;
    }
    std::fprintf(stderr, "--probe_type: unknown type '%s'\n", probe_type.c_str());
    return 2;
  }

  // The quick set unless asked for more; a filter selects from the full set.
  const bool use_full = full || !filter.empty();
  if (thread_counts.empty()) thread_counts = use_full ? std::vector<int>{1, 2} : std::vector<int>{2};
  const std::vector<Row> rows = select_rows(use_full, thread_counts, math16k);
  for (const Row& r : rows) register_row(r);

  static std::string min_time_arg = "--benchmark_min_time=0.2";
  if (!has_min_time) rest.push_back(min_time_arg.data());
  int rest_argc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 1;

  // Ceilings for the thread counts (and, for bandwidth, decode rows) that will run.
  benchmark::AddCustomContext("attend_version", std::to_string(ATTEND_VERSION_MAJOR) + "." +
                                                    std::to_string(ATTEND_VERSION_MINOR) + "." +
                                                    std::to_string(ATTEND_VERSION_PATCH));
  benchmark::AddCustomContext("attend_simd", Eigen::SimdInstructionSetsInUse());
  {
    // The instruction set the kernels run with: the build's (header-only) or the variant
    // attend::dispatch chose; the peak is measured with the same.
    const std::vector<float> x(16, 0.5f);
    const attend::ConstView<float, 4> view(x.data(), {1, 1, 1, 16});
    const std::string isa = attend::Attend<float>(0.0, true).dispatch(view, view, view).isa;
    g_fma_loop = fma_loop(isa);
    benchmark::AddCustomContext("attend_isa", isa);
#ifdef ATTEND_DISPATCH
    benchmark::AddCustomContext("attend_kernels", "attend::dispatch");
#else
    benchmark::AddCustomContext("attend_kernels", "header-only");
#endif
  }
  if (peaks) {
    const std::vector<Row> run = filtered(rows, filter);
    std::vector<int> fma_threads, bw_threads;
    for (const Row& r : run) {
      if (std::find(fma_threads.begin(), fma_threads.end(), r.threads) == fma_threads.end())
        fma_threads.push_back(r.threads);
      if (r.shape->decode && std::find(bw_threads.begin(), bw_threads.end(), r.threads) == bw_threads.end())
        bw_threads.push_back(r.threads);
    }
    std::sort(fma_threads.begin(), fma_threads.end());
    std::sort(bw_threads.begin(), bw_threads.end());
    for (int th : fma_threads) {
      g_peak_flops[th] = measure_fp32_peak(th);
      const std::string v = fmt(g_peak_flops[th] / 1e9, 1);
      const std::string w = fmt(g_peak_wall_flops[th] / 1e9, 1), u = fmt(g_peak_util[th], 2);
      benchmark::AddCustomContext("attend_fp32_peak_GFLOPS_" + std::to_string(th) + "t", v);
      benchmark::AddCustomContext("attend_fp32_peak_wall_GFLOPS_" + std::to_string(th) + "t", w);
      benchmark::AddCustomContext("attend_fp32_peak_wall_cpu_util_" + std::to_string(th) + "t", u);
      std::fprintf(stderr,
                   "attend_bench: fp32 FMA peak, %d thread(s): %s GFLOP/s per CPU-second; "
                   "%s GFLOP/s wall-clock (cpu_util %s)\n",
                   th, v.c_str(), w.c_str(), u.c_str());
    }
    if (!bw_threads.empty()) {
      measure_read_bw(bw_threads, bw_mib);
      for (int th : bw_threads) {
        const std::string v = fmt(g_read_bw[th] / 1e9, 1);
        const std::string w = fmt(g_read_bw_wall[th] / 1e9, 1), u = fmt(g_read_bw_util[th], 2);
        benchmark::AddCustomContext("attend_read_bw_GBps_" + std::to_string(th) + "t", v);
        benchmark::AddCustomContext("attend_read_bw_wall_GBps_" + std::to_string(th) + "t", w);
        benchmark::AddCustomContext("attend_read_bw_wall_cpu_util_" + std::to_string(th) + "t", u);
        std::fprintf(stderr,
                     "attend_bench: read bandwidth (%zu MiB stream), %d thread(s): %s GB/s per CPU-second; "
                     "%s GB/s wall-clock (cpu_util %s)\n",
                     bw_mib, th, v.c_str(), w.c_str(), u.c_str());
      }
    }
  }

  if (!cold_malloc) warm_allocator();
  benchmark::AddCustomContext("attend_malloc", cold_malloc ? "cold" : "warm (31 MiB block freed at startup)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
