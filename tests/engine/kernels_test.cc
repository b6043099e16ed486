// Every kernel variant this CPU can run, checked against float64 computations and the scalar
// reference on random and edge-case inputs.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_internal.h"
#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine::kernels {
namespace {

std::vector<Isa> AvailableIsas() {
  std::vector<Isa> isas;
  for (int i = 0; i <= static_cast<int>(DetectIsa()); ++i) isas.push_back(static_cast<Isa>(i));
  return isas;
}

// Panel buffers are 64-byte aligned (the kernels load them with aligned loads), as are the
// bandwidth probe's.
struct PanelAllocator {
  using value_type = uint8_t;
  template <class U>
  struct rebind {
    using other = PanelAllocator;
  };
  PanelAllocator() = default;
  uint8_t* allocate(size_t n) {
    return static_cast<uint8_t*>(::operator new (n, std::align_val_t{64}));
  }
  void deallocate(uint8_t* p, size_t) { ::operator delete (p, std::align_val_t{64}); }
  bool operator==(const PanelAllocator&) const { return true; }
};

// `rows` x `cols` floats quantised row by row to `type`, in the row layout.
std::vector<uint8_t> QuantizeRows(TensorType type, const std::vector<float>& wf, int64_t rows,
                                  int64_t cols) {
  const int64_t row_bytes = RowSizeBytes(type, cols);
  std::vector<uint8_t> w(static_cast<size_t>(row_bytes * rows));
  for (int64_t r = 0; r < rows; ++r) {
    Quantize(type, wf.data() + r * cols, w.data() + r * row_bytes, cols);
  }
  return w;
}

// Restores the detected ISA when a test ends, so a failure cannot leak into the next test.
class KernelsTest : public ::testing::Test {
 protected:
  void SetUp() override { prefetch_ = DecodeSoftwarePrefetch(); }
  void TearDown() override {
    SetActiveIsa(DetectIsa());
    SetDecodeSoftwarePrefetch(prefetch_);
  }
  bool prefetch_ = true;
};

std::vector<float> RandomFloats(std::mt19937& rng, int64_t n, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = dist(rng);
  return v;
}

// What the integer kernels compute for one token: x as its quantised values d * q.
std::vector<float> QuantisedActivations(TensorType wtype, const float* x, int64_t cols,
                                        std::vector<float>* block_step) {
  std::vector<float> out(static_cast<size_t>(cols));
  block_step->assign(static_cast<size_t>(cols), 0.0f);
  if (wtype == TensorType::kQ8_0 || wtype == TensorType::kQ4_0 || wtype == TensorType::kQ5_0 ||
      wtype == TensorType::kQ5_1 || wtype == TensorType::kIQ4_NL) {
    std::vector<uint8_t> buf(static_cast<size_t>(
        internal::ActStrideBytes(internal::ActFormat::kQ8, cols)));
    internal::QuantizeActQ8Ref(x, cols, buf.data());
    const internal::ActQ8Row row = internal::ViewQ8(buf.data(), cols);
    for (int64_t i = 0; i < cols; ++i) {
      out[i] = row.d[i / 32] * row.qs[i];
      (*block_step)[i] = row.d[i / 32];
    }
  } else if (Traits(wtype).block_size == 256) {  // the K-quants
    std::vector<uint8_t> buf(static_cast<size_t>(
        internal::ActStrideBytes(internal::ActFormat::kQ8K, cols)));
    internal::QuantizeActQ8KRef(x, cols, buf.data());
    const internal::ActQ8KRow row = internal::ViewQ8K(buf.data(), cols);
    for (int64_t i = 0; i < cols; ++i) {
      out[i] = row.d[i / 256] * row.qs[i];
      (*block_step)[i] = row.d[i / 256];
    }
  } else {
    std::copy(x, x + cols, out.begin());
  }
  return out;
}

struct MatMulCase {
  TensorType type;
  int64_t rows;
  int64_t cols;
  int64_t n_tokens;
  float w_scale;
  float x_scale;
};

// Runs MatMul for every ISA and checks each output against:
//  (a) float64 of the dequantised weights times the quantised activations (what the integer
//      kernels compute exactly, up to float accumulation): |err| <= 2e-5 * sum|w x| + 1e-30;
//  (b) float64 of the dequantised weights times the original activations, within the activation
//      quantisation bound sum_i |w_i| * step_i / 2 (plus the same accumulation slack).
void CheckMatMul(const MatMulCase& c, uint32_t seed, ComputePool* pool) {
  SCOPED_TRACE(std::string(TypeName(c.type)) + " rows=" + std::to_string(c.rows) +
               " cols=" + std::to_string(c.cols) + " tokens=" + std::to_string(c.n_tokens));
  std::mt19937 rng(seed);
  const std::vector<float> wf = RandomFloats(rng, c.rows * c.cols, c.w_scale);
  const std::vector<float> x = RandomFloats(rng, c.n_tokens * c.cols, c.x_scale);
  std::vector<uint8_t> w(static_cast<size_t>(RowSizeBytes(c.type, c.cols) * c.rows));
  for (int64_t r = 0; r < c.rows; ++r) {
    Quantize(c.type, wf.data() + r * c.cols, w.data() + r * RowSizeBytes(c.type, c.cols), c.cols);
  }
  std::vector<float> wd(wf.size());
  for (int64_t r = 0; r < c.rows; ++r) {
    Dequantize(c.type, w.data() + r * RowSizeBytes(c.type, c.cols), wd.data() + r * c.cols,
               c.cols);
  }
  std::vector<double> exact(static_cast<size_t>(c.rows * c.n_tokens));
  std::vector<double> slack(exact.size()), bound(exact.size()), orig(exact.size());
  for (int64_t t = 0; t < c.n_tokens; ++t) {
    std::vector<float> step;
    const std::vector<float> xq = QuantisedActivations(c.type, x.data() + t * c.cols, c.cols, &step);
    for (int64_t r = 0; r < c.rows; ++r) {
      double s = 0, a = 0, o = 0, b = 0;
      for (int64_t i = 0; i < c.cols; ++i) {
        const double wv = wd[r * c.cols + i];
        s += wv * xq[i];
        a += std::fabs(wv * xq[i]);
        o += wv * x[t * c.cols + i];
        b += std::fabs(wv) * step[i] * 0.5;
      }
      exact[t * c.rows + r] = s;
      slack[t * c.rows + r] = 2e-5 * a + 1e-30;
      orig[t * c.rows + r] = o;
      bound[t * c.rows + r] = b * 1.0001 + 2e-5 * a + 1e-30;
    }
  }
  // The quantised types (every one has a panel layout) also as panels, packed in two ranges as a
  // loader may.
  const bool has_panels = Traits(c.type).block_size > 1;
  std::vector<uint8_t, PanelAllocator> panels;
  if (has_panels) {
    panels.resize(static_cast<size_t>(PanelBytes(c.type, c.rows, c.cols)), 0xA5);
    const int64_t mid = std::min<int64_t>(16, c.rows);
    PackPanels(c.type, w.data(), c.rows, c.cols, mid, c.rows, panels.data());
    PackPanels(c.type, w.data(), c.rows, c.cols, 0, mid, panels.data());
  }
  for (Isa isa : AvailableIsas()) {
    for (WeightLayout layout : {WeightLayout::kRows, WeightLayout::kPanels}) {
      if (layout == WeightLayout::kPanels && !has_panels) continue;
      SCOPED_TRACE(std::string(IsaName(isa)) +
                   (layout == WeightLayout::kPanels ? " panels" : " rows"));
      SetActiveIsa(isa);
      std::vector<float> y(exact.size(), -12345.0f);
      MatMul(pool, c.type, layout == WeightLayout::kPanels ? panels.data() : w.data(), c.rows,
             c.cols, x.data(), c.n_tokens, y.data(), layout);
      int failures = 0;
      for (size_t i = 0; i < y.size() && failures < 5; ++i) {
        const double e1 = std::fabs(y[i] - exact[i]);
        const double e2 = std::fabs(y[i] - orig[i]);
        if (!(e1 <= slack[i]) || !(e2 <= bound[i])) {
          ++failures;
          ADD_FAILURE() << "index " << i << " (token " << i / c.rows << ", row " << i % c.rows
                        << "): got " << y[i] << ", exact " << exact[i] << " (tol " << slack[i]
                        << "), float64 of original x " << orig[i] << " (bound " << bound[i] << ")";
        }
      }
    }
  }
}

constexpr TensorType kAllTypes[] = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                                    TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0,
                                    TensorType::kQ5_1, TensorType::kQ2_K, TensorType::kQ3_K,
                                    TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K,
                                    TensorType::kIQ4_NL, TensorType::kIQ4_XS};

