// AVX-512 packed-panel matrix products, compiled with the same flags as kernels_avx512.cc and
// reached through its table:
//  - row-layout weights (F32, F16, BF16, Q8_0, Q4_0 as in the file), every tile but a 1-2 token
//    decoding call: 16 weight rows repacked per call into an L1 panel (GemmFloat, GemmQ8);
//  - row-layout Q4_K/Q6_K, tiles of more than 8 tokens: the same per call (GemmK);
//  - panel-layout Q8_0/Q4_0/Q5_0/Q4_K/Q6_K/Q3_K/Q2_K/IQ4_XS (WeightLayout::kPanels, repacked
//    once at load), every token count: the same micro-kernel arithmetic straight from the stored
//    panels (GemmPanels, GemmPanelsK, at the end).
// Scalar references: kernels_ref.cc.
//
// The "outer product" formulation of a GEMM, not the dot formulation of the decoding kernels: a
// group of 16 weight rows is repacked once per call into a panel whose vectors hold the same
// column (float) or the same 4-byte slice of a block (Q8) of all 16 rows, so a micro-kernel
// multiplies one panel vector by one activation value broadcast from memory and keeps 16 output
// rows x NT tokens per accumulator register. Outputs land row-contiguous (Y[t][r..r+15]) with no
// horizontal sums, and the inner dimension is processed in chunks whose panels stay in L1, with
// the partial sums kept in Y between chunks.
//
// Q8_0/Q4_0 per block of 32 and 16 rows: the panel holds 8 vectors (lane i: bytes 4k..4k+3 of
// row i's block, unsigned with the offset of kernels_avx512.cc's Q8Micro) and the 16 fp16 scales
// as floats. Eight VPDPBUSDs against the token's broadcast 4-byte slices leave each row's whole
// block sum in its own int32 lane, so the block's float work (convert, activation scale and
// offset, weight scale: 3 operations) is paid once per 8 integer instructions -- the decoded
// 2-block layout this replaces paid 3 per VPDPBUSD.
//
// Results do not depend on how the driver splits rows and tokens (the chunking of the inner
// dimension depends on cols only), so any thread count gives the same bits.
//
// Everything has internal linkage except the entry points declared in kernels_internal.h, which
// are only reached through Avx512Kernels() on CPUs that run AVX-512.

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

#include "engine/kernels/kernels_internal.h"

// See kernels_avx512.cc: GCC 12's intrinsic headers trip -Wuninitialized on _mm512_undefined_*.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace yunzhi::engine::kernels::internal {
namespace {

// Grow-only, 64-byte aligned per-thread buffer for the panels.
struct PanelBuffer {
  uint8_t* p = nullptr;
  int64_t n = 0;
  ~PanelBuffer() { std::free(p); }
  uint8_t* Get(int64_t bytes) {
    if (n < bytes) {
      std::free(p);
      n = (bytes + 4095) / 4096 * 4096;
      p = static_cast<uint8_t*>(std::aligned_alloc(64, static_cast<size_t>(n)));
    }
    return p;
  }
};

// Packing reads each weight for the first time (from DRAM when the matrix is not cached, as in
// a forward pass): 16 rows at once are more streams than the hardware prefetcher follows, so each
// row is prefetched a few lines ahead.
constexpr int64_t kPackPrefetchBytes = 512;
inline void Prefetch(const uint8_t* p, int64_t distance) {
  _mm_prefetch(reinterpret_cast<const char*>(p + distance), _MM_HINT_T0);
}

inline __mmask16 RowMask(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1);
}

// ---- transposition by bit swaps
//
// Viewing N vectors of 16 dwords as elements (vector v, lane l), SwapBit<kBit> exchanges bit kBit
// of v with bit kBit of l for one pair of vectors (x: bit clear, y: bit set). Swapping bits 0-3
// transposes 16 x 16 dwords; bits 0-2 turn 8 vectors [row p | row p + 8] of 8 dwords each into
// 8 vectors of 16 rows.
template <int kBit>
struct SwapIndex {
  static constexpr std::array<int32_t, 16> Make(bool high) {
    std::array<int32_t, 16> idx{};
    for (int l = 0; l < 16; ++l) {
      const bool set = (l >> kBit) & 1;
      if (!high) {
        idx[l] = set ? 16 + (l ^ (1 << kBit)) : l;
      } else {
        idx[l] = set ? 16 + l : (l ^ (1 << kBit));
      }
    }
    return idx;
  }
  alignas(64) static constexpr std::array<int32_t, 16> kLow = Make(false);
  alignas(64) static constexpr std::array<int32_t, 16> kHigh = Make(true);
};

template <int kBit>
inline void SwapBit(__m512i& x, __m512i& y) {
  const __m512i lo = _mm512_load_si512(SwapIndex<kBit>::kLow.data());
  const __m512i hi = _mm512_load_si512(SwapIndex<kBit>::kHigh.data());
  const __m512i nx = _mm512_permutex2var_epi32(x, lo, y);
  y = _mm512_permutex2var_epi32(x, hi, y);
  x = nx;
}

template <int kBit, int N>
inline void SwapStage(__m512i (&v)[N]) {
#pragma GCC unroll 16
  for (int p = 0; p < N; ++p) {
    if ((p >> kBit) & 1) continue;
    SwapBit<kBit>(v[p], v[p | (1 << kBit)]);
  }
}

// Splits [t0, t1) into the fewest tiles of at most kMax tokens, of near-equal sizes (so that a
// block of 85 tokens runs 8 tiles of 10-11 rather than 7 of 12 and one of 1).
template <class F>
inline void ForEachTokenTile(int64_t t0, int64_t t1, int k_max, F&& f) {
  int64_t left = (t1 - t0 + k_max - 1) / k_max;
  for (int64_t t = t0; t < t1; --left) {
    const int64_t nt = (t1 - t + left - 1) / left;
    f(t, static_cast<int>(nt));
    t += nt;
  }
}

template <template <int, int> class K, int MR, int MT, class Args>
struct MicroTable {
  using Fn = void (*)(const Args&, int64_t);
  template <int... I>
  static constexpr std::array<Fn, MR * MT> Make(std::integer_sequence<int, I...>) {
    return {&K<I / MT + 1, I % MT + 1>::Run...};
  }
  static constexpr std::array<Fn, MR* MT> kFns = Make(std::make_integer_sequence<int, MR * MT>{});
};

// ---- float weights

struct LoadF32 {
  static constexpr int kBytes = 4;
  static __m512 Load(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct LoadF16 {
  static constexpr int kBytes = 2;
  static __m512 Load(const uint8_t* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};
struct LoadBf16 {
  static constexpr int kBytes = 2;
  static __m512 Load(const uint8_t* p, __mmask16 m) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
  }
};

// Columns per chunk: a panel of 4 groups x 128 columns x 64 bytes (32 KiB) stays in L1 (48 KiB).
// Micro-kernel: 4 row groups of 16 x 6 tokens = 24 accumulators; per column 4 panel loads and 6
// broadcasts feed 24 FMAs. Measured against 2 x 12 and 3 x 8 (one thread, 512 tokens, F16
// 4864x896 / 896x896 / 1536x1536): 238 / 251 / 241 GFLOP/s vs 211 / 226 / 230 and 233 / 243 / 233.
constexpr int64_t kFloatChunkCols = 128;
constexpr int kFloatGroups = 4;  // row groups of 16 per micro-kernel (MR)
constexpr int kFloatTokens = 6;  // tokens per micro-kernel (MT)

// Panel of rows [row, row + n_rows) (n_rows <= 16; missing rows are zeros), columns
// [c0, c0 + nc): column c at out + 16 * (c - c0), rounded up to 16 columns.
template <class L>
void PackFloatGroup(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t c0, int64_t nc,
                    float* out) {
  for (int64_t cc = 0; cc < nc; cc += 16) {
    const __mmask16 m = RowMask(nc - cc);
    if (((cc * L::kBytes) & 63) == 0) {
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        if (i < n_rows) Prefetch(w + i * w_row_bytes + (c0 + cc) * L::kBytes, kPackPrefetchBytes);
      }
    }
    __m512i v[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      v[i] = i < n_rows
                 ? _mm512_castps_si512(L::Load(w + i * w_row_bytes + (c0 + cc) * L::kBytes, m))
                 : _mm512_setzero_si512();
    }
    SwapStage<0>(v);
    SwapStage<1>(v);
    SwapStage<2>(v);
    SwapStage<3>(v);
#pragma GCC unroll 16
    for (int c = 0; c < 16; ++c) _mm512_store_si512(out + 16 * (cc + c), v[c]);
  }
}

struct FloatArgs {
  const float* panel;  // row group g at panel + g * group_floats; column c at + 16 * c
  int64_t group_floats;
  const float* x;  // token t's activations of this chunk at x + t * ldx
  int64_t ldx;
  int64_t n_cols;  // of this chunk
  float* y;        // token t's rows of this row tile at y + t * ldy
  int64_t ldy;
  __mmask16 last_mask;  // rows present in the last group
  bool accumulate;      // add to Y (a later chunk) rather than overwrite it
};

template <int NR, int NT>
struct FloatK {
  static void Run(const FloatArgs& a, int64_t t) {
    const float* x[NT];
    float* y[NT];
    for (int j = 0; j < NT; ++j) {
      x[j] = a.x + (t + j) * a.ldx;
      y[j] = a.y + (t + j) * a.ldy;
    }
    __m512 acc[NR][NT];
#pragma GCC unroll 16
    for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
      for (int i = 0; i < NR; ++i) {
        const __mmask16 m = i == NR - 1 ? a.last_mask : static_cast<__mmask16>(0xFFFF);
        acc[i][j] = a.accumulate ? _mm512_maskz_loadu_ps(m, y[j] + 16 * i) : _mm512_setzero_ps();
      }
    const float* p = a.panel;
    for (int64_t c = 0; c < a.n_cols; ++c, p += 16) {
      __m512 w[NR];
#pragma GCC unroll 4
      for (int i = 0; i < NR; ++i) w[i] = _mm512_load_ps(p + i * a.group_floats);
#pragma GCC unroll 16
      for (int j = 0; j < NT; ++j) {
        const __m512 xb = _mm512_set1_ps(x[j][c]);
#pragma GCC unroll 4
        for (int i = 0; i < NR; ++i) acc[i][j] = _mm512_fmadd_ps(w[i], xb, acc[i][j]);
      }
    }
#pragma GCC unroll 16
    for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
      for (int i = 0; i < NR; ++i) {
        const __mmask16 m = i == NR - 1 ? a.last_mask : static_cast<__mmask16>(0xFFFF);
        _mm512_mask_storeu_ps(y[j] + 16 * i, m, acc[i][j]);
      }
  }
};

template <class L>
void GemmFloat(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  constexpr int MR = kFloatGroups, MT = kFloatTokens;
  const int64_t chunk = std::min<int64_t>(kFloatChunkCols, a.cols);
  const int64_t group_floats = (chunk + 15) / 16 * 16 * 16;
  thread_local PanelBuffer buffer;
  auto* panel = reinterpret_cast<float*>(buffer.Get(MR * group_floats * 4));
  const auto& fns = MicroTable<FloatK, MR, MT, FloatArgs>::kFns;
  const auto* x = reinterpret_cast<const float*>(a.x);
  const int64_t ldx = a.x_stride_bytes / 4;
  for (int64_t r = r0; r < r1; r += 16 * MR) {
    const int64_t n_rows = std::min<int64_t>(16 * MR, r1 - r);
    const int nr = static_cast<int>((n_rows + 15) / 16);
    for (int64_t c0 = 0; c0 < a.cols; c0 += chunk) {
      const int64_t nc = std::min(chunk, a.cols - c0);
      for (int g = 0; g < nr; ++g) {
        PackFloatGroup<L>(a.w + (r + 16 * g) * a.w_row_bytes, a.w_row_bytes,
                          std::min<int64_t>(16, n_rows - 16 * g), c0, nc, panel + g * group_floats);
      }
      const FloatArgs f{panel, group_floats, x + c0, ldx,
                        nc,    a.y + r,      a.ldy,  RowMask(n_rows - 16 * (nr - 1)),
                        c0 > 0};
      ForEachTokenTile(t0, t1, MT, [&](int64_t t, int nt) {
        fns[static_cast<size_t>((nr - 1) * MT + (nt - 1))](f, t);
      });
    }
  }
}

// ---- Q8_0 and Q4_0 weights x kQ8 activations

// Micro-kernel: 3 row groups of 16 x 4 tokens, 12 integer + 12 float accumulators; per 4-byte
// slice 3 panel loads and 4 broadcasts feed 12 VPDPBUSDs. One thread, 512 tokens, Q8_0/Q4_0:
// 700-730 GFLOP/s against 680-700 for 2 x 6 and 4 x 3; 32 tokens from DRAM: 340-360 vs 280-320.
constexpr int64_t kQPanelBlockBytes = 8 * 64 + 64;  // per block and group of 16 rows
constexpr int64_t kQChunkBlocks = 16;               // 3 groups x 16 blocks: 27 KiB of panel
constexpr int kQGroups = 3;
constexpr int kQTokens = 4;

// Two rows' blocks as 64 unsigned bytes in element order: [row a (32) | row b (32)]; a null row
// is zeros.
struct PanelQ8_0 {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ8_0);
  static constexpr float kOffset = 128.0f;
  static constexpr bool kNibbles = false;
  static __m256i One(const uint8_t* p) {
    if (p == nullptr) return _mm256_setzero_si256();
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    return _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static __m512i Two(const uint8_t* a, const uint8_t* b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(One(a)), One(b), 1);
  }
};

struct PanelQ4_0 {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ4_0);
  static constexpr float kOffset = 8.0f;
  static constexpr bool kNibbles = true;
  // The 16 nibble bytes of a block (byte j: element j low, j + 16 high); a null row is zeros.
  static __m128i Raw(const uint8_t* p) {
    if (p == nullptr) return _mm_setzero_si128();
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
  }
};

// Q5_0 reaches QMicro only through SplitQ5_0Group (bytes 0..31 in the L1 panel, q + 16).
struct PanelQ5_0 {
  static constexpr float kOffset = 16.0f;
};

