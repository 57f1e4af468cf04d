// The golden runner: every case folder of a golden directory (the project's copy in
// tests/data/golden, or the folder named by $ATTEND_GOLDEN_DIR) through every path and every T,
// one line per (case, path, T):
//   golden case=<name> path=<path> type=<T> max_abs_err=<e> ref_max_abs=<m> lse_max_abs_err=<e>
// where both errors are against the golden (PyTorch float64) out and lse. The verdict uses the
// tolerance of support/attend_test.hpp: f64 and f32 are judged against the golden values; bf16 and
// f16 against the math path in double on the same T-rounded inputs (rounding q and k to 8 or 11
// bits moves logits in the hundreds by whole units, which is the input's error, not the kernel's).
// Judging 16-bit types by the library's own math path in double is not circular: that path is
// judged against the golden values in f64 and f32 in the same run, and bf16/f16 share its code.
// Every type must reproduce the -inf pattern of lse exactly (rows that see no key).
// Set ATTEND_GOLDEN_VERBOSE=1 to also print the judged errors beside their tolerances.
//
// The case format (README.md beside the cases) is read, not the case list: any folder holding a
// case.txt is a case; unknown keys are ignored; the mask may be bool or additive of any rank 1-4.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/attend_test.hpp"
#include "support/npy.hpp"

#ifndef ATTEND_GOLDEN_DIR_DEFAULT
#error "ATTEND_GOLDEN_DIR_DEFAULT must name the project's golden data directory"
#endif