TEST_F(KernelsTest, MatMulMatchesFloat64OnRandomShapesForEveryIsa) {
  ComputePool pool(2);
  uint32_t seed = 1;
  for (TensorType type : kAllTypes) {
    const int64_t block = Traits(type).block_size == 1 ? 32 : Traits(type).block_size;
    // 3 and 5 blocks: partial groups of the 4-block decoding kernels (kQ8x4).
    for (int64_t cols : {block, 2 * block, 3 * block, 5 * block, int64_t{256 * 3}, int64_t{4096}}) {
      if (cols % block != 0) continue;
      for (int64_t rows : {int64_t{1}, int64_t{5}, int64_t{17}, int64_t{35}}) {
        for (int64_t n_tokens : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{7}, int64_t{33}}) {
          if (cols == 4096 && rows * n_tokens > 200) continue;  // keeps the test fast
          ++seed;
          CheckMatMul({type, rows, cols, n_tokens, 1.0f, 1.0f}, seed,
                      (seed % 2) != 0 ? &pool : nullptr);
        }
      }
    }
  }
}

TEST_F(KernelsTest, MatMulLargerBlocksUseEveryThreadAndTile) {
  // Enough rows and tokens that the GEMM path splits into several row chunks and token blocks.
  ComputePool pool(2);
  for (TensorType type : kAllTypes) {
    CheckMatMul({type, 77, 512, 40, 1.0f, 1.0f}, 99, &pool);
  }
  // Float weights may have any row length: vector tails (masked or scalar).
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16}) {
    for (int64_t cols : {int64_t{1}, int64_t{7}, int64_t{40}, int64_t{100}}) {
      CheckMatMul({type, 13, cols, 1, 1.0f, 1.0f}, 100, &pool);
      CheckMatMul({type, 13, cols, 11, 1.0f, 1.0f}, 101, &pool);
    }
  }
}

TEST_F(KernelsTest, MatMulPromptTilesCoverPanelChunkAndTileEdges) {
  // The AVX-512 prompt tiles (from 8 tokens per tile for float weights, 16 for Q8) pack 16-row panels over chunks of the
  // inner dimension (128 float columns, 16 blocks of 32) and run up to 64 rows x 6 tokens (float)
  // or 48 rows x 4 tokens (Q8_0/Q4_0) per micro-kernel: rows, cols and tokens just past each of
  // those sizes, on one thread (one tile gets everything) and two; fewer tokens run the
  // decoded-row tiles.
  ComputePool pool(2);
  uint32_t seed = 500;
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0,
                          TensorType::kQ4_0, TensorType::kQ5_0, TensorType::kQ5_1,
                          TensorType::kIQ4_NL}) {
    const bool quantised = Traits(type).block_size == 32;
    const std::vector<int64_t> cols_list = quantised ? std::vector<int64_t>{32 * 17, 32 * 33}
                                                     : std::vector<int64_t>{129, 300, 513};
    for (int64_t cols : cols_list) {
      for (int64_t rows : {int64_t{16}, int64_t{31}, int64_t{70}}) {
        for (int64_t n_tokens : {int64_t{3}, int64_t{17}, int64_t{38}}) {
          ++seed;
          CheckMatMul({type, rows, cols, n_tokens, 1.0f, 1.0f}, seed,
                      (seed % 2) != 0 ? &pool : nullptr);
        }
      }
    }
    // A token block of the driver (128) plus a remainder of 2 tokens.
    CheckMatMul({type, 40, quantised ? 64 : 40, 130, 1.0f, 1.0f}, ++seed, &pool);
    // The magnitudes of MatMulEdgeCaseMagnitudes through the panel tiles.
    CheckMatMul({type, 20, 512, 17, 0.0f, 0.0f}, ++seed, nullptr);
    CheckMatMul({type, 20, 512, 17, 500.0f, 1e4f}, ++seed, nullptr);
    CheckMatMul({type, 20, 512, 17, 1e-6f, 1.0f}, ++seed, nullptr);
    CheckMatMul({type, 20, 256, 17, 1.0f, 1e-33f}, ++seed, nullptr);
  }
}

TEST_F(KernelsTest, KQuantPromptTilesCoverPanelChunkAndTileEdges) {
  // The AVX-512 K-quant prompt tiles (more than 8 tokens) pack 16-row panels of 2 super-blocks
  // per chunk and run up to 32 rows x 4 tokens per micro-kernel: rows, super-blocks and tokens
  // just past those sizes, one thread and two, and the extreme magnitudes.
  ComputePool pool(2);
  uint32_t seed = 700;
  for (TensorType type : {TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K,
                          TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_XS}) {
    for (int64_t cols : {int64_t{256}, int64_t{256 * 3}}) {
      for (int64_t rows : {int64_t{16}, int64_t{33}, int64_t{70}}) {
        for (int64_t n_tokens : {int64_t{9}, int64_t{14}, int64_t{38}}) {
          ++seed;
          CheckMatMul({type, rows, cols, n_tokens, 1.0f, 1.0f}, seed,
                      (seed % 2) != 0 ? &pool : nullptr);
        }
      }
    }
    CheckMatMul({type, 40, 256, 130, 1.0f, 1.0f}, ++seed, &pool);
    CheckMatMul({type, 20, 512, 17, 0.0f, 0.0f}, ++seed, nullptr);
    CheckMatMul({type, 20, 512, 17, 500.0f, 1e4f}, ++seed, nullptr);
    CheckMatMul({type, 20, 512, 17, 1e-6f, 1.0f}, ++seed, nullptr);
    CheckMatMul({type, 20, 256, 17, 1.0f, 1e-33f}, ++seed, nullptr);
  }
}

TEST_F(KernelsTest, Q2_KAndQ3_KKernelsGiveTheScalarReferencesBitsForEveryShape) {
  // The Q2_K and Q3_K kernels compute the reference's exact integers per super-block (the AVX2
  // kernel for Q3_K by another route: unsigned values and the activation sums) and its float
  // steps (fused explicitly), so every ISA must give the scalar reference's bits: decoding (short
  // rows in groups of rows, long rows one at a time) and prompt tiles, every row and token
  // remainder; both in the panel layout too (decoding and short batches from the panels in
  // place, longer inputs through the L1 split; an odd super-block count at 768 and 12544 columns).
  ComputePool pool(2);
  std::mt19937 rng(91);
  for (TensorType type : {TensorType::kQ2_K, TensorType::kQ3_K}) {
    const bool has_panels = true;
    // Rows of 4 KiB and more from 12544 columns (Q2_K) or 9728 (Q3_K): decoded one at a time.
    for (int64_t cols : {int64_t{256}, int64_t{768}, int64_t{12544}}) {
      for (int64_t rows :
           {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, int64_t{17}, int64_t{37}}) {
        for (int64_t n_tokens : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{5}, int64_t{8},
                                 int64_t{17}, int64_t{33}, int64_t{130}}) {
          if (n_tokens == 130 && cols > 768) continue;  // the scalar reference's time
          SCOPED_TRACE(
              fmt::format("{} cols {} rows {} tokens {}", TypeName(type), cols, rows, n_tokens));
          const std::vector<float> wf = RandomFloats(rng, rows * cols, 1.0f);
          const std::vector<uint8_t> w = QuantizeRows(type, wf, rows, cols);
          const std::vector<float> x = RandomFloats(rng, n_tokens * cols, 1.0f);
          SetActiveIsa(Isa::kScalar);
          std::vector<float> want(static_cast<size_t>(rows * n_tokens), -1.0f);
          MatMul(nullptr, type, w.data(), rows, cols, x.data(), n_tokens, want.data());
          for (Isa isa : AvailableIsas()) {
            SetActiveIsa(isa);
            for (ComputePool* p : {&pool, static_cast<ComputePool*>(nullptr)}) {
              std::vector<float> got(want.size(), -2.0f);
              MatMul(p, type, w.data(), rows, cols, x.data(), n_tokens, got.data());
              ASSERT_EQ(want, got) << IsaName(isa);
            }
          }
          if (has_panels) {
            std::vector<uint8_t, PanelAllocator> panels(
                static_cast<size_t>(PanelBytes(type, rows, cols)), 0xA5);
            PackPanels(type, w.data(), rows, cols, 0, rows, panels.data());
            for (Isa isa : AvailableIsas()) {
              SetActiveIsa(isa);
              for (ComputePool* p : {&pool, static_cast<ComputePool*>(nullptr)}) {
                std::vector<float> got(want.size(), -2.0f);
                MatMul(p, type, panels.data(), rows, cols, x.data(), n_tokens, got.data(),
                       WeightLayout::kPanels);
                ASSERT_EQ(want, got) << IsaName(isa) << " panels";
              }
            }
          }
          // The AVX2 table's tile called directly too, whatever the active ISA.
          if (DetectIsa() >= Isa::kAvx2) {
            const internal::WKind kind =
                type == TensorType::kQ2_K ? internal::WKind::kQ2_K : internal::WKind::kQ3_K;
            const internal::TileFn tile = internal::Avx2Kernels().tile[static_cast<int>(kind)];
            ASSERT_NE(tile, nullptr);
            const int64_t stride = internal::ActStrideBytes(internal::ActFormat::kQ8K, cols);
            std::vector<uint8_t, PanelAllocator> xa(static_cast<size_t>(stride * n_tokens));
            for (int64_t t = 0; t < n_tokens; ++t) {
              internal::QuantizeActQ8KRef(x.data() + t * cols, cols, xa.data() + t * stride);
            }
            std::vector<float> got(want.size(), -3.0f);
            const internal::TileArgs args{
                w.data(), RowSizeBytes(type, cols), cols, xa.data(), stride, got.data(), rows};
            tile(args, 0, rows, 0, n_tokens);
            ASSERT_EQ(want, got) << "avx2 tile";
          }
        }
      }
    }
  }
}

