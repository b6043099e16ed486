// AVX2 + FMA + F16C kernels (any x86-64 from Haswell / Zen 1 on), compiled with their own flags
// (see src/engine/CMakeLists.txt) and chosen at run time. Scalar references: kernels_ref.cc.
//
// Same structure as kernels_avx512.cc (see there): NR rows x NT tokens of accumulators per
// micro-kernel; quantised weights meet 8-bit activations in integer dot products. Without VNNI
// the integer product is VPMADDUBSW (u8 x s8 -> saturating s16 pair sums) then VPMADDWD. For Q8_0
// both operands are signed, so the sign of w moves onto x (|w| x sign(x, w)): |w| <= 128 and
// |x| <= 127 keep each pair sum within int16.
//
// Everything here has internal linkage (compiled with -mavx2: see kernels_avx512.cc).

#include <immintrin.h>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "engine/kernels/kernels_internal.h"

namespace yunzhi::engine::kernels::internal {
namespace {

inline float HalfBitsToFloat(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return _cvtsh_ss(h);
}

inline __m256 Zero() { return _mm256_setzero_ps(); }

// Software prefetch for decoding: see kernels_avx512.cc. Several rows are read side by side, and
// the hardware prefetchers alone were measured to leave the AVX2 kernels at a fraction of the
// bandwidth that a single sequential stream gets.
// Distance: 1 KiB ahead within long rows; for short rows (the micro-kernel's NR rows together
// span less than a few KiB) the same offset in the next group of NR rows, which is what the
// next call reads -- 1 KiB ahead would land in rows this call is already reading.
// One row at a time (nr == 1), a kernel streams its rows sequentially and prefetches a fixed
// distance ahead in address order, on into the next rows it reads; decoding takes rows of at
// least kLongRowBytes that way (with several interleaved long rows, the prefetch ran from the end
// of each row into the next row of the same group: see kernels_avx512.cc).
constexpr int64_t kPrefetchBytes = 1024;
// 2 KiB on Zen 3, the AVX2-only CPU these kernels run on for real: F16 rows of 896 columns, one
// thread, GB/s against a plain read of the same 512 MiB (scratch program): none 0.7-0.9x,
// 1-2 KiB 1.0-1.2x, 4 KiB 0.9-1.0x, 8 KiB 0.8-1.0x; DecodeStepFused F16 (2 threads) medians 1 KiB
// 21.5, none 20.7, 4 KiB 19.8 GB/s.
constexpr int64_t kSeqPrefetchBytes = 2048;
constexpr int64_t kLongRowBytes = 4096;
// One row at a time is one sequential stream, which some CPUs' hardware prefetcher streams
// faster alone (DecodeSoftwarePrefetch); interleaved rows always prefetch.
inline int64_t PrefetchDistance(int64_t row_bytes, int nr) {
  if (nr == 1) return DecodeSoftwarePrefetch() ? kSeqPrefetchBytes : 0;
  return row_bytes < 4096 ? nr * row_bytes : kPrefetchBytes;
}
// Non-temporal, as on AVX-512 (kernels_avx512.cc says why). `yunzhi bench --isa avx2 -t 2 -p 1
// -n 64 --bandwidth` on the AVX-512 machine, T0 -> NTA, one alternated round: the quantised
// types are bound by their arithmetic here and did not move (Q4_0 108 / 106 tokens/s, Q8_0 80 /
// 81, Q4_K 63 / 62); F16 64.4 -> 65.6.
inline void Prefetch(const uint8_t* p, int64_t distance) {
  if (distance > 0) _mm_prefetch(reinterpret_cast<const char*>(p + distance), _MM_HINT_NTA);
}

inline float Hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t HsumEpi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// u8 x s8 products summed over groups of 4 bytes into 8 int32 lanes.
inline __m256i DotU8S8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

// ---- tile driver (as in kernels_avx512.cc)

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
  for (int64_t r = r0; r < r1; r += MR) {
    const int nr = static_cast<int>(r1 - r < MR ? r1 - r : MR);
    for (int64_t t = t0; t < t1; t += MT) {
      const int nt = static_cast<int>(t1 - t < MT ? t1 - t : MT);
      fns[static_cast<size_t>((nr - 1) * MT + (nt - 1))](a, r, t);
    }
  }
}

template <template <int, int> class K, int GemvR, int GemmR, int GemmT>
void Tile(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  if (t1 - t0 <= 2) {
    if (a.w_row_bytes >= kLongRowBytes) {
      TileWith<K, 1, 2>(a, r0, r1, t0, t1);
    } else {
      TileWith<K, GemvR, 2>(a, r0, r1, t0, t1);
    }
  } else {
    TileWith<K, GemmR, GemmT>(a, r0, r1, t0, t1);
  }
}

// ---- float weights

struct LoadF32 {
  static constexpr int kBytes = 4;
  static __m256 Load(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
  static float One(const uint8_t* p) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
};
struct LoadF16 {
  static constexpr int kBytes = 2;
  static __m256 Load(const uint8_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static float One(const uint8_t* p) { return HalfBitsToFloat(p); }
};
struct LoadBf16 {
  static constexpr int kBytes = 2;
  static __m256 Load(const uint8_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static float One(const uint8_t* p) {
    uint32_t u = 0;
    std::memcpy(&u, p, 2);
    u <<= 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
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
      __m256 acc[NR][NT];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
      int64_t c = 0;
      for (; c + 8 <= a.cols; c += 8) {
        __m256 wv[NR];
        if (NT <= 2 && ((c * L::kBytes) & 63) == 0) {
          for (int i = 0; i < NR; ++i) Prefetch(w[i] + c * L::kBytes, pf);
        }
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) wv[i] = L::Load(w[i] + c * L::kBytes);
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m256 xv = _mm256_loadu_ps(x[j] + c);
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
        }
      }
      for (int j = 0; j < NT; ++j) {
        for (int i = 0; i < NR; ++i) {
          float s = Hsum(acc[i][j]);
          for (int64_t k = c; k < a.cols; ++k) s += L::One(w[i] + k * L::kBytes) * x[j][k];
          a.y[(t + j) * a.ldy + r + i] = s;
        }
      }
    }
  };
};

// Decoding with float weights: one row at a time, front to back (a sequential stream per core),
// four accumulators per token along the row; see kernels_avx512.cc.
template <class L, int NT>
void FloatRowsGemv(const TileArgs& a, int64_t r0, int64_t r1, int64_t t) {
  const float* x[NT];
  for (int j = 0; j < NT; ++j) {
    x[j] = reinterpret_cast<const float*>(a.x + (t + j) * a.x_stride_bytes);
  }
  const int64_t cols = a.cols;
  const int64_t pf = PrefetchDistance(a.w_row_bytes, 1);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* w = a.w + r * a.w_row_bytes;
    __m256 acc[NT][4];
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j)
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) acc[j][u] = Zero();
    int64_t c = 0;
    for (; c + 32 <= cols; c += 32) {
      const uint8_t* p = w + c * L::kBytes;
#pragma GCC unroll 4
      for (int o = 0; o < 32 * L::kBytes; o += 64) Prefetch(p + o, pf);
#pragma GCC unroll 4
      for (int u = 0; u < 4; ++u) {
        const __m256 wv = L::Load(p + 8 * u * L::kBytes);
#pragma GCC unroll 2
        for (int j = 0; j < NT; ++j)
          acc[j][u] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[j] + c + 8 * u), acc[j][u]);
      }
    }
    for (; c + 8 <= cols; c += 8) {
      const __m256 wv = L::Load(w + c * L::kBytes);
      for (int j = 0; j < NT; ++j) {
        acc[j][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[j] + c), acc[j][0]);
      }
    }
    for (int j = 0; j < NT; ++j) {
      float s = Hsum(_mm256_add_ps(_mm256_add_ps(acc[j][0], acc[j][1]),
                                   _mm256_add_ps(acc[j][2], acc[j][3])));
      for (int64_t k = c; k < cols; ++k) s += L::One(w + k * L::kBytes) * x[j][k];
      a.y[(t + j) * a.ldy + r] = s;
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

template <int NR, int NT>
using F32K = FloatMicro<LoadF32>::K<NR, NT>;
template <int NR, int NT>
using F16K = FloatMicro<LoadF16>::K<NR, NT>;
template <int NR, int NT>
using Bf16K = FloatMicro<LoadBf16>::K<NR, NT>;

// Prompt processing with F16/BF16 weights: each group of MR rows is widened to float once into a
// per-thread buffer (in L1), then every token tile of the block runs the F32 micro-kernel on it,
// instead of converting the same weights again for every token tile.
struct FloatBuffer {
  float* p = nullptr;
  int64_t n = 0;
  ~FloatBuffer() { std::free(p); }
  float* Get(int64_t count) {
    if (n < count) {
      std::free(p);
      n = (count + 1023) / 1024 * 1024;
      p = static_cast<float*>(std::aligned_alloc(64, static_cast<size_t>(n) * sizeof(float)));
    }
    return p;
  }
};

template <class L, int GemvR, int MR, int MT>
void TileWidened(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  if (t1 - t0 <= 2) {
    TileWith<FloatMicro<L>::template K, GemvR, 2>(a, r0, r1, t0, t1);
    return;
  }
  thread_local FloatBuffer buffer;
  float* rows = buffer.Get(MR * a.cols);
  const auto& fns = MicroTable<F32K, MR, MT>::kFns;
  for (int64_t r = r0; r < r1; r += MR) {
    const int nr = static_cast<int>(r1 - r < MR ? r1 - r : MR);
    for (int i = 0; i < nr; ++i) {
      const uint8_t* w = a.w + (r + i) * a.w_row_bytes;
      float* out = rows + i * a.cols;
      int64_t c = 0;
      for (; c + 8 <= a.cols; c += 8) _mm256_storeu_ps(out + c, L::Load(w + c * L::kBytes));
      for (; c < a.cols; ++c) out[c] = L::One(w + c * L::kBytes);
    }
    TileArgs b = a;
    b.w = reinterpret_cast<const uint8_t*>(rows);
    b.w_row_bytes = a.cols * static_cast<int64_t>(sizeof(float));
    b.y = a.y + r;
    for (int64_t t = t0; t < t1; t += MT) {
      const int nt = static_cast<int>(t1 - t < MT ? t1 - t : MT);
      fns[static_cast<size_t>((nr - 1) * MT + (nt - 1))](b, 0, t);
    }
  }
}

// ---- Q8_0 / Q4_0 / Q5_0 / Q5_1 x kQ8: one 32-element block per step.

template <int NR, int NT>
struct Q8_0K {
  static void Run(const TileArgs& a, int64_t r, int64_t t) {
    const int64_t nb = a.cols / 32;
    const uint8_t* w[NR];
    ActQ8Row x[NT];
    for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8(a.x + (t + j) * a.x_stride_bytes, a.cols);
    __m256 acc[NR][NT];
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
    for (int64_t b = 0; b < nb; ++b) {
      __m256i wabs[NR], wq[NR];
      float dw[NR];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i) {
        const uint8_t* p = w[i] + b * sizeof(BlockQ8_0);
        if (NT <= 2) Prefetch(p, pf);
        wq[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
        wabs[i] = _mm256_sign_epi8(wq[i], wq[i]);
        dw[i] = HalfBitsToFloat(p);
      }
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].qs + 32 * b));
        const float dx = x[j].d[b];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const __m256i dot = DotU8S8(wabs[i], _mm256_sign_epi8(xv, wq[i]));
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw[i] * dx), acc[i][j]);
        }
      }
    }
    for (int j = 0; j < NT; ++j)
      for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = Hsum(acc[i][j]);
  }
};