// Panel of rows [0, n_rows) at w (n_rows <= 16, missing rows zero), blocks [b0, b0 + nbk).
template <class W>
void PackQ8Group(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t b0, int64_t nbk,
                 uint8_t* out) {
  // The 16 fp16 scales in one gather (the low half of the dword at each block's start; the
  // scalar loads and stores it replaces stalled on store forwarding).
  const __mmask16 present = RowMask(n_rows);
  const __m512i offsets =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int32_t>(w_row_bytes)));
  for (int64_t b = 0; b < nbk; ++b) {
    const uint8_t* p[16];
    for (int i = 0; i < 16; ++i) {
      p[i] = i < n_rows ? w + i * w_row_bytes + (b0 + b) * W::kBlockBytes : nullptr;
      if (i < n_rows && (b & 1) == 0) Prefetch(p[i], kPackPrefetchBytes);
    }
    const __m512i s = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), present, offsets,
                                                  w + (b0 + b) * W::kBlockBytes, 1);
    uint8_t* o = out + b * kQPanelBlockBytes;
    if constexpr (W::kNibbles) {
      // Q4_0: transpose the 16 raw bytes (4 dwords) of each row, then split the nibbles: raw
      // dword k holds elements 4k..4k+3 (low nibbles) and 16+4k.. (high), slices k and 4 + k.
      // Vector q starts as rows q, q+4, q+8, q+12 so that two bit swaps leave lane i = row i.
      // Half the shuffles of transposing decoded bytes: the pack is what a batch of a few
      // tokens pays for.
      __m512i v[4];
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        __m512i t = _mm512_castsi128_si512(W::Raw(p[q]));
        t = _mm512_inserti32x4(t, W::Raw(p[q + 4]), 1);
        t = _mm512_inserti32x4(t, W::Raw(p[q + 8]), 2);
        v[q] = _mm512_inserti32x4(t, W::Raw(p[q + 12]), 3);
      }
      SwapStage<0>(v);
      SwapStage<1>(v);
      const __m512i mask = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        _mm512_store_si512(o + 64 * k, _mm512_and_si512(v[k], mask));
        _mm512_store_si512(o + 64 * (4 + k), _mm512_and_si512(_mm512_srli_epi16(v[k], 4), mask));
      }
    } else {
      __m512i v[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) v[k] = W::Two(p[k], p[k + 8]);
      SwapStage<0>(v);
      SwapStage<1>(v);
      SwapStage<2>(v);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) _mm512_store_si512(o + 64 * k, v[k]);
    }
    _mm512_store_ps(o + 512, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(s)));
  }
}

// A chunk of L1 panels for the integer micro-kernels (QMicro: Q8_0/Q4_0 against kQ8 rows;
// KMicro: the K-quants against kQ8K rows).
struct QArgs {
  const uint8_t* panel;  // row group g at panel + g * group_bytes, in the kernel's layout
  int64_t group_bytes;
  const uint8_t* x;  // activation rows, token t at x + t * x_stride
  int64_t x_stride;
  int64_t cols;
  int64_t b0, nbk;  // blocks (super-blocks) of this chunk
  float* y;         // token t's rows of this row tile at y + t * ldy
  int64_t ldy;
  __mmask16 last_mask;
  bool accumulate;
};

// The accumulators of a micro-kernel, NR row groups of 16 x NT tokens (Y[t][16 i ..]; the last
// group masked): loaded from Y when a chunk continues an earlier one (exact: the same float
// sequence as keeping them in registers), else zero; then stored back.
template <int NR, int NT>
__attribute__((always_inline)) inline void LoadAcc(__m512 (&acc)[NR][NT], float* const (&y)[NT],
                                                   __mmask16 last_mask, bool accumulate) {
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < NR; ++i) {
      const __mmask16 m = i == NR - 1 ? last_mask : static_cast<__mmask16>(0xFFFF);
      acc[i][j] = accumulate ? _mm512_maskz_loadu_ps(m, y[j] + 16 * i) : _mm512_setzero_ps();
    }
}
template <int NR, int NT>
__attribute__((always_inline)) inline void StoreAcc(const __m512 (&acc)[NR][NT],
                                                    float* const (&y)[NT], __mmask16 last_mask) {
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
    for (int i = 0; i < NR; ++i) {
      const __mmask16 m = i == NR - 1 ? last_mask : static_cast<__mmask16>(0xFFFF);
      _mm512_mask_storeu_ps(y[j] + 16 * i, m, acc[i][j]);
    }
}

template <class W>
struct QMicro {
  template <int NR, int NT>
  struct K {
    static void Run(const QArgs& a, int64_t t) {
      ActQ8Row x[NT];
      float* y[NT];
      for (int j = 0; j < NT; ++j) {
        x[j] = ViewQ8(a.x + (t + j) * a.x_stride, a.cols);
        y[j] = a.y + (t + j) * a.ldy;
      }
      __m512 acc[NR][NT];
      LoadAcc<NR, NT>(acc, y, a.last_mask, a.accumulate);
      for (int64_t b = 0; b < a.nbk; ++b) {
        const uint8_t* pw = a.panel + b * kQPanelBlockBytes;
        const int64_t xb = a.b0 + b;
        __m512i dot[NR][NT];
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
          for (int i = 0; i < NR; ++i) dot[i][j] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          __m512i wv[NR];
#pragma GCC unroll 4
          for (int i = 0; i < NR; ++i) wv[i] = _mm512_load_si512(pw + i * a.group_bytes + 64 * k);
#pragma GCC unroll 8
          for (int j = 0; j < NT; ++j) {
            int32_t q;
            std::memcpy(&q, x[j].qs + 32 * xb + 4 * k, 4);
            const __m512i xv = _mm512_set1_epi32(q);
#pragma GCC unroll 4
            for (int i = 0; i < NR; ++i) dot[i][j] = _mm512_dpbusd_epi32(dot[i][j], wv[i], xv);
          }
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m512 dx = _mm512_set1_ps(x[j].d[xb]);
          const __m512 m = _mm512_set1_ps(-W::kOffset * x[j].ds[xb]);
#pragma GCC unroll 4
          for (int i = 0; i < NR; ++i) {
            const __m512 wd = _mm512_load_ps(pw + i * a.group_bytes + 512);
            const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i][j]), dx, m);
            acc[i][j] = _mm512_fmadd_ps(v, wd, acc[i][j]);
          }
        }
      }
      StoreAcc<NR, NT>(acc, y, a.last_mask);
    }
  };
};

// Rows [r0, r1) x tokens [t0, t1) through L1 panels, a chunk of `chunk` of the nb blocks at a
// time: pack(row, n_rows, b0, nbk, dst) fills the panel of rows [row, row + n_rows) (at most 16,
// `group_bytes` apart) for blocks [b0, b0 + nbk); then every token tile runs Micro's MR row
// groups x MT tokens over it, the partial sums kept in Y between chunks.
template <template <int, int> class Micro, int MR, int MT, class Pack>
void ChunkedGemm(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1, int64_t nb,
                 int64_t chunk, int64_t group_bytes, const Pack& pack) {
  thread_local PanelBuffer buffer;
  uint8_t* panel = buffer.Get(MR * group_bytes);
  const auto& fns = MicroTable<Micro, MR, MT, QArgs>::kFns;
  for (int64_t r = r0; r < r1; r += 16 * MR) {
    const int64_t n_rows = std::min<int64_t>(16 * MR, r1 - r);
    const int nr = static_cast<int>((n_rows + 15) / 16);
    for (int64_t b0 = 0; b0 < nb; b0 += chunk) {
      const int64_t nbk = std::min(chunk, nb - b0);
      for (int g = 0; g < nr; ++g) {
        pack(r + 16 * g, std::min<int64_t>(16, n_rows - 16 * g), b0, nbk, panel + g * group_bytes);
      }
      const QArgs q{panel,  group_bytes,
                    a.x,    a.x_stride_bytes,
                    a.cols, b0,
                    nbk,    a.y + r,
                    a.ldy,  RowMask(n_rows - 16 * (nr - 1)),
                    b0 > 0};
      ForEachTokenTile(t0, t1, MT, [&](int64_t t, int nt) {
        fns[static_cast<size_t>((nr - 1) * MT + (nt - 1))](q, t);
      });
    }
  }
}

template <class W>
void GemmQ8(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t nb = a.cols / 32;
  const int64_t chunk = std::min<int64_t>(kQChunkBlocks, nb);
  ChunkedGemm<QMicro<W>::template K, kQGroups, kQTokens>(
      a, r0, r1, t0, t1, nb, chunk, chunk * kQPanelBlockBytes,
      [&](int64_t row, int64_t n_rows, int64_t b0, int64_t nbk, uint8_t* dst) {
        PackQ8Group<W>(a.w + row * a.w_row_bytes, a.w_row_bytes, n_rows, b0, nbk, dst);
      });
}

// ---- Q4_K weights x kQ8K activations
//
// Per super-block (256 columns) and group of 16 rows the panel holds, lane i = row i:
//   the nibbles as unsigned bytes 0..15: for each 64-column chunk c of the block, 8 vectors of
//     the low nibbles (4-byte slice k: columns 64c + 4k..4k+3, sub-block s = 2c) then 8 of the
//     high ones (columns 64c + 32 + 4k.., s = 2c + 1) -- vector 8s + k holds slice k of s;
//   the 8 sub-block scales sc[s] (int32 lanes), the 8 mins m[s] (each lane the int16 pair
//     (m[s], m[s])), and d, dmin as floats.
// A row's super-block then adds dx * (d * sumi - dmin * summ) with the exact integers
//   sumi = sum_s sc[s] * sum_{i in s} q_i x_i   (8 VPDPBUSDs per sub-block, one VPMULLD by sc[s])
//   summ = sum_s m[s] * sum_{i in s} x_i        (VPDPWSSD of the m pairs against the bsums)
// as DotKQuant4Ref does; the super-blocks in order, so any tiling gives a token the same bits. The
// dot kernels of kernels_avx512.cc (tiles of up to 8 tokens) compute the same integers and steps.
constexpr int64_t kQKNibbleBytes = 64 * 64;
constexpr int64_t kQKScaleOffset = kQKNibbleBytes;
constexpr int64_t kQKMinOffset = kQKScaleOffset + 8 * 64;
constexpr int64_t kQKDOffset = kQKMinOffset + 8 * 64;
constexpr int64_t kQKPanelBlockBytes = kQKDOffset + 2 * 64;  // 5248 per super-block and group
// Micro-kernel: 2 row groups of 16 x 4 tokens: 8 accumulators each of the sub-block dot, the
// super-block's sumi and the float sums. Chunks of 2 super-blocks: 2 x 2 x 5 KiB of panel in L1.
constexpr int64_t kQKChunkBlocks = 2;
constexpr int kQKGroups = 2;
constexpr int kQKTokens = 4;

// Sub-block sb's 6-bit scale (sc) and min (m) in each lane from the lanes' 12 packed scale bytes
// as dwords q0, q1, q2 (layout in tensor_type.h).
inline void Q4_KScaleMin(__m512i q0, __m512i q1, __m512i q2, int sb, __m512i& sc, __m512i& m) {
  const __m512i six = _mm512_set1_epi32(63), four = _mm512_set1_epi32(15);
  const __m512i two = _mm512_set1_epi32(3);
  if (sb < 4) {
    sc = _mm512_and_si512(_mm512_srli_epi32(q0, 8 * sb), six);
    m = _mm512_and_si512(_mm512_srli_epi32(q1, 8 * sb), six);
    return;
  }
  const int t = 8 * (sb - 4);
  sc = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(q2, t), four),
                       _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(q0, t + 6), two), 4));
  m = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(q2, t + 4), four),
                      _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(q1, t + 6), two), 4));
}

// The QKMicro panel's scales of one super-block (o: its start) from the 16 rows' packed scale
// dwords and d | dmin << 16.
inline void StoreQ4_KScales(__m512i q0, __m512i q1, __m512i q2, __m512i dm, uint8_t* o) {
  for (int sb = 0; sb < 8; ++sb) {
    __m512i sc, m;
    Q4_KScaleMin(q0, q1, q2, sb, sc, m);
    _mm512_store_si512(o + kQKScaleOffset + 64 * sb, sc);
    _mm512_store_si512(o + kQKMinOffset + 64 * sb, _mm512_or_si512(m, _mm512_slli_epi32(m, 16)));
  }
  _mm512_store_ps(o + kQKDOffset, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm)));
  _mm512_store_ps(o + kQKDOffset + 64,
                  _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16))));
}

// Panel of rows [0, n_rows) at w (n_rows <= 16, missing rows zero), super-blocks [b0, b0 + nbk).
void PackQ4_KGroup(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t b0,
                   int64_t nbk, uint8_t* out) {
  const __mmask16 present = RowMask(n_rows);
  const __m512i offsets =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int32_t>(w_row_bytes)));
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  constexpr int64_t kQs = 4 + kKScaleBytes;  // the nibbles' offset in a block
  for (int64_t b = 0; b < nbk; ++b) {
    const uint8_t* blk = w + (b0 + b) * static_cast<int64_t>(sizeof(BlockQ4_K));
    uint8_t* o = out + b * kQKPanelBlockBytes;
    auto row32 = [&](int i, int64_t at) {
      if (i >= n_rows) return _mm256_setzero_si256();
      if ((b & 1) == 0) Prefetch(blk + i * w_row_bytes + at, kPackPrefetchBytes);
      return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + i * w_row_bytes + at));
    };
    for (int c = 0; c < 4; ++c) {
      // Vector k starts as [row k | row k + 8], 8 dwords each; three bit swaps leave lane i =
      // row i, vector k = dword k (bytes 4k..4k+3 of the chunk).
      __m512i v[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        v[k] = _mm512_inserti64x4(_mm512_castsi256_si512(row32(k, kQs + 32 * c)),
                                  row32(k + 8, kQs + 32 * c), 1);
      }
      SwapStage<0>(v);
      SwapStage<1>(v);
      SwapStage<2>(v);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        _mm512_store_si512(o + 64 * (16 * c + k), _mm512_and_si512(v[k], nibble));
        _mm512_store_si512(o + 64 * (16 * c + 8 + k),
                           _mm512_and_si512(_mm512_srli_epi16(v[k], 4), nibble));
      }
    }
    // The 12 scale bytes as three dwords per row, and d | dmin << 16 (layout in tensor_type.h).
    const __m512i zero = _mm512_setzero_si512();
    const __m512i q0 = _mm512_mask_i32gather_epi32(zero, present, offsets, blk + 4, 1);
    const __m512i q1 = _mm512_mask_i32gather_epi32(zero, present, offsets, blk + 8, 1);
    const __m512i q2 = _mm512_mask_i32gather_epi32(zero, present, offsets, blk + 12, 1);
    const __m512i dm = _mm512_mask_i32gather_epi32(zero, present, offsets, blk, 1);
    StoreQ4_KScales(q0, q1, q2, dm, o);
  }
}