TEST_F(KernelsTest, PromptMatMulGivesATokenTheSameBitsWhateverTokensShareItsCall) {
  // The scheduler batches tokens of several sequences into one MatMul: a token's outputs must be
  // the same bits whether it is processed alone (3 tokens or more: the prompt path), in a short
  // batch, or as part of a long prompt whose last token block is a remainder of 1-2 tokens.
  std::mt19937 rng(77);
  const int64_t rows = 45, n_all = 140;  // token blocks of 128 + a remainder of 12
  ComputePool pool(2);
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    for (TensorType type : kAllTypes) {
      SCOPED_TRACE(std::string(TypeName(type)));
      const int64_t cols = Traits(type).block_size == 256 ? 512 : 544;
      const std::vector<float> wf = RandomFloats(rng, rows * cols, 1.0f);
      const std::vector<uint8_t> w = QuantizeRows(type, wf, rows, cols);
      const std::vector<float> x = RandomFloats(rng, n_all * cols, 1.0f);
      std::vector<float> all(static_cast<size_t>(n_all * rows), -1.0f);
      MatMul(&pool, type, w.data(), rows, cols, x.data(), n_all, all.data());
      for (auto [first, count] : {std::pair<int64_t, int64_t>{0, 3}, {5, 17}, {100, 30},
                                  {127, 13}, {137, 3}, {0, 130}}) {
        for (ComputePool* p : {&pool, static_cast<ComputePool*>(nullptr)}) {
          std::vector<float> y(static_cast<size_t>(count * rows), -2.0f);
          MatMul(p, type, w.data(), rows, cols, x.data() + first * cols, count, y.data());
          EXPECT_TRUE(std::equal(y.begin(), y.end(), all.begin() + first * rows))
              << "tokens " << first << ".." << first + count - 1
              << (p != nullptr ? ", 2 threads" : ", 1 thread");
        }
      }
    }
  }
}

TEST_F(KernelsTest, KQuantMatMulGivesATokenTheSameBitsDecodedAloneOrInAnyBatch) {
  // K-quants: decoding (1-2 tokens, the dot kernels) and every larger call (AVX-512: panels
  // packed per call) must give a token the same bits, so that a sequence decodes the same alone
  // and in a batch. 45 rows: a partial row tile; 5 super-blocks: a partial chunk.
  std::mt19937 rng(79);
  const int64_t rows = 45, cols = 5 * 256, n_all = 140;
  ComputePool pool(2);
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    for (TensorType type : {TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K,
                            TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_XS}) {
      SCOPED_TRACE(std::string(TypeName(type)));
      const std::vector<float> wf = RandomFloats(rng, rows * cols, 1.0f);
      const std::vector<uint8_t> w = QuantizeRows(type, wf, rows, cols);
      const std::vector<float> x = RandomFloats(rng, n_all * cols, 1.0f);
      std::vector<float> all(static_cast<size_t>(n_all * rows), -1.0f);
      MatMul(&pool, type, w.data(), rows, cols, x.data(), n_all, all.data());
      for (auto [first, count] : {std::pair<int64_t, int64_t>{0, 1},
                                  {7, 1},
                                  {139, 1},
                                  {3, 2},
                                  {0, 3},
                                  {5, 8},
                                  {20, 17},
                                  {0, 130}}) {
        for (ComputePool* p : {&pool, static_cast<ComputePool*>(nullptr)}) {
          std::vector<float> y(static_cast<size_t>(count * rows), -2.0f);
          MatMul(p, type, w.data(), rows, cols, x.data() + first * cols, count, y.data());
          EXPECT_TRUE(std::equal(y.begin(), y.end(), all.begin() + first * rows))
              << "tokens " << first << ".." << first + count - 1
              << (p != nullptr ? ", 2 threads" : ", 1 thread");
        }
      }
    }
  }
}

TEST_F(KernelsTest, PanelMatMulGivesATokenTheSameBitsForAnyTokenCountPathAndThreads) {
  // Panel-layout weights: one decoding token, a batch of a few sequences (the direct kernel) and
  // a long prompt (Q4_0, the K-quants and IQ4_XS: split into an L1 panel first) must give a token
  // the same bits, so that a sequence decodes the same alone and in a batch. 45 rows: a partial
  // last group; 17 blocks: an odd last block and a second chunk.
  std::mt19937 rng(78);
  const int64_t rows = 45, n_all = 140;
  ComputePool pool(2);
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    for (TensorType type : kAllTypes) {
      if (Traits(type).block_size == 1) continue;  // float weights have no panels
      SCOPED_TRACE(std::string(TypeName(type)));
      // K-quants and IQ4_XS: 5 super-blocks, a partial chunk of the long-prompt path (Q6_K and
      // Q3_K: an odd last one).
      const bool k_quant = Traits(type).block_size == 256;
      const int64_t cols = k_quant ? 5 * 256 : 544;
      const std::vector<float> wf = RandomFloats(rng, rows * cols, 1.0f);
      const int64_t row_bytes = RowSizeBytes(type, cols);
      const std::vector<uint8_t> w = QuantizeRows(type, wf, rows, cols);
      std::vector<uint8_t, PanelAllocator> panels(
          static_cast<size_t>(PanelBytes(type, rows, cols)));
      ASSERT_EQ(PanelBytes(type, rows, cols), 48 * row_bytes);
      PackPanels(type, w.data(), rows, cols, 0, rows, panels.data());
      // Every row reads back as it was.
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<float> a(static_cast<size_t>(cols)), b(static_cast<size_t>(cols));
        DequantizeRow(type, WeightLayout::kRows, w.data(), r, cols, a.data());
        DequantizeRow(type, WeightLayout::kPanels, panels.data(), r, cols, b.data());
        ASSERT_EQ(a, b) << "row " << r;
      }
      const std::vector<float> x = RandomFloats(rng, n_all * cols, 1.0f);
      std::vector<float> all(static_cast<size_t>(n_all * rows), -1.0f);
      MatMul(&pool, type, panels.data(), rows, cols, x.data(), n_all, all.data(),
             WeightLayout::kPanels);
      if (k_quant && type != TensorType::kQ5_K && isa == Isa::kAvx512) {
        // AVX-512 computes Q4_K, Q6_K, Q3_K, Q2_K and IQ4_XS with the same integer sums and float
        // steps in both layouts. (Q5_K has panels only: it is always repacked on AVX-512, and its row
        // layout runs the AVX2 kernel.)
        std::vector<float> from_rows(all.size(), -3.0f);
        MatMul(&pool, type, w.data(), rows, cols, x.data(), n_all, from_rows.data());
        EXPECT_TRUE(from_rows == all) << "row layout";
        for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{5}, int64_t{33}}) {
          std::vector<float> y(static_cast<size_t>(n * rows), -2.0f);
          MatMul(&pool, type, w.data(), rows, cols, x.data(), n, y.data());
          EXPECT_TRUE(std::equal(y.begin(), y.end(), all.begin())) << "row layout, " << n;
        }
      }
      for (auto [first, count] : {std::pair<int64_t, int64_t>{0, 1},
                                  {7, 1},
                                  {139, 1},
                                  {3, 2},
                                  {0, 3},
                                  {5, 8},
                                  {9, 16},
                                  {20, 17},
                                  {100, 30},
                                  {60, 33},
                                  {40, 33},
                                  {0, 130}}) {
        for (ComputePool* p : {&pool, static_cast<ComputePool*>(nullptr)}) {
          std::vector<float> y(static_cast<size_t>(count * rows), -2.0f);
          MatMul(p, type, panels.data(), rows, cols, x.data() + first * cols, count, y.data(),
                 WeightLayout::kPanels);
          EXPECT_TRUE(std::equal(y.begin(), y.end(), all.begin() + first * rows))
              << "tokens " << first << ".." << first + count - 1
              << (p != nullptr ? ", 2 threads" : ", 1 thread");
          // Fused with another target (decoding's one fork-join for q/k/v): the same bits.
          std::vector<float> y2(y.size(), -3.0f), other(static_cast<size_t>(count * rows));
          const MatMulTarget targets[] = {
              {type, panels.data(), rows, y2.data(), WeightLayout::kPanels},
              {type, w.data(), rows, other.data()}};
          MatMulMany(p, targets, cols, x.data() + first * cols, count);
          EXPECT_TRUE(std::equal(y2.begin(), y2.end(), y.begin())) << "MatMulMany";
        }
      }
    }
  }
}