// Q4_0, Q5_0, Q5_1 and IQ4_NL (NibblesQ4_0 etc., kernels_internal.h; Q5's fifth bits from qh
// OR'd in as 16): per block, the u8 x s8 integer dot (pair sums of VPMADDUBSW within 2 * 31 *
// 127), scaled by d_w * d_x, and a per-block correction summed apart: Q4_0/Q5_0's offset (-8 or
// -16 times d_w * ds), Q5_1's min (m_w * ds). IQ4_NL's nibbles become their signed table values
// with one VPSHUFB (the 16 values fit one 128-bit lane) and meet x as Q8_0's signed weights do,
// |w| x sign(x, w) (|w| <= 127: pair sums within 2 * 127 * 127); no correction.

// The 32 fifth bits to 32 bytes, byte k = 0x10 if bit k of qh is set: qh broadcast to every
// dword, byte k takes source byte k / 8 (VPSHUFB works per 128-bit lane, and the broadcast puts
// all four bytes in each), its bit k % 8 is isolated and compared.
inline __m256i FifthBits(const uint8_t* qh) {
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const __m256i pick = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL,
                                          0x0303030303030303LL);
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
  const __m256i v = _mm256_and_si256(
      _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int32_t>(bits)), pick), bit);
  return _mm256_and_si256(_mm256_cmpeq_epi8(v, bit), _mm256_set1_epi8(0x10));
}

