// AVX-512 kernels (F, BW, VL, VNNI + F16C/FMA), compiled with their own flags (see
// src/engine/CMakeLists.txt) and chosen at run time. Scalar references: kernels_ref.cc.
//
// Matrix products use the "dot" formulation: a micro-kernel keeps NR weight rows x NT tokens of
// accumulators in registers and walks the shared inner dimension once, so each weight vector is
// loaded and decoded once per NT tokens (prompt processing) and the weights stream from memory
// exactly once per call (decoding). Quantised weights meet 8-bit activations in integer dot
// products (VPDPBUSD: u8 x s8 -> s32, VPDPWSSD: s16 x s16 -> s32).
//
// Prompt processing for F32/F16/BF16/Q8_0/Q4_0 (every tile but a 1-2 token decoding call) and for
// Q4_K/Q6_K tiles of more than 8 tokens runs the packed-panel GEMM of kernels_avx512_gemm.cc, as
// does every product with weights in the panel layout.
//
// Everything here has internal linkage: this file is compiled with -mavx512*, and no symbol of it
// may be picked by the linker for code running on a CPU without AVX-512.

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "engine/kernels/kernels_internal.h"

// GCC 12's intrinsic headers build some casts from _mm512_undefined_*(), which -Wuninitialized
// reports at every inlined use; the lanes in question are always overwritten or ignored.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace yunzhi::engine::kernels::internal {
namespace {

// ---- small helpers

inline float HalfBitsToFloat(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}

inline __m512 Zero() { return _mm512_setzero_ps(); }

// Decoding streams every weight from DRAM once, with a few instructions per cache line in
// between; prefetching each row a little ahead keeps enough misses in flight that the integer
// work overlaps the transfer instead of adding to it. (A prefetch never faults, so running off
// the end of a row is harmless.)
// Distance: 1 KiB ahead within long rows; for short rows (the micro-kernel's NR rows together
// span less than a few KiB) the same offset in a later group of NR rows, which is what the next
// calls read -- 1 KiB ahead would land in rows this call is already reading. At least 4 KiB
// ahead: one group of 4 Q4_0 rows of 896 columns is only 2 KiB, and fetching it one group ahead
// left decoding waiting on DRAM latency (Q4_0 gate/up GEMV 20 -> 27 GB/s on one core).
constexpr int64_t kPrefetchBytes = 1024;
constexpr int64_t kMinShortPrefetchBytes = 4096;
// A micro-kernel of one row walks its rows front to back as one sequential stream: it prefetches
// a fixed distance ahead in address order, which runs on into the next rows it will read.
constexpr int64_t kSeqPrefetchBytes = 4096;
// Decoding takes rows of at least this many bytes one at a time (TileGemvQ8x4 says why).
constexpr int64_t kLongRowBytes = 4096;
// One row at a time is one sequential stream, which some CPUs' hardware prefetcher streams
// faster alone (DecodeSoftwarePrefetch); interleaved rows always prefetch.
inline int64_t PrefetchDistance(int64_t row_bytes, int nr) {
  if (nr == 1) return DecodeSoftwarePrefetch() ? kSeqPrefetchBytes : 0;
  if (row_bytes >= 4096) return kPrefetchBytes;
  const int64_t group = nr * row_bytes;
  return std::max<int64_t>(1, (kMinShortPrefetchBytes + group - 1) / group) * group;
}
// Non-temporal, as for the panel kernels (kernels_avx512_gemm.cc): streamed weights should not
// evict the KV cache and activations from L2. Llama-3.2-1B Q4_K, `yunzhi bench -t 2 -p 1 -n 128
// --bandwidth`, alternated: 88.3-88.4% -> 89.2-90.4% of the bound. (Only decoding prefetches:
// the micro-kernels issue it for one or two tokens.)
inline void Prefetch(const uint8_t* p, int64_t distance) {
  if (distance > 0) _mm_prefetch(reinterpret_cast<const char*>(p + distance), _MM_HINT_NTA);
}

// 16 floats: lanes 0-7 = half(h0), lanes 8-15 = half(h1). The per-block scales of two 32-element
// blocks lined up with VPDPBUSD's output (8 int32 lanes per 32 bytes).
inline __m512 TwoHalfScales(uint16_t h0, uint16_t h1) {
  const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(h0)),
                                            _mm_set1_epi16(h1), 1);
  return _mm512_cvtph_ps(v);
}

// 16 floats: lanes 0-7 = p[0], lanes 8-15 = p[1].
inline __m512 TwoFloats(const float* p) {
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(p[0])),
                                             _mm256_castps_pd(_mm256_set1_ps(p[1])), 1));
}

// ---- the tile driver: steps over rows and tokens in NR x NT micro-kernels, dispatching the
// remainders to smaller instantiations.

template <template <int, int> class K, int MR, int MT>
struct MicroTable {
  using Fn = void (*)(const TileArgs&, int64_t, int64_t);
  template <int... I>
  static constexpr std::array<Fn, MR * MT> Make(std::integer_sequence<int, I...>) {
    return {&K<I / MT + 1, I % MT + 1>::Run...};
  }
  static constexpr std::array<Fn, MR * MT> kFns = Make(std::make_integer_sequence<int, MR * MT>{});
};

template <template <int, int> class K, int MR, int MT>
void TileWith(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const auto& fns = MicroTable<K, MR, MT>::kFns;
  // Rows outer: NR weight rows stay in L1 while every token of the block passes over them.
  for (int64_t r = r0; r < r1; r += MR) {
    const int nr = static_cast<int>(r1 - r < MR ? r1 - r : MR);
    for (int64_t t = t0; t < t1; t += MT) {
      const int nt = static_cast<int>(t1 - t < MT ? t1 - t : MT);
      fns[static_cast<size_t>((nr - 1) * MT + (nt - 1))](a, r, t);
    }
  }
}

// Decoding (1-2 tokens) wants more rows in flight to keep enough loads outstanding; prompt
// processing wants more tokens per decoded weight vector.
template <template <int, int> class K, int GemvR, int GemmR, int GemmT>
void Tile(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  if (t1 - t0 <= 2) {
    if (a.w_row_bytes >= kLongRowBytes) {  // see TileGemvQ8x4
      TileWith<K, 1, 2>(a, r0, r1, t0, t1);
    } else {
      TileWith<K, GemvR, 2>(a, r0, r1, t0, t1);
    }
  } else {
    TileWith<K, GemmR, GemmT>(a, r0, r1, t0, t1);
  }
}

// ---- float weights (F32, F16, BF16) x float activations

struct LoadF32 {
  static constexpr int kBytes = 4;
  static __m512 Load(const uint8_t* p) { return _mm512_loadu_ps(p); }
  static __m512 LoadMasked(const uint8_t* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
};
struct LoadF16 {
  static constexpr int kBytes = 2;
  static __m512 Load(const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 LoadMasked(const uint8_t* p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
};
struct LoadBf16 {
  static constexpr int kBytes = 2;
  static __m512 Widen(__m256i v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
  }
  static __m512 Load(const uint8_t* p) {
    return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static __m512 LoadMasked(const uint8_t* p, __mmask16 m) {
    return Widen(_mm256_maskz_loadu_epi16(m, p));
  }
};

template <class L>
struct FloatMicro {
  template <int NR, int NT>
  struct K {
    static void Run(const TileArgs& a, int64_t r, int64_t t) {
      const uint8_t* w[NR];
      const float* x[NT];
      for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
      for (int j = 0; j < NT; ++j) x[j] = reinterpret_cast<const float*>(a.x + (t + j) * a.x_stride_bytes);
      __m512 acc[NR][NT];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
      int64_t c = 0;
      for (; c + 16 <= a.cols; c += 16) {
        __m512 wv[NR];
        if (NT <= 2 && ((c * L::kBytes) & 63) == 0) {
          for (int i = 0; i < NR; ++i) Prefetch(w[i] + c * L::kBytes, pf);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) wv[i] = L::Load(w[i] + c * L::kBytes);
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m512 xv = _mm512_loadu_ps(x[j] + c);
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
      }
      if (c < a.cols) {
        const __mmask16 m = static_cast<__mmask16>((1u << (a.cols - c)) - 1);
        __m512 wv[NR];
        for (int i = 0; i < NR; ++i) wv[i] = L::LoadMasked(w[i] + c * L::kBytes, m);
        for (int j = 0; j < NT; ++j) {
          const __m512 xv = _mm512_maskz_loadu_ps(m, x[j] + c);
          for (int i = 0; i < NR; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
      }
      for (int j = 0; j < NT; ++j)
        for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
    }
  };
};

template <int NR, int NT>
using F32K = FloatMicro<LoadF32>::K<NR, NT>;
template <int NR, int NT>
using F16K = FloatMicro<LoadF16>::K<NR, NT>;
template <int NR, int NT>
using Bf16K = FloatMicro<LoadBf16>::K<NR, NT>;

// Prompt processing (tiles of more than 2 tokens) with float weights: kernels_avx512_gemm.cc.

// ---- Q8_0 and Q4_0 weights x kQ8 activations.
//
// VPDPBUSD multiplies unsigned by signed bytes, so the weights enter as unsigned with an offset
// (Q8_0: w + 128 by flipping the sign bit; Q4_0: the raw nibbles, i.e. q + 8) and the offset
// times the activation block sum is removed in float: per block,
//   d_w * d_x * sum (w + off) x  -  d_w * off * (d_x * sum x)  =  d_w * d_x * sum w x.
// Two blocks (64 bytes) per step; lanes 0-7 carry block 2k, lanes 8-15 block 2k+1.

struct WeightsQ8_0 {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ8_0);
  static constexpr float kOffset = 128.0f;
  static __m512i Two(const uint8_t* p) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kBlockBytes + 2));
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(b0), b1, 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  // One block in lanes 0-7; the upper half is the offset alone and meets zero activations.
  static __m512i One(const uint8_t* p) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    return _mm512_xor_si512(_mm512_zextsi256_si512(b0), _mm512_set1_epi8(static_cast<char>(0x80)));
  }
};

struct WeightsQ4_0 {
  static constexpr int64_t kBlockBytes = sizeof(BlockQ4_0);
  static constexpr float kOffset = 8.0f;
  // Byte j of a block holds element j (low nibble) and j + 16 (high nibble).
  static __m256i Nibbles(__m256i v, __m256i& hi) {
    const __m256i mask = _mm256_set1_epi8(0x0F);
    hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
    return _mm256_and_si256(v, mask);
  }
  static __m512i Two(const uint8_t* p) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + kBlockBytes + 2));
    __m256i hi;
    const __m256i lo = Nibbles(_mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1), hi);
    // [lo0 lo1 hi0 hi1] -> [lo0 hi0 lo1 hi1]: elements in order, two blocks.
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
  }
  static __m512i One(const uint8_t* p) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(q0, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(q0, 4), mask);
    return _mm512_zextsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
  }
};