TEST_F(KernelsTest, MatMulEdgeCaseMagnitudes) {
  ComputePool pool(2);
  for (TensorType type : kAllTypes) {
    // Zeros everywhere.
    CheckMatMul({type, 9, 256, 3, 0.0f, 0.0f}, 7, &pool);
    // Zero activations, random weights; random activations, zero weights.
    CheckMatMul({type, 9, 256, 2, 1.0f, 0.0f}, 8, &pool);
    CheckMatMul({type, 9, 256, 2, 0.0f, 1.0f}, 9, &pool);
    // Large magnitudes (fp16 weights must stay finite).
    CheckMatMul({type, 9, 512, 3, 500.0f, 1e4f}, 10, &pool);
    // Tiny weights: fp16 block scales become subnormal.
    CheckMatMul({type, 9, 512, 3, 1e-6f, 1.0f}, 11, &pool);
    // Tiny activations: quantise to zero below the 1e-30 block threshold.
    CheckMatMul({type, 9, 256, 2, 1.0f, 1e-33f}, 12, &pool);
  }
}

TEST_F(KernelsTest, MatMulManyEqualsMatMulPerTargetBitForBit) {
  // Mixed types (so several activation formats at once) and row counts, for every ISA, with and
  // without a pool, decoding (fused) and prompt (per-target) token counts.
  ComputePool pool(2);
  std::mt19937 rng(21);
  const int64_t cols = 512;
  const TensorType types[] = {TensorType::kQ4_0, TensorType::kQ8_0, TensorType::kF16,
                              TensorType::kQ4_K, TensorType::kQ6_K, TensorType::kQ4_0,
                              TensorType::kQ5_0, TensorType::kQ5_K, TensorType::kQ5_1,
                              TensorType::kQ3_K, TensorType::kQ2_K, TensorType::kIQ4_NL,
                              TensorType::kIQ4_XS};
  const int64_t rows[] = {130, 5, 64, 17, 33, 1, 40, 21, 27, 19, 23, 29, 13};
  static_assert(std::size(rows) == std::size(types));
  std::vector<std::vector<uint8_t>> weights;
  for (size_t k = 0; k < std::size(types); ++k) {
    const std::vector<float> wf = RandomFloats(rng, rows[k] * cols, 1.0f);
    const int64_t row_bytes = RowSizeBytes(types[k], cols);
    weights.emplace_back(static_cast<size_t>(row_bytes * rows[k]));
    for (int64_t r = 0; r < rows[k]; ++r) {
      Quantize(types[k], wf.data() + r * cols, weights.back().data() + r * row_bytes, cols);
    }
  }
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    for (int64_t n_tokens : {int64_t{1}, int64_t{2}, int64_t{5}}) {
      const std::vector<float> x = RandomFloats(rng, n_tokens * cols, 1.0f);
      for (ComputePool* p : {&pool, static_cast<ComputePool*>(nullptr)}) {
        std::vector<std::vector<float>> want, got;
        std::vector<MatMulTarget> targets;
        for (size_t k = 0; k < std::size(types); ++k) {
          want.emplace_back(static_cast<size_t>(n_tokens * rows[k]), -1.0f);
          got.emplace_back(static_cast<size_t>(n_tokens * rows[k]), -2.0f);
          MatMul(p, types[k], weights[k].data(), rows[k], cols, x.data(), n_tokens,
                 want.back().data());
        }
        for (size_t k = 0; k < std::size(types); ++k) {
          targets.push_back({types[k], weights[k].data(), rows[k], got[k].data()});
        }
        MatMulMany(p, targets, cols, x.data(), n_tokens);
        for (size_t k = 0; k < std::size(types); ++k) {
          EXPECT_EQ(want[k], got[k]) << "target " << k << " tokens " << n_tokens;
        }
      }
    }
  }
}

TEST_F(KernelsTest, QuantisedKernelsKeepExactIntegersAtTheEndsOfTheirRanges) {
  // The AVX2 panel kernels add pair sums in int16 (Q4_0 and Q4_K: 8 of at most 2 * 15 * 127 per
  // block or sub-block and row; Q5_0 and Q5_K: 4 of at most 2 * 31 * 127; Q6_K: 2 of
  // 2 * 63 * 127, then scales of -128..127) and take Q8_0's q = -128 through |q| x sign(x, q):
  // weights at the ends of their ranges against activations at +-127 must still give the exact
  // integers, for every ISA, layout and token count (37 rows: a partial panel group).
  const int64_t rows = 37, cols = 256;
  std::mt19937 rng(55);
  for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0,
                          TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K}) {
    SCOPED_TRACE(std::string(TypeName(type)));
    const bool q8 = type == TensorType::kQ8_0, q6 = type == TensorType::kQ6_K;
    // Q4_K/Q5_K: dmin follows d (1 as well); scales and mins take the pattern (63 or 0).
    const bool dmin = type == TensorType::kQ4_K || type == TensorType::kQ5_K;
    const int64_t block_bytes = Traits(type).block_bytes, row_bytes = RowSizeBytes(type, cols);
    std::vector<uint8_t> w(static_cast<size_t>(rows * row_bytes));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t b = 0; b < cols / Traits(type).block_size; ++b) {
        uint8_t* blk = w.data() + r * row_bytes + b * block_bytes;
        // d = 1 (fp16 0x3C00): Q6_K's ends its block, after the 16 int8 scales (the pattern's
        // bytes 0x7F / 0x80 there: 127 / -128).
        const int64_t d_at = q6 ? block_bytes - 2 : 0;
        for (int64_t i = 0; i < block_bytes; ++i) {
          if (i == d_at || i == d_at + 1 || (dmin && (i == 2 || i == 3))) {
            blk[i] = (i - d_at) % 2 == 0 ? 0x00 : 0x3C;
            continue;
          }
          // Q8_0: 127 or -128; Q4_0: nibbles 15 (q = 7) or 0 (q = -8); Q5_0 the same with
          // every fifth bit set (q = 15) or clear (q = -16); Q6_K: q = 31 or -32; Q4_K/Q5_K: q
          // 15/31 or 0 with scales and mins 63 or 0.
          const bool q6_scale = q6 && i >= block_bytes - 18;
          const uint8_t hi = q8 || q6_scale ? 0x7F : 0xFF, lo = q8 || q6_scale ? 0x80 : 0x00;
          switch (r % 4) {
            case 0: blk[i] = hi; break;
            case 1: blk[i] = lo; break;
            case 2: blk[i] = i % 2 == 0 ? hi : lo; break;
            default: blk[i] = static_cast<uint8_t>(rng()); break;
          }
        }
      }
    }
    std::vector<float> wd(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
      Dequantize(type, w.data() + r * row_bytes, wd.data() + r * cols, cols);
    }
    std::vector<uint8_t, PanelAllocator> panels(static_cast<size_t>(PanelBytes(type, rows, cols)));
    PackPanels(type, w.data(), rows, cols, 0, rows, panels.data());
    // Tokens: all +1 and all -1 (quantised to +-127), alternating signs, random.
    const int64_t n_tokens = 4;
    std::vector<float> x(static_cast<size_t>(n_tokens * cols));
    for (int64_t i = 0; i < cols; ++i) {
      x[i] = 1.0f;
      x[cols + i] = -1.0f;
      x[2 * cols + i] = i % 2 == 0 ? 1.0f : -1.0f;
      x[3 * cols + i] = std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng);
    }
    std::vector<double> want(static_cast<size_t>(n_tokens * rows)), slack(want.size());
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::vector<float> step;
      const std::vector<float> xq = QuantisedActivations(type, x.data() + t * cols, cols, &step);
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0, a = 0;
        for (int64_t i = 0; i < cols; ++i) {
          s += static_cast<double>(wd[r * cols + i]) * xq[i];
          a += std::fabs(static_cast<double>(wd[r * cols + i]) * xq[i]);
        }
        want[t * rows + r] = s;
        slack[t * rows + r] = 2e-5 * a;
      }
    }
    for (Isa isa : AvailableIsas()) {
      SetActiveIsa(isa);
      for (WeightLayout layout : {WeightLayout::kRows, WeightLayout::kPanels}) {
        const void* m = layout == WeightLayout::kPanels ? static_cast<const void*>(panels.data())
                                                        : static_cast<const void*>(w.data());
        for (int64_t n : {int64_t{1}, int64_t{2}, int64_t{3}, int64_t{4}}) {
          std::vector<float> got(static_cast<size_t>(n * rows), 0.0f);
          MatMul(nullptr, type, m, rows, cols, x.data(), n, got.data(), layout);
          for (int64_t k = 0; k < n * rows; ++k) {
            ASSERT_NEAR(got[k], want[k], slack[k])
                << IsaName(isa) << (layout == WeightLayout::kPanels ? " panels" : " rows")
                << ", " << n << " tokens, token " << k / rows << " row " << k % rows;
          }
        }
      }
    }
  }
}