namespace {

namespace fs = std::filesystem;
using attend::Index;
using attend_test::Inputs;
using attend_test::MaskKind;

struct GoldenCase {
  std::string name;
  Inputs in;
  std::vector<double> out, lse;
};

std::string golden_dir() {
  const char* env = std::getenv("ATTEND_GOLDEN_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(ATTEND_GOLDEN_DIR_DEFAULT);
}

bool verbose() {
  const char* env = std::getenv("ATTEND_GOLDEN_VERBOSE");
  return env != nullptr && *env != '\0' && std::string(env) != "0";
}

std::map<std::string, std::string> read_case_txt(const fs::path& file) {
  std::ifstream f(file);
  if (!f) throw std::runtime_error("cannot open " + file.string());
  std::map<std::string, std::string> kv;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    const auto sep = line.find_first_of(" \t", start);
    const std::string key = line.substr(start, sep == std::string::npos ? std::string::npos : sep - start);
    std::string value;
    if (sep != std::string::npos) {
      const auto vs = line.find_first_not_of(" \t", sep);
      if (vs != std::string::npos) value = line.substr(vs);
      while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    }
    kv[key] = value;
  }
  return kv;
}

attend_test::Npy load_f8(const fs::path& dir, const std::string& name, std::size_t rank) {
  attend_test::Npy n = attend_test::read_npy((dir / (name + ".npy")).string());
  if (n.dtype != "<f8") throw std::runtime_error(name + ".npy: expected float64, got " + n.dtype);
  if (n.shape.size() != rank) {
    throw std::runtime_error(name + ".npy: expected rank " + std::to_string(rank) + ", got " +
                             std::to_string(n.shape.size()));
  }
  return n;
}

/// Loads one case folder; throws std::runtime_error on anything malformed.
GoldenCase load_case(const fs::path& dir) {
  const auto kv = read_case_txt(dir / "case.txt");
  auto get = [&kv](const std::string& key, const std::string& fallback) {
    const auto it = kv.find(key);
    return it == kv.end() ? fallback : it->second;
  };
  GoldenCase c;
  c.name = get("name", dir.filename().string());

  const auto q = load_f8(dir, "q", 4), k = load_f8(dir, "k", 4), v = load_f8(dir, "v", 4);
  const auto out = load_f8(dir, "out", 4), lse = load_f8(dir, "lse", 3);
  Inputs& in = c.in;
  in.B = q.shape[0], in.Hq = q.shape[1], in.Nq = q.shape[2], in.D = q.shape[3];
  in.Hkv = k.shape[1], in.Nk = k.shape[2], in.Dv = v.shape[3];
  const std::vector<long long> want_out = {in.B, in.Hq, in.Nq, in.Dv}, want_lse = {in.B, in.Hq, in.Nq};
  if (out.shape != want_out || lse.shape != want_lse || k.shape[0] != in.B || k.shape[3] != in.D ||
      v.shape[0] != in.B || v.shape[1] != in.Hkv || v.shape[2] != in.Nk) {
    throw std::runtime_error("inconsistent shapes among q, k, v, out, lse");
  }
  // case.txt's sizes, where given, must agree with the arrays.
  const std::pair<const char*, Index> sizes[] = {{"batch", in.B},   {"heads_q", in.Hq},  {"heads_kv", in.Hkv},
                                                 {"q_len", in.Nq},  {"kv_len", in.Nk},   {"head_dim", in.D},
                                                 {"head_dim_v", in.Dv}};
  for (const auto& s : sizes) {
    const std::string val = get(s.first, "");
    if (!val.empty() && std::stoll(val) != s.second) {
      throw std::runtime_error(std::string("case.txt ") + s.first + " = " + val + " but the arrays say " +
                               std::to_string(s.second));
    }
  }
  in.q = q.f64, in.k = k.f64, in.v = v.f64;
  c.out = out.f64, c.lse = lse.f64;

  const std::string scale = get("scale", "default");
  if (scale != "default") in.scale = std::stod(scale);

  const std::string causal = get("causal", "none");
  if (causal == "none") in.causal = attend::Causal::none;
  else if (causal == "top_left") in.causal = attend::Causal::top_left;
  else if (causal == "bottom_right") in.causal = attend::Causal::bottom_right;
  else throw std::runtime_error("unknown causal '" + causal + "'");

  const std::string mask = get("mask", "none");
  if (mask != "none") {
    if (mask != "bool" && mask != "additive") throw std::runtime_error("unknown mask kind '" + mask + "'");
    attend_test::Npy m = attend_test::read_npy((dir / "mask.npy").string());
    if (m.shape.empty() || m.shape.size() > 4) {
      throw std::runtime_error("mask.npy has rank " + std::to_string(m.shape.size()) + ", must be 1 to 4");
    }
    in.mask_dims.assign(m.shape.begin(), m.shape.end());
    if (mask == "bool") {
      if (m.dtype != "|b1") throw std::runtime_error("mask bool but mask.npy is " + m.dtype);
      in.mask = MaskKind::keep;
      in.mask_keep = m.b1;
    } else {
      if (m.dtype != "<f8") throw std::runtime_error("mask additive but mask.npy is " + m.dtype);
      in.mask = MaskKind::additive;
      in.mask_add = m.f64;
    }
  }
  return c;
}

std::vector<fs::path> case_dirs(const std::string& root) {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.is_directory() && fs::exists(e.path() / "case.txt")) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

/// Positions where exactly one of a, b is -inf.
std::size_t neg_inf_mismatches(const std::vector<double>& a, const std::vector<double>& b) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const bool ai = std::isinf(a[i]) && a[i] < 0, bi = std::isinf(b[i]) && b[i] < 0;
    n += ai != bi ? 1 : 0;
  }
  return n + (a.size() != b.size() ? 1 : 0);
}