template <class F>
struct NibblesMicro {
  template <int NR, int NT>
  struct K {
    static void Run(const TileArgs& a, int64_t r, int64_t t) {
      const int64_t nb = a.cols / 32;
      const uint8_t* w[NR];
      ActQ8Row x[NT];
      for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
      for (int j = 0; j < NT; ++j) x[j] = ViewQ8(a.x + (t + j) * a.x_stride_bytes, a.cols);
      __m256 acc[NR][NT];
      float corr[NR][NT] = {};
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
      const __m128i mask = _mm_set1_epi8(0x0F);
      const __m256i table = _mm256_broadcastsi128_si256(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues.data())));
      for (int64_t b = 0; b < nb; ++b) {
        __m256i wv[NR], wabs[NR];  // wabs: IQ4_NL's |w| (wv then holds the signed values)
        float dw[NR], cw[NR];  // d_w, and the weight of ds in the correction
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const uint8_t* p = w[i] + b * sizeof(typename F::Block);
          if (NT <= 2 && (b & 1) == 0) Prefetch(p, pf);
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + F::kQs));
          wv[i] = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask),
                                   _mm_and_si128(q, mask));
          if constexpr (F::kQh >= 0) wv[i] = _mm256_or_si256(wv[i], FifthBits(p + F::kQh));
          if constexpr (F::kTable) {
            wv[i] = _mm256_shuffle_epi8(table, wv[i]);
            wabs[i] = _mm256_abs_epi8(wv[i]);
          }
          dw[i] = HalfBitsToFloat(p);
          cw[i] = F::kMin >= 0 ? HalfBitsToFloat(p + F::kMin) : dw[i];
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m256i xv =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].qs + 32 * b));
          const float dx = x[j].d[b];
          [[maybe_unused]] const float ds = x[j].ds[b];
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            const __m256i dot =
                F::kTable ? DotU8S8(wabs[i], _mm256_sign_epi8(xv, wv[i])) : DotU8S8(wv[i], xv);
            acc[i][j] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(dw[i] * dx), acc[i][j]);
            // Fused explicitly: left to -ffp-contract, some NR x NT instantiations fused this
            // and others did not, so a token's bits depended on its tile's shape.
            if constexpr (!F::kTable) corr[i][j] = std::fma(cw[i], ds, corr[i][j]);
          }
        }
      }
      // The min adds (fma by 1: the one rounding of the sum), the offset subtracts.
      constexpr float kCorr = F::kMin >= 0 ? 1.0f : -F::kOffset;
      for (int j = 0; j < NT; ++j) {
        for (int i = 0; i < NR; ++i) {
          a.y[(t + j) * a.ldy + r + i] =
              F::kTable ? Hsum(acc[i][j]) : std::fma(kCorr, corr[i][j], Hsum(acc[i][j]));
        }
      }
    }
  };
};
template <int NR, int NT>
using Q4_0K = NibblesMicro<NibblesQ4_0>::K<NR, NT>;
template <int NR, int NT>
using Q5_0K = NibblesMicro<NibblesQ5_0>::K<NR, NT>;
template <int NR, int NT>
using Q5_1K = NibblesMicro<NibblesQ5_1>::K<NR, NT>;
template <int NR, int NT>
using IQ4_NLK = NibblesMicro<NibblesIQ4_NL>::K<NR, NT>;

// ---- K-quants x kQ8K (scales applied in integers per super-block; see kernels_avx512.cc).

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