TEST_F(KernelsTest, OneTokenRowRangesFromConvertedInputsEqualMatMulBitForBit) {
  // What arch/one_token.cc relies on: converting the token once (ConvertProductInput) and
  // computing row ranges in any order (MatMulRowsOneToken) gives every row MatMul's bits, for
  // every type and layout on every ISA; 77 rows leave a partial panel group at the end.
  std::mt19937 rng(33);
  const int64_t rows = 77, cols = 512;
  const std::vector<float> wf = RandomFloats(rng, rows * cols, 1.0f);
  const std::vector<float> x = RandomFloats(rng, cols, 1.0f);
  struct Case {
    TensorType type;
    WeightLayout layout;
  };
  std::vector<Case> cases;
  for (TensorType type : kAllTypes) {
    cases.push_back({type, WeightLayout::kRows});
    // Every quantised type has a panel layout too.
    if (Traits(type).block_size > 1) cases.push_back({type, WeightLayout::kPanels});
  }
  for (const Case& tc : cases) {
    SCOPED_TRACE(std::string(TypeName(tc.type)) +
                 (tc.layout == WeightLayout::kPanels ? " panels" : " rows"));
    const std::vector<uint8_t> w_rows = QuantizeRows(tc.type, wf, rows, cols);
    std::vector<uint8_t, PanelAllocator> w(w_rows.begin(), w_rows.end());
    if (tc.layout == WeightLayout::kPanels) {
      w.assign(static_cast<size_t>(PanelBytes(tc.type, rows, cols)), 0);
      PackPanels(tc.type, w_rows.data(), rows, cols, 0, rows, w.data());
    }
    for (Isa isa : AvailableIsas()) {
      SCOPED_TRACE(std::string(IsaName(isa)));
      SetActiveIsa(isa);
      std::vector<float> want(rows, -1.0f), got(rows, -2.0f);
      MatMul(nullptr, tc.type, w.data(), rows, cols, x.data(), 1, want.data(), tc.layout);
      const ProductInput input = ProductInputOf(tc.type, tc.layout);
      std::vector<uint8_t, PanelAllocator> converted(
          static_cast<size_t>(std::max<int64_t>(ProductInputBytes(input, cols), 1)));
      const void* in = x.data();
      if (ProductInputBytes(input, cols) > 0) {
        ConvertProductInput(input, x.data(), cols, converted.data());
        in = converted.data();
      }
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{48, 77}, {0, 16}, {16, 48}}) {
        MatMulRowsOneToken(tc.type, tc.layout, w.data(), rows, cols, in, r0, r1, got.data());
      }
      EXPECT_EQ(want, got);
    }
  }
}

TEST_F(KernelsTest, ConvertingAnInputInRangesGivesTheBytesOfConvertingItAtOnce) {
  // arch/one_token.cc converts the down projection's input a row range at a time, on whichever
  // thread computed those values; every format of every ISA must come out byte for byte the same
  // as one conversion. Widths with a partial last group of Q8x4 blocks (7 blocks of 32) too.
  std::mt19937 rng(44);
  struct Case {
    TensorType type;
    WeightLayout layout;
    int64_t cols;
  };
  const Case cases[] = {{TensorType::kQ8_0, WeightLayout::kRows, 2560},
                        {TensorType::kQ4_0, WeightLayout::kRows, 224},
                        {TensorType::kQ4_0, WeightLayout::kPanels, 2560},
                        {TensorType::kQ5_0, WeightLayout::kRows, 224},
                        {TensorType::kQ5_0, WeightLayout::kPanels, 2560},
                        {TensorType::kQ5_1, WeightLayout::kRows, 224},
                        {TensorType::kQ5_1, WeightLayout::kPanels, 2560},
                        {TensorType::kIQ4_NL, WeightLayout::kPanels, 2560},
                        {TensorType::kQ4_K, WeightLayout::kRows, 2560},
                        {TensorType::kQ5_K, WeightLayout::kRows, 1536},
                        {TensorType::kQ6_K, WeightLayout::kRows, 1280},
                        {TensorType::kIQ4_NL, WeightLayout::kRows, 224},
                        {TensorType::kIQ4_XS, WeightLayout::kRows, 1536},
                        {TensorType::kIQ4_XS, WeightLayout::kPanels, 1536},
                        {TensorType::kQ3_K, WeightLayout::kRows, 1792},
                        {TensorType::kQ3_K, WeightLayout::kPanels, 1792},
                        {TensorType::kQ2_K, WeightLayout::kRows, 2304},
                        {TensorType::kQ2_K, WeightLayout::kPanels, 2304}};
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    for (const Case& tc : cases) {
      SCOPED_TRACE(std::string(TypeName(tc.type)) + " cols " + std::to_string(tc.cols));
      const ProductInput input = ProductInputOf(tc.type, tc.layout);
      const int64_t bytes = ProductInputBytes(input, tc.cols);
      ASSERT_GT(bytes, 0);
      const int64_t block = ProductInputBlock(input);
      ASSERT_EQ(tc.cols % std::min<int64_t>(block, 32), 0);
      const std::vector<float> x = RandomFloats(rng, tc.cols, 2.0f);
      std::vector<uint8_t, PanelAllocator> whole(static_cast<size_t>(bytes), 0x11);
      std::vector<uint8_t, PanelAllocator> ranged(static_cast<size_t>(bytes), 0x11);
      ConvertProductInput(input, x.data(), tc.cols, whole.data());
      // Ranges of 1, 2, 3... blocks, last in first out, the last one ending at cols.
      std::vector<std::pair<int64_t, int64_t>> ranges;
      for (int64_t c0 = 0, k = 1; c0 < tc.cols; c0 += k * block, ++k) {
        ranges.emplace_back(c0, std::min(tc.cols, c0 + k * block));
      }
      ASSERT_GT(ranges.size(), 1u) << "block " << block;
      for (auto it = ranges.rbegin(); it != ranges.rend(); ++it) {
        ConvertProductInputRange(input, x.data(), tc.cols, it->first, it->second, ranged.data());
      }
      EXPECT_TRUE(whole == ranged);
    }
  }
}

// SwiGLU's gate with a vector exp on every ISA: within 2 float ulps of the libm reference over
// the whole range a gate takes (saturating cleanly far out), tails included.
TEST_F(KernelsTest, SiluMulMatchesTheLibmReferenceOnEveryIsa) {
  std::mt19937 rng(11);
  std::vector<float> gate, up;
  for (float g : {0.0f, -0.0f, 1e-8f, -1e-8f, 1.0f, -1.0f, 20.0f, -20.0f, 87.0f, -87.0f, 88.5f, -88.5f,
                  100.0f, -100.0f, 1e30f, -1e30f}) {
    gate.push_back(g);
  }
  std::uniform_real_distribution<float> wide(-30.0f, 30.0f), unit(-1.0f, 1.0f);
  while (gate.size() < 4864 + 7) gate.push_back(gate.size() % 2 ? wide(rng) : unit(rng) * 4);
  for (size_t i = 0; i < gate.size(); ++i) up.push_back(i % 3 ? unit(rng) : 1.0f);
  const int64_t n = static_cast<int64_t>(gate.size());
  std::vector<float> want(gate.size());
  internal::SiluMulRef(gate.data(), up.data(), want.data(), n);
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    for (int64_t len : {n, int64_t{13}, int64_t{1}}) {  // vector body and tails
      std::vector<float> got(static_cast<size_t>(len), -7.0f);
      SiluMul(gate.data(), up.data(), got.data(), len);
      for (int64_t i = 0; i < len; ++i) {
        const float tol = 2.5e-7f * std::abs(want[i]) + 1e-30f;
        ASSERT_NEAR(got[i], want[i], tol) << "gate " << gate[i] << " up " << up[i];
      }
    }
  }
}

TEST_F(KernelsTest, ActivationQuantisersMatchReferenceBitForBit) {
  std::mt19937 rng(5);
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    const internal::IsaKernels& k = isa == Isa::kAvx512 ? internal::Avx512Kernels()
                                    : isa == Isa::kAvx2 ? internal::Avx2Kernels()
                                                        : internal::ScalarKernels();
    for (float scale : {1.0f, 1e-3f, 1e5f}) {
      for (int64_t cols : {256, 4864}) {
        std::vector<float> x = RandomFloats(rng, cols, scale);
        x[3] = 0.0f;
        std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero Q8 block
        if (k.quantize_q8 != nullptr) {
          const int64_t n = internal::ActStrideBytes(internal::ActFormat::kQ8, cols);
          std::vector<uint8_t> a(n, 0), b(n, 0);
          internal::QuantizeActQ8Ref(x.data(), cols, a.data());
          k.quantize_q8(x.data(), cols, b.data());
          EXPECT_EQ(0, std::memcmp(a.data(), b.data(), cols + 8 * (cols / 32)));
        }
        if (k.quantize_q8x4 != nullptr) {
          for (int64_t n_cols : {int64_t{96}, cols}) {  // 96: a partial last group
            const int64_t n = internal::ActStrideBytes(internal::ActFormat::kQ8x4, n_cols);
            std::vector<uint8_t> a(n, 0), b(n, 0xAB);  // every byte must be written
            internal::QuantizeActQ8x4Ref(x.data(), n_cols, a.data());
            k.quantize_q8x4(x.data(), n_cols, b.data());
            EXPECT_EQ(0, std::memcmp(a.data(), b.data(), n)) << "kQ8x4 cols=" << n_cols;
          }
        }
        if (k.quantize_q8k != nullptr) {
          const int64_t n = internal::ActStrideBytes(internal::ActFormat::kQ8K, cols);
          std::vector<uint8_t> a(n, 0), b(n, 0);
          internal::QuantizeActQ8KRef(x.data(), cols, a.data());
          k.quantize_q8k(x.data(), cols, b.data());
          EXPECT_EQ(0, std::memcmp(a.data(), b.data(), cols + 4 * (cols / 256) + 2 * (cols / 16)));
        }
      }
    }
  }
}

