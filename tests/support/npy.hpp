#ifndef ATTEND_TESTS_SUPPORT_NPY_HPP
#define ATTEND_TESTS_SUPPORT_NPY_HPP

// A reader for NumPy .npy files of format 1.0/2.0, C order, little-endian float64 ('<f8') or bool
// ('|b1'): the two kinds the golden cases hold.

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace attend_test {

struct Npy {
  std::string dtype;              // "<f8" or "|b1"
  std::vector<long long> shape;   // C order
  std::vector<double> f64;        // when dtype == "<f8"
  std::vector<unsigned char> b1;  // when dtype == "|b1"

  long long size() const {
    long long n = 1;
    for (long long d : shape) n *= d;
    return n;
  }
};

inline std::string npy_field(const std::string& header, const std::string& key) {
  const auto at = header.find("'" + key + "'");
  if (at == std::string::npos) throw std::runtime_error("npy: header has no '" + key + "'");
  auto colon = header.find(':', at);
  auto start = header.find_first_not_of(" ", colon + 1);
  if (header[start] == '\'') {
    auto end = header.find('\'', start + 1);
    return header.substr(start + 1, end - start - 1);
  }
  if (header[start] == '(') {
    auto end = header.find(')', start);
    return header.substr(start, end - start + 1);
  }
  auto end = header.find_first_of(",}", start);
  return header.substr(start, end - start);
}

inline Npy read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("npy: cannot open " + path);
  char magic[6];
  f.read(magic, 6);
  if (!f || std::string(magic + 1, 5) != "NUMPY" || static_cast<unsigned char>(magic[0]) != 0x93) {
    throw std::runtime_error("npy: not a .npy file: " + path);
  }
  unsigned char ver[2];
  f.read(reinterpret_cast<char*>(ver), 2);
  std::uint32_t hlen = 0;
  if (ver[0] == 1) {
    unsigned char l[2];
    f.read(reinterpret_cast<char*>(l), 2);
    hlen = l[0] | (l[1] << 8);
  } else {
    unsigned char l[4];
    f.read(reinterpret_cast<char*>(l), 4);
    hlen = l[0] | (l[1] << 8) | (l[2] << 16) | (static_cast<std::uint32_t>(l[3]) << 24);
  }
  std::string header(hlen, '\0');
  f.read(&header[0], hlen);
  Npy n;
  n.dtype = npy_field(header, "descr");
  if (npy_field(header, "fortran_order") != "False") throw std::runtime_error("npy: Fortran order in " + path);
  const std::string shape = npy_field(header, "shape");
  for (std::size_t i = 1; i < shape.size();) {
    const auto j = shape.find_first_of(",)", i);
    const std::string tok = shape.substr(i, j - i);
    if (tok.find_first_not_of(" ") != std::string::npos) n.shape.push_back(std::stoll(tok));
    i = j + 1;
    if (j == std::string::npos || shape[j] == ')') break;
  }
  const long long count = n.size();
  if (n.dtype == "<f8") {
    n.f64.resize(static_cast<std::size_t>(count));
    f.read(reinterpret_cast<char*>(n.f64.data()), static_cast<std::streamsize>(count * 8));
  } else if (n.dtype == "|b1") {
    n.b1.resize(static_cast<std::size_t>(count));
    f.read(reinterpret_cast<char*>(n.b1.data()), static_cast<std::streamsize>(count));
  } else {
    throw std::runtime_error("npy: unsupported dtype " + n.dtype + " in " + path);
  }
  if (!f) throw std::runtime_error("npy: truncated data in " + path);
  return n;
}

}  // namespace attend_test

#endif  // ATTEND_TESTS_SUPPORT_NPY_HPP