// Q4_K and Q5_K (kQ5: each quant's fifth bit from qh OR'd in as 16, q in [0, 31]; pair sums of
// VPMADDUBSW within 2 * 31 * 127, and each int32 lane, at most 32 products times a scale <= 63,
// stays below 2^24, so its conversion to float is exact as for Q4_K): the same integers per
// super-block and the same float steps.
template <bool kQ5>
struct KQuant4Micro {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  template <int NR, int NT>
  struct K {
    static void Run(const TileArgs& a, int64_t r, int64_t t) {
      const int64_t nb = a.cols / kQK_K;
      const uint8_t* w[NR];
      ActQ8KRow x[NT];
      for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
      for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride_bytes, a.cols);
      __m256 acc[NR][NT];
      float min_acc[NR][NT] = {};
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
      const __m256i nib = _mm256_set1_epi8(0x0F);
      const __m256i fifth = _mm256_set1_epi8(0x10);
      for (int64_t b = 0; b < nb; ++b) {
        uint64_t sc[NR];
        __m256i mins16[NR];
        float d[NR], dmin[NR];
        for (int i = 0; i < NR; ++i) {
          const uint8_t* p = w[i] + b * sizeof(Block);
          if (NT <= 2) {
            Prefetch(p, pf);
            Prefetch(p + 64, pf);
            Prefetch(p + 128, pf);
          }
          d[i] = HalfBitsToFloat(p);
          dmin[i] = HalfBitsToFloat(p + 2);
          uint64_t m;
          UnpackQ4_KScales(p + 4, &sc[i], &m);
          const __m128i m8 = _mm_cvtsi64_si128(static_cast<int64_t>(m));
          mins16[i] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));
        }
        __m256i isum[NR][NT];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
          for (int j = 0; j < NT; ++j) isum[i][j] = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
          __m256i lo[NR], hi[NR], slo[NR], shi[NR];
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            const uint8_t* qh = w[i] + b * sizeof(Block) + 4 + kKScaleBytes;  // Q5_K only
            const uint8_t* qs = qh + (kQ5 ? kQK_K / 8 : 0) + 32 * c;
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs));
            lo[i] = _mm256_and_si256(v, nib);
            hi[i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
            if constexpr (kQ5) {
              // Bits 2c and 2c + 1 of each qh byte to bits 0 and 1 (the 16-bit shift moves no
              // bit that is kept across a byte boundary), then to bit 4.
              const __m256i h = _mm256_srli_epi16(
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qh)), 2 * c);
              lo[i] = _mm256_or_si256(lo[i], _mm256_and_si256(_mm256_slli_epi16(h, 4), fifth));
              hi[i] = _mm256_or_si256(hi[i], _mm256_and_si256(_mm256_slli_epi16(h, 3), fifth));
            }
            slo[i] = _mm256_set1_epi16(static_cast<int16_t>((sc[i] >> (16 * c)) & 0xFF));
            shi[i] = _mm256_set1_epi16(static_cast<int16_t>((sc[i] >> (16 * c + 8)) & 0xFF));
          }
#pragma GCC unroll 8
          for (int j = 0; j < NT; ++j) {
            const int8_t* xq = x[j].qs + b * kQK_K + 64 * c;
            const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
            const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
#pragma GCC unroll 8
            for (int i = 0; i < NR; ++i) {
              const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[i], x0), slo[i]);
              const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi[i], x1), shi[i]);
              isum[i][j] = _mm256_add_epi32(isum[i][j], _mm256_add_epi32(p0, p1));
            }
          }
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m256i bs =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].bsums + 16 * b));
          const float dx = x[j].d[b];
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]),
                                        _mm256_set1_ps(d[i] * dx), acc[i][j]);
            min_acc[i][j] += dmin[i] * dx *
                             static_cast<float>(HsumEpi32(_mm256_madd_epi16(mins16[i], bs)));
          }
        }
      }
      for (int j = 0; j < NT; ++j)
        for (int i = 0; i < NR; ++i)
          a.y[(t + j) * a.ldy + r + i] = Hsum(acc[i][j]) - min_acc[i][j];
    }
  };
};
template <int NR, int NT>
using Q4_KK = KQuant4Micro<false>::K<NR, NT>;
template <int NR, int NT>
using Q5_KK = KQuant4Micro<true>::K<NR, NT>;

template <int NR, int NT>
struct Q6_KK {
  static void Run(const TileArgs& a, int64_t r, int64_t t) {
    const int64_t nb = a.cols / kQK_K;
    const uint8_t* w[NR];
    ActQ8KRow x[NT];
    for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
    const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride_bytes, a.cols);
    __m256 acc[NR][NT];
    float corr_acc[NR][NT] = {};
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
    const __m256i m0f = _mm256_set1_epi8(0x0F);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    for (int64_t b = 0; b < nb; ++b) {
      __m128i sc8[NR];
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
        sc8[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192));
      }
      __m256i isum[NR][NT];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) isum[i][j] = _mm256_setzero_si256();
      // Eighths of 32 elements: e = 32 * k covers the 16-groups 2k and 2k + 1.
      for (int k = 0; k < 8; ++k) {
        const int h = k / 4, part = k % 4;
        // Byte pattern selecting scale 2k for 8 lanes and 2k + 1 for the next 8.
        const __m128i sel = _mm_set_epi64x(0x0101010101010101LL * (2 * k + 1),
                                           0x0101010101010101LL * (2 * k));
        __m256i wv[NR], sv[NR];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const uint8_t* p = w[i] + b * sizeof(BlockQ6_K);
          const __m256i ql = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(p + 64 * h + 32 * (part % 2)));
          const __m256i qh =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * h));
          const __m256i low = part < 2 ? _mm256_and_si256(ql, m0f)
                                       : _mm256_and_si256(_mm256_srli_epi16(ql, 4), m0f);
          // High bits (qh >> 2 * part) & 3, moved to bits 4-5.
          __m256i high;
          switch (part) {
            case 0: high = _mm256_slli_epi16(qh, 4); break;
            case 1: high = _mm256_slli_epi16(qh, 2); break;
            case 2: high = qh; break;
            default: high = _mm256_srli_epi16(qh, 2); break;
          }
          wv[i] = _mm256_or_si256(low, _mm256_and_si256(high, m30));
          sv[i] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8[i], sel));
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m256i xv =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].qs + b * kQK_K + 32 * k));
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            isum[i][j] = _mm256_add_epi32(
                isum[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(wv[i], xv), sv[i]));
          }
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].bsums + 16 * b));
        const float dx = x[j].d[b];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const float s = d[i] * dx;
          acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]), _mm256_set1_ps(s), acc[i][j]);
          const int32_t corr = HsumEpi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8[i]), bs));
          corr_acc[i][j] += s * static_cast<float>(32 * corr);
        }
      }
    }
    for (int j = 0; j < NT; ++j)
      for (int i = 0; i < NR; ++i)
        a.y[(t + j) * a.ldy + r + i] = Hsum(acc[i][j]) - corr_acc[i][j];
  }
};