// IQ4_NL: Q4_0's nibbles as indices into the table; VPSHUFB looks up the table plus 128, so the
// weights are unsigned (1..241) and the offset 128 comes off as for Q8_0.
struct WeightsIQ4_NL {
  static constexpr int64_t kBlockBytes = sizeof(BlockIQ4_NL);
  static constexpr float kOffset = 128.0f;
  static __m512i Table() {
    return _mm512_broadcast_i32x4(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlUnsigned.data())));
  }
  static __m512i Two(const uint8_t* p) { return _mm512_shuffle_epi8(Table(), WeightsQ4_0::Two(p)); }
  // The upper half (zero indices) meets zero activations.
  static __m512i One(const uint8_t* p) { return _mm512_shuffle_epi8(Table(), WeightsQ4_0::One(p)); }
};

template <class W>
struct Q8Micro {
  template <int NR, int NT>
  struct K {
    static void Run(const TileArgs& a, int64_t r, int64_t t) {
      const int64_t nb = a.cols / 32;
      const uint8_t* w[NR];
      ActQ8Row x[NT];
      for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
      for (int j = 0; j < NT; ++j) x[j] = ViewQ8(a.x + (t + j) * a.x_stride_bytes, a.cols);
      __m512 acc[NR][NT];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
      // The offset term is spread evenly over the 8 lanes of each block (exact: a power of 2).
      const __m512 neg_off = _mm512_set1_ps(-W::kOffset / 8);
      int64_t b = 0;
      for (; b + 2 <= nb; b += 2) {
        __m512i wq[NR];
        __m512 wd[NR];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const uint8_t* p = w[i] + b * W::kBlockBytes;
          if (NT <= 2) Prefetch(p, pf);
          wq[i] = W::Two(p);
          wd[i] = TwoHalfScales(LoadU16(p), LoadU16(p + W::kBlockBytes));
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m512i xv = _mm512_loadu_si512(x[j].qs + b * 32);
          const __m512 dx = TwoFloats(x[j].d + b);
          const __m512 m = _mm512_mul_ps(TwoFloats(x[j].ds + b), neg_off);
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wq[i], xv);
            const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), dx, m);
            acc[i][j] = _mm512_fmadd_ps(v, wd[i], acc[i][j]);
          }
        }
      }
      if (b < nb) {
        for (int j = 0; j < NT; ++j) {
          const __m512i xv = _mm512_zextsi256_si512(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].qs + b * 32)));
          const __m512 dx = _mm512_maskz_mov_ps(0x00FF, _mm512_set1_ps(x[j].d[b]));
          const __m512 m = _mm512_maskz_mov_ps(0x00FF, _mm512_set1_ps(-W::kOffset / 8 * x[j].ds[b]));
          for (int i = 0; i < NR; ++i) {
            const uint8_t* p = w[i] + b * W::kBlockBytes;
            const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), W::One(p), xv);
            const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), dx, m);
            acc[i][j] = _mm512_fmadd_ps(v, _mm512_set1_ps(HalfBitsToFloat(p)), acc[i][j]);
          }
        }
      }
      for (int j = 0; j < NT; ++j)
        for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
    }
  };
};

template <int NR, int NT>
using Q8_0K = Q8Micro<WeightsQ8_0>::K<NR, NT>;
template <int NR, int NT>
using Q4_0K = Q8Micro<WeightsQ4_0>::K<NR, NT>;
template <int NR, int NT>
using IQ4_NLK = Q8Micro<WeightsIQ4_NL>::K<NR, NT>;

// Decoding Q8_0/Q4_0 weights against kQ8x4 activations, four blocks per step.
//
// Decoding reads each weight once, so the kernel's work per byte decides whether it keeps up with
// memory. The 16-byte halves of four blocks are loaded into the four 128-bit lanes of a vector, in
// the kQ8x4 order, so that two VPDPBUSDs leave every block's integer sum in the 4 int32 lanes of
// its own 128-bit lane. The four fp16 weight scales come out of one VPERMW / VPERMT2W, and the
// activation scales are stored pre-broadcast, so a group of 4 blocks costs one conversion and two
// FMAs per row where the 2-block kernel above needs two and four, plus its per-pair scale setup
// (Q4_0 L2-resident 28 -> 53 GB/s on one core). 16-byte loads rather than one 64-byte load and a
// byte permute (VPERMT2B): slightly slower from L2 but faster from DRAM, where a load straddling
// two lines waits for both.
// Offsets as in Q8Micro: d_w * (d_x * sum (w + off) x - off * ds), the off * ds term spread over
// the 4 lanes of each block (exact: off / 4 is a power of 2).

// Loads bytes [0, n) of p (n may be <= 0 or >= the width) without touching memory past p + n.
inline __m512i LoadBytes(const uint8_t* p, int64_t n) {
  if (n >= 64) return _mm512_loadu_si512(p);
  if (n <= 0) return _mm512_setzero_si512();
  return _mm512_maskz_loadu_epi8((~__mmask64{0}) >> (64 - n), p);
}
template <bool kFull>
inline __m128i Load16(const uint8_t* p, int64_t n) {
  if (kFull || n >= 16) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  if (n <= 0) return _mm_setzero_si128();
  return _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << n) - 1), p);
}
// Lane k (of 4): the 16 bytes at p + k * stride; `n` readable bytes from p.
template <bool kFull>
inline __m512i Quarters(const uint8_t* p, int64_t stride, int64_t n) {
  __m512i v = _mm512_castsi128_si512(Load16<kFull>(p, n));
  v = _mm512_inserti32x4(v, Load16<kFull>(p + stride, n - stride), 1);
  v = _mm512_inserti32x4(v, Load16<kFull>(p + 2 * stride, n - 2 * stride), 2);
  return _mm512_inserti32x4(v, Load16<kFull>(p + 3 * stride, n - 3 * stride), 3);
}

// 16-bit lanes 4k..4k+3: the fp16 word at byte kStride * k of a group (VPERMW index).
template <int kStride>
struct ScaleIndexTable {
  static constexpr std::array<uint16_t, 32> Make() {
    std::array<uint16_t, 32> idx{};
    for (int k = 0; k < 4; ++k)
      for (int i = 0; i < 4; ++i) idx[4 * k + i] = static_cast<uint16_t>(kStride / 2 * k);
    return idx;
  }
  alignas(64) static constexpr std::array<uint16_t, 32> kIdx = Make();
};

// Each weight type: how many bytes 4 blocks span, and the group's lo/hi byte vectors (offset
// applied, unsigned) plus 16 float scales (lanes 4k..4k+3: block k); `n` readable bytes at p, all
// of the group when kFull. Missing blocks of a partial group load as zeros (zero scale).
struct GroupQ8_0 {
  static constexpr int64_t kGroupBytes = 4 * sizeof(BlockQ8_0);  // 136
  static constexpr float kOffset = 128.0f;
  template <bool kFull>
  static void Load(const uint8_t* p, int64_t n, __m512i& lo, __m512i& hi, __m512& d) {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    lo = _mm512_xor_si512(Quarters<kFull>(p + 2, 34, n - 2), flip);
    hi = _mm512_xor_si512(Quarters<kFull>(p + 18, 34, n - 18), flip);
    // Scales at bytes 0, 34, 68, 102: words 0, 17, 34, 51 of p[0, 128).
    const __m512i a = kFull ? _mm512_loadu_si512(p) : LoadBytes(p, n);
    const __m512i b = kFull ? _mm512_loadu_si512(p + 64) : LoadBytes(p + 64, n - 64);
    const __m512i idx = _mm512_load_si512(ScaleIndexTable<34>::kIdx.data());
    d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(a, idx, b)));
  }
};

struct GroupQ4_0 {
  static constexpr int64_t kGroupBytes = 4 * sizeof(BlockQ4_0);  // 72
  static constexpr float kOffset = 8.0f;
  template <bool kFull>
  static void Load(const uint8_t* p, int64_t n, __m512i& lo, __m512i& hi, __m512& d) {
    // Byte j of a block holds element j (low nibble) and j + 16 (high nibble).
    const __m512i q = Quarters<kFull>(p + 2, 18, n - 2);
    const __m512i mask = _mm512_set1_epi8(0x0F);
    lo = _mm512_and_si512(q, mask);
    hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), mask);
    // Scales at bytes 0, 18, 36, 54: words 0, 9, 18, 27 of p[0, 64).
    const __m512i a = kFull ? _mm512_loadu_si512(p) : LoadBytes(p, n);
    const __m512i idx = _mm512_load_si512(ScaleIndexTable<18>::kIdx.data());
    d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(idx, a)));
  }
};

template <class G>
struct Q8x4Micro {
  template <int NR, int NT>
  struct K {
    static void Run(const TileArgs& a, int64_t r, int64_t t) {
      const int64_t nb = a.cols / 32;
      const int64_t full = nb / 4;
      const int64_t tail_bytes = (nb % 4) * (G::kGroupBytes / 4);
      const uint8_t* w[NR];
      const uint8_t* x[NT];
      for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      for (int j = 0; j < NT; ++j) x[j] = a.x + (t + j) * a.x_stride_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
      const __m512 neg_off = _mm512_set1_ps(-G::kOffset / 4);
      __m512 acc[NR][NT];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
      auto step = [&](auto full_group, int64_t g, int64_t n) {
        __m512i wlo[NR], whi[NR];
        __m512 wd[NR];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const uint8_t* p = w[i] + g * G::kGroupBytes;
          // Groups are contiguous: one prefetch per 64 bytes touches every line.
          for (int64_t o = 0; o < G::kGroupBytes; o += 64) Prefetch(p + o, pf);
          G::template Load<decltype(full_group)::value>(p, n, wlo[i], whi[i], wd[i]);
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const uint8_t* xg = x[j] + g * kActQ8x4GroupBytes;
          const __m512i xlo = _mm512_loadu_si512(xg);
          const __m512i xhi = _mm512_loadu_si512(xg + 64);
          const __m512 dx = _mm512_loadu_ps(xg + 128);
          const __m512 m = _mm512_mul_ps(_mm512_loadu_ps(xg + 192), neg_off);
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wlo[i], xlo);
            dot = _mm512_dpbusd_epi32(dot, whi[i], xhi);
            const __m512 v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), dx, m);
            acc[i][j] = _mm512_fmadd_ps(v, wd[i], acc[i][j]);
          }
        }
      };
      for (int64_t g = 0; g < full; ++g) step(std::true_type{}, g, G::kGroupBytes);
      if (tail_bytes > 0) step(std::false_type{}, full, tail_bytes);
      for (int j = 0; j < NT; ++j)
        for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = _mm512_reduce_add_ps(acc[i][j]);
    }
  };
};