// The 4 bytes at p in every 32-bit lane.
inline __m512i Broadcast4(const void* p) {
  int32_t q;
  std::memcpy(&q, p, 4);
  return _mm512_set1_epi32(q);
}

// The K-quant micro-kernel over L1 panels, K describing the panel (K::kSubBlocks sub-blocks of
// K::kSlices 4-byte slices per super-block, the scales as int32 lanes at K::kScaleOffset, 8
// vectors of int16 pairs at K::kPairOffset that multiply the bsums' pairs, d at K::kDOffset) and
// the float steps from the exact integers (K::Finish). Per super-block and row: sumi = sum over
// sub-blocks of scale * (VPDPBUSD sum of its slices), pairs = VPDPWSSD of the pair vectors
// against the 16-element bsums, then acc += dx * K::Finish(sumi, pairs).
template <class K>
struct KMicro {
  template <int NR, int NT>
  struct Fn {
    static void Run(const QArgs& a, int64_t t) {
      ActQ8KRow x[NT];
      float* y[NT];
      for (int j = 0; j < NT; ++j) {
        x[j] = ViewQ8K(a.x + (t + j) * a.x_stride, a.cols);
        y[j] = a.y + (t + j) * a.ldy;
      }
      __m512 acc[NR][NT];
      LoadAcc<NR, NT>(acc, y, a.last_mask, a.accumulate);
      constexpr int kSliceBytes = 4 * K::kSlices;  // columns per sub-block
      for (int64_t b = 0; b < a.nbk; ++b) {
        const uint8_t* pw = a.panel + b * K::kBlockBytes;
        const int64_t xb = a.b0 + b;
        __m512i sumi[NR][NT];
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
          for (int i = 0; i < NR; ++i) sumi[i][j] = _mm512_setzero_si512();
        for (int sb = 0; sb < K::kSubBlocks; ++sb) {
          __m512i dot[NR][NT];
#pragma GCC unroll 8
          for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
            for (int i = 0; i < NR; ++i) dot[i][j] = _mm512_setzero_si512();
#pragma GCC unroll 8
          for (int k = 0; k < K::kSlices; ++k) {
            __m512i wv[NR];
#pragma GCC unroll 4
            for (int i = 0; i < NR; ++i) {
              wv[i] = _mm512_load_si512(pw + i * a.group_bytes + 64 * (K::kSlices * sb + k));
            }
#pragma GCC unroll 8
            for (int j = 0; j < NT; ++j) {
              const __m512i xv = Broadcast4(x[j].qs + kQK_K * xb + kSliceBytes * sb + 4 * k);
#pragma GCC unroll 4
              for (int i = 0; i < NR; ++i) dot[i][j] = _mm512_dpbusd_epi32(dot[i][j], wv[i], xv);
            }
          }
#pragma GCC unroll 4
          for (int i = 0; i < NR; ++i) {
            const __m512i sc =
                _mm512_load_si512(pw + i * a.group_bytes + K::kScaleOffset + 64 * sb);
#pragma GCC unroll 8
            for (int j = 0; j < NT; ++j) {
              sumi[i][j] = _mm512_add_epi32(sumi[i][j], _mm512_mullo_epi32(dot[i][j], sc));
            }
          }
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m512 dx = _mm512_set1_ps(x[j].d[xb]);
          const int16_t* bs = x[j].bsums + (kQK_K / 16) * xb;
#pragma GCC unroll 4
          for (int i = 0; i < NR; ++i) {
            const uint8_t* pi = pw + i * a.group_bytes;
            __m512i pairs = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int q = 0; q < 8; ++q) {
              pairs = _mm512_dpwssd_epi32(pairs, _mm512_load_si512(pi + K::kPairOffset + 64 * q),
                                          Broadcast4(bs + 2 * q));
            }
            acc[i][j] = _mm512_fmadd_ps(dx, K::Finish(pi + K::kDOffset, sumi[i][j], pairs),
                                        acc[i][j]);
          }
        }
      }
      StoreAcc<NR, NT>(acc, y, a.last_mask);
    }
  };
};

// Q4_K's panel: 8 sub-blocks of 32 columns; the pairs are the mins (m[s], m[s]);
// v = d * sumi - dmin * summ.
struct Q4KPanel {
  static constexpr int kSubBlocks = 8, kSlices = 8;
  static constexpr int64_t kBlockBytes = kQKPanelBlockBytes;
  static constexpr int64_t kScaleOffset = kQKScaleOffset, kPairOffset = kQKMinOffset;
  static constexpr int64_t kDOffset = kQKDOffset;
  static __m512 Finish(const uint8_t* d, __m512i sumi, __m512i summ) {
    const __m512 v = _mm512_mul_ps(_mm512_load_ps(d), _mm512_cvtepi32_ps(sumi));
    return _mm512_fnmadd_ps(_mm512_load_ps(d + 64), _mm512_cvtepi32_ps(summ), v);
  }
};
template <int NR, int NT>
using QKMicro = KMicro<Q4KPanel>::Fn<NR, NT>;

// The K-quant products: 16-row panels of kQKChunkBlocks super-blocks packed per call (Pack), the
// micro-kernel over them (Micro), kBlockBytes of panel per super-block and group.
using PackKFn = void (*)(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t b0,
                         int64_t nbk, uint8_t* out);
template <PackKFn kPack, template <int, int> class Micro, int64_t kBlockBytes>
void GemmK(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t nb = a.cols / kQK_K;
  const int64_t chunk = std::min<int64_t>(kQKChunkBlocks, nb);
  ChunkedGemm<Micro, kQKGroups, kQKTokens>(
      a, r0, r1, t0, t1, nb, chunk, chunk * kBlockBytes,
      [&](int64_t row, int64_t n_rows, int64_t b0, int64_t nbk, uint8_t* dst) {
        kPack(a.w + row * a.w_row_bytes, a.w_row_bytes, n_rows, b0, nbk, dst);
      });
}

// ---- Q6_K weights x kQ8K activations
//
// The Q4_K panel's scheme for Q6_K: per super-block and group of 16 rows, the 6-bit values q as
// unsigned bytes 0..63 (vector v: columns 4v..4v+3, lane i = row i), the 16 sub-block scales
// sc[g] (int8, 16 columns each) as int32 lanes, the pairs (sc[2p], sc[2p + 1]) as int16 words for
// the offset, and d as a float. With value = d * sc[g] * (q - 32), a row's super-block adds
// dx * (d * total), total = sum_g sc[g] * sum_{i in g} q_i x_i - 32 * sum_g sc[g] * bsum[g], an
// exact integer, as DotQ6_KRef computes it; the decoding kernel (kernels_avx512.cc) does the same.
constexpr int64_t kQ6ValueBytes = 64 * 64;
constexpr int64_t kQ6ScaleOffset = kQ6ValueBytes;
constexpr int64_t kQ6PairOffset = kQ6ScaleOffset + 16 * 64;
constexpr int64_t kQ6DOffset = kQ6PairOffset + 8 * 64;
constexpr int64_t kQ6PanelBlockBytes = kQ6DOffset + 64;  // 5696 per super-block and group

// The values of 16 rows (q[row][column], one super-block) into the panel: vector 8c + k holds
// columns 32c + 4k'.., lane i = row i (the transposition of PackQ8Group's Q8_0 branch).
inline void StoreQ6PanelValues(const uint8_t (&q)[16][kQK_K], uint8_t* o) {
  for (int c = 0; c < 8; ++c) {  // 32 columns: vectors 8c..8c+7
    __m512i v[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      v[k] = _mm512_inserti64x4(
          _mm512_castsi256_si512(
              _mm256_load_si256(reinterpret_cast<const __m256i*>(q[k] + 32 * c))),
          _mm256_load_si256(reinterpret_cast<const __m256i*>(q[k + 8] + 32 * c)), 1);
    }
    SwapStage<0>(v);
    SwapStage<1>(v);
    SwapStage<2>(v);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) _mm512_store_si512(o + 64 * (8 * c + k), v[k]);
  }
}

// The 16 sub-block scales (sc[g], lane i = row i), their pairs, and d, the fp16 that ends each
// row's block (Q6_K and Q3_K both end with it), into the panel.
template <int64_t kSourceBlockBytes>
void StoreQ6PanelScalesAndD(const __m512i (&sc)[16], const uint8_t* blk, __mmask16 present,
                            __m512i offsets, uint8_t* o) {
  for (int g = 0; g < 16; ++g) _mm512_store_si512(o + kQ6ScaleOffset + 64 * g, sc[g]);
  const __m512i low16 = _mm512_set1_epi32(0xFFFF);
  for (int p = 0; p < 8; ++p) {
    _mm512_store_si512(
        o + kQ6PairOffset + 64 * p,
        _mm512_or_si512(_mm512_and_si512(sc[2 * p], low16), _mm512_slli_epi32(sc[2 * p + 1], 16)));
  }
  const __m512i dw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), present, offsets,
                                                 blk + kSourceBlockBytes - 4, 1);
  _mm512_store_ps(o + kQ6DOffset,
                  _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dw, 16))));
}

// Panel of rows [0, n_rows) at w (n_rows <= 16, missing rows zero), super-blocks [b0, b0 + nbk).
void PackQ6_KGroup(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t b0,
                   int64_t nbk, uint8_t* out) {
  const __mmask16 present = RowMask(n_rows);
  const __m512i offsets =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int32_t>(w_row_bytes)));
  const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  constexpr int64_t kQh = kQK_K / 2, kScales = kQK_K / 2 + kQK_K / 4;
  alignas(64) uint8_t q[16][kQK_K];  // each row's values in column order
  for (int64_t b = 0; b < nbk; ++b) {
    const uint8_t* blk = w + (b0 + b) * static_cast<int64_t>(sizeof(BlockQ6_K));
    uint8_t* o = out + b * kQ6PanelBlockBytes;
    for (int i = 0; i < 16; ++i) {
      if (i >= n_rows) {
        std::memset(q[i], 0, sizeof(q[i]));
        continue;
      }
      const uint8_t* p = blk + i * w_row_bytes;
      if ((b & 1) == 0) {
        for (int64_t at = 0; at < static_cast<int64_t>(sizeof(BlockQ6_K)); at += 64) {
          Prefetch(p + at, kPackPrefetchBytes);
        }
      }
      // Half h: columns 128h + 32k + l from ql[64h + l (+ 32)] (low or high nibble) and bits
      // 2k..2k+1 of qh[32h + l] (layout in tensor_type.h).
      for (int h = 0; h < 2; ++h) {
        auto load = [&](int64_t at) {
          return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + at));
        };
        const __m256i ql0 = load(64 * h), ql1 = load(64 * h + 32), qh = load(kQh + 32 * h);
        auto high = [&](int k) {  // bits 2k..2k+1 of qh, moved to bits 4..5
          return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * k), low2), 4);
        };
        auto store = [&](int k, __m256i v) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(q[i] + 128 * h + 32 * k), v);
        };
        store(0, _mm256_or_si256(_mm256_and_si256(ql0, low4), high(0)));
        store(1, _mm256_or_si256(_mm256_and_si256(ql1, low4), high(1)));
        store(2, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4), high(2)));
        store(3, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4), high(3)));
      }
    }
    StoreQ6PanelValues(q, o);
    // The 16 int8 scales as four dwords per row.
    const __m512i zero = _mm512_setzero_si512();
    __m512i sc[16];
    for (int k = 0; k < 4; ++k) {
      const __m512i dw =
          _mm512_mask_i32gather_epi32(zero, present, offsets, blk + kScales + 4 * k, 1);
      for (int g = 0; g < 4; ++g) {
        sc[4 * k + g] = _mm512_srai_epi32(_mm512_slli_epi32(dw, 24 - 8 * g), 24);
      }
    }
    StoreQ6PanelScalesAndD<sizeof(BlockQ6_K)>(sc, blk, present, offsets, o);
  }
}

// The per-call packing of the row-layout types whose values go to the panel one byte per column
// (Q2_K, Q3_K, IQ4_XS): for each super-block, row(p, q, i) decodes row i's block at p into q (256
// values in column order) and keeps its scales for the group; a missing row is zeros; then the
// values are transposed into the panel (StoreQ6PanelValues) and tail(blk, present, offsets, o)
// writes the group's scales and d from what row() kept and the blocks' own bytes.
template <int64_t kSourceBlockBytes, int64_t kPanelBlockBytes, class Row, class Tail>
void PackByteValueGroup(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t b0,
                        int64_t nbk, uint8_t* out, const Row& row, const Tail& tail) {
  const __mmask16 present = RowMask(n_rows);
  const __m512i offsets =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int32_t>(w_row_bytes)));
  alignas(64) uint8_t q[16][kQK_K];  // each row's values in column order
  for (int64_t b = 0; b < nbk; ++b) {
    const uint8_t* blk = w + (b0 + b) * kSourceBlockBytes;
    uint8_t* o = out + b * kPanelBlockBytes;
    for (int i = 0; i < 16; ++i) {
      if (i >= n_rows) {
        std::memset(q[i], 0, sizeof(q[i]));
        row(nullptr, q[i], i);
        continue;
      }
      const uint8_t* p = blk + i * w_row_bytes;
      if ((b & 1) == 0) Prefetch(p + 64, kPackPrefetchBytes);
      row(p, q[i], i);
    }
    StoreQ6PanelValues(q, o);
    tail(blk, present, offsets, o);
  }
}

// ---- Q2_K weights x kQ8K activations
//
// Q6_K's panel shape with mins: per super-block and group of 16 rows, the 2-bit values q (0..3)
// in column order, the 16 scales sc[s] (4 bits) as int32 lanes, the pairs (m[2p], m[2p + 1]) as
// int16 words against the bsums' pairs, d and dmin. A row's super-block adds dx * fma(d, sumi,
// -(dmin * summ)) with sumi = sum_s sc[s] * sum q x and summ = sum_s m[s] * bsum[s], exact
// integers: DotQ2_KRef's steps, and the decoding kernel's (KQuant16Micro, kernels_avx512.cc).
constexpr int64_t kQ2ScaleOffset = 64 * 64;
constexpr int64_t kQ2PairOffset = kQ2ScaleOffset + 16 * 64;
constexpr int64_t kQ2DOffset = kQ2PairOffset + 8 * 64;
constexpr int64_t kQ2PanelBlockBytes = kQ2DOffset + 2 * 64;  // 5760 per super-block and group

