// Writes the GGUF file that gguf_crosscheck.py decodes independently with numpy.
//
// Usage: gguf_crosscheck_writer OUT.gguf
// Tensors (x.* [64 cols, 4 rows], y.* [256 cols, 4 rows]):
//   x           F32   the original values
//   x.q8_0      Q8_0  x quantised by our reference quantiser
//   x.q4_0      Q4_0  likewise
//   x.q5_0      Q5_0  likewise
//   x.q5_1      Q5_1  likewise
//   x.iq4_nl    IQ4_NL likewise
//   x.q8_0.deq  F32   our Dequantize() of x.q8_0 (the script must decode to exactly these)
//   x.q4_0.deq  F32   likewise
//   x.q5_0.deq  F32   likewise
//   x.q5_1.deq  F32   likewise
//   x.iq4_nl.deq F32  likewise
//   x.f16       F16   x rounded by FloatToHalf (the script compares with numpy's float16)
//   x.bf16      BF16  x rounded by FloatToBf16
//   y           F32   values for the super-block types: a different magnitude and offset per
//                     32-element sub-block, so the packed 6-bit scales and mins span their range
//   y.q5_k      Q5_K  y quantised by our reference quantiser
//   y.q5_k.deq  F32   our Dequantize() of y.q5_k
//   y.q3_k      Q3_K  likewise
//   y.q3_k.deq  F32   likewise
//   y.q2_k      Q2_K  likewise
//   y.q2_k.deq  F32   likewise
//   y.iq4_xs    IQ4_XS likewise
//   y.iq4_xs.deq F32  likewise
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

  auto add = [&](const std::string& name, TensorType type, std::vector<uint8_t> bytes,
                 int64_t n_cols) {
    auto s = w.AddTensor(name, type, {n_cols, kRows}, std::move(bytes));
    if (!s) {
      std::fprintf(stderr, "%s\n", s.error().ToString().c_str());
      std::exit(1);
    }
  };
  auto encode = [&](TensorType type, const std::vector<float>& values) {
    const int64_t n = static_cast<int64_t>(values.size());
    std::vector<uint8_t> bytes(static_cast<size_t>(RowSizeBytes(type, n)));
    Quantize(type, values.data(), bytes.data(), n);
    return bytes;
  };
  auto decode = [&](TensorType type, const std::vector<uint8_t>& bytes, int64_t n) {
    std::vector<float> values(static_cast<size_t>(n));
    Dequantize(type, bytes.data(), values.data(), n);
    return encode(TensorType::kF32, values);
  };
  auto add_quantized = [&](const std::string& stem, TensorType t, const std::vector<float>& v,
                           int64_t n_cols) {
    std::vector<uint8_t> q = encode(t, v);
    std::string name = stem + "." + std::string(TypeName(t));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    add(name + ".deq", TensorType::kF32, decode(t, q, static_cast<int64_t>(v.size())), n_cols);
    add(name, t, std::move(q), n_cols);
  };
  add("x", TensorType::kF32, encode(TensorType::kF32, x), kCols);
  for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0, TensorType::kQ5_1,
                       TensorType::kIQ4_NL}) {
    add_quantized("x", t, x, kCols);
  }
  add("x.f16", TensorType::kF16, encode(TensorType::kF16, x), kCols);
  add("x.bf16", TensorType::kBF16, encode(TensorType::kBF16, x), kCols);

  // y: each super-block (row) has its sub-blocks scaled by 0.05, 0.3, ..., 1.8, in a different
  // order per row (so its 6-bit scales run from about 2 to 63); row 1 has all-positive sub-blocks
  // (min 0), row 2 mostly negative values (large mins), row 3 an all-zero sub-block (scale 0).
  constexpr int64_t kSuperCols = 256;
  std::vector<float> y(kSuperCols * kRows);
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t i = 0; i < kSuperCols; ++i) {
      const int64_t s = i / 32;
      float v = dist(rng) * (0.05f + 0.25f * static_cast<float>((3 * s + 5 * r) % 8));
      if (r == 1 && s % 2 == 1) v = std::fabs(v) + 2.0f;
      if (r == 2) v -= 1.5f;
      if (r == 3 && s == 6) v = 0.0f;
      y[r * kSuperCols + i] = v;
    }
  }
  add("y", TensorType::kF32, encode(TensorType::kF32, y), kSuperCols);
  add_quantized("y", TensorType::kQ5_K, y, kSuperCols);
  add_quantized("y", TensorType::kQ3_K, y, kSuperCols);
  add_quantized("y", TensorType::kQ2_K, y, kSuperCols);
  add_quantized("y", TensorType::kIQ4_XS, y, kSuperCols);
  auto s = w.WriteFile(argv[1]);
  if (!s) {
    std::fprintf(stderr, "%s\n", s.error().ToString().c_str());
    return 1;
  }
  return 0;
}