// 8 rows per micro-kernel: 8 streams in flight keep more DRAM lines outstanding than 4 (one core,
// decode step from DRAM: Q4_0 30 -> 35 GB/s, Q8_0 28 -> 32 GB/s), although the L2-resident
// ceiling drops by ~10% (register pressure).
// Rows of 4 KiB and more (the down projection's, or any matrix with >= ~7k columns at Q4_0) go one
// at a time instead: with 8 interleaved long rows the prefetch 1 KiB ahead in each row runs past
// its end into the next row of the same group -- already being read -- so the first KiB of every
// row of the next group arrived by demand miss; one row at a time the stream is sequential and
// its prefetch lands where the kernel goes next. One core, from DRAM: Q4_0 1536x8960 24-27 ->
// 32-34 GB/s, Q8_0 896x4864 27-29 -> 34 GB/s (rows of 5 KiB); the extra activation loads per row
// cost less than the stalls did.
template <class G>
void TileGemvQ8x4(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  if (a.w_row_bytes >= kLongRowBytes) {
    TileWith<Q8x4Micro<G>::template K, 1, 2>(a, r0, r1, t0, t1);
  } else {
    TileWith<Q8x4Micro<G>::template K, 8, 2>(a, r0, r1, t0, t1);
  }
}

// Decoding with float weights (F32, F16, BF16): one row at a time, front to back, so that a core
// reads its rows as one sequential stream (rows are contiguous) instead of 8 interleaved ones, with
// four accumulators per token along the row to keep the FMA chains short; the activations (a few
// KiB) stay in L1. The prefetch runs 8 KiB ahead in address order, on into the next rows.
// One core, Qwen2.5-0.5B decode step from DRAM: 29 -> 34-36 GB/s (8 interleaved rows with the
// prefetch one group ahead before); 0.5-2 KiB ahead was slower, 4-8 KiB about equal, 12 KiB
// slower; end to end 6 KiB gave 34.4 F16 tokens per CPU-second against 32.7 (4 KiB) and 32.2
// (8 KiB) on one thread, and was level with 4 KiB on two.
// The prefetch is non-temporal: the weights are read once, and with the T0 hint they pushed the
// activations out of L1 in rows of ~10 KiB (the down projection's: 19 KiB of float activations
// per row). DecodeStepFused F16, one thread: 35.5 -> 38.3 GB/s (down projection alone 31-33 ->
// 36); two threads, variants alternated in one process: 99% -> 107% of the probe of the moment.
// Distance, re-measured end to end with that hint (Qwen2.5-0.5B F16, `yunzhi bench -p 1 -n 64
// --bandwidth`, alternated): one thread -- where a core is at its own limit, as each is in the
// machine's fast state -- 6 KiB 88.3/89.6%, 8 KiB 90.9/92.1%, 12 KiB 86.7/88.3% of the bound; two
// threads, slow state 95.6 against 95.1%, fast state 85.5 against 87.6%.
constexpr int64_t kSeqPrefetchFloatBytes = 8192;
template <class L, int NT>
void FloatRowsGemv(const TileArgs& a, int64_t r0, int64_t r1, int64_t t) {
  const float* x[NT];
  for (int j = 0; j < NT; ++j) {
    x[j] = reinterpret_cast<const float*>(a.x + (t + j) * a.x_stride_bytes);
  }
  const int64_t cols = a.cols;
  const int64_t pf = DecodeSoftwarePrefetch() ? kSeqPrefetchFloatBytes : 0;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* w = a.w + r * a.w_row_bytes;
    __m512 acc[NT][4];
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) acc[j][u] = Zero();
    int64_t c = 0;
    for (; c + 64 <= cols; c += 64) {
      const uint8_t* p = w + c * L::kBytes;
#pragma GCC unroll 4
      for (int o = 0; o < 64 * L::kBytes; o += 64) {
        Prefetch(p + o, pf);
      }
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        const __m512 wv = L::Load(p + 16 * u * L::kBytes);
#pragma GCC unroll 2
        for (int j = 0; j < NT; ++j)
          acc[j][u] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x[j] + c + 16 * u), acc[j][u]);
      }
    }
    for (; c < cols; c += 16) {
      const int64_t left = cols - c;
      const __mmask16 m =
          left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
      const __m512 wv = L::LoadMasked(w + c * L::kBytes, m);
      for (int j = 0; j < NT; ++j)
        acc[j][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x[j] + c), acc[j][0]);
    }
    for (int j = 0; j < NT; ++j) {
      const __m512 s = _mm512_add_ps(_mm512_add_ps(acc[j][0], acc[j][1]),
                                     _mm512_add_ps(acc[j][2], acc[j][3]));
      a.y[(t + j) * a.ldy + r] = _mm512_reduce_add_ps(s);
    }
  }
}

template <class L>
void TileGemvFloat(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; t += 2) {
    if (t1 - t >= 2) {
      FloatRowsGemv<L, 2>(a, r0, r1, t);
    } else {
      FloatRowsGemv<L, 1>(a, r0, r1, t);
    }
  }
}

// Prompt processing (tiles of more than 2 tokens) with Q8_0/Q4_0 weights: packed panels, see
// kernels_avx512_gemm.cc.

// ---- K-quants x kQ8K activations.
//
// Within a super-block the sub-block scales are applied in integers: VPMADDUBSW (u8 x s8 -> s16
// pair sums, no saturation here: 63 * 127 * 2 < 32767) then VPDPWSSD against the scales spread
// over the matching 16-bit lanes. One float conversion per super-block and (row, token).

inline int32_t HsumEpi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// Q4_K's 8 scales and 8 mins (6 bits each, packing in tensor_type.h) as two 8-byte words.
inline void UnpackQ4_KScales(const uint8_t* q, uint64_t* scales, uint64_t* mins) {
  uint32_t a, b, c;
  std::memcpy(&a, q, 4);
  std::memcpy(&b, q + 4, 4);
  std::memcpy(&c, q + 8, 4);
  const uint32_t sc_lo = a & 0x3F3F3F3Fu;
  const uint32_t m_lo = b & 0x3F3F3F3Fu;
  const uint32_t sc_hi = (c & 0x0F0F0F0Fu) | ((a >> 2) & 0x30303030u);
  const uint32_t m_hi = ((c >> 4) & 0x0F0F0F0Fu) | ((b >> 2) & 0x30303030u);
  *scales = sc_lo | static_cast<uint64_t>(sc_hi) << 32;
  *mins = m_lo | static_cast<uint64_t>(m_hi) << 32;
}

// Lane-index vectors for VPERMW: 16-bit lanes [32 lanes] = value index k0 (lanes 0-15), k1
// (16-31) for Q4_K chunks; four groups of 8 lanes for Q6_K quarters.
inline __m512i PairIndex(int k0, int k1) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<int16_t>(k0))),
                            _mm256_set1_epi16(static_cast<int16_t>(k1)), 1);
}
inline __m512i QuadIndex(int k) {
  return _mm512_set_epi16(k + 3, k + 3, k + 3, k + 3, k + 3, k + 3, k + 3, k + 3, k + 2, k + 2,
                          k + 2, k + 2, k + 2, k + 2, k + 2, k + 2, k + 1, k + 1, k + 1, k + 1,
                          k + 1, k + 1, k + 1, k + 1, k, k, k, k, k, k, k, k);
}