void PackQ2_KGroup(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t b0, int64_t nbk,
                   uint8_t* out) {
  const __m256i low2 = _mm256_set1_epi8(0x03);
  alignas(64) int32_t sc32[16][16];  // [sub-block][row]
  alignas(64) int32_t m32[16][16];
  auto row = [&](const uint8_t* p, uint8_t* q, int i) {
    if (p == nullptr) {
      for (int g = 0; g < 16; ++g) sc32[g][i] = m32[g][i] = 0;
      return;
    }
    // Element 128n + 32j + l: bits 2j..2j+1 of qs[32n + l].
    for (int n = 0; n < 2; ++n) {
      const __m256i qs = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(p + offsetof(BlockQ2_K, qs) + 32 * n));
      for (int j = 0; j < 4; ++j) {
        _mm256_store_si256(reinterpret_cast<__m256i*>(q + 128 * n + 32 * j),
                           _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), low2));
      }
    }
    for (int g = 0; g < 16; ++g) {
      sc32[g][i] = p[offsetof(BlockQ2_K, scales) + g] & 0x0F;
      m32[g][i] = p[offsetof(BlockQ2_K, scales) + g] >> 4;
    }
  };
  auto tail = [&](const uint8_t* blk, __mmask16 present, __m512i offsets, uint8_t* o) {
    for (int g = 0; g < 16; ++g) {
      _mm512_store_si512(o + kQ2ScaleOffset + 64 * g, _mm512_load_si512(sc32[g]));
    }
    for (int p = 0; p < 8; ++p) {
      _mm512_store_si512(o + kQ2PairOffset + 64 * p,
                         _mm512_or_si512(_mm512_load_si512(m32[2 * p]),
                                         _mm512_slli_epi32(_mm512_load_si512(m32[2 * p + 1]), 16)));
    }
    // d | dmin << 16: the dword at offset 80 of each row's block.
    const __m512i dm = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), present, offsets,
                                                   blk + offsetof(BlockQ2_K, d), 1);
    _mm512_store_ps(o + kQ2DOffset, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm)));
    _mm512_store_ps(o + kQ2DOffset + 64,
                    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16))));
  };
  PackByteValueGroup<sizeof(BlockQ2_K), kQ2PanelBlockBytes>(w, w_row_bytes, n_rows, b0, nbk, out,
                                                            row, tail);
}

struct Q2KPanel {
  static constexpr int kSubBlocks = 16, kSlices = 4;
  static constexpr int64_t kBlockBytes = kQ2PanelBlockBytes;
  static constexpr int64_t kScaleOffset = kQ2ScaleOffset, kPairOffset = kQ2PairOffset;
  static constexpr int64_t kDOffset = kQ2DOffset;
  static __m512 Finish(const uint8_t* d, __m512i sumi, __m512i summ) {
    return _mm512_fmsub_ps(_mm512_load_ps(d), _mm512_cvtepi32_ps(sumi),
                           _mm512_mul_ps(_mm512_load_ps(d + 64), _mm512_cvtepi32_ps(summ)));
  }
};
template <int NR, int NT>
using Q2KMicro = KMicro<Q2KPanel>::Fn<NR, NT>;

// ---- IQ4_XS weights x kQ8K activations
//
// Q4_K's panel shape: per super-block and group of 16 rows, the values u = table[index] + 128
// (unsigned 1..241) in column order (vector 8s + k: columns 32s + 4k..4k+3 of sub-block s, lane
// i = row i), the 8 scales ls[s] - 32 as int32 lanes, the pairs (ls[s] - 32, ls[s] - 32) as int16
// words for the offset, and d. With value = d * (ls[s] - 32) * table[index], a row's super-block
// adds dx * (d * total), total = sum_s sc[s] * sum u x - 128 * sum_s sc[s] * (bsum[2s] +
// bsum[2s + 1]), an exact integer -- the one the decoding kernel (IQ4_XSK, kernels_avx512.cc)
// sums, with the same float steps.
constexpr int64_t kIQ4XSScaleOffset = 64 * 64;
constexpr int64_t kIQ4XSPairOffset = kIQ4XSScaleOffset + 8 * 64;
constexpr int64_t kIQ4XSDOffset = kIQ4XSPairOffset + 8 * 64;
constexpr int64_t kIQ4XSPanelBlockBytes = kIQ4XSDOffset + 64;  // 5184 per super-block and group

void PackIQ4_XSGroup(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t b0, int64_t nbk,
                     uint8_t* out) {
  const __m256i table = _mm256_broadcastsi128_si256(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlUnsigned.data())));
  const __m128i nib = _mm_set1_epi8(0x0F);
  alignas(64) int32_t sc32[8][16];  // [sub-block][row]
  auto row = [&](const uint8_t* p, uint8_t* q, int i) {
    if (p == nullptr) {
      for (int s = 0; s < 8; ++s) sc32[s][i] = 0;
      return;
    }
    for (int s = 0; s < 8; ++s) {  // elements 32s + j (low nibbles) and 32s + 16 + j (high)
      const __m128i v =
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + offsetof(BlockIQ4_XS, qs) + 16 * s));
      const __m256i idx =
          _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), nib), _mm_and_si128(v, nib));
      _mm256_store_si256(reinterpret_cast<__m256i*>(q + 32 * s), _mm256_shuffle_epi8(table, idx));
    }
    uint16_t scales_h;
    std::memcpy(&scales_h, p + offsetof(BlockIQ4_XS, scales_h), 2);
    const uint8_t* scales_l = p + offsetof(BlockIQ4_XS, scales_l);
    for (int s = 0; s < 8; ++s) {
      const int ls = (scales_l[s / 2] >> (4 * (s % 2)) & 15) | (scales_h >> (2 * s) & 3) << 4;
      sc32[s][i] = ls - 32;
    }
  };
  auto tail = [&](const uint8_t* blk, __mmask16 present, __m512i offsets, uint8_t* o) {
    const __m512i low16 = _mm512_set1_epi32(0xFFFF);
    for (int s = 0; s < 8; ++s) {
      const __m512i sc = _mm512_load_si512(sc32[s]);
      _mm512_store_si512(o + kIQ4XSScaleOffset + 64 * s, sc);
      _mm512_store_si512(o + kIQ4XSPairOffset + 64 * s,
                         _mm512_or_si512(_mm512_and_si512(sc, low16), _mm512_slli_epi32(sc, 16)));
    }
    // d: the fp16 at each row's block start (the low half of its first dword).
    const __m512i dw =
        _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), present, offsets, blk, 1);
    _mm512_store_ps(o + kIQ4XSDOffset, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dw)));
  };
  PackByteValueGroup<sizeof(BlockIQ4_XS), kIQ4XSPanelBlockBytes>(w, w_row_bytes, n_rows, b0, nbk,
                                                                 out, row, tail);
}

struct IQ4XSPanel {
  static constexpr int kSubBlocks = 8, kSlices = 8;
  static constexpr int64_t kBlockBytes = kIQ4XSPanelBlockBytes;
  static constexpr int64_t kScaleOffset = kIQ4XSScaleOffset, kPairOffset = kIQ4XSPairOffset;
  static constexpr int64_t kDOffset = kIQ4XSDOffset;
  static __m512 Finish(const uint8_t* d, __m512i sumi, __m512i corr) {
    const __m512i total = _mm512_sub_epi32(sumi, _mm512_slli_epi32(corr, 7));
    return _mm512_mul_ps(_mm512_load_ps(d), _mm512_cvtepi32_ps(total));
  }
};
template <int NR, int NT>
using IQ4XSMicro = KMicro<IQ4XSPanel>::Fn<NR, NT>;

// Q3_K (value = d * sc[s] * q3, q3 in [-4, 3], 16 sub-blocks of 16) in Q6_K's panel: q = q3 + 32
// (28..35) and the signed scales as Q6_K's, so Q6KMicro's exact total sum_s sc[s] * sum q3 x and
// float step (v = d * total, acc += dx * v) are DotQ3_KRef's.
void PackQ3_KGroup(const uint8_t* w, int64_t w_row_bytes, int64_t n_rows, int64_t b0, int64_t nbk,
                   uint8_t* out) {
  const __m256i low2 = _mm256_set1_epi8(0x03), one = _mm256_set1_epi8(0x01);
  const __m256i base = _mm256_set1_epi8(28);
  alignas(64) int32_t sc32[16][16];  // [sub-block][row]
  auto row = [&](const uint8_t* p, uint8_t* q, int i) {
    if (p == nullptr) {
      for (int g = 0; g < 16; ++g) sc32[g][i] = 0;
      return;
    }
    // Element 128n + 32j + l: bits 2j..2j+1 of qs[32n + l], high bit 4n + j of hmask[l].
    const __m256i hm =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + offsetof(BlockQ3_K, hmask)));
    for (int n = 0; n < 2; ++n) {
      const __m256i qs = _mm256_loadu_si256(
          reinterpret_cast<const __m256i*>(p + offsetof(BlockQ3_K, qs) + 32 * n));
      for (int j = 0; j < 4; ++j) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * j), low2);
        const __m256i h = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * n + j), one);
        _mm256_store_si256(reinterpret_cast<__m256i*>(q + 128 * n + 32 * j),
                           _mm256_add_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(h, 2)), base));
      }
    }
    uint64_t fields[2];
    Q3_KScaleFields(p + offsetof(BlockQ3_K, scales), &fields[0], &fields[1]);
    uint8_t bytes[16];
    std::memcpy(bytes, fields, sizeof bytes);
    for (int g = 0; g < 16; ++g) sc32[g][i] = bytes[g] - 32;
  };
  auto tail = [&](const uint8_t* blk, __mmask16 present, __m512i offsets, uint8_t* o) {
    __m512i sc[16];
    for (int g = 0; g < 16; ++g) sc[g] = _mm512_load_si512(sc32[g]);
    StoreQ6PanelScalesAndD<sizeof(BlockQ3_K)>(sc, blk, present, offsets, o);
  };
  PackByteValueGroup<sizeof(BlockQ3_K), kQ6PanelBlockBytes>(w, w_row_bytes, n_rows, b0, nbk, out,
                                                            row, tail);
}

// Q6_K's panel: 16 sub-blocks of 16 columns; the pairs are the scales (sc[2p], sc[2p + 1]) for
// the -32 offset; v = d * (sumi - 32 * corr).
struct Q6KPanel {
  static constexpr int kSubBlocks = 16, kSlices = 4;
  static constexpr int64_t kBlockBytes = kQ6PanelBlockBytes;
  static constexpr int64_t kScaleOffset = kQ6ScaleOffset, kPairOffset = kQ6PairOffset;
  static constexpr int64_t kDOffset = kQ6DOffset;
  static __m512 Finish(const uint8_t* d, __m512i sumi, __m512i corr) {
    const __m512i total = _mm512_sub_epi32(sumi, _mm512_slli_epi32(corr, 5));
    return _mm512_mul_ps(_mm512_load_ps(d), _mm512_cvtepi32_ps(total));
  }
};
template <int NR, int NT>
using Q6KMicro = KMicro<Q6KPanel>::Fn<NR, NT>;

// ---- Q8_0 and Q4_0 weights in the panel layout (packed once at load; kernels_internal.h)
//
// The weights are already in the form the micro-kernel above wants, short of Q4_0's nibble split
// and the scales' conversion to float, so nothing is packed per call. Few tokens (decoding, a
// batch of sequences decoding together) run DirectMicro on the panels in memory, splitting
// nibbles in registers; many tokens (Q4_0) first split each chunk's nibbles into an L1 panel for
// QMicro, as the split would otherwise be repeated for every 4 tokens. Both compute each output
// as QMicro does -- per block, the integer sum (exact, in any order), then v = sum * dx - off * ds
// and acc += v * d_w as two FMAs, blocks in order -- so a token's outputs are the same bits
// whichever path, micro-kernel shape, chunking or thread count computed them.

// kMin: Q5_1's min instead of an offset (blocks of kPayload + a d | m vector, unpaired).
// kTable: IQ4_NL, Q4_0's panel whose nibbles index the table; VPSHUFB looks up the table plus 128
// (unsigned 1..241) and the offset 128 comes off as for Q8_0.
struct PanelsQ8_0 {
  static constexpr int64_t kPayload = 512;
  static constexpr float kOffset = 128.0f;
  static constexpr bool kMin = false, kTable = false;
};
struct PanelsQ4_0 {
  static constexpr int64_t kPayload = 256;
  static constexpr float kOffset = 8.0f;
  static constexpr bool kMin = false, kTable = false;
};
struct PanelsIQ4_NL {
  static constexpr int64_t kPayload = 256;
  static constexpr float kOffset = 128.0f;
  static constexpr bool kMin = false, kTable = true;
};
struct PanelsQ5_0 {
  static constexpr int64_t kPayload = 320;
  static constexpr float kOffset = 16.0f;
  static constexpr bool kMin = false, kTable = false;
};
struct PanelsQ5_1 {
  static constexpr int64_t kPayload = 320;
  static constexpr float kOffset = 0.0f;
  static constexpr bool kMin = true, kTable = false;
};

// IQ4_NL's table plus 128 in every 128-bit lane, for VPSHUFB.
inline __m512i Iq4nlTable128() {
  return _mm512_broadcast_i32x4(
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlUnsigned.data())));
}

// Where block b of a group is (kernels_internal.h), and its stream bytes per block.
template <class W>
PanelBlock BlockAt(int64_t nb, int64_t b) {
  if constexpr (W::kMin) {
    return {b * kQ5_1PanelBlockBytes, b * kQ5_1PanelBlockBytes + W::kPayload};
  } else {
    return PanelBlockAt(W::kPayload, nb, b);
  }
}
template <class W>
constexpr int64_t kStreamBlockBytes = W::kMin ? kQ5_1PanelBlockBytes : W::kPayload + 32;

// Q5_0 panel vector k + 1's nibbles (v) as two vectors of 5-bit values q + 16: the low nibbles
// (elements 4k..4k+3 of each lane's row) and the high ones (16 + 4k..), each byte given 16 where
// the regrouped fifth bits (`bits`, panel vector 0) have bit 2k, resp. 2k + 1, set.
inline void Q5Values(__m512i v, __m512i bits, int k, __m512i& lo, __m512i& hi) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const __m512i sixteen = _mm512_set1_epi8(16);
  lo = _mm512_and_si512(v, nibble);
  hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
  const __mmask64 lo5 =
      _mm512_test_epi8_mask(bits, _mm512_set1_epi8(static_cast<char>(1 << (2 * k))));
  const __mmask64 hi5 =
      _mm512_test_epi8_mask(bits, _mm512_set1_epi8(static_cast<char>(1 << (2 * k + 1))));
  lo = _mm512_mask_add_epi8(lo, lo5, lo, sixteen);
  hi = _mm512_mask_add_epi8(hi, hi5, hi, sixteen);
}