// IQ4_XS x kQ8K: per sub-block of 32, IQ4_NL's signed table values by one VPSHUFB and the |w| x
// sign(x, w) product (pair sums within 2 * 127 * 127), its pair sums weighted by the sub-block's
// ls - 32 in the VPMADDWD (so the scales cost nothing), summed in integers over the super-block:
// each int32 lane at most 8 * 2 * 32258 * 32 < 2^24, so its conversion to float is exact; then one
// float step per super-block, d_w * d_x.
template <int NR, int NT>
struct IQ4_XSK {
  static void Run(const TileArgs& a, int64_t r, int64_t t) {
    const int64_t nb = a.cols / kQK_K;
    const uint8_t* w[NR];
    ActQ8KRow x[NT];
    for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
    const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
    for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride_bytes, a.cols);
    __m256 acc[NR][NT];
#pragma GCC unroll 8
    for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) acc[i][j] = Zero();
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m256i table = _mm256_broadcastsi128_si256(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(kIq4nlValues.data())));
    for (int64_t b = 0; b < nb; ++b) {
      float d[NR];
      int16_t ls[NR][8];  // ls - 32 of each sub-block
      for (int i = 0; i < NR; ++i) {
        const uint8_t* p = w[i] + b * sizeof(BlockIQ4_XS);
        if (NT <= 2) {
          Prefetch(p, pf);
          Prefetch(p + 64, pf);
          Prefetch(p + 128, pf);
        }
        d[i] = HalfBitsToFloat(p);
        uint16_t scales_h;
        uint32_t scales_l;
        std::memcpy(&scales_h, p + offsetof(BlockIQ4_XS, scales_h), 2);
        std::memcpy(&scales_l, p + offsetof(BlockIQ4_XS, scales_l), 4);
        for (int s = 0; s < 8; ++s) {
          ls[i][s] = static_cast<int16_t>(
              ((scales_l >> (4 * s) & 15) | (scales_h >> (2 * s) & 3) << 4) - 32);
        }
      }
      __m256i isum[NR][NT];
#pragma GCC unroll 8
      for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) isum[i][j] = _mm256_setzero_si256();
      for (int s = 0; s < 8; ++s) {
        __m256i wv[NR], wabs[NR], sc[NR];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(
              w[i] + b * sizeof(BlockIQ4_XS) + offsetof(BlockIQ4_XS, qs) + 16 * s));
          wv[i] = _mm256_shuffle_epi8(
              table,
              _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), mask), _mm_and_si128(q, mask)));
          wabs[i] = _mm256_abs_epi8(wv[i]);
          sc[i] = _mm256_set1_epi16(ls[i][s]);
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m256i xv =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].qs + b * kQK_K + 32 * s));
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            const __m256i pairs = _mm256_maddubs_epi16(wabs[i], _mm256_sign_epi8(xv, wv[i]));
            isum[i][j] = _mm256_add_epi32(isum[i][j], _mm256_madd_epi16(pairs, sc[i]));
          }
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        const float dx = x[j].d[b];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i) {
          acc[i][j] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[i][j]), _mm256_set1_ps(d[i] * dx), acc[i][j]);
        }
      }
    }
    for (int j = 0; j < NT; ++j)
      for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = Hsum(acc[i][j]);
  }
};
// ---- Q2_K and Q3_K x kQ8K: sub-blocks of 16 (layouts in tensor_type.h). Eighth k = 4n + j of
// a super-block (elements 32k..32k+31, sub-blocks 2k and 2k + 1) takes its 2-bit fields from qs
// bytes 32n..32n+31 shifted by 2j, and Q3_K its high bits from bit k of the 32 hmask bytes. The
// values are unsigned (Q2_K's q in [0, 3]; Q3_K's u = q + 4 in [0, 7], the high bit as 4), so
// VPMADDUBSW multiplies them by the activations (pair sums within 2 * 7 * 127) and VPMADDWD by
// the sub-block scales; what the activation sums carry comes off once per super-block: Q3_K's
// offset (sumi = sum_s sc[s] * (sum u x - 4 * bsum[s])) and Q2_K's mins (summ = sum_s m[s] *
// bsum[s]). The integers are exact and the float steps are DotQ2_KRef's and DotQ3_KRef's, so
// every tile shape gives the scalar reference's bits.