// Row i's (i < 4) two sums of int32 lanes, for Q4_K's epilogue: lane i of the low half of the
// result the sum of the 16 lanes of a[i], lane i of the high half the sum of the 8 lanes of b[i].
inline __m256i SumRows4(const __m512i (&a)[4], const __m256i (&b)[4]) {
  // Each row's sums folded to 128 bits: [a0 | a1 | a2 | a3] and [b0 | b1 | b2 | b3], 4 lanes each.
  const __m512i a01 = _mm512_add_epi32(_mm512_shuffle_i64x2(a[0], a[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                       _mm512_shuffle_i64x2(a[0], a[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512i a23 = _mm512_add_epi32(_mm512_shuffle_i64x2(a[2], a[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                       _mm512_shuffle_i64x2(a[2], a[3], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512i fa = _mm512_add_epi32(_mm512_shuffle_i64x2(a01, a23, _MM_SHUFFLE(2, 0, 2, 0)),
                                      _mm512_shuffle_i64x2(a01, a23, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i b01 = _mm512_inserti64x4(_mm512_castsi256_si512(b[0]), b[1], 1);
  const __m512i b23 = _mm512_inserti64x4(_mm512_castsi256_si512(b[2]), b[3], 1);
  const __m512i fb = _mm512_add_epi32(_mm512_shuffle_i64x2(b01, b23, _MM_SHUFFLE(2, 0, 2, 0)),
                                      _mm512_shuffle_i64x2(b01, b23, _MM_SHUFFLE(3, 1, 3, 1)));
  // Per 128-bit lane: [a l0+l2, a l1+l3, b l0+l2, b l1+l3], then the pairs.
  const __m512i e = _mm512_add_epi32(_mm512_unpacklo_epi64(fa, fb), _mm512_unpackhi_epi64(fa, fb));
  const __m512i f = _mm512_add_epi32(e, _mm512_shuffle_epi32(e, _MM_PERM_CDAB));
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi32(idx, f));
}
// SumRows4 of NR <= 4 rows, a(i) and b(i) row i's vectors; the missing rows sum to zero.
template <int NR, class A, class B>
inline __m256i SumRows(A a, B b) {
  __m512i va[4];
  __m256i vb[4];
  for (int i = 0; i < 4; ++i) {
    va[i] = _mm512_setzero_si512();
    vb[i] = _mm256_setzero_si256();
  }
  for (int i = 0; i < NR; ++i) {
    va[i] = a(i);
    vb[i] = b(i);
  }
  return SumRows4(va, vb);
}
// v[0..NR) in lanes 0..NR-1, zeros after.
template <int NR>
inline __m128 FirstLanes(const float (&v)[NR]) {
  float f[4] = {};
  for (int i = 0; i < NR; ++i) f[i] = v[i];
  return _mm_setr_ps(f[0], f[1], f[2], f[3]);
}

// Decoding Q4_K: per super-block and row the exact integers sumi = sum_s sc[s] * sum_{i in s}
// q_i x_i and summ = sum_s m[s] * sum_{i in s} x_i, then the float steps of GemmQ4_K
// (kernels_avx512_gemm.cc) -- v = d * sumi, v -= dmin * summ, acc += dx * v, super-blocks in order
// -- with a tile's rows in the lanes of one __m128, so a token decoded alone gets the bits it gets
// in a batch (kernels_test). One core, DRAM, against the lane-wise float sums this replaced:
// rows of < 4 KiB 5-9% faster (the 64-byte loads below), long rows one at a time 13% slower (the
// reduction per super-block); Llama-3.2-1B Q4_K_M decoding -2.5% on one thread, level on two.
template <int NR, int NT>
struct Q4_KK {
  static_assert(NR <= 4, "the epilogue keeps a token's rows in the lanes of one __m128");
  static void Run(const TileArgs& a, int64_t r, int64_t t) {
    const int64_t nb = a.cols / kQK_K;
    const uint8_t* w[NR];
    ActQ8KRow x[NT];
    for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
    const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride_bytes, a.cols);
    const __m512i nib = _mm512_set1_epi8(0x0F);
    __m128 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m128i sc16[NR];
      __m256i mins16[NR];  // mins[s] twice each: lined up with pairs of 16-element bsums
      float d[NR], dmin[NR];
      for (int i = 0; i < NR; ++i) {
        const uint8_t* p = w[i] + b * sizeof(BlockQ4_K);
        if (NT <= 2) {
          Prefetch(p, pf);
          Prefetch(p + 64, pf);
          Prefetch(p + 128, pf);
        }
        d[i] = HalfBitsToFloat(p);
        dmin[i] = HalfBitsToFloat(p + 2);
        uint64_t sc, m;
        UnpackQ4_KScales(p + 4, &sc, &m);
        sc16[i] = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<int64_t>(sc)));
        const __m128i m8 = _mm_cvtsi64_si128(static_cast<int64_t>(m));
        mins16[i] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
      }
      __m512i isum[NR][NT];  // lanes add up to sumi
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) isum[i][j] = _mm512_setzero_si512();
      // Two 32-byte chunks (128 elements) per 64-byte load: the low nibbles are sub-blocks 2c and
      // 2c + 2, the high ones 2c + 1 and 2c + 3; the activations are paired to match (two
      // shuffles per token, shared by the rows) rather than each row's bytes regrouped.
#pragma GCC unroll 2
      for (int c = 0; c < 4; c += 2) {
        const __m512i idx_lo = PairIndex(2 * c, 2 * c + 2);
        const __m512i idx_hi = PairIndex(2 * c + 1, 2 * c + 3);
        __m512i lo[NR], hi[NR];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const __m512i v = _mm512_loadu_si512(w[i] + b * sizeof(BlockQ4_K) + 4 + kKScaleBytes +
                                               32 * c);
          lo[i] = _mm512_and_si512(v, nib);
          hi[i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const int8_t* xq = x[j].qs + b * kQK_K + 64 * c;
          const __m512i x0 = _mm512_loadu_si512(xq), x1 = _mm512_loadu_si512(xq + 64);
          const __m512i xlo = _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(1, 0, 1, 0));
          const __m512i xhi = _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(3, 2, 3, 2));
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            const __m512i sc = _mm512_castsi128_si512(sc16[i]);
            isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], _mm512_maddubs_epi16(lo[i], xlo),
                                             _mm512_permutexvar_epi16(idx_lo, sc));
            isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], _mm512_maddubs_epi16(hi[i], xhi),
                                             _mm512_permutexvar_epi16(idx_hi, sc));
          }
        }
      }
#pragma GCC unroll 2
      for (int j = 0; j < NT; ++j) {
        const __m256i bs =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].bsums + 16 * b));
        if constexpr (NR == 1) {  // long rows, one at a time: lane 0 alone
          const auto sumi = static_cast<float>(_mm512_reduce_add_epi32(isum[0][j]));
          const auto summ = static_cast<float>(HsumEpi32(_mm256_madd_epi16(mins16[0], bs)));
          const __m128 v = _mm_fnmadd_ss(_mm_set_ss(dmin[0]), _mm_set_ss(summ),
                                         _mm_mul_ss(_mm_set_ss(d[0]), _mm_set_ss(sumi)));
          acc[j] = _mm_fmadd_ss(_mm_set_ss(x[j].d[b]), v, acc[j]);
        } else {
          const __m256 sums = _mm256_cvtepi32_ps(
              SumRows<NR>([&](int i) { return isum[i][j]; },
                          [&](int i) { return _mm256_madd_epi16(mins16[i], bs); }));
          const __m128 v = _mm_fnmadd_ps(FirstLanes(dmin), _mm256_extractf128_ps(sums, 1),
                                         _mm_mul_ps(FirstLanes(d), _mm256_castps256_ps128(sums)));
          acc[j] = _mm_fmadd_ps(_mm_set1_ps(x[j].d[b]), v, acc[j]);
        }
      }
    }
    for (int j = 0; j < NT; ++j) {
      alignas(16) float out[4];
      _mm_store_ps(out, acc[j]);
      for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = out[i];
    }
  }
};

// Q6_K: per half (128 elements) `ql` gives 64 bytes of low nibbles and `qh` 32 bytes of 2-bit
// highs; two 64-element vectors in element order come out of one load of each:
//   v0 = (ql & 15)      | high bits (qh >> 0 / >> 2) for elements e .. e+63
//   v1 = (ql >> 4) & 15 | high bits (qh >> 4 / >> 6) for elements e+64 .. e+127
// The -32 offset is removed as 32 * sum_g scale[g] * bsum[g].
template <int NR, int NT>
struct Q6_KK {
  static void Run(const TileArgs& a, int64_t r, int64_t t) {
    const int64_t nb = a.cols / kQK_K;
    const uint8_t* w[NR];
    ActQ8KRow x[NT];
    for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride_bytes, a.cols);
    static_assert(NR <= 4, "the epilogue keeps a token's rows in the lanes of one __m128");
    __m128 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm_setzero_ps();
    const __m512i m0f = _mm512_set1_epi8(0x0F);
    const __m512i m30 = _mm512_set1_epi8(0x30);
    // 16-bit lanes 0-15 belong to the first 32 bytes, 16-31 to the second.
    const __m512i shl_v0 = PairIndex(4, 2);
    const __m512i shr_v1 = PairIndex(0, 2);
    for (int64_t b = 0; b < nb; ++b) {
      __m512i sc16[NR];
      float d[NR];
      for (int i = 0; i < NR; ++i) {
        const uint8_t* p = w[i] + b * sizeof(BlockQ6_K);
        if (NT <= 2) {
          Prefetch(p, pf);
          Prefetch(p + 64, pf);
          Prefetch(p + 128, pf);
          Prefetch(p + 192, pf);
        }
        d[i] = HalfBitsToFloat(p + 208);
        sc16[i] = _mm512_castsi256_si512(
            _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192))));
      }
      __m512i isum[NR][NT];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) isum[i][j] = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int quarter = 0; quarter < 4; ++quarter) {
        const int h = quarter / 2;
        const __m512i idx = QuadIndex(4 * quarter);
        __m512i wv[NR], sv[NR];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const uint8_t* p = w[i] + b * sizeof(BlockQ6_K);
          const __m512i ql = _mm512_loadu_si512(p + 64 * h);
          const __m512i qh = _mm512_broadcast_i64x4(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * h)));
          if (quarter % 2 == 0) {
            wv[i] = _mm512_or_si512(_mm512_and_si512(ql, m0f),
                                    _mm512_and_si512(_mm512_sllv_epi16(qh, shl_v0), m30));
          } else {
            wv[i] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m0f),
                                    _mm512_and_si512(_mm512_srlv_epi16(qh, shr_v1), m30));
          }
          sv[i] = _mm512_permutexvar_epi16(idx, sc16[i]);
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m512i xv = _mm512_loadu_si512(x[j].qs + b * kQK_K + 64 * quarter);
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], _mm512_maddubs_epi16(wv[i], xv), sv[i]);
          }
        }
      }
      // Per row and token the exact total = isum - 32 * sum_g sc[g] * bsum[g], then GemmQ6_K's
      // float steps (kernels_avx512_gemm.cc) with the rows in lanes, as Q4_KK.
#pragma GCC unroll 2
      for (int j = 0; j < NT; ++j) {
        const __m256i bs =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].bsums + 16 * b));
        if constexpr (NR == 1) {
          const int32_t corr = HsumEpi32(_mm256_madd_epi16(_mm512_castsi512_si256(sc16[0]), bs));
          const int32_t total = _mm512_reduce_add_epi32(isum[0][j]) - corr * 32;
          const __m128 v = _mm_mul_ss(_mm_set_ss(d[0]), _mm_set_ss(static_cast<float>(total)));
          acc[j] = _mm_fmadd_ss(_mm_set_ss(x[j].d[b]), v, acc[j]);
        } else {
          const __m256i sums = SumRows<NR>(
              [&](int i) { return isum[i][j]; },
              [&](int i) { return _mm256_madd_epi16(_mm512_castsi512_si256(sc16[i]), bs); });
          const __m128i total = _mm_sub_epi32(_mm256_castsi256_si128(sums),
                                              _mm_slli_epi32(_mm256_extracti128_si256(sums, 1), 5));
          const __m128 v = _mm_mul_ps(FirstLanes(d), _mm_cvtepi32_ps(total));
          acc[j] = _mm_fmadd_ps(_mm_set1_ps(x[j].d[b]), v, acc[j]);
        }
      }
    }
    for (int j = 0; j < NT; ++j) {
      alignas(16) float out[4];
      _mm_store_ps(out, acc[j]);
      for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = out[i];
    }
  }
};