TEST_F(KernelsTest, HalfConversionsMatchReferenceOnEveryBitPattern) {
  std::vector<uint16_t> all(65536);
  for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
  std::mt19937 rng(3);
  std::vector<float> floats = RandomFloats(rng, 4099, 1000.0f);
  floats[0] = 65520.0f;   // rounds to inf
  floats[1] = 1e-8f;      // subnormal half
  floats[2] = -0.0f;
  floats[3] = 3e-5f;
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    std::vector<float> out(all.size());
    HalfToFloat(all.data(), out.data(), static_cast<int64_t>(all.size()));
    for (int i = 0; i < 65536; ++i) {
      const float ref = engine::HalfToFloat(all[i]);
      if (std::isnan(ref)) {
        ASSERT_TRUE(std::isnan(out[i])) << i;
      } else {
        ASSERT_EQ(std::memcmp(&ref, &out[i], 4), 0) << i;
      }
    }
    std::vector<uint16_t> h(floats.size());
    FloatToHalf(floats.data(), h.data(), static_cast<int64_t>(floats.size()));
    for (size_t i = 0; i < floats.size(); ++i) ASSERT_EQ(h[i], engine::FloatToHalf(floats[i])) << i;
    std::vector<float> row(37);
    DequantizeRow(TensorType::kF16, all.data() + 15000, row.data(), 37);
    for (int i = 0; i < 37; ++i) EXPECT_EQ(row[i], engine::HalfToFloat(all[15000 + i]));
  }
}

// Grouped-query attention (n_q query heads over one KV head) against float64, on every ISA:
// head sizes with and without a 16-lane tail and one above the AVX-512 tile (320), row counts
// below, at and past a 16-row block.
TEST_F(KernelsTest, AttentionMatchesFloat64) {
  std::mt19937 rng(11);
  for (KvType kv : {KvType::kF32, KvType::kF16}) {
    for (int64_t head_dim : {64, 128, 80, 40, 320}) {
      for (int64_t n_kv : {1, 2, 16, 17, 300}) {
        for (int64_t n_q : {1, 4, 7}) {
          const std::vector<float> q = RandomFloats(rng, n_q * head_dim, 1.0f);
          std::vector<float> kf = RandomFloats(rng, n_kv * head_dim, 1.0f);
          std::vector<float> vf = RandomFloats(rng, n_kv * head_dim, 1.0f);
          std::vector<uint16_t> kh(kf.size()), vh(vf.size());
          for (size_t i = 0; i < kf.size(); ++i) {
            kh[i] = engine::FloatToHalf(kf[i]);
            vh[i] = engine::FloatToHalf(vf[i]);
            if (kv == KvType::kF16) {
              kf[i] = engine::HalfToFloat(kh[i]);
              vf[i] = engine::HalfToFloat(vh[i]);
            }
          }
          // Rows in reverse order: the kernel must follow the pointers, not assume contiguity.
          std::vector<const void*> krows(n_kv), vrows(n_kv);
          for (int64_t j = 0; j < n_kv; ++j) {
            const int64_t src = n_kv - 1 - j;
            krows[j] = kv == KvType::kF16 ? static_cast<const void*>(&kh[src * head_dim])
                                          : static_cast<const void*>(&kf[src * head_dim]);
            vrows[j] = kv == KvType::kF16 ? static_cast<const void*>(&vh[src * head_dim])
                                          : static_cast<const void*>(&vf[src * head_dim]);
          }
          const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
          std::vector<double> ref(n_q * head_dim, 0.0);
          for (int64_t h = 0; h < n_q; ++h) {
            std::vector<double> s(n_kv);
            double max = -1e300;
            for (int64_t j = 0; j < n_kv; ++j) {
              double d = 0;
              const int64_t src = n_kv - 1 - j;
              for (int64_t i = 0; i < head_dim; ++i) {
                d += double(q[h * head_dim + i]) * kf[src * head_dim + i];
              }
              s[j] = d * scale;
              max = std::max(max, s[j]);
            }
            double sum = 0;
            for (double& v : s) sum += (v = std::exp(v - max));
            for (int64_t j = 0; j < n_kv; ++j) {
              for (int64_t i = 0; i < head_dim; ++i) {
                ref[h * head_dim + i] += s[j] / sum * vf[(n_kv - 1 - j) * head_dim + i];
              }
            }
          }
          for (Isa isa : AvailableIsas()) {
            SetActiveIsa(isa);
            std::vector<float> scratch(n_q * n_kv), out(n_q * head_dim, -7.0f);
            AttendGroup(q.data(), n_q, krows.data(), vrows.data(), kv, n_kv, head_dim,
                        static_cast<float>(scale), scratch.data(), out.data());
            for (int64_t i = 0; i < n_q * head_dim; ++i) {
              ASSERT_NEAR(out[i], ref[i], 2e-5 * (1.0 + std::fabs(ref[i])))
                  << IsaName(isa) << " kv=" << static_cast<int>(kv) << " d=" << head_dim
                  << " n=" << n_kv << " n_q=" << n_q << " i=" << i;
            }
          }
        }
      }
    }
  }
}

// A prompt's tokens attended together (AttendGroupTokens: token i sees n_kv_first + i
// positions) give every token the bits AttendGroup gives it alone, on every ISA and KV type, for
// group sizes 1 and 7 (one-head and tiled weighted sums), head sizes through the one-row scores
// path (320 > kMaxTileDim), and runs whose last positions end inside, on and past a 16-row tile.
TEST_F(KernelsTest, AttendingAPromptsTokensTogetherGivesEachTheBitsOfAttendingItAlone) {
  std::mt19937 rng(45);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct Case {
    int64_t n_q, head_dim, n_kv_first, n_tokens;
  };
  const Case cases[] = {{7, 64, 1, 8},  {7, 64, 9, 8},   {1, 64, 17, 5}, {7, 128, 40, 8},
                        {2, 320, 3, 4}, {7, 64, 100, 2}, {1, 128, 15, 2}};
  for (KvType kv : {KvType::kF32, KvType::kF16}) {
    for (const Case& tc : cases) {
      const int64_t n = tc.n_kv_first + tc.n_tokens - 1;
      std::vector<float> kf(n * tc.head_dim), vf(n * tc.head_dim);
      for (float& x : kf) x = nd(rng);
      for (float& x : vf) x = nd(rng);
      std::vector<uint16_t> kh(kf.size()), vh(vf.size());
      FloatToHalf(kf.data(), kh.data(), static_cast<int64_t>(kf.size()));
      FloatToHalf(vf.data(), vh.data(), static_cast<int64_t>(vf.size()));
      std::vector<const void*> krows(n), vrows(n);
      for (int64_t j = 0; j < n; ++j) {
        krows[j] = kv == KvType::kF16 ? static_cast<const void*>(&kh[j * tc.head_dim])
                                      : static_cast<const void*>(&kf[j * tc.head_dim]);
        vrows[j] = kv == KvType::kF16 ? static_cast<const void*>(&vh[j * tc.head_dim])
                                      : static_cast<const void*>(&vf[j * tc.head_dim]);
      }
      const int64_t width = tc.n_q * tc.head_dim;
      std::vector<float> q(tc.n_tokens * width);
      for (float& x : q) x = nd(rng);
      const float scale = 1.0f / std::sqrt(static_cast<float>(tc.head_dim));
      for (Isa isa : AvailableIsas()) {
        SCOPED_TRACE(fmt::format("{} kv {} n_q {} d {} first {} tokens {}", IsaName(isa),
                                 static_cast<int>(kv), tc.n_q, tc.head_dim, tc.n_kv_first,
                                 tc.n_tokens));
        SetActiveIsa(isa);
        std::vector<float> scratch(tc.n_tokens * tc.n_q * n), together(tc.n_tokens * width);
        AttendGroupTokens(q.data(), tc.n_tokens, tc.n_q, krows.data(), vrows.data(), kv,
                          tc.n_kv_first, tc.head_dim, scale, scratch.data(), together.data());
        for (int64_t t = 0; t < tc.n_tokens; ++t) {
          std::vector<float> alone(width);
          AttendGroup(q.data() + t * width, tc.n_q, krows.data(), vrows.data(), kv,
                      tc.n_kv_first + t, tc.head_dim, scale, scratch.data(), alone.data());
          ASSERT_EQ(0, std::memcmp(alone.data(), together.data() + t * width,
                                   static_cast<size_t>(width) * sizeof(float)))
              << "token " << t;
        }
      }
    }
  }
}