struct DirectArgs {
  const uint8_t* groups;  // the first group of this row tile
  int64_t group_bytes;    // 16 rows of the row layout
  const uint8_t* x;       // kQ8 rows, token t at x + t * x_stride
  int64_t x_stride;
  int64_t cols, nb;
  int64_t b0, nbk;  // blocks of this chunk
  float* y;         // token t's rows of this row tile at y + t * ldy
  int64_t ldy;
  __mmask16 last_mask;
  bool accumulate;
};

// Decoding: software prefetch this far ahead in each group's stream. DecodeStepFused (Qwen2.5-0.5B,
// 2 threads, DRAM), GB/s panels (row-layout kernels in the same run), machine in its ~80 GB/s
// state: no prefetch Q4_0 45 (66), 4 KiB 62 (61), 8 KiB 75 (62), 12 KiB 76 (65), 16 KiB 72 (64);
// in its ~52 GB/s state 8 KiB gave Q4_0 50-52 (43) and Q8_0 51 (40). Two groups in flight (two
// streams per core) instead of one were slower in every case.
// The hint is non-temporal: the weights are read once, and with T0 a decoding step's 0.3-0.7 GB
// of them pushed everything else out of L2 -- the KV cache a core reads back each token, the
// activations, the residual. Matrix products alone did not show it (within noise); whole steps
// did: `yunzhi bench -t 2 -p 1 -n 128 --bandwidth`, alternated, ~50 GB/s state, T0 -> NTA: Q4_0
// 92.4-92.9% -> 95.0-99.8% of the bound, Q8_0 93.5 -> 96.2%, Llama-3.2-1B Q4_0 89.5 -> 95.8%.
constexpr int64_t kDecodePrefetchBytes = 8192;
// One block's worth of a group's stream, kDecodePrefetchBytes ahead of `block` (a line per 64
// bytes: the blocks of a group are contiguous).
inline void PrefetchAhead(const uint8_t* block, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(block + kDecodePrefetchBytes + o), _MM_HINT_NTA);
  }
}

template <class W>
struct DirectMicro {
  template <int NR, int NT>
  struct K {
    static void Run(const DirectArgs& a, int64_t t) {
      const bool prefetch = DecodeSoftwarePrefetch();
      ActQ8Row x[NT];
      float* y[NT];
      for (int j = 0; j < NT; ++j) {
        x[j] = ViewQ8(a.x + (t + j) * a.x_stride, a.cols);
        y[j] = a.y + (t + j) * a.ldy;
      }
      __m512 acc[NR][NT];
      LoadAcc<NR, NT>(acc, y, a.last_mask, a.accumulate);
      const __m512i nibble = _mm512_set1_epi8(0x0F);
      [[maybe_unused]] const __m512i table = Iq4nlTable128();
      for (int64_t b = a.b0; b < a.b0 + a.nbk; ++b) {
        const PanelBlock at = BlockAt<W>(a.nb, b);
        const uint8_t* pw = a.groups + at.payload;
        if (NR == 1 && prefetch) {
          // Each group is one sequential stream of kStreamBlockBytes<W> bytes per block.
          const uint8_t* ahead = a.groups + b * kStreamBlockBytes<W> + kDecodePrefetchBytes;
#pragma GCC unroll 4
          for (int i = 0; i < NR; ++i) {
            for (int64_t o = 0; o < kStreamBlockBytes<W>; o += 64) {
              _mm_prefetch(reinterpret_cast<const char*>(ahead + i * a.group_bytes + o),
                           _MM_HINT_NTA);
            }
          }
        }
        __m512i dot[NR][NT];
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
          for (int i = 0; i < NR; ++i) dot[i][j] = _mm512_setzero_si512();
        if constexpr (W::kPayload == 256 || W::kPayload == 320) {
          // Q5_0: the fifth bits' vector, then Q4_0's four nibble vectors.
          constexpr int64_t kNibbles = W::kPayload == 320 ? 64 : 0;
          __m512i bits[NR];
          if constexpr (W::kPayload == 320) {
#pragma GCC unroll 4
            for (int i = 0; i < NR; ++i) bits[i] = _mm512_loadu_si512(pw + i * a.group_bytes);
          }
#pragma GCC unroll 4
          for (int k = 0; k < 4; ++k) {
            __m512i lo[NR], hi[NR];
#pragma GCC unroll 4
            for (int i = 0; i < NR; ++i) {
              const __m512i v = _mm512_loadu_si512(pw + i * a.group_bytes + kNibbles + 64 * k);
              if constexpr (W::kPayload == 320) {
                Q5Values(v, bits[i], k, lo[i], hi[i]);
              } else {
                lo[i] = _mm512_and_si512(v, nibble);
                hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
                if constexpr (W::kTable) {
                  lo[i] = _mm512_shuffle_epi8(table, lo[i]);
                  hi[i] = _mm512_shuffle_epi8(table, hi[i]);
                }
              }
            }
#pragma GCC unroll 8
            for (int j = 0; j < NT; ++j) {
              const __m512i xl = Broadcast4(x[j].qs + 32 * b + 4 * k);
              const __m512i xh = Broadcast4(x[j].qs + 32 * b + 16 + 4 * k);
#pragma GCC unroll 4
              for (int i = 0; i < NR; ++i) {
                dot[i][j] = _mm512_dpbusd_epi32(dot[i][j], lo[i], xl);
                dot[i][j] = _mm512_dpbusd_epi32(dot[i][j], hi[i], xh);
              }
            }
          }
        } else {
#pragma GCC unroll 8
          for (int k = 0; k < 8; ++k) {
            __m512i wv[NR];
#pragma GCC unroll 4
            for (int i = 0; i < NR; ++i)
              wv[i] = _mm512_loadu_si512(pw + i * a.group_bytes + 64 * k);
#pragma GCC unroll 8
            for (int j = 0; j < NT; ++j) {
              const __m512i xv = Broadcast4(x[j].qs + 32 * b + 4 * k);
#pragma GCC unroll 4
              for (int i = 0; i < NR; ++i) dot[i][j] = _mm512_dpbusd_epi32(dot[i][j], wv[i], xv);
            }
          }
        }
        __m512 wd[NR], wm[NR];
#pragma GCC unroll 4
        for (int i = 0; i < NR; ++i) {
          if constexpr (W::kMin) {
            const __m512i dm = _mm512_loadu_si512(a.groups + i * a.group_bytes + at.scales);
            wd[i] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
            wm[i] = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
          } else {
            wd[i] = _mm512_cvtph_ps(_mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(a.groups + i * a.group_bytes + at.scales)));
          }
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m512 dx = _mm512_set1_ps(x[j].d[b]);
          if constexpr (W::kMin) {
            // sum (q d_w + m_w) x = d_w (dx sum q xq) + m_w ds.
            const __m512 ds = _mm512_set1_ps(x[j].ds[b]);
#pragma GCC unroll 4
            for (int i = 0; i < NR; ++i) {
              const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(dot[i][j]), dx);
              acc[i][j] = _mm512_fmadd_ps(v, wd[i], acc[i][j]);
              acc[i][j] = _mm512_fmadd_ps(ds, wm[i], acc[i][j]);
            }
          } else {
            const __m512 m = _mm512_set1_ps(-W::kOffset * x[j].ds[b]);
#pragma GCC unroll 4
            for (int i = 0; i < NR; ++i) {
              const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[i][j]), dx, m);
              acc[i][j] = _mm512_fmadd_ps(v, wd[i], acc[i][j]);
            }
          }
        }
      }
      StoreAcc<NR, NT>(acc, y, a.last_mask);
    }
  };
};

// Q4_0 (kTable: IQ4_NL) panel blocks [b0, b0 + nbk) of one group into QMicro's L1 panel format.
template <bool kTable>
void SplitQ4_0Group(const uint8_t* group, int64_t nb, int64_t b0, int64_t nbk, uint8_t* out) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  [[maybe_unused]] const __m512i table = Iq4nlTable128();
  for (int64_t b = 0; b < nbk; ++b) {
    const PanelBlock at = PanelBlockAt(PanelsQ4_0::kPayload, nb, b0 + b);
    const uint8_t* p = group + at.payload;
    uint8_t* o = out + b * kQPanelBlockBytes;
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i v = _mm512_loadu_si512(p + 64 * k);
      __m512i lo = _mm512_and_si512(v, nibble);
      __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
      if constexpr (kTable) {
        lo = _mm512_shuffle_epi8(table, lo);
        hi = _mm512_shuffle_epi8(table, hi);
      }
      _mm512_store_si512(o + 64 * k, lo);
      _mm512_store_si512(o + 64 * (4 + k), hi);
    }
    _mm512_store_ps(
        o + 512,
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + at.scales))));
  }
}

// Q5_0 panel blocks [b0, b0 + nbk) of one group into QMicro's L1 panel format (values q + 16).
void SplitQ5_0Group(const uint8_t* group, int64_t nb, int64_t b0, int64_t nbk, uint8_t* out) {
  for (int64_t b = 0; b < nbk; ++b) {
    const PanelBlock at = PanelBlockAt(PanelsQ5_0::kPayload, nb, b0 + b);
    const uint8_t* p = group + at.payload;
    uint8_t* o = out + b * kQPanelBlockBytes;
    const __m512i bits = _mm512_loadu_si512(p);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m512i lo, hi;
      Q5Values(_mm512_loadu_si512(p + 64 + 64 * k), bits, k, lo, hi);
      _mm512_store_si512(o + 64 * k, lo);
      _mm512_store_si512(o + 64 * (4 + k), hi);
    }
    _mm512_store_ps(
        o + 512,
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + at.scales))));
  }
}

// Decoding and batches of a few sequences: one group at a time, every block, streamed from
// memory with the prefetch above; the tokens in tiles of up to kStreamTokens, each tile a pass
// over the group (16 rows x cols: 8-80 KiB, from L1/L2 after the first).
constexpr int kStreamTokens = 8;
// Up to this many tokens per call; more go through the chunked path below. One thread, 4864x896
// from DRAM, GFLOP/s with the threshold at 8 / 32 / unlimited: Q4_0 12 tokens 371 / 623 / 617,
// 32 tokens 470 / 656 / 667, 512 tokens 755 / 769 / 670 (Q8_0 alike).
constexpr int64_t kStreamMaxTokens = 32;

template <class W>
void StreamPanels(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t nb = a.cols / 32;
  const int64_t group_bytes = 16 * a.w_row_bytes;
  const auto& fns = MicroTable<DirectMicro<W>::template K, 1, kStreamTokens, DirectArgs>::kFns;
  for (int64_t r = r0; r < r1; r += 16) {
    const DirectArgs d{a.w + (r / 16) * group_bytes,
                       group_bytes,
                       a.x,
                       a.x_stride_bytes,
                       a.cols,
                       nb,
                       0,
                       nb,
                       a.y + r,
                       a.ldy,
                       RowMask(std::min<int64_t>(16, r1 - r)),
                       false};
    ForEachTokenTile(t0, t1, kStreamTokens,
                     [&](int64_t t, int nt) { fns[static_cast<size_t>(nt - 1)](d, t); });
  }
}

template <class W>
void GemmPanels(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t n_tokens = t1 - t0;
  if (n_tokens <= kStreamMaxTokens) {
    StreamPanels<W>(a, r0, r1, t0, t1);
    return;
  }
  const int64_t nb = a.cols / 32;
  const int64_t group_bytes = 16 * a.w_row_bytes;
  // Q4_0 and Q5_0 split each chunk's nibbles into an L1 panel once for all token tiles; Q8_0
  // panels are already bytes, read in place, and Q5_1 (rare: a Q5_K_M file's odd-width rows)
  // runs the direct kernel too.
  const bool split = W::kPayload != 512 && !W::kMin;
  const int64_t chunk = std::min<int64_t>(kQChunkBlocks, nb);
  uint8_t* panel = nullptr;
  int64_t panel_group_bytes = 0;
  if (split) {
    thread_local PanelBuffer buffer;
    panel_group_bytes = chunk * kQPanelBlockBytes;
    panel = buffer.Get(kQGroups * panel_group_bytes);
  }
  for (int64_t r = r0; r < r1; r += 16 * kQGroups) {
    const int64_t n_rows = std::min<int64_t>(16 * kQGroups, r1 - r);
    const int nr = static_cast<int>((n_rows + 15) / 16);
    const uint8_t* groups = a.w + (r / 16) * group_bytes;
    const __mmask16 last_mask = RowMask(n_rows - 16 * (nr - 1));
    for (int64_t b0 = 0; b0 < nb; b0 += chunk) {
      const int64_t nbk = std::min(chunk, nb - b0);
      if (split) {
        using L1 = std::conditional_t<W::kPayload == 320, PanelQ5_0,
                                      std::conditional_t<W::kTable, PanelsIQ4_NL, PanelQ4_0>>;
        for (int g = 0; g < nr; ++g) {
          uint8_t* dst = panel + g * panel_group_bytes;
          if constexpr (W::kPayload == 320) {
            SplitQ5_0Group(groups + g * group_bytes, nb, b0, nbk, dst);
          } else {
            SplitQ4_0Group<W::kTable>(groups + g * group_bytes, nb, b0, nbk, dst);
          }
        }
        const QArgs q{panel, panel_group_bytes, a.x,   a.x_stride_bytes, a.cols, b0,
                      nbk,   a.y + r,           a.ldy, last_mask,        b0 > 0};
        const auto& fns = MicroTable<QMicro<L1>::template K, kQGroups, kQTokens, QArgs>::kFns;
        ForEachTokenTile(t0, t1, kQTokens, [&](int64_t t, int nt) {
          fns[static_cast<size_t>((nr - 1) * kQTokens + (nt - 1))](q, t);
        });
        continue;
      }
      const DirectArgs d{groups, group_bytes, a.x,   a.x_stride_bytes, a.cols, nb, b0,
                         nbk,    a.y + r,     a.ldy, last_mask,        b0 > 0};
      const auto& fns =
          MicroTable<DirectMicro<W>::template K, kQGroups, kQTokens, DirectArgs>::kFns;
      ForEachTokenTile(t0, t1, kQTokens, [&](int64_t t, int nt) {
        fns[static_cast<size_t>((nr - 1) * kQTokens + (nt - 1))](d, t);
      });
    }
  }
}