// ---- Q2_K and Q3_K: sub-blocks of 16, 2-bit fields (Q3_K with a third, high bit).
//
// A block's 64 qs bytes hold all 256 elements: field j (bits 2j, 2j + 1) of byte 32n + l is
// element 128n + 32j + l. One 64-byte load per row and super-block; shifted by 2j and masked it
// is the 64-element vector of elements 32j .. 32j+31 (bytes 0-31) and 128+32j .. 128+32j+31
// (bytes 32-63), sub-blocks 2j, 2j+1, 8+2j, 9+2j in its four 16-byte lanes (8 16-bit lanes each
// after VPMADDUBSW). The activations are regrouped to match -- four 256-bit swaps per token and
// super-block, shared by the rows -- rather than each row's values. Q3_K's high bit of element
// 128n + 32j + l is bit 4n + j of hmask[l]: VPTESTMB of the 32 hmask bytes (in both halves)
// against bit j (low half) / 4 + j (high half) and a masked add of 4 gives u = q + 4, 0..7.
// Products as the AVX2 kernel: VPMADDUBSW (u8 x s8, pair sums within 2 * 7 * 128) then VPDPWSSD
// with the sub-block scales; Q3_K's offset (4 * sum_s sc[s] * bsum[s]) and Q2_K's mins
// (sum_s m[s] * bsum[s]) through the activation sums once per super-block. The integers are
// exact and the float steps DotQ2_KRef's / DotQ3_KRef's with the rows in lanes, so every ISA and
// tile shape gives the scalar reference's bits (kernels_test).

// 16-bit lane indices: lanes 0-7 = a, 8-15 = b, 16-23 = c, 24-31 = d.
inline __m512i LaneQuads(int a, int b, int c, int d) {
  const __m256i lo =
      _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<int16_t>(a))),
                              _mm_set1_epi16(static_cast<int16_t>(b)), 1);
  const __m256i hi =
      _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<int16_t>(c))),
                              _mm_set1_epi16(static_cast<int16_t>(d)), 1);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// The 16 signed scales (sc[s] - 32, -32..31) of a Q3_K block (Q3_KScaleFields, kernels_internal.h)
// as 16-bit lanes, lane s = sub-block s.
inline __m256i Q3_KScales16(const uint8_t* q) {
  uint64_t lo, hi;
  Q3_KScaleFields(q, &lo, &hi);
  const __m128i v = _mm_sub_epi8(_mm_set_epi64x(static_cast<int64_t>(hi), static_cast<int64_t>(lo)),
                                 _mm_set1_epi8(32));
  return _mm256_cvtepi8_epi16(v);
}

template <bool kQ3>
struct KQuant16Micro {
  using Block = std::conditional_t<kQ3, BlockQ3_K, BlockQ2_K>;
  template <int NR, int NT>
  struct K {
    static_assert(NR <= 4, "the epilogue keeps a token's rows in the lanes of one __m128");
    static void Run(const TileArgs& a, int64_t r, int64_t t) {
      const int64_t nb = a.cols / kQK_K;
      const uint8_t* w[NR];
      ActQ8KRow x[NT];
      for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
      for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride_bytes, a.cols);
      const __m512i three = _mm512_set1_epi8(3);
      const __m512i four = _mm512_set1_epi8(4);
      __m128 acc[NT];
      for (int j = 0; j < NT; ++j) acc[j] = _mm_setzero_ps();
      for (int64_t b = 0; b < nb; ++b) {
        __m256i sc16[NR];  // scales (Q3_K: signed), 16-bit lane s = sub-block s
        __m256i m16[NR];   // Q2_K's mins, likewise
        float d[NR], dmin[NR];
        for (int i = 0; i < NR; ++i) {
          const uint8_t* p = w[i] + b * sizeof(Block);
          if (NT <= 2) {
            Prefetch(p, pf);
            Prefetch(p + 64, pf);
          }
          d[i] = HalfBitsToFloat(p + offsetof(Block, d));
          if constexpr (kQ3) {
            sc16[i] = Q3_KScales16(p + offsetof(Block, scales));
          } else {
            const __m256i v = _mm256_cvtepu8_epi16(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + offsetof(Block, scales))));
            sc16[i] = _mm256_and_si256(v, _mm256_set1_epi16(0x0F));
            m16[i] = _mm256_srli_epi16(v, 4);
            dmin[i] = HalfBitsToFloat(p + offsetof(BlockQ2_K, dmin));
          }
        }
        __m512i isum[NR][NT];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
          for (int j = 0; j < NT; ++j) isum[i][j] = _mm512_setzero_si512();
            // Tokens' vectors held, rows one at a time: 4 x 4 accumulators fit without spilling.
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) {
          const __m512i idx = LaneQuads(2 * k, 2 * k + 1, 8 + 2 * k, 9 + 2 * k);
          __m512i xv[NT];
#pragma GCC unroll 8
          for (int j = 0; j < NT; ++j) {
            // Elements 32k .. 32k+31 and 128+32k .. 128+32k+31.
            const int8_t* xq = x[j].qs + b * kQK_K + 32 * k;
            xv[j] = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq))),
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 128)), 1);
          }
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            const uint8_t* p = w[i] + b * sizeof(Block);
            __m512i wv = _mm512_and_si512(
                _mm512_srli_epi16(_mm512_loadu_si512(p + offsetof(Block, qs)), 2 * k), three);
            if constexpr (kQ3) {
              const __m512i hm = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                  reinterpret_cast<const __m256i*>(p + offsetof(BlockQ3_K, hmask))));
              const __m512i bit =
                  _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << k)),
                                     _mm256_set1_epi8(static_cast<char>(1 << (4 + k))), 1);
              wv = _mm512_mask_add_epi8(wv, _mm512_test_epi8_mask(hm, bit), wv, four);
            }
            const __m512i sv = _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(sc16[i]));
#pragma GCC unroll 8
            for (int j = 0; j < NT; ++j) {
              isum[i][j] = _mm512_dpwssd_epi32(isum[i][j], _mm512_maddubs_epi16(wv, xv[j]), sv);
            }
          }
        }
        // Per row and token: Q3_K sumi = isum - 4 * sum_s sc[s] * bsum[s], then
        // acc = fma(dx, d * sumi, acc) (Q6_K's float step: prompts run Q6_K's panels);
        // Q2_K sumi = isum, summ = sum_s m[s] * bsum[s], then
        // acc = fma(dx, fma(d, sumi, -(dmin * summ)), acc).
#pragma GCC unroll 2
        for (int j = 0; j < NT; ++j) {
          const __m256i bs =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].bsums + 16 * b));
          const float dx = x[j].d[b];
          if constexpr (NR == 1) {  // long rows, one at a time: lane 0 alone
            const int32_t isum0 = _mm512_reduce_add_epi32(isum[0][j]);
            if constexpr (kQ3) {
              const int32_t offset = HsumEpi32(_mm256_madd_epi16(sc16[0], bs));
              const auto sumi = static_cast<float>(isum0 - offset * 4);
              acc[j] = _mm_fmadd_ss(_mm_set_ss(dx), _mm_mul_ss(_mm_set_ss(d[0]), _mm_set_ss(sumi)),
                                    acc[j]);
            } else {
              const auto summ = static_cast<float>(HsumEpi32(_mm256_madd_epi16(m16[0], bs)));
              const __m128 v = _mm_fmsub_ss(_mm_set_ss(d[0]), _mm_set_ss(static_cast<float>(isum0)),
                                            _mm_mul_ss(_mm_set_ss(dmin[0]), _mm_set_ss(summ)));
              acc[j] = _mm_fmadd_ss(_mm_set_ss(dx), v, acc[j]);
            }
          } else {
            if constexpr (kQ3) {
              const __m256i sums =
                  SumRows<NR>([&](int i) { return isum[i][j]; },
                              [&](int i) { return _mm256_madd_epi16(sc16[i], bs); });
              const __m128i sumi =
                  _mm_sub_epi32(_mm256_castsi256_si128(sums),
                                _mm_slli_epi32(_mm256_extracti128_si256(sums, 1), 2));
              acc[j] = _mm_fmadd_ps(_mm_set1_ps(dx),
                                    _mm_mul_ps(FirstLanes(d), _mm_cvtepi32_ps(sumi)), acc[j]);
            } else {
              const __m256 sums = _mm256_cvtepi32_ps(
                  SumRows<NR>([&](int i) { return isum[i][j]; },
                              [&](int i) { return _mm256_madd_epi16(m16[i], bs); }));
              const __m128 v =
                  _mm_fmsub_ps(FirstLanes(d), _mm256_castps256_ps128(sums),
                               _mm_mul_ps(FirstLanes(dmin), _mm256_extractf128_ps(sums, 1)));
              acc[j] = _mm_fmadd_ps(_mm_set1_ps(dx), v, acc[j]);
            }
          }
        }
      }
      for (int j = 0; j < NT; ++j) {
        alignas(16) float out[4];
        _mm_store_ps(out, acc[j]);
        for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = out[i];
      }
    }
  };
};
template <int NR, int NT>
using Q2_KK = KQuant16Micro<false>::K<NR, NT>;
template <int NR, int NT>
using Q3_KK = KQuant16Micro<true>::K<NR, NT>;

