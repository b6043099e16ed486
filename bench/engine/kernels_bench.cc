// CPU kernel benchmarks: every weight type x every ISA this CPU runs, next to the memory
// bandwidth they are bounded by (decoding) and OpenBLAS sgemm (prompt processing).
//
//   ReadBandwidth              STREAM-style read of 512 MiB with the pool's threads, best pass:
//                              the decode bound (MeasureReadBandwidthGBs).
//   Gemv/<type>/<isa>/<shape>  one token through one matrix; many copies of the matrix so every
//                              call reads from DRAM, not L3 (GB/s of weights read).
//   DecodeStep/<type>/<isa>    one token through every matrix of a Qwen2.5-0.5B body (24 layers,
//                              ~0.36 GiB at Q8_0): the real decode working set.
//   DecodeStepFused/...        the same with q/k/v and gate/up each in one MatMulMany.
//   DotL2/<type>/<isa>         one thread, weights resident in L2: the kernel's compute ceiling.
//   Gemm/<type>/<isa>/<shape>  512 tokens (prompt processing), GFLOP/s.
//   GemmTokens/<type>/<isa>/<shape>/<n>  n = 4-16 tokens (batched decoding), weights from DRAM.
//   OpenBlasSgemm/<shape>      cblas_sgemm on the same shapes (f32 weights) as the reference.
//   Attention/<isa>/<n_kv>     7 query heads sharing a KV head over n_kv cached positions (F16
//                              KV), one thread; AttentionDram/...: read from DRAM, as decoding
//                              reads them; AttentionDramInterleaved/...: with the rows of two
//                              KV heads side by side.
//
// Threads: a ComputePool of YUNZHI_BENCH_THREADS (default 2) everywhere but DotL2.

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <initializer_list>
#include <vector>

#include <benchmark/benchmark.h>

