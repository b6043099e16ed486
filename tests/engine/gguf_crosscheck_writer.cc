// Writes the GGUF file that gguf_crosscheck.py decodes independently with numpy.
//
// Usage: gguf_crosscheck_writer OUT.gguf
// Tensors (all [64 cols, 4 rows]):
//   x           F32   the original values
//   x.q8_0      Q8_0  x quantised by our reference quantiser
//   x.q4_0      Q4_0  likewise
//   x.q5_0      Q5_0  likewise
//   x.q8_0.deq  F32   our Dequantize() of x.q8_0 (the script must decode to exactly these)
//   x.q4_0.deq  F32   likewise
//   x.q5_0.deq  F32   likewise
//   x.f16       F16   x rounded by FloatToHalf (the script compares with numpy's float16)
//   x.bf16      BF16  x rounded by FloatToBf16
// Metadata: general.architecture = "crosscheck" (string), test.u32 = 123456 (uint32),
// test.f32 = 0.25 (float32), test.strings = ["a", "héllo", ""] (array of string),
// test.bool = true (bool), general.alignment = 64 (uint32, written by the writer).
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/tensor_type.h"

using namespace yunzhi::engine;  // NOLINT: a small test program

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT.gguf\n", argv[0]);
    return 2;
  }
  constexpr int64_t kCols = 64, kRows = 4, kN = kCols * kRows;
  std::mt19937 rng(1234);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(kN);
  for (float& v : x) v = dist(rng);
  x[5] = 0.0f;
  x[70] = -7.5f;  // an outlier in the third block

  GgufWriter w(GgufWriter::Options{.alignment_bytes = 64});
  w.SetString("general.architecture", "crosscheck");
  w.SetU32("test.u32", 123456);
  w.SetF32("test.f32", 0.25f);
  const std::vector<std::string> strings = {"a", "h\xC3\xA9llo", ""};
  w.SetStringArray("test.strings", strings);
  w.SetBool("test.bool", true);

  auto add = [&](const std::string& name, TensorType type, std::vector<uint8_t> bytes) {
    auto s = w.AddTensor(name, type, {kCols, kRows}, std::move(bytes));
    if (!s) {
      std::fprintf(stderr, "%s\n", s.error().ToString().c_str());
      std::exit(1);
    }
  };
  auto encode = [&](TensorType type, const std::vector<float>& values) {
    std::vector<uint8_t> bytes(static_cast<size_t>(RowSizeBytes(type, kN)));
    Quantize(type, values.data(), bytes.data(), kN);
    return bytes;
  };
  auto decode = [&](TensorType type, const std::vector<uint8_t>& bytes) {
    std::vector<float> values(kN);
    Dequantize(type, bytes.data(), values.data(), kN);
    return encode(TensorType::kF32, values);
  };
  add("x", TensorType::kF32, encode(TensorType::kF32, x));
  for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0}) {
    std::vector<uint8_t> q = encode(t, x);
    std::string name = "x." + std::string(TypeName(t));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    add(name + ".deq", TensorType::kF32, decode(t, q));
    add(name, t, std::move(q));
  }
  add("x.f16", TensorType::kF16, encode(TensorType::kF16, x));
  add("x.bf16", TensorType::kBF16, encode(TensorType::kBF16, x));
  auto s = w.WriteFile(argv[1]);
  if (!s) {
    std::fprintf(stderr, "%s\n", s.error().ToString().c_str());
    return 1;
  }
  return 0;
}