// IQ4_XS x kQ8K (layout in tensor_type.h). Per half super-block (4 sub-blocks, 64 bytes of qs)
// one 64-byte load: 128-bit lane k holds sub-block k's 16 bytes, its low nibbles elements 0-15 and
// high nibbles 16-31 of the sub-block. One VPSHUFB each looks up IQ4_NL's table plus 128 (unsigned
// 1..241, as for IQ4_NL), and the activations are regrouped to match (two shuffles per token,
// shared by the rows), so two VPDPBUSDs leave each sub-block's sums in the 4 int32 lanes of its own
// 128-bit lane and one VPMULLD applies the four sub-block scales ls - 32. The offset 128 comes off
// exactly: the VPDPBUSDs start from -128 times the same lanes' activation sums (per token, shared
// by the rows). The lanes add up to the super-block's exact integer total = sum_s (ls - 32) * sum w
// x, and the float steps are those of the prompt path's panels (GemmIQ4_XS,
// kernels_avx512_gemm.cc): v = d_w * total, acc += d_x * v, a token's rows in the lanes of one
// __m128 -- so a token gets the same bits decoded alone or in any batch.
template <int NR, int NT>
struct IQ4_XSK {
  static_assert(NR <= 4, "the epilogue keeps a token's rows in the lanes of one __m128");
  static void Run(const TileArgs& a, int64_t r, int64_t t) {
    const int64_t nb = a.cols / kQK_K;
    const uint8_t* w[NR];
    ActQ8KRow x[NT];
    for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
    const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride_bytes, a.cols);
    const __m512i table = WeightsIQ4_NL::Table();
    const __m512i nib = _mm512_set1_epi8(0x0F);
    const __m512i k128 = _mm512_set1_epi8(static_cast<char>(0x80));
    // Qword s of the scale vector: byte 4 + s / 2 of the block's first 8 bytes shifted by 4 (s % 2)
    // for the low 4 bits; scales_h (bytes 2-3) shifted by 2s for the top 2 (moved to bits 4-5).
    const __m512i shift_lo = _mm512_setr_epi64(32, 36, 40, 44, 48, 52, 56, 60);
    const __m512i shift_hi = _mm512_setr_epi64(12, 14, 16, 18, 20, 22, 24, 26);
    // Half h's scales: int32 lanes 4k..4k+3 = qword (low dword) 4h + k.
    const __m512i idx_sc[2] = {
        _mm512_setr_epi32(0, 0, 0, 0, 2, 2, 2, 2, 4, 4, 4, 4, 6, 6, 6, 6),
        _mm512_setr_epi32(8, 8, 8, 8, 10, 10, 10, 10, 12, 12, 12, 12, 14, 14, 14, 14)};
    __m128 acc[NT];
    for (int j = 0; j < NT; ++j) acc[j] = _mm_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      __m512i ls[NR];  // qword s: ls[s] - 32
      float dw[NR];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i) {
        const uint8_t* p = w[i] + b * sizeof(BlockIQ4_XS);
        if (NT <= 2) {
          Prefetch(p, pf);
          Prefetch(p + 64, pf);
          Prefetch(p + 128, pf);
        }
        dw[i] = HalfBitsToFloat(p);
        int64_t head;
        std::memcpy(&head, p, 8);
        const __m512i h = _mm512_set1_epi64(head);
        const __m512i v = _mm512_ternarylogic_epi64(
            _mm512_srlv_epi64(h, shift_lo), _mm512_srlv_epi64(h, shift_hi), _mm512_set1_epi64(0x0F),
            0xE4);  // (A & C) | (B & ~C)
        ls[i] =
            _mm512_sub_epi64(_mm512_and_si512(v, _mm512_set1_epi64(0x3F)), _mm512_set1_epi64(32));
      }
      __m512i isum[NR][NT];
#pragma GCC unroll 2
      for (int hf = 0; hf < 2; ++hf) {
        __m512i lo[NR], hi[NR], sc[NR];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const __m512i v = _mm512_loadu_si512(w[i] + b * sizeof(BlockIQ4_XS) +
                                               offsetof(BlockIQ4_XS, qs) + 64 * hf);
          lo[i] = _mm512_shuffle_epi8(table, _mm512_and_si512(v, nib));
          hi[i] = _mm512_shuffle_epi8(table, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
          sc[i] = _mm512_permutexvar_epi32(idx_sc[hf], ls[i]);
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const int8_t* xq = x[j].qs + b * kQK_K + 128 * hf;
          const __m512i x0 = _mm512_loadu_si512(xq), x1 = _mm512_loadu_si512(xq + 64);
          const __m512i xlo = _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(2, 0, 2, 0));
          const __m512i xhi = _mm512_shuffle_i64x2(x0, x1, _MM_SHUFFLE(3, 1, 3, 1));
          const __m512i off = _mm512_sub_epi32(
              _mm512_setzero_si512(),
              _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), k128, xlo), k128,
                                  xhi));
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            const __m512i dot =
                _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(off, lo[i], xlo), hi[i], xhi);
            const __m512i s = _mm512_mullo_epi32(dot, sc[i]);
            isum[i][j] = hf == 0 ? s : _mm512_add_epi32(isum[i][j], s);
          }
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        if constexpr (NR == 1) {  // long rows, one at a time: lane 0 alone
          const auto total = static_cast<float>(_mm512_reduce_add_epi32(isum[0][j]));
          acc[j] = _mm_fmadd_ss(_mm_set_ss(x[j].d[b]),
                                _mm_mul_ss(_mm_set_ss(dw[0]), _mm_set_ss(total)), acc[j]);
        } else {
          const __m256i sums = SumRows<NR>([&](int i) { return isum[i][j]; },
                                           [&](int) { return _mm256_setzero_si256(); });
          const __m128 v =
              _mm_mul_ps(FirstLanes(dw), _mm_cvtepi32_ps(_mm256_castsi256_si128(sums)));
          acc[j] = _mm_fmadd_ps(_mm_set1_ps(x[j].d[b]), v, acc[j]);
        }
      }
    }
    for (int j = 0; j < NT; ++j) {
      alignas(16) float out[4];
      _mm_store_ps(out, acc[j]);
      for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = out[i];
    }
  }
};

// ---- activation quantisers (bit-identical to QuantizeActQ8Ref / QuantizeActQ8KRef: same
// 127 / amax, same round-to-nearest-even through the default MXCSR mode).

constexpr float kTinyAmax = 1e-30f;

inline __m512i QuantizeVec(__m512 v, __m512 id) {
  __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, id));
  q = _mm512_max_epi32(q, _mm512_set1_epi32(-127));
  return _mm512_min_epi32(q, _mm512_set1_epi32(127));
}

void QuantizeQ8(const float* x, int64_t cols, uint8_t* out) {
  auto* qs = reinterpret_cast<int8_t*>(out);
  auto* d = reinterpret_cast<float*>(out + cols);
  float* ds = d + cols / 32;
  for (int64_t b = 0; b < cols / 32; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + 32 * b);
    const __m512 v1 = _mm512_loadu_ps(x + 32 * b + 16);
    const float amax = _mm512_reduce_max_ps(
        _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const bool tiny = !(amax >= kTinyAmax);
    const __m512 id = _mm512_set1_ps(tiny ? 0.0f : 127.0f / amax);
    const __m512i q0 = QuantizeVec(v0, id), q1 = QuantizeVec(v1, id);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 32 * b), _mm512_cvtepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 32 * b + 16), _mm512_cvtepi32_epi8(q1));
    d[b] = tiny ? 0.0f : amax / 127.0f;
    ds[b] = d[b] * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
  }
}

void QuantizeQ8x4(const float* x, int64_t cols, uint8_t* out) {
  const int64_t nb = cols / 32;
  const int64_t n_groups = (nb + 3) / 4;
  for (int64_t g = 0; g < n_groups; ++g) {
    uint8_t* group = out + g * kActQ8x4GroupBytes;
    alignas(64) float d[4] = {}, ds[4] = {};
    for (int64_t k = 0; k < 4; ++k) {
      const int64_t b = 4 * g + k;
      if (b >= nb) {
        std::memset(group + 16 * k, 0, 16);
        std::memset(group + 64 + 16 * k, 0, 16);
        continue;
      }
      const __m512 v0 = _mm512_loadu_ps(x + 32 * b);
      const __m512 v1 = _mm512_loadu_ps(x + 32 * b + 16);
      const float amax =
          _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      const bool tiny = !(amax >= kTinyAmax);
      const __m512 id = _mm512_set1_ps(tiny ? 0.0f : 127.0f / amax);
      const __m512i q0 = QuantizeVec(v0, id), q1 = QuantizeVec(v1, id);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(group + 16 * k), _mm512_cvtepi32_epi8(q0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(group + 64 + 16 * k), _mm512_cvtepi32_epi8(q1));
      d[k] = tiny ? 0.0f : amax / 127.0f;
      ds[k] = d[k] * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1)));
    }
    // Each of the 4 values to its 4 lanes.
    const __m512i spread = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    const __m512 dv = _mm512_castps128_ps512(_mm_load_ps(d));
    const __m512 dsv = _mm512_castps128_ps512(_mm_load_ps(ds));
    _mm512_storeu_ps(group + 128, _mm512_permutexvar_ps(spread, dv));
    _mm512_storeu_ps(group + 192, _mm512_permutexvar_ps(spread, dsv));
  }
}

void QuantizeQ8K(const float* x, int64_t cols, uint8_t* out) {
  auto* qs = reinterpret_cast<int8_t*>(out);
  auto* d = reinterpret_cast<float*>(out + cols);
  auto* bsums = reinterpret_cast<int16_t*>(d + cols / kQK_K);
  for (int64_t b = 0; b < cols / kQK_K; ++b) {
    const float* xb = x + kQK_K * b;
    __m512 m = _mm512_setzero_ps();
    for (int g = 0; g < 16; ++g) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + 16 * g)));
    const float amax = _mm512_reduce_max_ps(m);
    const bool tiny = !(amax >= kTinyAmax);
    const __m512 id = _mm512_set1_ps(tiny ? 0.0f : 127.0f / amax);
    for (int g = 0; g < 16; ++g) {
      const __m512i q = QuantizeVec(_mm512_loadu_ps(xb + 16 * g), id);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + kQK_K * b + 16 * g), _mm512_cvtepi32_epi8(q));
      bsums[16 * b + g] = static_cast<int16_t>(_mm512_reduce_add_epi32(q));
    }
    d[b] = tiny ? 0.0f : amax / 127.0f;
  }
}

// ---- attention and conversions

inline __m512 LoadKv(const void* row, bool f16, int64_t i, __mmask16 m) {
  if (f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(row) + i));
  return _mm512_maskz_loadu_ps(m, static_cast<const float*>(row) + i);
}

inline __mmask16 TailMask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