#include "engine/kernels/kernels.h"
#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine::kernels {
namespace {

int BenchThreads() {
  const char* env = std::getenv("YUNZHI_BENCH_THREADS");
  return env != nullptr ? std::max(1, std::atoi(env)) : 2;
}

ComputePool& Pool() {
  static ComputePool pool(BenchThreads());
  return pool;
}

struct Aligned {
  uint8_t* p = nullptr;
  explicit Aligned(size_t n) : p(static_cast<uint8_t*>(std::aligned_alloc(64, (n + 63) / 64 * 64))) {
    std::memset(p, 0, n);  // touch every page before timing
  }
  ~Aligned() { std::free(p); }
  Aligned(const Aligned&) = delete;
  Aligned& operator=(const Aligned&) = delete;
};

std::vector<float> RandomFloats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// `rows x cols` weights of `type`, quantised once (the reference quantiser is slow) and then
// copied `copies` times back to back.
std::unique_ptr<Aligned> MakeWeights(TensorType type, int64_t rows, int64_t cols, int copies,
                                     int64_t* matrix_bytes,
                                     WeightLayout layout = WeightLayout::kRows) {
  const int64_t row_bytes = RowSizeBytes(type, cols);
  *matrix_bytes = row_bytes * rows;
  auto buf = std::make_unique<Aligned>(static_cast<size_t>(*matrix_bytes * copies));
  const std::vector<float> f = RandomFloats(cols * 64, 1);
  // 64 distinct rows repeated: quantising a large matrix with the K-quant search takes seconds.
  for (int64_t r = 0; r < std::min<int64_t>(rows, 64); ++r) {
    Quantize(type, f.data() + r * cols, buf->p + r * row_bytes, cols);
  }
  for (int64_t r = 64; r < rows; ++r) std::memcpy(buf->p + r * row_bytes, buf->p + (r % 64) * row_bytes, row_bytes);
  if (layout == WeightLayout::kPanels) {  // the benchmarked shapes have rows % 16 == 0
    Aligned rows_copy(static_cast<size_t>(*matrix_bytes));
    std::memcpy(rows_copy.p, buf->p, static_cast<size_t>(*matrix_bytes));
    PackPanels(type, rows_copy.p, rows, cols, 0, rows, buf->p);
  }
  for (int c = 1; c < copies; ++c) {
    std::memcpy(buf->p + c * *matrix_bytes, buf->p, static_cast<size_t>(*matrix_bytes));
  }
  return buf;
}

// Copies so that one pass over them is >= 256 MiB: far beyond L3 (32 MiB here).
int CopiesFor(int64_t matrix_bytes) {
  return static_cast<int>(std::max<int64_t>(2, (int64_t{256} << 20) / matrix_bytes + 1));
}

void SetCounters(benchmark::State& state, double bytes_per_iter, double flops_per_iter) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops_per_iter / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB/s"] = benchmark::Counter(bytes_per_iter / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- bandwidth

// MeasureReadBandwidthGBs (kernels.h): 512 MiB (16x this machine's L3) read by all pool threads
// at once, best of 10 passes per iteration; the counter is the best iteration. `yunzhi bench
// --bandwidth` runs the same function, so the two figures compare.
void BM_ReadBandwidth(benchmark::State& state) {
  constexpr int64_t kBytes = int64_t{512} << 20;
  double best_gbs = 0;
  for (auto _ : state) {
    const double gbs = MeasureReadBandwidthGBs(&Pool(), kBytes, 10);
    best_gbs = std::max(best_gbs, gbs);
    state.SetIterationTime(static_cast<double>(kBytes) / (gbs * 1e9));
  }
  state.counters["GB/s"] = best_gbs;
}

// ---- matrix products

struct Shape {
  const char* name;
  int64_t rows;  // output features
  int64_t cols;  // input features
};

// Qwen2.5-0.5B: hidden 896, intermediate 4864, 14 query heads and 2 KV heads of 64.
// Qwen2.5-1.5B (hidden 1536, intermediate 8960) as well: 896 is not a multiple of the K-quants'
// 256-element blocks, so K-quant files of the 0.5B model keep those matrices in other types.
constexpr Shape kGemvShapes[] = {{"4864x896(gate/up)", 4864, 896},
                                 {"896x4864(down)", 896, 4864},
                                 {"896x896(q/o)", 896, 896},
                                 {"128x896(k/v)", 128, 896},
                                 {"8960x1536(1.5B-gate/up)", 8960, 1536},
                                 {"1536x8960(1.5B-down)", 1536, 8960}};
constexpr Shape kGemmShapes[] = {{"4864x896", 4864, 896}, {"896x896", 896, 896},
                                 {"1536x1536", 1536, 1536}};
constexpr int64_t kPromptTokens = 512;

// Every type has an AVX-512 kernel, and every quantised one a panel layout too.
constexpr TensorType kTypes[] = {
    TensorType::kF16,  TensorType::kQ8_0, TensorType::kQ4_0,   TensorType::kQ5_0,
    TensorType::kQ5_1, TensorType::kQ2_K, TensorType::kQ3_K,   TensorType::kQ4_K,
    TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_NL, TensorType::kIQ4_XS};

void BM_Gemv(benchmark::State& state, TensorType type, Isa isa, Shape shape, WeightLayout layout) {
  SetActiveIsa(isa);
  int64_t matrix_bytes = 0;
  const int copies = CopiesFor(RowSizeBytes(type, shape.cols) * shape.rows);
  auto w = MakeWeights(type, shape.rows, shape.cols, copies, &matrix_bytes, layout);
  const std::vector<float> x = RandomFloats(shape.cols, 2);
  std::vector<float> y(static_cast<size_t>(shape.rows));
  int c = 0;
  for (auto _ : state) {
    MatMul(&Pool(), type, w->p + c * matrix_bytes, shape.rows, shape.cols, x.data(), 1, y.data(),
           layout);
    benchmark::DoNotOptimize(y.data());
    c = (c + 1) % copies;
  }
  SetCounters(state, static_cast<double>(matrix_bytes), 2.0 * shape.rows * shape.cols);
  SetActiveIsa(DetectIsa());
}

struct Body {
  int layers;
  int64_t hidden, kv, inter;
};
constexpr Body kQwen05B{24, 896, 128, 4864};
constexpr Body kQwen15B{28, 1536, 256, 8960};

// fused: q/k/v and gate/up through MatMulMany (one fork-join each) instead of one MatMul per
// matrix: 4 parallel loops per layer instead of 7.
void BM_DecodeStep(benchmark::State& state, TensorType type, Isa isa, Body body, bool fused,
                   WeightLayout layout) {
  SetActiveIsa(isa);
  const int kLayers = body.layers;
  struct M {
    int64_t rows, cols;
  };
  const int64_t h = body.hidden;
  // q, k, v, o, gate, up, down
  const M mats[] = {{h, h}, {body.kv, h}, {body.kv, h}, {h, h},
                    {body.inter, h}, {body.inter, h}, {h, body.inter}};
  std::vector<std::unique_ptr<Aligned>> weights;
  std::vector<int64_t> bytes;
  double total_bytes = 0, flops = 0;
  for (const M& m : mats) {
    int64_t mb = 0;
    weights.push_back(MakeWeights(type, m.rows, m.cols, kLayers, &mb, layout));
    bytes.push_back(mb);
    total_bytes += static_cast<double>(mb) * kLayers;
    flops += 2.0 * m.rows * m.cols * kLayers;
  }
  const std::vector<float> x = RandomFloats(body.inter, 3);
  std::vector<std::vector<float>> y;
  for (const M& m : mats) y.emplace_back(static_cast<size_t>(m.rows));
  auto target = [&](size_t k, int l) {
    return MatMulTarget{type, weights[k]->p + l * bytes[k], mats[k].rows, y[k].data(), layout};
  };
  auto one = [&](size_t k, int l) {
    MatMul(&Pool(), type, weights[k]->p + l * bytes[k], mats[k].rows, mats[k].cols, x.data(), 1,
           y[k].data(), layout);
  };
  for (auto _ : state) {
    for (int l = 0; l < kLayers; ++l) {
      if (fused) {
        const MatMulTarget qkv[] = {target(0, l), target(1, l), target(2, l)};
        MatMulMany(&Pool(), qkv, h, x.data(), 1);
        one(3, l);
        const MatMulTarget gate_up[] = {target(4, l), target(5, l)};
        MatMulMany(&Pool(), gate_up, h, x.data(), 1);
        one(6, l);
      } else {
        for (size_t k = 0; k < std::size(mats); ++k) one(k, l);
      }
    }
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(state, total_bytes, flops);
  SetActiveIsa(DetectIsa());
}

// One KV head's group of 7 query heads (Qwen2.5-0.5B: 14 query heads over 2 KV heads) over n_kv
// cached positions (head_dim 64, F16 cache), as a decoding step at that context length runs it
// once per KV head: scores, softmax, weighted sum of the values. Rows: kCache, one head's rows
// back to back (KvCache's layout); kInterleaved, the two KV heads of a position side by side
// (one head's rows 128 bytes every 256, the cache's layout before). `dram`: in enough copies that
// every call reads them from DRAM, as a decoding step does (the weights stream through the caches
// between two visits of a layer). GB/s of this head's K and V.
enum class KvRows { kCache, kInterleaved };
void BM_Attention(benchmark::State& state, Isa isa, int64_t n_kv, bool dram, KvRows layout) {
  SetActiveIsa(isa);
  constexpr int64_t kHeadDim = 64, kGroup = 7, kKvHeads = 2;
  const std::vector<float> q = RandomFloats(kGroup * kHeadDim, 9);
  const int64_t pos_elems = layout == KvRows::kInterleaved ? kKvHeads * kHeadDim : kHeadDim;
  const int64_t copy_elems = 2 * n_kv * pos_elems;  // K then V
  const int copies = dram ? CopiesFor(copy_elems * 2) : 1;
  const std::vector<float> kv = RandomFloats(copy_elems, 10);
  std::vector<uint16_t> kv16(static_cast<size_t>(copy_elems * copies));
  FloatToHalf(kv.data(), kv16.data(), copy_elems);
  for (int c = 1; c < copies; ++c) {
    std::memcpy(kv16.data() + c * copy_elems, kv16.data(), static_cast<size_t>(copy_elems * 2));
  }
  std::vector<std::vector<const void*>> k_rows(static_cast<size_t>(copies)),
      v_rows(static_cast<size_t>(copies));
  for (int c = 0; c < copies; ++c) {
    const uint16_t* base = kv16.data() + c * copy_elems;
    for (int64_t j = 0; j < n_kv; ++j) {
      k_rows[static_cast<size_t>(c)].push_back(base + j * pos_elems);
      v_rows[static_cast<size_t>(c)].push_back(base + (n_kv + j) * pos_elems);
    }
  }
  std::vector<float> scratch(static_cast<size_t>(kGroup * n_kv)), out(kGroup * kHeadDim);
  int c = 0;
  for (auto _ : state) {
    AttendGroup(q.data(), kGroup, k_rows[static_cast<size_t>(c)].data(),
                v_rows[static_cast<size_t>(c)].data(), KvType::kF16, n_kv, kHeadDim, 0.125f,
                scratch.data(), out.data());
    benchmark::DoNotOptimize(out.data());
    c = (c + 1) % copies;
  }
  SetCounters(state, static_cast<double>(2 * n_kv * kHeadDim * 2),
              static_cast<double>(4 * kGroup * n_kv * kHeadDim));
  SetActiveIsa(DetectIsa());
}

void BM_DotL2(benchmark::State& state, TensorType type, Isa isa, WeightLayout layout) {
  SetActiveIsa(isa);
  const int64_t rows = 64, cols = 4096;
  int64_t matrix_bytes = 0;
  auto w = MakeWeights(type, rows, cols, 1, &matrix_bytes, layout);
  const std::vector<float> x = RandomFloats(cols, 4);
  std::vector<float> y(rows);
  for (auto _ : state) {
    MatMul(nullptr, type, w->p, rows, cols, x.data(), 1, y.data(), layout);
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(state, static_cast<double>(matrix_bytes), 2.0 * rows * cols);
  SetActiveIsa(DetectIsa());
}

void BM_Gemm(benchmark::State& state, TensorType type, Isa isa, Shape shape, WeightLayout layout) {
  SetActiveIsa(isa);
  int64_t matrix_bytes = 0;
  auto w = MakeWeights(type, shape.rows, shape.cols, 1, &matrix_bytes, layout);
  const std::vector<float> x = RandomFloats(kPromptTokens * shape.cols, 5);
  std::vector<float> y(static_cast<size_t>(kPromptTokens * shape.rows));
  for (auto _ : state) {
    MatMul(&Pool(), type, w->p, shape.rows, shape.cols, x.data(), kPromptTokens, y.data(), layout);
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(state, static_cast<double>(matrix_bytes), 2.0 * kPromptTokens * shape.rows * shape.cols);
  SetActiveIsa(DetectIsa());
}

// A few tokens at once (batched decoding of several streams, short prompt chunks): GFLOP/s.
void BM_GemmTokens(benchmark::State& state, TensorType type, Isa isa, Shape shape, int64_t n_tokens,
                   WeightLayout layout) {
  SetActiveIsa(isa);
  int64_t matrix_bytes = 0;
  const int copies = CopiesFor(RowSizeBytes(type, shape.cols) * shape.rows);
  auto w = MakeWeights(type, shape.rows, shape.cols, copies, &matrix_bytes, layout);
  const std::vector<float> x = RandomFloats(n_tokens * shape.cols, 8);
  std::vector<float> y(static_cast<size_t>(n_tokens * shape.rows));
  int c = 0;
  for (auto _ : state) {
    MatMul(&Pool(), type, w->p + c * matrix_bytes, shape.rows, shape.cols, x.data(), n_tokens,
           y.data(), layout);
    benchmark::DoNotOptimize(y.data());
    c = (c + 1) % copies;
  }
  SetCounters(state, static_cast<double>(matrix_bytes),
              2.0 * static_cast<double>(n_tokens * shape.rows * shape.cols));
  SetActiveIsa(DetectIsa());
}

void BM_OpenBlasSgemm(benchmark::State& state, Shape shape) {
  openblas_set_num_threads(BenchThreads());
  const std::vector<float> w = RandomFloats(shape.rows * shape.cols, 6);
  const std::vector<float> x = RandomFloats(kPromptTokens * shape.cols, 7);
  std::vector<float> y(static_cast<size_t>(kPromptTokens * shape.rows));
  for (auto _ : state) {
    // Y[tokens x rows] = X[tokens x cols] * W^T, W row-major [rows x cols]: MatMul's contract.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(kPromptTokens),
                static_cast<int>(shape.rows), static_cast<int>(shape.cols), 1.0f, x.data(),
                static_cast<int>(shape.cols), w.data(), static_cast<int>(shape.cols), 0.0f,
                y.data(), static_cast<int>(shape.rows));
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(state, 4.0 * shape.rows * shape.cols, 2.0 * kPromptTokens * shape.rows * shape.cols);
}

// Joins name parts with '/'. (Appending avoids a GCC 12 -Wrestrict false positive that
// `const char* + std::string` chains trigger.)
std::string Name(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) {
    if (!s.empty()) s += '/';
    s.append(p.data(), p.size());
  }
  return s;
}

std::vector<Isa> Isas() {
  std::vector<Isa> isas;
  for (int i = 0; i <= static_cast<int>(DetectIsa()); ++i) isas.push_back(static_cast<Isa>(i));
  return isas;
}

// With several threads only wall time is meaningful. On a machine shared with other jobs, run
// with YUNZHI_BENCH_THREADS=1: rates are then per CPU-second of the one thread, which other
// processes competing for the core do not inflate.
benchmark::internal::Benchmark* Timed(benchmark::internal::Benchmark* b) {
  return BenchThreads() > 1 ? b->UseRealTime() : b;
}

// Every ISA with row-layout weights, and the types PanelsPreferred names (Q8_0/Q4_0/Q5_0/Q5_1,
// Q2_K/Q3_K/Q4_K/Q5_K/Q6_K, IQ4_NL and IQ4_XS) also as panels on AVX-512 (the layout a model
// loaded on such a CPU runs: WeightLayout::kPanels), named "avx512-panels".
struct Variant {
  Isa isa;
  WeightLayout layout;
  std::string name;
};
std::vector<Variant> Variants(TensorType type) {
  std::vector<Variant> v;
  for (Isa isa : Isas()) v.push_back({isa, WeightLayout::kRows, std::string(IsaName(isa))});
  // The panel layout where an ISA has kernels for it (AVX-512: every quantised type; AVX2: Q8_0,
  // Q4_0, Q5_0, Q4_K, Q5_K, Q6_K).
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
    if (DetectIsa() < isa) continue;
    SetActiveIsa(isa);
    if (PanelsPreferred(type)) {
      v.push_back({isa, WeightLayout::kPanels, std::string(IsaName(isa)) + "-panels"});
    }
    SetActiveIsa(DetectIsa());
  }
  return v;
}

const bool kRegistered = [] {
  // Manual time: the best pass of each iteration (allocation and page faults excluded).
  benchmark::RegisterBenchmark("ReadBandwidth", BM_ReadBandwidth)->UseManualTime()->Iterations(5);
  for (TensorType type : kTypes) {
    const std::string tn(TypeName(type));
    for (const Variant& v : Variants(type)) {
      benchmark::RegisterBenchmark(Name({"DotL2", tn, v.name}).c_str(), BM_DotL2, type, v.isa,
                                   v.layout)
          ->MinTime(0.2);
    }
  }
  for (TensorType type : kTypes) {
    const std::string tn(TypeName(type));
    for (const Variant& v : Variants(type)) {
      for (const Shape& s : kGemvShapes) {
        if (!IsValidRowLength(type, s.cols)) continue;
        if (v.isa == Isa::kScalar && s.rows != 4864 && s.rows != 8960) continue;  // one is enough
        Timed(benchmark::RegisterBenchmark(Name({"Gemv", tn, v.name, s.name}).c_str(), BM_Gemv,
                                           type, v.isa, s, v.layout))
            ->MinTime(0.5);
      }
      if (v.isa != Isa::kScalar) {
        const bool k_quant = Traits(type).block_size == 256;
        for (bool fused : {false, true}) {
          Timed(benchmark::RegisterBenchmark(
                    Name({fused ? "DecodeStepFused" : "DecodeStep", tn, v.name,
                          k_quant ? "qwen2.5-1.5b" : "qwen2.5-0.5b"})
                        .c_str(),
                    BM_DecodeStep, type, v.isa, k_quant ? kQwen15B : kQwen05B, fused, v.layout))
              ->MinTime(1.0)
              ->Unit(benchmark::kMillisecond);
        }
      }
    }
  }
  for (const Shape& s : kGemmShapes) {
    Timed(benchmark::RegisterBenchmark(Name({"OpenBlasSgemm", s.name}).c_str(),
                                       BM_OpenBlasSgemm, s))
        ->MinTime(1.0)
        ->Unit(benchmark::kMillisecond);
    for (TensorType type : kTypes) {
      for (const Variant& v : Variants(type)) {
        if (!IsValidRowLength(type, s.cols)) continue;
        // Scalar prompt processing takes seconds per call: measured on one shape only.
        if (v.isa == Isa::kScalar && s.rows != 1536) continue;
        Timed(benchmark::RegisterBenchmark(Name({"Gemm", TypeName(type), v.name, s.name}).c_str(),
                                           BM_Gemm, type, v.isa, s, v.layout))
            ->MinTime(v.isa == Isa::kScalar ? 0.01 : 1.0)
            ->Unit(benchmark::kMillisecond);
      }
    }
  }
  for (int i = 0; i <= static_cast<int>(DetectIsa()); ++i) {
    const auto isa = static_cast<Isa>(i);
    for (int64_t n_kv : {int64_t{512}, int64_t{4096}}) {
      for (const char* name : {"Attention", "AttentionDram", "AttentionDramInterleaved"}) {
        const bool dram = name != std::string_view("Attention");
        const KvRows rows = name == std::string_view("AttentionDramInterleaved")
                                ? KvRows::kInterleaved
                                : KvRows::kCache;
        benchmark::RegisterBenchmark(
            Name({name, std::string(IsaName(isa)), std::to_string(n_kv)}).c_str(), BM_Attention,
            isa, n_kv, dram, rows)
            ->MinTime(0.2)
            ->Unit(benchmark::kMicrosecond);
      }
    }
  }
  // Batched decoding: weights from DRAM (as decoding), shared by 4-16 tokens. K-quants need
  // widths in whole super-blocks of 256.
  for (TensorType type : kTypes) {
    const Shape& shape = Traits(type).block_size == 256 ? kGemmShapes[2] : kGemmShapes[0];
    for (const Variant& v : Variants(type)) {
      if (v.isa != DetectIsa()) continue;
      for (int64_t n :
           {int64_t{1}, int64_t{4}, int64_t{8}, int64_t{12}, int64_t{16}, int64_t{32}}) {
        Timed(benchmark::RegisterBenchmark(
                  Name({"GemmTokens", TypeName(type), v.name, shape.name, std::to_string(n)})
                      .c_str(),
                  BM_GemmTokens, type, v.isa, shape, n, v.layout))
            ->MinTime(0.5);
      }
    }
  }
  return true;
}();

}  // namespace
}  // namespace yunzhi::engine::kernels