// ---- Q4_K weights in the panel layout (kQ4_KP, packed once at load; kernels_internal.h)
//
// Decoding and batches of up to kKStreamMaxTokens tokens: DirectKMicro reads each group's
// super-blocks in place, one sequential stream per group, splitting nibbles and unpacking the
// scales in registers; every sub-block's integer sum of 16 rows lands in the lanes of one vector
// (VPDPBUSD against a broadcast 4-byte slice of the activations), so nothing is reduced across
// lanes. Longer inputs split each chunk into QKMicro's L1 panel (as the per-call packing of
// row-layout Q4_K does, without its transposes). Both compute QKMicro's exact integers and float
// steps, so a token gets the same bits on every path (and as with row-layout Q4_K).
constexpr int kKStreamTokens = 4;
// GemmTokens 1536x1536 (2 threads, fast state), GFLOP/s with the split from 9 / from 33 tokens:
// Q6_K 12 tokens 339-346 / 296-299, 16: 399-403 / 357-361, 32: 589-623 / 473-492; Q4_K 12:
// 394-498 / 453-489, 16: 517-578 / 557-570, 32: 794-819 / 729-750.
constexpr int64_t kKStreamMaxTokens = 8;

struct DirectKArgs {
  const uint8_t* group;  // the row tile's group: super-block b at group + b * 16 * its bytes
  const uint8_t* x;      // kQ8K rows, token t at x + t * x_stride
  int64_t x_stride;
  int64_t cols, nb;
  float* y;  // token t's rows of this row tile at y + t * ldy
  int64_t ldy;
  __mmask16 last_mask;
};

// Q5_K (kQ5): the same with each byte's fifth bit from the qh vectors (kernels_internal.h): the
// bit of sub-block sb's values in vector k's bytes is bit sb of qh vector k's, one VPTESTMB.
template <bool kQ5>
struct DirectKMicroOf {
  template <int NR, int NT>
  struct K {
    static_assert(NR == 1, "one group, one stream");
    static constexpr int64_t kBlockBytes = kQ5 ? kQ5KPanelBlockBytes : kQ4KPanelBlockBytes;
    static void Run(const DirectKArgs& a, int64_t t) {
      const bool prefetch = DecodeSoftwarePrefetch();
      ActQ8KRow x[NT];
      for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride, a.cols);
      __m512 acc[NT];
      for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
      const __m512i nibble = _mm512_set1_epi8(0x0F);
      const __m512i sixteen = _mm512_set1_epi8(16);
      for (int64_t b = 0; b < a.nb; ++b) {
        const uint8_t* blk = a.group + b * kBlockBytes;
        if (NT <= 2 && prefetch) PrefetchAhead(blk, kBlockBytes);
        const __m512i q0 = _mm512_load_si512(blk + kQ4KPanelScales);
        const __m512i q1 = _mm512_load_si512(blk + kQ4KPanelScales + 64);
        const __m512i q2 = _mm512_load_si512(blk + kQ4KPanelScales + 128);
        __m512i sumi[NT];
        for (int j = 0; j < NT; ++j) sumi[j] = _mm512_setzero_si512();
#pragma GCC unroll 1
        for (int sb = 0; sb < 8; ++sb) {
          const int c = sb / 2;
          const bool high = sb % 2 != 0;
          __m512i dot[NT];
          for (int j = 0; j < NT; ++j) dot[j] = _mm512_setzero_si512();
#pragma GCC unroll 8
          for (int k = 0; k < 8; ++k) {
            const __m512i v = _mm512_load_si512(blk + 64 * (8 * c + k));
            __m512i w = _mm512_and_si512(high ? _mm512_srli_epi16(v, 4) : v, nibble);
            if constexpr (kQ5) {
              const __mmask64 fifth =
                  _mm512_test_epi8_mask(_mm512_load_si512(blk + kQ5KPanelQh + 64 * k),
                                        _mm512_set1_epi8(static_cast<char>(1 << sb)));
              w = _mm512_mask_add_epi8(w, fifth, w, sixteen);
            }
#pragma GCC unroll 4
            for (int j = 0; j < NT; ++j) {
              dot[j] =
                  _mm512_dpbusd_epi32(dot[j], w, Broadcast4(x[j].qs + kQK_K * b + 32 * sb + 4 * k));
            }
          }
          __m512i sc, m;
          Q4_KScaleMin(q0, q1, q2, sb, sc, m);
          for (int j = 0; j < NT; ++j) {
            sumi[j] = _mm512_add_epi32(sumi[j], _mm512_mullo_epi32(dot[j], sc));
          }
        }
        const __m512i dm = _mm512_load_si512(blk + kQ4KPanelD);
        const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
        const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
        __m512i mpair[8];
        for (int sb = 0; sb < 8; ++sb) {
          __m512i sc, m;
          Q4_KScaleMin(q0, q1, q2, sb, sc, m);
          mpair[sb] = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
        }
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) {
          const int16_t* bs = x[j].bsums + (kQK_K / 16) * b;
          __m512i summ = _mm512_setzero_si512();
#pragma GCC unroll 8
          for (int sb = 0; sb < 8; ++sb) {
            summ = _mm512_dpwssd_epi32(summ, mpair[sb], Broadcast4(bs + 2 * sb));
          }
          __m512 v = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sumi[j]));
          v = _mm512_fnmadd_ps(dmin, _mm512_cvtepi32_ps(summ), v);
          acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(x[j].d[b]), v, acc[j]);
        }
      }
      for (int j = 0; j < NT; ++j)
        _mm512_mask_storeu_ps(a.y + (t + j) * a.ldy, a.last_mask, acc[j]);
    }
  };
};
template <int NR, int NT>
using DirectKMicro = DirectKMicroOf<false>::K<NR, NT>;
template <int NR, int NT>
using DirectK5Micro = DirectKMicroOf<true>::K<NR, NT>;

// Super-blocks [b0, b0 + nbk) of one Q4_K (Q5_K) panel group into QKMicro's L1 panel format.
template <bool kQ5>
void SplitKGroup(const uint8_t* group, int64_t /*nb*/, int64_t b0, int64_t nbk, uint8_t* out) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const __m512i sixteen = _mm512_set1_epi8(16);
  for (int64_t b = 0; b < nbk; ++b) {
    const uint8_t* blk = group + (b0 + b) * (kQ5 ? kQ5KPanelBlockBytes : kQ4KPanelBlockBytes);
    uint8_t* o = out + b * kQKPanelBlockBytes;
    for (int c = 0; c < 4; ++c) {
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m512i v = _mm512_load_si512(blk + 64 * (8 * c + k));
        __m512i lo = _mm512_and_si512(v, nibble);
        __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
        if constexpr (kQ5) {
          const __m512i qh = _mm512_load_si512(blk + kQ5KPanelQh + 64 * k);
          lo = _mm512_mask_add_epi8(
              lo, _mm512_test_epi8_mask(qh, _mm512_set1_epi8(static_cast<char>(1 << (2 * c)))),
              lo, sixteen);
          hi = _mm512_mask_add_epi8(
              hi,
              _mm512_test_epi8_mask(qh, _mm512_set1_epi8(static_cast<char>(1 << (2 * c + 1)))),
              hi, sixteen);
        }
        _mm512_store_si512(o + 64 * (16 * c + k), lo);
        _mm512_store_si512(o + 64 * (16 * c + 8 + k), hi);
      }
    }
    StoreQ4_KScales(_mm512_load_si512(blk + kQ4KPanelScales),
                    _mm512_load_si512(blk + kQ4KPanelScales + 64),
                    _mm512_load_si512(blk + kQ4KPanelScales + 128),
                    _mm512_load_si512(blk + kQ4KPanelD), o);
  }
}

// ---- Q6_K weights in the panel layout (kQ6_KP, packed once at load; kernels_internal.h)
//
// As Q4_K's: DirectK6Micro reads each group in place for up to kKStreamMaxTokens tokens, longer
// inputs split chunks into Q6KMicro's L1 panel; both compute Q6KMicro's exact total and float
// steps (and so the row layout's). Payload vector k (< 32) holds ql bytes 4k..4k+3 of 16 rows: in
// half h = k / 16, with kk = k % 16, the low nibbles are columns 128h + 4kk.. and the high ones
// 128h + 64 + 4kk..; their 2 high bits sit in qh vector 32 + 8h + kk % 8, at bits 2 * (kk / 8)
// and 4 + 2 * (kk / 8) of each byte. With an odd super-block count a group starts 32 bytes off a
// line (16 x 210 bytes per super-block), so these kernels load unaligned.

// The 6-bit values of payload vector k (< 32) from the low (kHigh false) or high nibbles.
template <bool kHigh>
inline __m512i Q6Values(const uint8_t* payload, int k) {
  const int h = k / 16, kk = k % 16;
  const __m512i v = _mm512_loadu_si512(payload + 64 * k);
  const __m512i q = _mm512_loadu_si512(payload + 64 * (32 + 8 * h + kk % 8));
  const int shift = (kHigh ? 4 : 0) + 2 * (kk / 8);  // the 2 bits' position; they go to bits 4-5
  const __m512i high2 =
      shift <= 4 ? _mm512_slli_epi16(q, 4 - shift) : _mm512_srli_epi16(q, shift - 4);
  const __m512i low4 = kHigh ? _mm512_srli_epi16(v, 4) : v;
  return _mm512_or_si512(_mm512_and_si512(low4, _mm512_set1_epi8(0x0F)),
                         _mm512_and_si512(high2, _mm512_set1_epi8(0x30)));
}

// Sub-block g's int8 scale in each lane (row) from the payload's 4 scale vectors.
inline __m512i Q6Scale(const uint8_t* payload, int g) {
  const __m512i dw = _mm512_loadu_si512(payload + 64 * (48 + g / 4));
  return _mm512_srai_epi32(_mm512_slli_epi32(dw, 24 - 8 * (g % 4)), 24);
}

// The 8 vectors of scale pairs (sc[2p], sc[2p + 1]) as int16 words, from the 4 scale vectors:
// each dword's bytes b0..b3 give the pairs (b0, b1) and (b2, b3), sign-extended.
inline void Q6ScalePairs(const uint8_t* payload, __m512i (&pair)[8]) {
  const __m512i low16 = _mm512_set1_epi32(0xFFFF);
  for (int q = 0; q < 4; ++q) {
    const __m512i dw = _mm512_loadu_si512(payload + 64 * (48 + q));
    const __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(dw, 8), 8);  // words b0, b2
    const __m512i odd = _mm512_srai_epi16(dw, 8);                         // words b1, b3
    pair[2 * q] = _mm512_or_si512(_mm512_and_si512(even, low16), _mm512_slli_epi32(odd, 16));
    pair[2 * q + 1] = _mm512_or_si512(_mm512_srli_epi32(even, 16), _mm512_andnot_si512(low16, odd));
  }
}

// The float steps of a super-block whose values carry an offset of 2^kShift (Q6_K 32, Q3_K 4,
// IQ4_XS 128) for the 16 rows of a panel group: the offset comes off the exact sum through the
// activation sums (`pair`: each row's scale words against pairs of bsums), then v = d * total,
// acc += dx * v, as the row kernels and the per-call panels compute them.
template <int kShift, int NT>
inline void OffsetSuperBlockStep(const ActQ8KRow (&x)[NT], int64_t b, const __m512i (&sumi)[NT],
                                 const __m512i (&pair)[8], __m512 d, __m512 (&acc)[NT]) {
#pragma GCC unroll 4
  for (int j = 0; j < NT; ++j) {
    const int16_t* bs = x[j].bsums + (kQK_K / 16) * b;
    __m512i corr = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) corr = _mm512_dpwssd_epi32(corr, pair[q], Broadcast4(bs + 2 * q));
    const __m512i total = _mm512_sub_epi32(sumi[j], _mm512_slli_epi32(corr, kShift));
    const __m512 v = _mm512_mul_ps(d, _mm512_cvtepi32_ps(total));
    acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(x[j].d[b]), v, acc[j]);
  }
}

template <int NR, int NT>
struct DirectK6Micro {
  static_assert(NR == 1, "one group, one stream");
  static void Run(const DirectKArgs& a, int64_t t) {
    ActQ8KRow x[NT];
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride, a.cols);
    __m512 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < a.nb; ++b) {
      const PanelBlock at = PanelBlockAt(kQ6KPanelPayload, a.nb, b);
      const uint8_t* p = a.group + at.payload;
      // Payload and d of a pair are contiguous: the stream advances a block's bytes per block.
      // Prefetched on every CPU, even where DecodeSoftwarePrefetch() is off: a pair's d values
      // follow both payloads, and without the prefetch Zen 4's hardware prefetcher left this
      // stream at a third of the read rate (Gemv 8960x1536 from DRAM, one core: 29.8 GB/s with
      // it, 9.2 without; Llama-3.2-1B Q6_K end to end 89-91% -> 27% of the bound).
      if (NT <= 2) PrefetchAhead(a.group + b * (kQ6KPanelPayload + 32), kQ6KPanelPayload + 32);
      __m512i sumi[NT];
      for (int j = 0; j < NT; ++j) sumi[j] = _mm512_setzero_si512();
#pragma GCC unroll 1
      for (int hq = 0; hq < 8; ++hq) {  // half h, quad kq: sub-blocks 8h + kq and 8h + 4 + kq
        const int h = hq / 4, kq = hq % 4;
        __m512i dot_lo[NT], dot_hi[NT];
        for (int j = 0; j < NT; ++j) dot_lo[j] = dot_hi[j] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k4 = 0; k4 < 4; ++k4) {
          const int kk = 4 * kq + k4, k = 16 * h + kk;
          const __m512i lo = Q6Values<false>(p, k), hi = Q6Values<true>(p, k);
#pragma GCC unroll 4
          for (int j = 0; j < NT; ++j) {
            const int8_t* xq = x[j].qs + kQK_K * b + 128 * h + 4 * kk;
            dot_lo[j] = _mm512_dpbusd_epi32(dot_lo[j], lo, Broadcast4(xq));
            dot_hi[j] = _mm512_dpbusd_epi32(dot_hi[j], hi, Broadcast4(xq + 64));
          }
        }
        const __m512i sc_lo = Q6Scale(p, 8 * h + kq), sc_hi = Q6Scale(p, 8 * h + 4 + kq);
        for (int j = 0; j < NT; ++j) {
          sumi[j] = _mm512_add_epi32(sumi[j], _mm512_mullo_epi32(dot_lo[j], sc_lo));
          sumi[j] = _mm512_add_epi32(sumi[j], _mm512_mullo_epi32(dot_hi[j], sc_hi));
        }
      }
      __m512i pair[8];
      Q6ScalePairs(p, pair);
      const __m512 d = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.group + at.scales)));
      OffsetSuperBlockStep<5>(x, b, sumi, pair, d, acc);
    }
    for (int j = 0; j < NT; ++j) _mm512_mask_storeu_ps(a.y + (t + j) * a.ldy, a.last_mask, acc[j]);
  }
};