// Grouped-query attention: the n_q query heads that share a KV head go through its K and V rows
// together, 16 rows at a time. Each block of rows is converted to float once (not once per
// query head: fp16 conversion was the scores' main cost) into an L1 tile, which every head then
// reads. Head sizes up to kMaxTileDim take this path; larger ones read the rows once per head.
constexpr int64_t kKvBlock = 16;
constexpr int64_t kMaxTileDim = 256;
constexpr int64_t kKvAheadBlocks = 4;

// Rows [j0, j0 + nr) as float rows of `head_dim` at `tile` (stride head_dim); fp32 rows are
// copied too, so the loops below read one layout.
inline void KvTile(const void* const* rows, bool f16, int64_t j0, int64_t nr, int64_t n,
                   int64_t head_dim, float* tile) {
  // The cache's rows come from DRAM (a decoding step streams the weights between two visits of
  // a layer) and are scattered: prefetch them a few blocks ahead, all of the first blocks at once.
  const int64_t row_bytes = head_dim * (f16 ? 2 : 4);
  const int64_t ahead_end = std::min(n, j0 + (kKvAheadBlocks + 1) * kKvBlock);
  for (int64_t j = j0 == 0 ? 0 : ahead_end - kKvBlock; j < ahead_end; ++j) {
    for (int64_t o = 0; o < row_bytes; o += 64) {
      _mm_prefetch(static_cast<const char*>(rows[j]) + o, _MM_HINT_T0);
    }
  }
  for (int64_t r = 0; r < nr; ++r) {
    for (int64_t i = 0; i < head_dim; i += 16) {
      const __mmask16 m = TailMask(head_dim - i);
      _mm512_mask_storeu_ps(tile + r * head_dim + i, m, LoadKv(rows[j0 + r], f16, i, m));
    }
  }
}

// The 16 lanes of each of v[0..15] summed: lane r of the result is the sum of v[r]. Pairs are
// folded a quarter at a time (128-bit halves, then 64-bit, then lanes); the folds leave row
// 4m + p in lane 4p + m, which the final permutation puts back.
inline __m512 SumEach16(__m512 v[16]) {
  __m512 x[8], y[4], z[2];
  for (int i = 0; i < 8; ++i) {
    x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                         _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
  }
  for (int i = 0; i < 4; ++i) {
    y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0x88),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], 0xDD));
  }
  for (int i = 0; i < 2; ++i) {
    z[i] = _mm512_add_ps(_mm512_unpacklo_ps(y[2 * i], y[2 * i + 1]),
                         _mm512_unpackhi_ps(y[2 * i], y[2 * i + 1]));
  }
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512i back = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(back, r);
}

void ScoresOneHead(const float* q, const void* const* k_rows, bool k_f16, int64_t n,
                   int64_t head_dim, float scale, float* out) {
  for (int64_t j = 0; j < n; ++j) {
    __m512 acc = Zero();
    for (int64_t i = 0; i < head_dim; i += 16) {
      const __mmask16 m = TailMask(head_dim - i);
      acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + i), LoadKv(k_rows[j], k_f16, i, m), acc);
    }
    out[j] = _mm512_reduce_add_ps(acc) * scale;
  }
}

void Scores(const float* q, int64_t n_q, const void* const* k_rows, bool k_f16, int64_t n,
            int64_t head_dim, float scale, float* out) {
  if (head_dim > kMaxTileDim) {
    for (int64_t h = 0; h < n_q; ++h) {
      ScoresOneHead(q + h * head_dim, k_rows, k_f16, n, head_dim, scale, out + h * n);
    }
    return;
  }
  alignas(64) float tile[kKvBlock * kMaxTileDim];
  const __m512 vscale = _mm512_set1_ps(scale);
  for (int64_t j0 = 0; j0 < n; j0 += kKvBlock) {
    const int64_t nr = std::min(kKvBlock, n - j0);
    KvTile(k_rows, k_f16, j0, nr, n, head_dim, tile);
    // A last partial tile goes through the same sums as a full one, its missing rows zero: a
    // position's score is then the same bits whether its tile is full or not (AttendGroupTokens
    // scores the positions of several tokens at once).
    if (nr < kKvBlock) std::fill(tile + nr * head_dim, tile + kKvBlock * head_dim, 0.0f);
    const __mmask16 store = nr < kKvBlock ? TailMask(nr) : static_cast<__mmask16>(0xFFFF);
    int64_t h = 0;
    // Two heads at a time over half a tile: each tile load serves both heads' FMAs, and one
    // SumEach16 reduces 8 rows of each (lanes 0-7 head h, 8-15 head h + 1).
    for (; h + 1 < n_q; h += 2) {
      const float* q0 = q + h * head_dim;
      const float* q1 = q0 + head_dim;
      for (int64_t half = 0; half < kKvBlock; half += 8) {
        __m512 acc[kKvBlock];
        for (int r = 0; r < kKvBlock; ++r) acc[r] = Zero();
        for (int64_t i = 0; i < head_dim; i += 16) {
          const __mmask16 m = TailMask(head_dim - i);
          const __m512 qa = _mm512_maskz_loadu_ps(m, q0 + i);
          const __m512 qb = _mm512_maskz_loadu_ps(m, q1 + i);
#pragma GCC unroll 8
          for (int r = 0; r < 8; ++r) {
            const __m512 t = _mm512_maskz_loadu_ps(m, tile + (half + r) * head_dim + i);
            acc[r] = _mm512_fmadd_ps(qa, t, acc[r]);
            acc[8 + r] = _mm512_fmadd_ps(qb, t, acc[8 + r]);
          }
        }
        const __m512 sums = _mm512_mul_ps(SumEach16(acc), vscale);
        const __mmask16 keep = static_cast<__mmask16>(store >> half) & 0xFF;
        _mm512_mask_storeu_ps(out + h * n + j0 + half, keep, sums);
        _mm512_mask_storeu_ps(out + (h + 1) * n + j0 + half - 8,
                              static_cast<__mmask16>(keep << 8), sums);
      }
    }
    for (; h < n_q; ++h) {
      const float* qh = q + h * head_dim;
      __m512 acc[kKvBlock];
      for (int r = 0; r < kKvBlock; ++r) acc[r] = Zero();
      for (int64_t i = 0; i < head_dim; i += 16) {
        const __mmask16 m = TailMask(head_dim - i);
        const __m512 qv = _mm512_maskz_loadu_ps(m, qh + i);
#pragma GCC unroll 16
        for (int r = 0; r < kKvBlock; ++r) {
          acc[r] = _mm512_fmadd_ps(qv, _mm512_maskz_loadu_ps(m, tile + r * head_dim + i), acc[r]);
        }
      }
      _mm512_mask_storeu_ps(out + h * n + j0, store, _mm512_mul_ps(SumEach16(acc), vscale));
    }
  }
}

void WeightedSumOneHead(const float* p, const void* const* v_rows, bool v_f16, int64_t n,
                        int64_t head_dim, float* out) {
  for (int64_t i = 0; i < head_dim; i += 64) {
    // Up to 64 output lanes in registers across all n rows.
    __m512 acc[4] = {Zero(), Zero(), Zero(), Zero()};
    for (int64_t j = 0; j < n; ++j) {
      const __m512 pj = _mm512_set1_ps(p[j]);
      for (int k = 0; k < 4 && i + 16 * k < head_dim; ++k) {
        const __mmask16 m = TailMask(head_dim - i - 16 * k);
        acc[k] = _mm512_fmadd_ps(pj, LoadKv(v_rows[j], v_f16, i + 16 * k, m), acc[k]);
      }
    }
    for (int k = 0; k < 4 && i + 16 * k < head_dim; ++k) {
      _mm512_mask_storeu_ps(out + i + 16 * k, TailMask(head_dim - i - 16 * k), acc[k]);
    }
  }
}

// NH heads (p and out rows n and head_dim apart) over a block of nr float rows: NH x 64 output
// lanes at a time, so up to 16 independent accumulator chains (4 would leave the FMA units
// waiting on their latency) and each tile load serves NH heads.
template <int NH>
void WeightedSumBlock(const float* p, int64_t n, const float* tile, int64_t nr, int64_t head_dim,
                      float* out) {
  for (int64_t i = 0; i < head_dim; i += 64) {
    __m512 acc[NH][4];
    __mmask16 m[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      m[k] = i + 16 * k < head_dim ? TailMask(head_dim - i - 16 * k) : 0;
#pragma GCC unroll 4
      for (int g = 0; g < NH; ++g) {
        acc[g][k] = _mm512_maskz_loadu_ps(m[k], out + g * head_dim + i + 16 * k);
      }
    }
    for (int64_t r = 0; r < nr; ++r) {
      __m512 v[4];
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        v[k] = _mm512_maskz_loadu_ps(m[k], tile + r * head_dim + i + 16 * k);
      }
#pragma GCC unroll 4
      for (int g = 0; g < NH; ++g) {
        const __m512 pr = _mm512_set1_ps(p[g * n + r]);
#pragma GCC unroll 4
        for (int k = 0; k < 4; ++k) acc[g][k] = _mm512_fmadd_ps(pr, v[k], acc[g][k]);
      }
    }
#pragma GCC unroll 4
    for (int g = 0; g < NH; ++g) {
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        _mm512_mask_storeu_ps(out + g * head_dim + i + 16 * k, m[k], acc[g][k]);
      }
    }
  }
}

void WeightedSum(const float* p, int64_t n_q, const void* const* v_rows, bool v_f16, int64_t n,
                 int64_t head_dim, float* out) {
  if (head_dim > kMaxTileDim || n_q == 1) {
    for (int64_t h = 0; h < n_q; ++h) {
      WeightedSumOneHead(p + h * n, v_rows, v_f16, n, head_dim, out + h * head_dim);
    }
    return;
  }
  alignas(64) float tile[kKvBlock * kMaxTileDim];
  std::fill(out, out + n_q * head_dim, 0.0f);
  for (int64_t j0 = 0; j0 < n; j0 += kKvBlock) {
    const int64_t nr = std::min(kKvBlock, n - j0);
    KvTile(v_rows, v_f16, j0, nr, n, head_dim, tile);
    for (int64_t h0 = 0; h0 < n_q; h0 += 4) {
      const float* ph = p + h0 * n + j0;
      float* oh = out + h0 * head_dim;
      switch (std::min<int64_t>(4, n_q - h0)) {
        case 1: WeightedSumBlock<1>(ph, n, tile, nr, head_dim, oh); break;
        case 2: WeightedSumBlock<2>(ph, n, tile, nr, head_dim, oh); break;
        case 3: WeightedSumBlock<3>(ph, n, tile, nr, head_dim, oh); break;
        default: WeightedSumBlock<4>(ph, n, tile, nr, head_dim, oh); break;
      }
    }
  }
}