TEST_F(KernelsTest, RopeNormalRotatesAdjacentPairsAndNeoxRotatesHalves) {
  const int64_t head_dim = 8, n_heads = 2, pos = 7;
  const float inv_freq[4] = {1.0f, 0.1f, 0.01f, 0.001f};
  std::vector<float> x(n_heads * head_dim);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.25f - 1.0f;
  std::vector<float> normal = x, neox = x;
  Rope(normal.data(), n_heads, head_dim, pos, inv_freq, RopeStyle::kNormal);
  Rope(neox.data(), n_heads, head_dim, pos, inv_freq, RopeStyle::kNeox);
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < head_dim / 2; ++i) {
      const double c = std::cos(pos * double(inv_freq[i])), s = std::sin(pos * double(inv_freq[i]));
      const float* xh = &x[h * head_dim];
      // Normal: (2i, 2i+1).
      EXPECT_NEAR(normal[h * head_dim + 2 * i], xh[2 * i] * c - xh[2 * i + 1] * s, 1e-6);
      EXPECT_NEAR(normal[h * head_dim + 2 * i + 1], xh[2 * i] * s + xh[2 * i + 1] * c, 1e-6);
      // NeoX: (i, i + d/2).
      EXPECT_NEAR(neox[h * head_dim + i], xh[i] * c - xh[i + 4] * s, 1e-6);
      EXPECT_NEAR(neox[h * head_dim + i + 4], xh[i] * s + xh[i + 4] * c, 1e-6);
    }
  }
  // Position 0 is the identity for both.
  std::vector<float> same = x;
  Rope(same.data(), n_heads, head_dim, 0, inv_freq, RopeStyle::kNeox);
  EXPECT_EQ(same, x);
}

TEST_F(KernelsTest, NormsAndElementwiseMatchFloat64) {
  std::mt19937 rng(13);
  const int64_t n = 1000;
  const std::vector<float> x = RandomFloats(rng, n, 3.0f), w = RandomFloats(rng, n, 1.0f);
  std::vector<float> y(n);
  RmsNorm(x.data(), w.data(), 1e-6f, n, y.data());
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const double inv = 1.0 / std::sqrt(ss / n + 1e-6);
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[i], x[i] * inv * w[i], 1e-5 * (1 + std::fabs(y[i])));
  std::vector<float> alias = x;
  RmsNorm(alias.data(), nullptr, 1e-6f, n, alias.data());
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(alias[i], x[i] * inv, 1e-5);

  std::vector<float> sm = {1000.0f, 1001.0f, -5.0f};  // stable at large logits
  Softmax(sm.data(), 3);
  const double e1 = std::exp(-1.0);
  EXPECT_NEAR(sm[0], e1 / (1 + e1 + std::exp(-1006.0)), 1e-6);
  EXPECT_NEAR(sm[1], 1 / (1 + e1), 1e-6);

  std::vector<float> out(n);
  SiluMul(x.data(), w.data(), out.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double g = x[i];
    EXPECT_NEAR(out[i], g / (1 + std::exp(-g)) * w[i], 1e-5 * (1 + std::fabs(out[i])));
  }
  std::vector<float> acc = x;
  AddInPlace(acc.data(), w.data(), n);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(acc[i], x[i] + w[i]);
}

TEST(ComputePoolTest, ManyRunsEachCoverEveryThreadOnce) {
  // More threads than this machine's cores: allowed, and must stay live.
  ComputePool pool(3);
  ASSERT_EQ(pool.n_threads(), 3);
  std::atomic<int64_t> total{0};
  for (int run = 0; run < 2000; ++run) {
    std::atomic<int> mask{0};
    pool.Run([&](int ith, int nth) {
      ASSERT_EQ(nth, 3);
      mask.fetch_or(1 << ith);
      total.fetch_add(ith + 1);
    });
    ASSERT_EQ(mask.load(), 7) << "run " << run;
  }
  EXPECT_EQ(total.load(), 2000 * 6);
}

TEST(ComputePoolTest, RunSharedDoesAllWorkOnceAndNoWorkerOutlivesIt) {
  // Mixed with Run so that late workers of a shared job meet the next job of either kind.
  // The per-run state lives on this stack frame: a worker still inside a call after RunShared
  // returned would touch the next run's counters and break the counts (and ASan would see it).
  for (int n_threads : {2, 3}) {
    ComputePool pool(n_threads);
    for (int run = 0; run < 3000; ++run) {
      if (run % 3 == 2) {
        std::atomic<int> mask{0};
        pool.Run([&](int ith, int) { mask.fetch_or(1 << ith); });
        ASSERT_EQ(mask.load(), (1 << n_threads) - 1);
        continue;
      }
      constexpr int kItems = 37;
      std::atomic<int> next{0};
      std::atomic<int> inside{0};
      std::vector<std::atomic<int>> done(kItems);
      bool caller_ran = false;
      pool.RunShared([&](int ith, int nth) {
        ASSERT_EQ(nth, n_threads);
        inside.fetch_add(1);
        if (ith == 0) caller_ran = true;
        for (int i; (i = next.fetch_add(1)) < kItems;) done[static_cast<size_t>(i)].fetch_add(1);
        inside.fetch_sub(1);
      });
      ASSERT_TRUE(caller_ran);
      ASSERT_EQ(inside.load(), 0) << "run " << run;
      for (int i = 0; i < kItems; ++i) ASSERT_EQ(done[static_cast<size_t>(i)].load(), 1);
    }
  }
  ComputePool single(1);
  int n = 0;
  single.RunShared([&](int ith, int nth) { n += ith + nth; });
  EXPECT_EQ(n, 1);
}

TEST(ComputePoolTest, ShutsDownCleanlyWhetherIdleOrJustUsed) {
  for (int i = 0; i < 200; ++i) {
    ComputePool pool(2);
    if (i % 2 == 0) {
      int calls = 0;
      std::atomic<int> seen{0};
      pool.Run([&](int ith, int) {
        seen.fetch_add(1);
        if (ith == 0) ++calls;
      });
      EXPECT_EQ(seen.load(), 2);
      EXPECT_EQ(calls, 1);
    }
  }
  ComputePool single(1);
  int n = 0;
  single.Run([&](int ith, int nth) { n += ith + nth; });
  EXPECT_EQ(n, 1);
}

TEST_F(KernelsTest, DecodingLongRowsMatchFloat64) {
  // Rows of 4 KiB and more take the one-row-at-a-time decoding kernels (Q8_0/Q4_0: 4-block
  // groups, a partial last group here; Q5_0, Q5_1 and IQ4_NL just past 4 KiB, an odd block
  // count; float types: any length, vector tails; K-quants, Q5_K, Q3_K, Q2_K and IQ4_XS just past
  // 4 KiB and with an odd super-block count).
  ComputePool pool(2);
  uint32_t seed = 500;
  const std::pair<TensorType, int64_t> cases[] = {
      {TensorType::kQ4_0, 7328},   {TensorType::kQ4_0, 7296},  {TensorType::kQ8_0, 4128},
      {TensorType::kF16, 2100},    {TensorType::kBF16, 2052},  {TensorType::kF32, 1030},
      {TensorType::kQ4_K, 7424},   {TensorType::kQ6_K, 5120},  {TensorType::kQ5_0, 5984},
      {TensorType::kQ5_0, 7328},   {TensorType::kQ5_K, 6144},  {TensorType::kQ5_K, 7424},
      {TensorType::kQ5_1, 5472},   {TensorType::kQ5_1, 7328},  {TensorType::kQ3_K, 9728},
      {TensorType::kQ3_K, 10496},  {TensorType::kQ2_K, 12544}, {TensorType::kQ2_K, 13056},
      {TensorType::kIQ4_NL, 7328}, {TensorType::kIQ4_NL, 9184}, {TensorType::kIQ4_XS, 7936},
      {TensorType::kIQ4_XS, 8448}};
  for (const auto& [type, cols] : cases) {
    for (int64_t rows : {int64_t{1}, int64_t{37}}) {
      for (int64_t n_tokens : {int64_t{1}, int64_t{2}}) {
        ++seed;
        CheckMatMul({type, rows, cols, n_tokens, 1.0f, 1.0f}, seed,
                    (seed % 2) != 0 ? &pool : nullptr);
      }
    }
  }
}

TEST_F(KernelsTest, DecodingGivesTheSameBitsWithAndWithoutSoftwarePrefetch) {
  // The decoding kernels prefetch the weight stream or not by CPU (DecodeSoftwarePrefetch): the
  // suite runs one setting by default, so both run here, every ISA, type and layout, and must
  // give the same bits (long rows: 4608 columns take the one-row streaming kernels).
  std::mt19937 rng(34);
  const int64_t rows = 40;
  ComputePool pool(2);
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    for (TensorType type : kAllTypes) {
      SCOPED_TRACE(std::string(TypeName(type)));
      for (int64_t cols : {int64_t{512}, int64_t{4608}}) {
        const std::vector<float> wf = RandomFloats(rng, rows * cols, 1.0f);
        const std::vector<uint8_t> w = QuantizeRows(type, wf, rows, cols);
        std::vector<uint8_t, PanelAllocator> panels;
        const bool has_panels = PanelsPreferred(type);
        if (has_panels) {
          panels.resize(static_cast<size_t>(PanelBytes(type, rows, cols)));
          PackPanels(type, w.data(), rows, cols, 0, rows, panels.data());
        }
        for (int64_t n_tokens : {int64_t{1}, int64_t{2}}) {
          const std::vector<float> x = RandomFloats(rng, n_tokens * cols, 1.0f);
          for (WeightLayout layout : {WeightLayout::kRows, WeightLayout::kPanels}) {
            if (layout == WeightLayout::kPanels && !has_panels) continue;
            const void* wp = layout == WeightLayout::kPanels
                                 ? static_cast<const void*>(panels.data())
                                 : static_cast<const void*>(w.data());
            std::vector<float> on(static_cast<size_t>(n_tokens * rows), -1.0f);
            std::vector<float> off(on.size(), -2.0f);
            SetDecodeSoftwarePrefetch(true);
            MatMul(&pool, type, wp, rows, cols, x.data(), n_tokens, on.data(), layout);
            SetDecodeSoftwarePrefetch(false);
            MatMul(&pool, type, wp, rows, cols, x.data(), n_tokens, off.data(), layout);
            ASSERT_EQ(on, off) << cols << " columns, " << n_tokens << " tokens"
                               << (layout == WeightLayout::kPanels ? ", panels" : ", rows");
          }
        }
      }
    }
  }
}

