// Reading golden case folders (see golden.hpp).

#include "support/golden.hpp"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <utility>

#include "support/npy.hpp"

#ifndef ATTEND_GOLDEN_DIR_DEFAULT
#error "ATTEND_GOLDEN_DIR_DEFAULT must name the project's golden data directory"
#endif

namespace attend_test {

namespace fs = std::filesystem;

namespace {

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

Npy load_f8(const fs::path& dir, const std::string& name, const std::vector<long long>& shape) {
  Npy n = read_npy((dir / (name + ".npy")).string());
  if (n.dtype != "<f8") throw std::runtime_error(name + ".npy: expected float64, got " + n.dtype);
  if (n.shape.size() != shape.size()) {
    throw std::runtime_error(name + ".npy: expected rank " + std::to_string(shape.size()) + ", got " +
                             std::to_string(n.shape.size()));
  }
  for (std::size_t r = 0; r < shape.size(); ++r) {
    if (shape[r] >= 0 && n.shape[r] != shape[r]) {
      throw std::runtime_error(name + ".npy: dimension " + std::to_string(r) + " is " + std::to_string(n.shape[r]) +
                               ", must be " + std::to_string(shape[r]));
    }
  }
  return n;
}

}  // namespace

std::string golden_root() {
  const char* env = std::getenv("ATTEND_GOLDEN_DIR");
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(ATTEND_GOLDEN_DIR_DEFAULT);
}

bool golden_verbose() {
  const char* env = std::getenv("ATTEND_GOLDEN_VERBOSE");
  return env != nullptr && *env != '\0' && std::string(env) != "0";
}

std::vector<std::string> golden_case_dirs(const std::string& root) {
  std::vector<std::string> dirs;
  if (!fs::is_directory(root)) return dirs;
  for (const auto& e : fs::directory_iterator(root)) {
    if (e.is_directory() && fs::exists(e.path() / "case.txt")) dirs.push_back(e.path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

GoldenCase load_golden_case(const std::string& dir_name) {
  const fs::path dir(dir_name);
  const auto kv = read_case_txt(dir / "case.txt");
  auto get = [&kv](const std::string& key, const std::string& fallback) {
    const auto it = kv.find(key);
    return it == kv.end() ? fallback : it->second;
  };
  GoldenCase c;
  c.name = get("name", dir.filename().string());

  const Npy q = load_f8(dir, "q", {-1, -1, -1, -1});
  Inputs& in = c.in;
  in.B = q.shape[0], in.Hq = q.shape[1], in.Nq = q.shape[2], in.D = q.shape[3];
  const Npy k = load_f8(dir, "k", {in.B, -1, -1, in.D});
  in.Hkv = k.shape[1], in.Nk = k.shape[2];
  const Npy v = load_f8(dir, "v", {in.B, in.Hkv, in.Nk, -1});
  in.Dv = v.shape[3];
  const Npy out = load_f8(dir, "out", {in.B, in.Hq, in.Nq, in.Dv});
  const Npy lse = load_f8(dir, "lse", {in.B, in.Hq, in.Nq});
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
  if (fs::exists(dir / "dout.npy")) {
    c.dout = load_f8(dir, "dout", {in.B, in.Hq, in.Nq, in.Dv}).f64;
    c.dq = load_f8(dir, "dq", {in.B, in.Hq, in.Nq, in.D}).f64;
    c.dk = load_f8(dir, "dk", {in.B, in.Hkv, in.Nk, in.D}).f64;
    c.dv = load_f8(dir, "dv", {in.B, in.Hkv, in.Nk, in.Dv}).f64;
  }

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
    Npy m = read_npy((dir / "mask.npy").string());
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

  const std::string p = get("dropout", "");
  if (!p.empty()) {
    c.dropout.p = std::stod(p);
    c.dropout.seed = std::stoull(get("dropout_seed", "0"));
    c.dropout.offset = static_cast<std::uint32_t>(std::stoul(get("dropout_offset", "0")));
  }
  return c;
}

}  // namespace attend_test