// The 16 signed scales (sc[s] - 32, -32..31) of a Q3_K block (Q3_KScaleFields, kernels_internal.h)
// as one vector, byte s = sub-block s.
inline __m128i Q3_KScales(const uint8_t* q) {
  uint64_t lo, hi;
  Q3_KScaleFields(q, &lo, &hi);
  return _mm_sub_epi8(_mm_set_epi64x(static_cast<int64_t>(hi), static_cast<int64_t>(lo)),
                      _mm_set1_epi8(32));
}

template <bool kQ3>
struct KQuant16Micro {
  using Block = std::conditional_t<kQ3, BlockQ3_K, BlockQ2_K>;
  template <int NR, int NT>
  struct K {
    static void Run(const TileArgs& a, int64_t r, int64_t t) {
      const int64_t nb = a.cols / kQK_K;
      const uint8_t* w[NR];
      ActQ8KRow x[NT];
      for (int i = 0; i < NR; ++i) w[i] = a.w + (r + i) * a.w_row_bytes;
      const int64_t pf = PrefetchDistance(a.w_row_bytes, NR);
      for (int j = 0; j < NT; ++j) x[j] = ViewQ8K(a.x + (t + j) * a.x_stride_bytes, a.cols);
      float acc[NR][NT] = {};
      const __m256i three = _mm256_set1_epi8(3);
      const __m256i four = _mm256_set1_epi8(4);
      const __m128i nib = _mm_set1_epi8(0x0F);
      for (int64_t b = 0; b < nb; ++b) {
        __m128i sc8[NR], m8[NR];  // scales (Q3_K: signed) and Q2_K's mins, byte s = sub-block s
        float d[NR], dmin[NR];
        for (int i = 0; i < NR; ++i) {
          const uint8_t* p = w[i] + b * sizeof(Block);
          if (NT <= 2) {
            Prefetch(p, pf);
            Prefetch(p + 64, pf);
          }
          d[i] = HalfBitsToFloat(p + offsetof(Block, d));
          if constexpr (kQ3) {
            sc8[i] = Q3_KScales(p + offsetof(Block, scales));
          } else {
            const __m128i v =
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + offsetof(Block, scales)));
            sc8[i] = _mm_and_si128(v, nib);
            m8[i] = _mm_and_si128(_mm_srli_epi16(v, 4), nib);
            dmin[i] = HalfBitsToFloat(p + offsetof(BlockQ2_K, dmin));
          }
        }
        __m256i isum[NR][NT];
#pragma GCC unroll 8
        for (int i = 0; i < NR; ++i)
#pragma GCC unroll 8
          for (int j = 0; j < NT; ++j) isum[i][j] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          // Bytes selecting scale 2k for the first 16 elements and 2k + 1 for the next 16.
          const __m128i sel =
              _mm_set_epi64x(0x0101010101010101LL * (2 * k + 1), 0x0101010101010101LL * (2 * k));
          __m256i wv[NR], sv[NR];
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            const uint8_t* p = w[i] + b * sizeof(Block);
            const __m256i qs = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(p + offsetof(Block, qs) + 32 * (k / 4)));
            wv[i] = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * (k % 4)), three);
            if constexpr (kQ3) {
              const __m256i hm = _mm256_loadu_si256(
                  reinterpret_cast<const __m256i*>(p + offsetof(BlockQ3_K, hmask)));
              // Bit k of each hmask byte to bit 2: a 16-bit shift by at most 5 right or 2 left
              // brings bit 2 of each byte from the same byte.
              const __m256i h =
                  k >= 2 ? _mm256_srli_epi16(hm, k - 2) : _mm256_slli_epi16(hm, 2 - k);
              wv[i] = _mm256_or_si256(wv[i], _mm256_and_si256(h, four));
            }
            sv[i] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8[i], sel));
          }
#pragma GCC unroll 8
          for (int j = 0; j < NT; ++j) {
            const __m256i xv =
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].qs + b * kQK_K + 32 * k));
#pragma GCC unroll 8
            for (int i = 0; i < NR; ++i) {
              isum[i][j] = _mm256_add_epi32(
                  isum[i][j], _mm256_madd_epi16(_mm256_maddubs_epi16(wv[i], xv), sv[i]));
            }
          }
        }
#pragma GCC unroll 8
        for (int j = 0; j < NT; ++j) {
          const __m256i bs =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[j].bsums + 16 * b));
          const float dx = x[j].d[b];
#pragma GCC unroll 8
          for (int i = 0; i < NR; ++i) {
            if constexpr (kQ3) {
              const __m256i offset = _mm256_madd_epi16(_mm256_cvtepi8_epi16(sc8[i]), bs);
              const int32_t sumi =
                  HsumEpi32(_mm256_sub_epi32(isum[i][j], _mm256_slli_epi32(offset, 2)));
              acc[i][j] = std::fma(dx, d[i] * static_cast<float>(sumi), acc[i][j]);
            } else {
              const int32_t sumi = HsumEpi32(isum[i][j]);
              const int32_t summ = HsumEpi32(_mm256_madd_epi16(_mm256_cvtepu8_epi16(m8[i]), bs));
              const float v =
                  std::fma(d[i], static_cast<float>(sumi), -(dmin[i] * static_cast<float>(summ)));
              acc[i][j] = std::fma(dx, v, acc[i][j]);
            }
          }
        }
      }
      for (int j = 0; j < NT; ++j)
        for (int i = 0; i < NR; ++i) a.y[(t + j) * a.ldy + r + i] = acc[i][j];
    }
  };
};
template <int NR, int NT>
using Q2_KK = KQuant16Micro<false>::K<NR, NT>;
template <int NR, int NT>
using Q3_KK = KQuant16Micro<true>::K<NR, NT>;