TEST_F(KernelsTest, DecodingGivesTheSameBitsForAnyThreadCount) {
  // Decoding hands each thread a contiguous range of row chunks and lets a thread that is done
  // take the rest of the others' ranges: every row must be computed exactly once, by the same
  // micro-kernel, whatever the number of threads (more threads than cores too, so some start
  // late and their ranges are taken over), alone and fused in MatMulMany.
  std::mt19937 rng(33);
  const int64_t cols = 512;
  const int64_t rows = 1000;  // not a multiple of the 16-row chunks or of the micro-kernels' 8
  ComputePool pool2(2), pool3(3), pool7(7);
  for (Isa isa : AvailableIsas()) {
    SCOPED_TRACE(std::string(IsaName(isa)));
    SetActiveIsa(isa);
    for (TensorType type : kAllTypes) {
      SCOPED_TRACE(std::string(TypeName(type)));
      const std::vector<float> wf = RandomFloats(rng, rows * cols, 1.0f);
      const int64_t row_bytes = RowSizeBytes(type, cols);
      const std::vector<uint8_t> w = QuantizeRows(type, wf, rows, cols);
      for (int64_t n_tokens : {int64_t{1}, int64_t{2}}) {
        const std::vector<float> x = RandomFloats(rng, n_tokens * cols, 1.0f);
        std::vector<float> want(static_cast<size_t>(n_tokens * rows), -1.0f);
        MatMul(nullptr, type, w.data(), rows, cols, x.data(), n_tokens, want.data());
        for (ComputePool* p : {&pool2, &pool3, &pool7}) {
          for (int rep = 0; rep < 3; ++rep) {
            std::vector<float> got(want.size(), -2.0f);
            MatMul(p, type, w.data(), rows, cols, x.data(), n_tokens, got.data());
            ASSERT_EQ(want, got) << p->n_threads() << " threads, tokens " << n_tokens;
          }
          // Three targets over the same matrix: rows 0-999, 1-999 and 16-31 of it.
          std::vector<float> y0(static_cast<size_t>(n_tokens * rows), -3.0f);
          std::vector<float> y1(static_cast<size_t>(n_tokens * (rows - 1)), -3.0f);
          std::vector<float> y2(static_cast<size_t>(n_tokens * 16), -3.0f);
          const MatMulTarget targets[] = {{type, w.data(), rows, y0.data()},
                                          {type, w.data() + row_bytes, rows - 1, y1.data()},
                                          {type, w.data() + 16 * row_bytes, 16, y2.data()}};
          MatMulMany(p, targets, cols, x.data(), n_tokens);
          for (int64_t t = 0; t < n_tokens; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              const float v = want[static_cast<size_t>(t * rows + r)];
              ASSERT_EQ(y0[static_cast<size_t>(t * rows + r)], v) << "row " << r;
              if (r >= 1) {
                ASSERT_EQ(y1[static_cast<size_t>(t * (rows - 1) + r - 1)], v) << "row " << r;
              }
              if (r >= 16 && r < 32) {
                ASSERT_EQ(y2[static_cast<size_t>(t * 16 + r - 16)], v) << "row " << r;
              }
            }
          }
        }
      }
    }
  }
}

// Softmax on every ISA against float64: lengths around the 16-lane tails, logits spread wide
// enough that some underflow to 0, and a large common offset (the max subtraction).
TEST_F(KernelsTest, SoftmaxMatchesFloat64OnEveryIsa) {
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-40.0f, 40.0f);
  for (Isa isa : AvailableIsas()) {
    SetActiveIsa(isa);
    for (int64_t n : {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, int64_t{100}, int64_t{4099}}) {
      for (float offset : {0.0f, 1000.0f}) {
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = u(rng) + offset;
        std::vector<float> y = x;
        Softmax(y.data(), n);
        const double mx = *std::max_element(x.begin(), x.end());
        double sum = 0;
        for (float v : x) sum += std::exp(double(v) - mx);
        for (int64_t i = 0; i < n; ++i) {
          const double want = std::exp(double(x[i]) - mx) / sum;
          // x - max is rounded to float before exp: up to |x - max| * 2^-24 of relative error.
          const double rel = 4e-6 + 1.2e-7 * std::fabs(double(x[i]) - mx);
          ASSERT_NEAR(y[i], want, rel * want + 1e-37)
              << IsaName(isa) << " n=" << n << " i=" << i << " offset=" << offset;
        }
      }
    }
  }
}

// The bandwidth probe's reads are real: each ISA's wide-load sum gives the byte-exact total (a
// read that skipped or repeated a line would not), over buffers of a few sizes.
TEST_F(KernelsTest, BandwidthProbeReadsSumEveryByteOnEveryIsa) {
  // A table is only touched on a CPU that runs its ISA: building the AVX-512 one runs AVX-512
  // code (its initialiser is compiled for it), which faults elsewhere.
  const auto table = [](Isa isa) -> const internal::IsaKernels& {
    switch (isa) {
      case Isa::kAvx512: return internal::Avx512Kernels();
      case Isa::kAvx2: return internal::Avx2Kernels();
      case Isa::kScalar: break;
    }
    return internal::ScalarKernels();
  };
  for (int64_t n : {int64_t{512}, int64_t{4096}, int64_t{3 * 512 * 7}}) {
    std::vector<uint8_t, PanelAllocator> buf(static_cast<size_t>(n));
    uint64_t expect = 0;
    for (int64_t i = 0; i < n; i += 8) {
      const uint64_t v = 0x0123456789ABCDEFull * static_cast<uint64_t>(i + 1);
      std::memcpy(buf.data() + i, &v, 8);
      expect += v;
    }
    for (Isa isa : AvailableIsas()) {
      const internal::ReadSumFn read = table(isa).read_sum;
      ASSERT_NE(read, nullptr) << IsaName(isa);
      for (int64_t prefetch : internal::kProbePrefetchBytes) {
        EXPECT_EQ(read(buf.data(), n, prefetch), expect)
            << IsaName(isa) << " n=" << n << " prefetch " << prefetch;
      }
    }
  }
  ComputePool pool(2);
  BandwidthProbe probe(&pool, int64_t{8} << 20);
  EXPECT_GT(probe.Measure(2), 0.0);
  EXPECT_NE(probe.checksum(), 0u);
}

// LargePageBuffer: 2 MiB-aligned, zero-filled, writable to its last byte, whatever the pages;
// kHugeIfFree declines (4 KiB pages) when the kernel has fewer free 2 MiB blocks than the buffer
// needs, and k4KiB never advises.
TEST(LargePageBuffer, IsAlignedZeroedWritableAndAdvisesOnlyWhenAsked) {
  const size_t n = (size_t{5} << 20) + 123;  // not a multiple of any page size
  for (auto pages : {LargePageBuffer::Pages::k4KiB, LargePageBuffer::Pages::kHuge,
                     LargePageBuffer::Pages::kHugeIfFree}) {
    LargePageBuffer b(n, pages);
    ASSERT_NE(b.data(), nullptr);
    EXPECT_EQ(b.size(), n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % (uintptr_t{2} << 20), 0u);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i += 4096) sum += b.data()[i];
    EXPECT_EQ(sum + b.data()[n - 1], 0u);
    std::memset(b.data(), 0x5A, n);
    EXPECT_EQ(b.data()[n - 1], 0x5A);
    if (pages == LargePageBuffer::Pages::k4KiB) {
      EXPECT_FALSE(b.advised_huge());
    }
  }
  const int64_t free_blocks = FreeHugeBlocks();
  ASSERT_GE(free_blocks, 0) << "/proc/buddyinfo unreadable";
  // More than the free blocks: declined. (Only address space: the pages are never touched.)
  LargePageBuffer too_big(static_cast<size_t>(free_blocks + 8) << 21,
                          LargePageBuffer::Pages::kHugeIfFree);
  EXPECT_FALSE(too_big.advised_huge());
  LargePageBuffer empty(0, LargePageBuffer::Pages::kHuge);
  EXPECT_EQ(empty.size(), 0u);
}

}  // namespace
}  // namespace yunzhi::engine::kernels