// Super-blocks [b0, b0 + nbk) (of nb) of one panel group into Q6KMicro's L1 panel format.
void SplitQ6_KGroup(const uint8_t* group, int64_t nb, int64_t b0, int64_t nbk, uint8_t* out) {
  for (int64_t b = 0; b < nbk; ++b) {
    const PanelBlock at = PanelBlockAt(kQ6KPanelPayload, nb, b0 + b);
    const uint8_t* p = group + at.payload;
    uint8_t* o = out + b * kQ6PanelBlockBytes;
    for (int k = 0; k < 32; ++k) {  // columns 128h + 4kk.. and 128h + 64 + 4kk..
      const int h = k / 16, kk = k % 16;
      _mm512_store_si512(o + 64 * (32 * h + kk), Q6Values<false>(p, k));
      _mm512_store_si512(o + 64 * (32 * h + 16 + kk), Q6Values<true>(p, k));
    }
    for (int g = 0; g < 16; ++g) _mm512_store_si512(o + kQ6ScaleOffset + 64 * g, Q6Scale(p, g));
    __m512i pair[8];
    Q6ScalePairs(p, pair);
    for (int q = 0; q < 8; ++q) _mm512_store_si512(o + kQ6PairOffset + 64 * q, pair[q]);
    _mm512_store_ps(o + kQ6DOffset, _mm512_cvtph_ps(_mm256_loadu_si256(
                                        reinterpret_cast<const __m256i*>(group + at.scales))));
  }
}

// ---- IQ4_XS weights in the panel layout (kIQ4_XSP, packed once at load; kernels_internal.h)
//
// DirectIQ4XSMicro reads each group's super-blocks in place as DirectKMicro reads Q4_K's: per
// sub-block s, the low and high nibbles of its 4 vectors looked up by VPSHUFB in IQ4_NL's table
// plus 128 (IQ4XSPanel's values u), 8 VPDPBUSDs leaving the sub-block's sum of u x for 16 rows in
// the lanes of one vector, one VPMULLD by ls - 32 (unpacked in registers from the scales_l and
// scales_h vectors); the offset 128 comes off through the bsums as in IQ4XSPanel. So per
// super-block it computes the exact integer of IQ4XSMicro and of the row kernel (IQ4_XSK,
// kernels_avx512.cc), total = sum_s (ls - 32) * (sum u x - 128 * (bsum[2s] + bsum[2s + 1])), and
// their float steps (v = d * total, acc += dx * v). Longer inputs split each chunk into
// IQ4XSMicro's L1 panel.

// Sub-block s's ls - 32 in every lane, from the lanes' scales_l (sl) and d | scales_h << 16 (dh).
inline __m512i IQ4XSScale(__m512i sl, __m512i dh, int s) {
  const __m512i lo = _mm512_and_si512(_mm512_srli_epi32(sl, 4 * s), _mm512_set1_epi32(0x0F));
  const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(dh, 12 + 2 * s), _mm512_set1_epi32(0x30));
  return _mm512_sub_epi32(_mm512_or_si512(lo, hi), _mm512_set1_epi32(32));
}
// The int16 pair (sc, sc) in every lane, against a pair of bsums.
inline __m512i IQ4XSPair(__m512i sc) {
  return _mm512_or_si512(_mm512_and_si512(sc, _mm512_set1_epi32(0xFFFF)),
                         _mm512_slli_epi32(sc, 16));
}

template <int NR, int NT>
struct DirectIQ4XSMicro {
  static_assert(NR == 1, "one group, one stream");
  static void Run(const DirectKArgs& a, int64_t t) {
    const bool prefetch = DecodeSoftwarePrefetch();
    ActQ8KRow x[NT];
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride, a.cols);
    __m512 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
    const __m512i nibble = _mm512_set1_epi8(0x0F);
    const __m512i table = Iq4nlTable128();
    for (int64_t b = 0; b < a.nb; ++b) {
      const uint8_t* blk = a.group + b * kIQ4XSPBlockBytes;
      if (NT <= 2 && prefetch) PrefetchAhead(blk, kIQ4XSPBlockBytes);
      const __m512i sl = _mm512_load_si512(blk + kIQ4XSPScalesL);
      const __m512i dh = _mm512_load_si512(blk + kIQ4XSPDH);
      __m512i sumi[NT];
      for (int j = 0; j < NT; ++j) sumi[j] = _mm512_setzero_si512();
#pragma GCC unroll 1
      for (int s = 0; s < 8; ++s) {
        __m512i dot[NT];
        for (int j = 0; j < NT; ++j) dot[j] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          const __m512i v = _mm512_load_si512(blk + 64 * (4 * s + k));
          const __m512i lo = _mm512_shuffle_epi8(table, _mm512_and_si512(v, nibble));
          const __m512i hi =
              _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble));
#pragma GCC unroll 4
          for (int j = 0; j < NT; ++j) {
            const int8_t* xq = x[j].qs + kQK_K * b + 32 * s + 4 * k;
            dot[j] = _mm512_dpbusd_epi32(dot[j], lo, Broadcast4(xq));
            dot[j] = _mm512_dpbusd_epi32(dot[j], hi, Broadcast4(xq + 16));
          }
        }
        const __m512i sc = IQ4XSScale(sl, dh, s);
        for (int j = 0; j < NT; ++j) {
          sumi[j] = _mm512_add_epi32(sumi[j], _mm512_mullo_epi32(dot[j], sc));
        }
      }
      const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dh));
      __m512i pair[8];
      for (int s = 0; s < 8; ++s) pair[s] = IQ4XSPair(IQ4XSScale(sl, dh, s));
      OffsetSuperBlockStep<7>(x, b, sumi, pair, d, acc);
    }
    for (int j = 0; j < NT; ++j) _mm512_mask_storeu_ps(a.y + (t + j) * a.ldy, a.last_mask, acc[j]);
  }
};

// Super-blocks [b0, b0 + nbk) of one IQ4_XS panel group into IQ4XSMicro's L1 panel format.
void SplitIQ4XSGroup(const uint8_t* group, int64_t /*nb*/, int64_t b0, int64_t nbk, uint8_t* out) {
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  const __m512i table = Iq4nlTable128();
  for (int64_t b = 0; b < nbk; ++b) {
    const uint8_t* blk = group + (b0 + b) * kIQ4XSPBlockBytes;
    uint8_t* o = out + b * kIQ4XSPanelBlockBytes;
    for (int s = 0; s < 8; ++s) {
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {  // columns 32s + 4k.. (low nibbles), 32s + 16 + 4k.. (high)
        const __m512i v = _mm512_load_si512(blk + 64 * (4 * s + k));
        _mm512_store_si512(o + 64 * (8 * s + k),
                           _mm512_shuffle_epi8(table, _mm512_and_si512(v, nibble)));
        _mm512_store_si512(
            o + 64 * (8 * s + 4 + k),
            _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble)));
      }
    }
    const __m512i sl = _mm512_load_si512(blk + kIQ4XSPScalesL);
    const __m512i dh = _mm512_load_si512(blk + kIQ4XSPDH);
    for (int s = 0; s < 8; ++s) {
      const __m512i sc = IQ4XSScale(sl, dh, s);
      _mm512_store_si512(o + kIQ4XSScaleOffset + 64 * s, sc);
      _mm512_store_si512(o + kIQ4XSPairOffset + 64 * s, IQ4XSPair(sc));
    }
    _mm512_store_ps(o + kIQ4XSDOffset, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dh)));
  }
}

// ---- Q3_K weights in the panel layout (kQ3_KP, packed once at load; kernels_internal.h)
//
// Payload vectors 0-7 hold hmask, 8-23 qs, 24-26 the packed scales, lane i = row i. Element
// 128n + 32j + 4kk + e (kk < 8, e < 4) of each row is bits 2j..2j+1 of byte e of qs vector
// 8n + kk plus 4 times bit 4n + j of byte e of hmask vector kk: u = q3 + 4 (0..7), so vector kk
// serves sub-block 8n + 2j + kk / 4. DirectK3Micro loads each qs and hmask vector once (the four
// j of a vector in turn: in DRAM-bound decoding this beat loading them per j by 15-40%), sums
// u x per sub-block (VPDPBUSD, 16 rows per vector; |sum| <= 16 * 7 * 127 fits 16 bits), pairs the
// sums of sub-blocks s, s + 2 into int16 words against the scale words of the same pairs
// (VPDPWSSD), and takes the offset 4 off through the activation sums: total = sum_s sc[s] (sum u x
// - 4 bsum[s]) = sum_s sc[s] sum q3 x, the exact integer of DotQ3_KRef, the row kernel and Q6KMicro
// on q3 + 32 (the per-call path), with their float steps (v = d * total, acc = fma(dx, v, acc)).
// Longer inputs split chunks into Q6KMicro's L1 panel.

// The values u (0..7) of elements 128n + 32j + 4kk .. + 3 of 16 rows (j < 4) from qs vector
// 8n + kk and hmask vector kk (kk < 8).
inline __m512i Q3Values(__m512i qs, __m512i hm, int n, int j) {
  const __m512i low2 =
      _mm512_and_si512(j == 0 ? qs : _mm512_srli_epi16(qs, 2 * j), _mm512_set1_epi8(3));
  const __mmask64 high =
      _mm512_test_epi8_mask(hm, _mm512_set1_epi8(static_cast<char>(1 << (4 * n + j))));
  return _mm512_mask_add_epi8(low2, high, low2, _mm512_set1_epi8(4));
}
inline __m512i Q3Values(const uint8_t* payload, int n, int j, int kk) {
  return Q3Values(_mm512_loadu_si512(payload + 64 * (8 + 8 * n + kk)),
                  _mm512_loadu_si512(payload + 64 * kk), n, j);
}

// The scales sc = field - 32 of sub-blocks 4q + b (b < 4) as int16 words, even[q] holding b = 0,
// 2 and odd[q] b = 1, 3, from the payload's 3 scale vectors a0, a1 (bytes 0-7) and c (bytes
// 8-11), Q3_KScaleFields with rows in lanes: fields 4q .. 4q + 3 are bytes 0-3 of f[q], their low
// nibble from a0 (q = 0, 2) or a1 (1, 3), low (q < 2) or high nibbles, their two high bits bits
// 2q, 2q + 1 of c moved to bits 4-5.
inline void Q3ScaleWords(const uint8_t* payload, __m512i (&even)[4], __m512i (&odd)[4]) {
  const __m512i a0 = _mm512_loadu_si512(payload + 64 * 24);
  const __m512i a1 = _mm512_loadu_si512(payload + 64 * 25);
  // Bit 5 of each field flipped (c's bits 1, 3, 5, 7): the field read as a 6-bit two's
  // complement is then field - 32.
  const __m512i c = _mm512_xor_si512(_mm512_loadu_si512(payload + 64 * 26),
                                     _mm512_set1_epi8(static_cast<char>(0xAA)));
  const __m512i nibble = _mm512_set1_epi8(0x0F);
  auto select = [&](__m512i low, __m512i high) {  // bits 0-3 of low, 4-7 of high
    return _mm512_ternarylogic_epi32(nibble, low, high, 0xCA);
  };
  const __m512i f[4] = {select(a0, _mm512_slli_epi32(c, 4)), select(a1, _mm512_slli_epi32(c, 2)),
                        select(_mm512_srli_epi32(a0, 4), c),
                        select(_mm512_srli_epi32(a1, 4), _mm512_srli_epi32(c, 2))};
  for (int q = 0; q < 4; ++q) {
    even[q] = _mm512_srai_epi16(_mm512_slli_epi16(f[q], 10), 10);  // words 4q, 4q + 2
    odd[q] = _mm512_srai_epi16(_mm512_slli_epi16(f[q], 2), 10);    // 4q + 1, 4q + 3
  }
}
// The pairs (v[2p], v[2p + 1]) of those words, p < 8, as the activation sums' pairs go.
inline void PairsOfWords(const __m512i (&even)[4], const __m512i (&odd)[4], __m512i (&pair)[8]) {
  const __m512i low16 = _mm512_set1_epi32(0xFFFF);
  for (int q = 0; q < 4; ++q) {
    pair[2 * q] = _mm512_or_si512(_mm512_and_si512(even[q], low16), _mm512_slli_epi32(odd[q], 16));
    pair[2 * q + 1] =
        _mm512_or_si512(_mm512_srli_epi32(even[q], 16), _mm512_andnot_si512(low16, odd[q]));
  }
}

// A super-block's exact sums for the 16 rows of a Q3_K or Q2_K panel group: the values of field f
// (f < 4: bits 2f, 2f + 1) of qs vector 8n + kk are columns 128n + 32f + 4kk .. + 3, so sub-block
// 8n + 2f + kk / 4. `vector(n, kk)` loads what that vector's values need, once, and returns
// values(f). Per sub-block: sum of values x by VPDPBUSD, 16 rows per vector; then the sums of
// sub-blocks s and s + 2 as a pair of int16 words against their scale words (even/odd: the words
// of sub-blocks 4q + {0, 2} and 4q + {1, 3}) by VPDPWSSD.
template <int NT, class Vector>
inline void TwoBitFieldSums(const ActQ8KRow (&x)[NT], int64_t b, const __m512i (&even)[4],
                            const __m512i (&odd)[4], __m512i (&sumi)[NT], Vector vector) {
  const __m512i low16 = _mm512_set1_epi32(0xFFFF);
  for (int j = 0; j < NT; ++j) sumi[j] = _mm512_setzero_si512();
#pragma GCC unroll 1
  for (int nh = 0; nh < 4; ++nh) {  // n, half: sub-blocks 8n + 2f + half, f < 4
    const int n = nh / 2, half = nh % 2;
    __m512i dot[4][NT];
    for (int f = 0; f < 4; ++f)
      for (int j = 0; j < NT; ++j) dot[f][j] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k4 = 0; k4 < 4; ++k4) {  // each vector loaded once
      const int kk = 4 * half + k4;
      const auto values = vector(n, kk);
#pragma GCC unroll 4
      for (int f = 0; f < 4; ++f) {
        const __m512i u = values(f);
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) {
          const int8_t* xq = x[j].qs + kQK_K * b + 128 * n + 32 * f + 4 * kk;
          dot[f][j] = _mm512_dpbusd_epi32(dot[f][j], u, Broadcast4(xq));
        }
      }
    }
    // Sub-blocks 8n + half + {0, 2} (fields 0, 1) and + {4, 6} (2, 3): the words of bytes half
    // and half + 2 of the scale dwords 2n and 2n + 1.
    for (int j = 0; j < NT; ++j) {
      for (int g = 0; g < 2; ++g) {
        const __m512i words = _mm512_or_si512(_mm512_and_si512(dot[2 * g][j], low16),
                                              _mm512_slli_epi32(dot[2 * g + 1][j], 16));
        const __m512i sc = half == 0 ? even[2 * n + g] : odd[2 * n + g];
        sumi[j] = _mm512_dpwssd_epi32(sumi[j], words, sc);
      }
    }
  }
}