// ---- activation quantisers (bit-identical to the references)

constexpr float kTinyAmax = 1e-30f;

inline __m256 Abs(__m256 v) {
  return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)));
}

inline float HmaxAbs(const float* x, int n) {
  __m256 m = Zero();
  for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, Abs(_mm256_loadu_ps(x + i)));
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i QuantizeVec(__m256 v, __m256 id) {
  __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(v, id));
  q = _mm256_max_epi32(q, _mm256_set1_epi32(-127));
  return _mm256_min_epi32(q, _mm256_set1_epi32(127));
}

// 32 int32 (four vectors, in order) -> 32 int8 in order.
inline __m256i PackToBytes(__m256i q0, __m256i q1, __m256i q2, __m256i q3) {
  const __m256i a = _mm256_packs_epi32(q0, q1);
  const __m256i b = _mm256_packs_epi32(q2, q3);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b),
                                     _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void QuantizeQ8(const float* x, int64_t cols, uint8_t* out) {
  auto* qs = reinterpret_cast<int8_t*>(out);
  auto* d = reinterpret_cast<float*>(out + cols);
  float* ds = d + cols / 32;
  for (int64_t b = 0; b < cols / 32; ++b) {
    const float* xb = x + 32 * b;
    const float amax = HmaxAbs(xb, 32);
    const bool tiny = !(amax >= kTinyAmax);
    const __m256 id = _mm256_set1_ps(tiny ? 0.0f : 127.0f / amax);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = QuantizeVec(_mm256_loadu_ps(xb + 8 * k), id);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + 32 * b), PackToBytes(q[0], q[1], q[2], q[3]));
    d[b] = tiny ? 0.0f : amax / 127.0f;
    const int32_t sum =
        HsumEpi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    ds[b] = d[b] * static_cast<float>(sum);
  }
}

void QuantizeQ8K(const float* x, int64_t cols, uint8_t* out) {
  auto* qs = reinterpret_cast<int8_t*>(out);
  auto* d = reinterpret_cast<float*>(out + cols);
  auto* bsums = reinterpret_cast<int16_t*>(d + cols / kQK_K);
  for (int64_t b = 0; b < cols / kQK_K; ++b) {
    const float* xb = x + kQK_K * b;
    const float amax = HmaxAbs(xb, kQK_K);
    const bool tiny = !(amax >= kTinyAmax);
    const __m256 id = _mm256_set1_ps(tiny ? 0.0f : 127.0f / amax);
    for (int g = 0; g < 8; ++g) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) q[k] = QuantizeVec(_mm256_loadu_ps(xb + 32 * g + 8 * k), id);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + kQK_K * b + 32 * g),
                          PackToBytes(q[0], q[1], q[2], q[3]));
      bsums[16 * b + 2 * g] = static_cast<int16_t>(HsumEpi32(_mm256_add_epi32(q[0], q[1])));
      bsums[16 * b + 2 * g + 1] = static_cast<int16_t>(HsumEpi32(_mm256_add_epi32(q[2], q[3])));
    }
    d[b] = tiny ? 0.0f : amax / 127.0f;
  }
}

// ---- attention and conversions

inline float KvOne(const void* row, bool f16, int64_t i) {
  if (f16) return _cvtsh_ss(static_cast<const uint16_t*>(row)[i]);
  return static_cast<const float*>(row)[i];
}
inline __m256 KvVec(const void* row, bool f16, int64_t i) {
  if (f16) {
    return _mm256_cvtph_ps(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(row) + i)));
  }
  return _mm256_loadu_ps(static_cast<const float*>(row) + i);
}

void ScoresOneHead(const float* q, const void* const* k_rows, bool k_f16, int64_t n,
                   int64_t head_dim, float scale, float* out) {
  for (int64_t j = 0; j < n; ++j) {
    __m256 acc = Zero();
    int64_t i = 0;
    for (; i + 8 <= head_dim; i += 8) {
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), KvVec(k_rows[j], k_f16, i), acc);
    }
    float s = Hsum(acc);
    for (; i < head_dim; ++i) s += q[i] * KvOne(k_rows[j], k_f16, i);
    out[j] = s * scale;
  }
}

void WeightedSumOneHead(const float* p, const void* const* v_rows, bool v_f16, int64_t n,
                        int64_t head_dim, float* out) {
  for (int64_t i = 0; i < head_dim; ++i) out[i] = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    const __m256 pj = _mm256_set1_ps(p[j]);
    int64_t i = 0;
    for (; i + 8 <= head_dim; i += 8) {
      _mm256_storeu_ps(out + i, _mm256_fmadd_ps(pj, KvVec(v_rows[j], v_f16, i), _mm256_loadu_ps(out + i)));
    }
    for (; i < head_dim; ++i) out[i] += p[j] * KvOne(v_rows[j], v_f16, i);
  }
}

// Grouped-query attention one query head at a time (the AVX-512 kernels share the fp16
// conversion between the heads of a group; here conversion is a small part of the work).
void Scores(const float* q, int64_t n_q, const void* const* k_rows, bool k_f16, int64_t n,
            int64_t head_dim, float scale, float* out) {
  for (int64_t h = 0; h < n_q; ++h) {
    ScoresOneHead(q + h * head_dim, k_rows, k_f16, n, head_dim, scale, out + h * n);
  }
}

void WeightedSum(const float* p, int64_t n_q, const void* const* v_rows, bool v_f16, int64_t n,
                 int64_t head_dim, float* out) {
  for (int64_t h = 0; h < n_q; ++h) {
    WeightedSumOneHead(p + h * n, v_rows, v_f16, n, head_dim, out + h * head_dim);
  }
}

