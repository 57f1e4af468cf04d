// one_call: a single float forward call on one thread, for instruction counts under qemu-aarch64
// with the insn_count plugin (scripts/qemu/insn_count.c): one call on a chosen path and shape, so
// that a count is the kernels' and not a test harness's.
//
//   one_call [path [B H Nq Nk D]]     path: flash (default), mem_efficient or math; default shape
//                                     1 1 1024 1024 64 (the long shape of the NEON counts)
//
//   aarch64-linux-gnu-g++ -std=c++17 -O3 -DNDEBUG -Iinclude -isystem /usr/include/eigen3
//       scripts/qemu/one_call.cpp -o one_call -pthread        (one line)
//   qemu-aarch64 -L /usr/aarch64-linux-gnu -plugin ./insn_count.so,top=12 -d plugin -D counts.txt ./one_call
//
// Prints the path taken and a checksum of the output (the same bits for the same build).
#include <attend/attend.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "flash";
  attend::Index B = 1, H = 1, Nq = 1024, Nk = 1024, D = 64;
  if (argc == 7) {
    B = std::atol(argv[2]);
    H = std::atol(argv[3]);
    Nq = std::atol(argv[4]);
    Nk = std::atol(argv[5]);
    D = std::atol(argv[6]);
  }
  attend::FlashAttentionConfig config;
  config.enable_flash = path == "flash";
  config.enable_mem_efficient = path == "mem_efficient";
  config.enable_math = path == "math";
  const attend::Attend<float> attn(0.0, true, {}, config);

  attend::Tensor<float, 4> q(B, H, Nq, D), k(B, H, Nk, D), v(B, H, Nk, D);
  std::uint64_t s = 1;
  for (auto* t : {&q, &k, &v})
    for (attend::Index i = 0; i < t->size(); ++i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      t->data()[i] = static_cast<float>(static_cast<std::int64_t>(s >> 40) - (1 << 23)) * 0x1p-23f;
    }

  attend::Dispatch dispatch;
  attend::CallOptions<float> options;
  options.dispatch = &dispatch;
  const attend::Tensor<float, 4> out = attn(q, k, v, options);

  std::uint64_t h = 1469598103934665603ull;
  for (attend::Index i = 0; i < out.size(); ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, out.data() + i, sizeof bits);
    h = (h ^ bits) * 1099511628211ull;
  }
  std::printf("one_call: path %s, (%ld, %ld, %ld, %ld, D %ld), out hash %016llx\n", attend::path_name(dispatch.path),
              static_cast<long>(B), static_cast<long>(H), static_cast<long>(Nq), static_cast<long>(Nk),
              static_cast<long>(D), static_cast<unsigned long long>(h));
  return 0;
}