template <typename T>
void run_case(const GoldenCase& c) {
  constexpr bool k16 = !std::is_same_v<T, double> && !std::is_same_v<T, float>;
  const Inputs fed = attend_test::rounded<T>(c.in);
  // The judge: the golden values themselves, or for 16-bit the double math path on `fed`.
  std::vector<double> judge_out = c.out, judge_lse = c.lse;
  if constexpr (k16) {
    const auto ref = attend_test::reference<T>(c.in);
    judge_out = ref.out;
    judge_lse = ref.lse;
  }
  const attend_test::Tolerance tol = attend_test::tolerance<T>(
      fed, attend_test::max_abs_finite(judge_out), attend_test::max_abs_finite(judge_lse));

  for (const attend::Path path : attend_test::kAllPaths) {
    const std::string what = "case=" + c.name + " path=" + attend::path_name(path) + " type=" + attend::type_name<T>();
    // A head wider than the tiled kernels take cannot run on them: asking for that path alone is
    // documented to be an attend::Error. Check that, and still print the case's line (errors nan).
    constexpr Index kMax = attend::Attend<T>::kMaxTiledHeadDim;
    if (path != attend::Path::math && (c.in.D > kMax || c.in.Dv > kMax)) {
      EXPECT_THROW(attend_test::run<T>(c.in, attend_test::on(path)), attend::Error) << what;
      std::printf("golden %s max_abs_err=nan ref_max_abs=%.3e lse_max_abs_err=nan\n", what.c_str(),
                  attend_test::max_abs_finite(c.out));
      continue;
    }
    attend_test::Result<T> r;
    try {
      r = attend_test::run<T>(c.in, attend_test::on(path));
    } catch (const std::exception& e) {
      ADD_FAILURE() << what << ": threw " << e.what();
      continue;
    }
    const auto g = attend_test::compare(r.out, c.out);
    const auto gl = attend_test::compare(r.lse, c.lse);
    std::printf("golden %s max_abs_err=%.3e ref_max_abs=%.3e lse_max_abs_err=%.3e\n", what.c_str(), g.max_abs_err,
                attend_test::max_abs_finite(c.out), gl.max_abs_err);

    const auto j = k16 ? attend_test::compare(r.out, judge_out) : g;
    const auto jl = k16 ? attend_test::compare(r.lse, judge_lse) : gl;
    if (verbose()) {
      std::printf("  judged vs %s: out %.3e / tol %.3e (%.3f)  lse %.3e / tol %.3e (%.3f)\n",
                  k16 ? "double-on-rounded" : "golden", j.max_abs_err, tol.out, j.max_abs_err / tol.out,
                  jl.max_abs_err, tol.lse, jl.max_abs_err / tol.lse);
    }
    EXPECT_EQ(r.dispatch.path, path) << what << ": the forced path did not run";
    EXPECT_LE(j.max_abs_err, tol.out) << what << ": out error at "
                                      << attend_test::where4(j.worst, c.in.Hq, c.in.Nq, c.in.Dv) << " got "
                                      << r.out[j.worst] << " want " << judge_out[j.worst];
    EXPECT_LE(jl.max_abs_err, tol.lse) << what << ": lse error at "
                                       << attend_test::where4(jl.worst, c.in.Hq, c.in.Nq, 1) << " got "
                                       << r.lse[jl.worst] << " want " << judge_lse[jl.worst];
    // Rows that see no key: lse exactly -inf where the judge has it, and only there. (For 16-bit the
    // judge's dead rows are the golden ones unless rounding the inputs to T makes an additive mask
    // entry -inf, e.g. -1e9 in f16: then the T computation rightly sees a dead row too.)
    EXPECT_EQ(neg_inf_mismatches(r.lse, judge_lse), 0u) << what << ": lse's -inf rows differ from the "
                                                        << (k16 ? "reference's" : "golden ones");
  }
}

TEST(Golden, EveryCaseEveryPathEveryType) {
  const std::string root = golden_dir();
  ASSERT_TRUE(fs::is_directory(root)) << "golden directory not found: " << root;
  const auto dirs = case_dirs(root);
  ASSERT_FALSE(dirs.empty()) << "no case folder (holding case.txt) in " << root;
  for (const auto& dir : dirs) {
    GoldenCase c;
    try {
      c = load_case(dir);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cannot load golden case " << dir << ": " << e.what();
      continue;
    }
    run_case<double>(c);
    run_case<float>(c);
    run_case<Eigen::bfloat16>(c);
    run_case<Eigen::half>(c);
  }
  std::fflush(stdout);
}

}  // namespace