void HalfToFloatRow(const uint16_t* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  }
  for (; i < n; ++i) y[i] = _cvtsh_ss(x[i]);
}

void FloatToHalfRow(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) y[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

// e^x for 8 lanes, as the AVX-512 version: x = n ln 2 + r, Taylor polynomial of e^r to r^7, times
// 2^n built in the exponent bits (n in [-126, 127] after the clamp); +inf above 88.72, where
// e^x overflows a float.
inline __m256 Exp(__m256 x) {
  const __m256 overflow = _mm256_cmp_ps(x, _mm256_set1_ps(88.72283935546875f), _CMP_GT_OQ);
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3f)), _mm256_set1_ps(-87.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n: (n + 127) << 23 as float bits; n + 127 is in [1, 254] after the clamp.
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_blendv_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)),
                          _mm256_set1_ps(std::numeric_limits<float>::infinity()), overflow);
}

void SiluMulRow(const float* gate, const float* up, float* out, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
  }
  if (i < n) SiluMulRef(gate + i, up + i, out + i, n - i);
}

}  // namespace

namespace {
// The bandwidth probe's read (ReadSumFn): 32-byte loads, eight independent sums (see the AVX-512
// one for why the width matters).
template <bool kPrefetch>
uint64_t ReadSumWith(const uint8_t* p, int64_t n, int64_t distance) {
  __m256i s[8];
  for (__m256i& x : s) x = _mm256_setzero_si256();
  for (int64_t i = 0; i < n; i += 256) {
    if constexpr (kPrefetch) {
      for (int k = 0; k < 4; ++k) {
        _mm_prefetch(reinterpret_cast<const char*>(p + i + distance + 64 * k), _MM_HINT_NTA);
      }
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      s[k] = _mm256_add_epi64(s[k], _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i) + k));
    }
  }
  for (int k = 1; k < 8; ++k) s[0] = _mm256_add_epi64(s[0], s[k]);
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s[0]);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

uint64_t ReadSum(const uint8_t* p, int64_t n, int64_t prefetch_bytes) {
  return prefetch_bytes > 0 ? ReadSumWith<true>(p, n, prefetch_bytes)
                            : ReadSumWith<false>(p, n, 0);
}
}  // namespace

const IsaKernels& Avx2Kernels() {
  static const IsaKernels k = [] {
    IsaKernels t;
    t.tile[static_cast<int>(WKind::kF32)] = Tile<F32K, 6, 3, 4>;
    t.tile[static_cast<int>(WKind::kF16)] = TileWidened<LoadF16, 6, 3, 4>;
    t.tile[static_cast<int>(WKind::kBf16)] = TileWidened<LoadBf16, 6, 3, 4>;
    t.tile[static_cast<int>(WKind::kQ8_0)] = Tile<Q8_0K, 4, 2, 4>;
    t.tile[static_cast<int>(WKind::kQ4_0)] = Tile<Q4_0K, 4, 2, 4>;
    t.tile[static_cast<int>(WKind::kQ5_0)] = Tile<Q5_0K, 4, 2, 4>;
    t.tile[static_cast<int>(WKind::kQ5_1)] = Tile<Q5_1K, 4, 2, 4>;
    t.tile[static_cast<int>(WKind::kQ4_K)] = Tile<Q4_KK, 4, 2, 2>;
    t.tile[static_cast<int>(WKind::kQ5_K)] = Tile<Q5_KK, 4, 2, 2>;
    t.tile[static_cast<int>(WKind::kQ6_K)] = Tile<Q6_KK, 4, 2, 2>;
    t.tile[static_cast<int>(WKind::kIQ4_NL)] = Tile<IQ4_NLK, 4, 2, 4>;
    t.tile[static_cast<int>(WKind::kIQ4_XS)] = Tile<IQ4_XSK, 4, 2, 2>;
    t.tile[static_cast<int>(WKind::kQ2_K)] = Tile<Q2_KK, 4, 2, 2>;
    t.tile[static_cast<int>(WKind::kQ3_K)] = Tile<Q3_KK, 4, 2, 2>;
    t.tile[static_cast<int>(WKind::kQ8_0P)] = Avx2PanelsQ8_0;
    t.tile[static_cast<int>(WKind::kQ4_0P)] = Avx2PanelsQ4_0;
    t.tile[static_cast<int>(WKind::kQ5_0P)] = Avx2PanelsQ5_0;
    t.tile[static_cast<int>(WKind::kQ4_KP)] = Avx2PanelsQ4_K;
    t.tile[static_cast<int>(WKind::kQ5_KP)] = Avx2PanelsQ5_K;
    t.tile[static_cast<int>(WKind::kQ6_KP)] = Avx2PanelsQ6_K;
    t.quantize_q8 = QuantizeQ8;
    t.quantize_q8k = QuantizeQ8K;
    t.gemv[static_cast<int>(WKind::kF32)] = {TileGemvFloat<LoadF32>, ActFormat::kFloat};
    t.gemv[static_cast<int>(WKind::kF16)] = {TileGemvFloat<LoadF16>, ActFormat::kFloat};
    t.gemv[static_cast<int>(WKind::kBf16)] = {TileGemvFloat<LoadBf16>, ActFormat::kFloat};
    t.scores = Scores;
    t.weighted_sum = WeightedSum;
    t.half_to_float = HalfToFloatRow;
    t.float_to_half = FloatToHalfRow;
    t.silu_mul = SiluMulRow;
    t.read_sum = ReadSum;
    return t;
  }();
  return k;
}

}  // namespace yunzhi::engine::kernels::internal