void HalfToFloatRow(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
  }
}

void FloatToHalfRow(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_mask_storeu_epi16(y + i, m, h);
  }
}

// e^x for 16 lanes: x = n ln 2 + r with |r| <= ln 2 / 2, e^r by its Taylor polynomial to r^7
// (relative error below 2e-8, under float's half ulp), times 2^n by VSCALEFPS. Arguments are
// clamped to [-87.3, 89]: below, e^x would leave the normal floats; above 88.72 it overflows to
// +inf, as it should (VSCALEFPS saturates), so silu of a hugely negative gate is -0 like libm's.
inline __m512 Exp(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(89.0f)), _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln 2 in two parts, so that n * hi is exact and r keeps its low bits.
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// SwiGLU's gate: silu(g) * u = g / (1 + e^-g) * u.
void SiluMulRow(const float* gate, const float* up, float* out, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i);
    const __m512 u = _mm512_maskz_loadu_ps(m, up + i);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_setzero_ps(), g));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(one, e)), u));
  }
}

// Softmax in three passes over the row (max; e^(x - max) and its sum; scale). One query head
// over 4096 cached positions (Attention/avx512/4096 in the kernels bench: scores, softmax and
// weighted sum) took 33 us with the scalar softmax's libm expf, 21 us with this one.
void SoftmaxRow(float* x, int64_t n) {
  if (n <= 0) return;
  __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    mx = _mm512_mask_max_ps(mx, m, mx, _mm512_maskz_loadu_ps(m, x + i));
  }
  const __m512 max = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    const __m512 e = Exp(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), max));
    sum = _mm512_mask_add_ps(sum, m, sum, e);
    _mm512_mask_storeu_ps(x + i, m, e);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = TailMask(n - i);
    _mm512_mask_storeu_ps(x + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
  }
}

}  // namespace

// The bandwidth probe's read (ReadSumFn): 64-byte loads, eight independent sums. Measured on
// this project's 2-core AMD EPYC VM, 2 threads, 512 MiB: 16-byte loads (the portable probe) read
// 48-50 GB/s where these read 52 in one machine state and 65 against 77 in another, while the
// F16 decoding kernel itself streamed up to 87 GB/s -- narrow loads keep fewer cache lines in
// flight, so they understate the bound.
template <bool kPrefetch>
uint64_t ReadSumWith(const uint8_t* p, int64_t n, int64_t distance) {
  __m512i s[8];
  for (__m512i& x : s) x = _mm512_setzero_si512();
  for (int64_t i = 0; i < n; i += 512) {
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      if constexpr (kPrefetch) {
        _mm_prefetch(reinterpret_cast<const char*>(p + i + distance + 64 * k), _MM_HINT_NTA);
      }
      s[k] = _mm512_add_epi64(s[k], _mm512_load_si512(p + i + 64 * k));
    }
  }
  for (int k = 1; k < 8; ++k) s[0] = _mm512_add_epi64(s[0], s[k]);
  return static_cast<uint64_t>(_mm512_reduce_add_epi64(s[0]));
}

uint64_t ReadSum(const uint8_t* p, int64_t n, int64_t prefetch_bytes) {
  return prefetch_bytes > 0 ? ReadSumWith<true>(p, n, prefetch_bytes)
                            : ReadSumWith<false>(p, n, 0);
}

namespace {
// A decoding call (MatMul of 1-2 tokens: the tile sees t0 == 0) runs the streaming micro-kernels
// above; every other tile -- including the 1-2 token remainder of a longer input's last token
// block -- runs the packed-panel tiles of kernels_avx512_gemm.cc. A token's outputs must not
// depend on how many other tokens share its tile: the scheduler's batches would otherwise give
// other bits, and after the activations are re-quantised other greedy tokens, than the same
// prompt alone (SchedulerTest.GreedyTokensAreTheSameAloneAndInABatchOfEight caught a threshold
// that sent tiles of fewer than 16 tokens to the older decoded-row kernels).
template <TileFn kGemv, TileFn kGemm>
void GemvOrGemm(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  (t0 == 0 && t1 <= kGemvMaxTokens ? kGemv : kGemm)(a, r0, r1, t0, t1);
}
// K-quants: the dot kernels and the per-call panels give a token the same bits, so the choice
// can follow speed alone. Packing pays off from about a dozen tokens per tile (GemmTokens,
// 1536x1536 from DRAM, 2 threads, Q4_K GFLOP/s dot / panels: 4 tokens 250 / 160, 8: 325 / 280,
// 12: 330 / 375, 16: 330 / 450, 32: 345 / 680; Q6_K alike).
constexpr int64_t kKQuantDotMaxTokens = 8;
template <TileFn kDot, TileFn kGemm>
void DotOrGemm(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  (t1 - t0 <= kKQuantDotMaxTokens ? kDot : kGemm)(a, r0, r1, t0, t1);
}
}  // namespace

const IsaKernels& Avx512Kernels() {
  static const IsaKernels k = [] {
    IsaKernels t;
    t.tile[static_cast<int>(WKind::kF32)] = GemvOrGemm<TileWith<F32K, 8, 2>, Avx512GemmF32>;
    t.tile[static_cast<int>(WKind::kF16)] = GemvOrGemm<TileWith<F16K, 8, 2>, Avx512GemmF16>;
    t.tile[static_cast<int>(WKind::kBf16)] = GemvOrGemm<TileWith<Bf16K, 8, 2>, Avx512GemmBf16>;
    t.tile[static_cast<int>(WKind::kQ8_0)] = GemvOrGemm<TileWith<Q8_0K, 4, 2>, Avx512GemmQ8_0>;
    t.tile[static_cast<int>(WKind::kQ4_0)] = GemvOrGemm<TileWith<Q4_0K, 4, 2>, Avx512GemmQ4_0>;
    t.tile[static_cast<int>(WKind::kIQ4_NL)] = TileWith<IQ4_NLK, 4, 2>;
    t.tile[static_cast<int>(WKind::kQ4_K)] = DotOrGemm<Tile<Q4_KK, 4, 3, 3>, Avx512GemmQ4_K>;
    t.tile[static_cast<int>(WKind::kQ6_K)] = DotOrGemm<Tile<Q6_KK, 4, 3, 3>, Avx512GemmQ6_K>;
    t.tile[static_cast<int>(WKind::kQ2_K)] = DotOrGemm<Tile<Q2_KK, 4, 4, 4>, Avx512GemmQ2_K>;
    t.tile[static_cast<int>(WKind::kQ3_K)] = DotOrGemm<Tile<Q3_KK, 4, 4, 4>, Avx512GemmQ3_K>;
    t.tile[static_cast<int>(WKind::kIQ4_XS)] = DotOrGemm<Tile<IQ4_XSK, 4, 3, 3>, Avx512GemmIQ4_XS>;
    t.tile[static_cast<int>(WKind::kQ8_0P)] = Avx512PanelsQ8_0;
    t.tile[static_cast<int>(WKind::kQ4_0P)] = Avx512PanelsQ4_0;
    t.tile[static_cast<int>(WKind::kIQ4_NLP)] = Avx512PanelsIQ4_NL;
    t.tile[static_cast<int>(WKind::kQ5_0P)] = Avx512PanelsQ5_0;
    t.tile[static_cast<int>(WKind::kQ5_1P)] = Avx512PanelsQ5_1;
    t.tile[static_cast<int>(WKind::kQ5_KP)] = Avx512PanelsQ5_K;
    t.tile[static_cast<int>(WKind::kQ4_KP)] = Avx512PanelsQ4_K;
    t.tile[static_cast<int>(WKind::kQ6_KP)] = Avx512PanelsQ6_K;
    t.tile[static_cast<int>(WKind::kQ3_KP)] = Avx512PanelsQ3_K;
    t.tile[static_cast<int>(WKind::kQ2_KP)] = Avx512PanelsQ2_K;
    t.tile[static_cast<int>(WKind::kIQ4_XSP)] = Avx512PanelsIQ4_XS;
    t.quantize_q8 = QuantizeQ8;
    t.quantize_q8k = QuantizeQ8K;
    t.quantize_q8x4 = QuantizeQ8x4;
    t.gemv[static_cast<int>(WKind::kQ8_0)] = {TileGemvQ8x4<GroupQ8_0>, ActFormat::kQ8x4};
    t.gemv[static_cast<int>(WKind::kQ4_0)] = {TileGemvQ8x4<GroupQ4_0>, ActFormat::kQ8x4};
    t.gemv[static_cast<int>(WKind::kF32)] = {TileGemvFloat<LoadF32>, ActFormat::kFloat};
    t.gemv[static_cast<int>(WKind::kF16)] = {TileGemvFloat<LoadF16>, ActFormat::kFloat};
    t.gemv[static_cast<int>(WKind::kBf16)] = {TileGemvFloat<LoadBf16>, ActFormat::kFloat};
    if (Avx512OnHalfWidthUnits()) {
      // Zen 4 runs each 512-bit operation as two halves, and its 512-bit fp16 conversion is
      // slow: this loop streamed F16 weights at half a core's read rate there. The AVX2 loop
      // (256-bit vectors; other summation order, so other bits than this loop) streams ~1.5x
      // faster (Qwen2.5-0.5B F16, one thread, both without software prefetch: 15.8-16.5 ->
      // 23.0-24.3 tokens/s; docs/benchmarks.md, "Zen 4").
      for (WKind k : {WKind::kF32, WKind::kF16, WKind::kBf16}) {
        t.gemv[static_cast<int>(k)] = Avx2Kernels().gemv[static_cast<int>(k)];
      }
    }
    t.scores = Scores;
    t.weighted_sum = WeightedSum;
    t.half_to_float = HalfToFloatRow;
    t.float_to_half = FloatToHalfRow;
    t.silu_mul = SiluMulRow;
    t.softmax = SoftmaxRow;
    t.read_sum = ReadSum;
    return t;
  }();
  return k;
}

}  // namespace yunzhi::engine::kernels::internal