template <int NR, int NT>
struct DirectK3Micro {
  static_assert(NR == 1, "one group, one stream");
  static void Run(const DirectKArgs& a, int64_t t) {
    ActQ8KRow x[NT];
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride, a.cols);
    __m512 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < a.nb; ++b) {
      const PanelBlock at = PanelBlockAt(kQ3KPanelPayload, a.nb, b);
      const uint8_t* p = a.group + at.payload;
      // As Q6_K's pairs: prefetched on every CPU (DirectK6Micro says why; Zen 4, Gemv 8960x1536
      // one core: 21 GB/s with it, 6.5 without).
      if (NT <= 2) PrefetchAhead(a.group + b * (kQ3KPanelPayload + 32), kQ3KPanelPayload + 32);
      __m512i even[4], odd[4];
      Q3ScaleWords(p, even, odd);
      __m512i sumi[NT];
      TwoBitFieldSums(x, b, even, odd, sumi, [&](int n, int kk) {
        const __m512i qs = _mm512_loadu_si512(p + 64 * (8 + 8 * n + kk));
        const __m512i hm = _mm512_loadu_si512(p + 64 * kk);
        return [=](int f) { return Q3Values(qs, hm, n, f); };
      });
      __m512i pair[8];
      PairsOfWords(even, odd, pair);
      const __m512 d = _mm512_cvtph_ps(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.group + at.scales)));
      OffsetSuperBlockStep<2>(x, b, sumi, pair, d, acc);
    }
    for (int j = 0; j < NT; ++j) _mm512_mask_storeu_ps(a.y + (t + j) * a.ldy, a.last_mask, acc[j]);
  }
};

// Super-blocks [b0, b0 + nbk) (of nb) of one panel group into Q6KMicro's L1 panel format (values
// q3 + 32 = u + 28, as PackQ3_KGroup writes them).
void SplitQ3_KGroup(const uint8_t* group, int64_t nb, int64_t b0, int64_t nbk, uint8_t* out) {
  const __m512i offset = _mm512_set1_epi8(28);
  for (int64_t b = 0; b < nbk; ++b) {
    const PanelBlock at = PanelBlockAt(kQ3KPanelPayload, nb, b0 + b);
    const uint8_t* p = group + at.payload;
    uint8_t* o = out + b * kQ6PanelBlockBytes;
    for (int n = 0; n < 2; ++n) {
      for (int f = 0; f < 4; ++f) {
#pragma GCC unroll 8
        for (int kk = 0; kk < 8; ++kk) {  // columns 128n + 32f + 4kk ..
          _mm512_store_si512(o + 64 * (32 * n + 8 * f + kk),
                             _mm512_add_epi8(Q3Values(p, n, f, kk), offset));
        }
      }
    }
    __m512i even[4], odd[4], pair[8];
    Q3ScaleWords(p, even, odd);
    PairsOfWords(even, odd, pair);
    for (int q = 0; q < 8; ++q) {
      _mm512_store_si512(o + kQ6PairOffset + 64 * q, pair[q]);
      _mm512_store_si512(o + kQ6ScaleOffset + 64 * (2 * q),
                         _mm512_srai_epi32(_mm512_slli_epi32(pair[q], 16), 16));
      _mm512_store_si512(o + kQ6ScaleOffset + 64 * (2 * q + 1), _mm512_srai_epi32(pair[q], 16));
    }
    _mm512_store_ps(
        o + kQ6DOffset,
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(group + at.scales))));
  }
}

// ---- Q2_K weights in the panel layout (kQ2_KP, packed once at load; kernels_internal.h)
//
// Vectors 0-3 hold the scale | min << 4 bytes, 4-19 qs, 20 d | dmin << 16, lane i = row i.
// Element 128n + 32j + 4kk + e (kk < 8, e < 4) of each row is bits 2j..2j+1 of byte e of qs vector
// 4 + 8n + kk (sub-block 8n + 2j + kk / 4). DirectK2Micro sums q x per sub-block as DirectK3Micro
// does (each qs vector loaded once; |sum| <= 16 * 3 * 127), against the scale words, and the
// mins against the activation sums: DotQ2_KRef's exact sumi and summ and float steps (v = fma(d,
// sumi, -(dmin * summ)), acc = fma(dx, v, acc)), as the row kernel and Q2KMicro (the per-call
// panels) compute them. Longer inputs split chunks into Q2KMicro's L1 panel.

// The values q (0..3) of elements 128n + 32j + 4kk .. + 3 of 16 rows (j < 4, kk < 8).
inline __m512i Q2Values(const uint8_t* blk, int n, int j, int kk) {
  const __m512i qs = _mm512_loadu_si512(blk + 64 * (4 + 8 * n + kk));
  return _mm512_and_si512(j == 0 ? qs : _mm512_srli_epi16(qs, 2 * j), _mm512_set1_epi8(3));
}

// The scales (kMins false: the low nibbles) or mins (the high nibbles) of sub-blocks 4q + b,
// b < 4, as int16 words: even[q] holds b = 0, 2, odd[q] b = 1, 3.
template <bool kMins>
inline void Q2Words(const uint8_t* blk, __m512i (&even)[4], __m512i (&odd)[4]) {
  const __m512i nibble = _mm512_set1_epi16(0x000F);
  for (int q = 0; q < 4; ++q) {
    const __m512i v = _mm512_loadu_si512(blk + 64 * q);
    const __m512i src = kMins ? _mm512_srli_epi16(v, 4) : v;
    even[q] = _mm512_and_si512(src, nibble);
    odd[q] = _mm512_and_si512(_mm512_srli_epi16(src, 8), nibble);
  }
}

template <int NR, int NT>
struct DirectK2Micro {
  static_assert(NR == 1, "one group, one stream");
  static void Run(const DirectKArgs& a, int64_t t) {
    const bool prefetch = DecodeSoftwarePrefetch();
    ActQ8KRow x[NT];
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride, a.cols);
    __m512 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < a.nb; ++b) {
      const uint8_t* blk = a.group + b * kQ2KPanelBlockBytes;
      if (NT <= 2 && prefetch) PrefetchAhead(blk, kQ2KPanelBlockBytes);
      __m512i even[4], odd[4];
      Q2Words<false>(blk, even, odd);
      __m512i sumi[NT];
      TwoBitFieldSums(x, b, even, odd, sumi, [&](int n, int kk) {
        const __m512i qs = _mm512_loadu_si512(blk + 64 * (4 + 8 * n + kk));
        return [=](int f) {
          return _mm512_and_si512(f == 0 ? qs : _mm512_srli_epi16(qs, 2 * f), _mm512_set1_epi8(3));
        };
      });
      __m512i pair[8];
      Q2Words<true>(blk, even, odd);
      PairsOfWords(even, odd, pair);
      const __m512i dm = _mm512_loadu_si512(blk + 64 * 20);
      const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
      const __m512 dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) {
        const int16_t* bs = x[j].bsums + (kQK_K / 16) * b;
        __m512i summ = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int q = 0; q < 8; ++q) {
          summ = _mm512_dpwssd_epi32(summ, pair[q], Broadcast4(bs + 2 * q));
        }
        const __m512 v = _mm512_fmsub_ps(d, _mm512_cvtepi32_ps(sumi[j]),
                                         _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(summ)));
        acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(x[j].d[b]), v, acc[j]);
      }
    }
    for (int j = 0; j < NT; ++j) _mm512_mask_storeu_ps(a.y + (t + j) * a.ldy, a.last_mask, acc[j]);
  }
};

// Super-blocks [b0, b0 + nbk) of one panel group into Q2KMicro's L1 panel format (as
// PackQ2_KGroup writes it).
void SplitQ2_KGroup(const uint8_t* group, int64_t /*nb*/, int64_t b0, int64_t nbk, uint8_t* out) {
  const __m512i nibble = _mm512_set1_epi32(0x0F);
  for (int64_t b = 0; b < nbk; ++b) {
    const uint8_t* blk = group + (b0 + b) * kQ2KPanelBlockBytes;
    uint8_t* o = out + b * kQ2PanelBlockBytes;
    for (int n = 0; n < 2; ++n) {
      for (int f = 0; f < 4; ++f) {
#pragma GCC unroll 8
        for (int kk = 0; kk < 8; ++kk) {  // columns 128n + 32f + 4kk ..
          _mm512_store_si512(o + 64 * (32 * n + 8 * f + kk), Q2Values(blk, n, f, kk));
        }
      }
    }
    for (int q = 0; q < 4; ++q) {
      const __m512i v = _mm512_loadu_si512(blk + 64 * q);
      for (int g = 0; g < 4; ++g) {
        _mm512_store_si512(o + kQ2ScaleOffset + 64 * (4 * q + g),
                           _mm512_and_si512(_mm512_srli_epi32(v, 8 * g), nibble));
      }
    }
    __m512i even[4], odd[4], pair[8];
    Q2Words<true>(blk, even, odd);
    PairsOfWords(even, odd, pair);
    for (int q = 0; q < 8; ++q) _mm512_store_si512(o + kQ2PairOffset + 64 * q, pair[q]);
    const __m512i dm = _mm512_loadu_si512(blk + 64 * 20);
    _mm512_store_ps(o + kQ2DOffset, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm)));
    _mm512_store_ps(o + kQ2DOffset + 64,
                    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16))));
  }
}

// The K-quant panel products: up to kKStreamMaxTokens tokens Direct on the groups in place, more
// through Split's L1 panels and Micro.
using SplitKFn = void (*)(const uint8_t* group, int64_t nb, int64_t b0, int64_t nbk, uint8_t* out);
template <template <int, int> class Direct, SplitKFn kSplit, template <int, int> class Micro,
          int64_t kBlockBytes>
void GemmPanelsK(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t nb = a.cols / kQK_K;
  const int64_t group_bytes = 16 * a.w_row_bytes;
  if (t1 - t0 <= kKStreamMaxTokens) {
    const auto& fns = MicroTable<Direct, 1, kKStreamTokens, DirectKArgs>::kFns;
    for (int64_t r = r0; r < r1; r += 16) {
      const DirectKArgs d{a.w + (r / 16) * group_bytes, a.x, a.x_stride_bytes, a.cols, nb,
                          a.y + r, a.ldy, RowMask(std::min<int64_t>(16, r1 - r))};
      ForEachTokenTile(t0, t1, kKStreamTokens,
                       [&](int64_t t, int nt) { fns[static_cast<size_t>(nt - 1)](d, t); });
    }
    return;
  }
  const int64_t chunk = std::min<int64_t>(kQKChunkBlocks, nb);
  ChunkedGemm<Micro, kQKGroups, kQKTokens>(
      a, r0, r1, t0, t1, nb, chunk, chunk * kBlockBytes,
      [&](int64_t row, int64_t /*n_rows*/, int64_t b0, int64_t nbk, uint8_t* dst) {
        kSplit(a.w + (row / 16) * group_bytes, nb, b0, nbk, dst);
      });
}

}  // namespace

void Avx512PanelsQ8_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanels<PanelsQ8_0>(a, r0, r1, t0, t1);
}
void Avx512PanelsQ4_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanels<PanelsQ4_0>(a, r0, r1, t0, t1);
}
void Avx512PanelsIQ4_NL(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanels<PanelsIQ4_NL>(a, r0, r1, t0, t1);
}
void Avx512PanelsQ5_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanels<PanelsQ5_0>(a, r0, r1, t0, t1);
}
void Avx512PanelsQ5_1(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanels<PanelsQ5_1>(a, r0, r1, t0, t1);
}
void Avx512PanelsQ4_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanelsK<DirectKMicro, SplitKGroup<false>, QKMicro, kQKPanelBlockBytes>(a, r0, r1, t0, t1);
}
void Avx512PanelsQ5_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanelsK<DirectK5Micro, SplitKGroup<true>, QKMicro, kQKPanelBlockBytes>(a, r0, r1, t0, t1);
}
void Avx512PanelsQ6_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanelsK<DirectK6Micro, SplitQ6_KGroup, Q6KMicro, kQ6PanelBlockBytes>(a, r0, r1, t0, t1);
}
void Avx512PanelsIQ4_XS(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanelsK<DirectIQ4XSMicro, SplitIQ4XSGroup, IQ4XSMicro, kIQ4XSPanelBlockBytes>(a, r0, r1, t0,
                                                                                    t1);
}
void Avx512PanelsQ3_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanelsK<DirectK3Micro, SplitQ3_KGroup, Q6KMicro, kQ6PanelBlockBytes>(a, r0, r1, t0, t1);
}
void Avx512PanelsQ2_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmPanelsK<DirectK2Micro, SplitQ2_KGroup, Q2KMicro, kQ2PanelBlockBytes>(a, r0, r1, t0, t1);
}

void Avx512GemmF32(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmFloat<LoadF32>(a, r0, r1, t0, t1);
}
void Avx512GemmF16(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmFloat<LoadF16>(a, r0, r1, t0, t1);
}
void Avx512GemmBf16(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmFloat<LoadBf16>(a, r0, r1, t0, t1);
}
void Avx512GemmQ8_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmQ8<PanelQ8_0>(a, r0, r1, t0, t1);
}
void Avx512GemmQ4_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmQ8<PanelQ4_0>(a, r0, r1, t0, t1);
}
void Avx512GemmQ4_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmK<PackQ4_KGroup, QKMicro, kQKPanelBlockBytes>(a, r0, r1, t0, t1);
}
void Avx512GemmQ6_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmK<PackQ6_KGroup, Q6KMicro, kQ6PanelBlockBytes>(a, r0, r1, t0, t1);
}
void Avx512GemmQ2_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmK<PackQ2_KGroup, Q2KMicro, kQ2PanelBlockBytes>(a, r0, r1, t0, t1);
}
void Avx512GemmQ3_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmK<PackQ3_KGroup, Q6KMicro, kQ6PanelBlockBytes>(a, r0, r1, t0, t1);
}
void Avx512GemmIQ4_XS(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  GemmK<PackIQ4_XSGroup, IQ4XSMicro, kIQ4XSPanelBlockBytes>(a, r0, r1, t0, t1);
}

}  // namespace yunzhi::engine::kernels::internal
