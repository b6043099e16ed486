// The reference quantisers (`Quantize`, tensor_type.h), one thread: what `yunzhi quantize` spends
// per tensor on top of reading and writing. Rows of 4096 Gaussian values, 64 rows per call;
// items/s = elements quantised per second.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine {
namespace {

constexpr int64_t kCols = 4096;
constexpr int64_t kRows = 64;

void BM_Quantize(benchmark::State& state, TensorType type) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(kCols * kRows));
  for (float& v : x) v = nd(rng);
  const int64_t row_bytes = RowSizeBytes(type, kCols);
  std::vector<uint8_t> out(static_cast<size_t>(row_bytes * kRows));
  for (auto _ : state) {
    for (int64_t r = 0; r < kRows; ++r) {
      Quantize(type, x.data() + r * kCols, out.data() + r * row_bytes, kCols);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * kCols * kRows);
}

#define YZ_QUANTIZE_BENCH(T) \
  BENCHMARK_CAPTURE(BM_Quantize, T, TensorType::k##T)->Unit(benchmark::kMillisecond)
YZ_QUANTIZE_BENCH(F16);
YZ_QUANTIZE_BENCH(Q8_0);
YZ_QUANTIZE_BENCH(Q6_K);
YZ_QUANTIZE_BENCH(Q5_K);
YZ_QUANTIZE_BENCH(Q5_1);
YZ_QUANTIZE_BENCH(Q5_0);
YZ_QUANTIZE_BENCH(Q4_K);
YZ_QUANTIZE_BENCH(Q4_0);
YZ_QUANTIZE_BENCH(IQ4_XS);
YZ_QUANTIZE_BENCH(IQ4_NL);
YZ_QUANTIZE_BENCH(Q3_K);
YZ_QUANTIZE_BENCH(Q2_K);

}  // namespace
}  // namespace yunzhi::engine

