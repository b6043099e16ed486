// Scalar reference kernels: portable C++ that every SIMD variant is tested against, and the
// fallback on CPUs without AVX2. Written for clarity first; the compiler may still vectorise the
// simple loops for baseline x86-64 (SSE2).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "engine/kernels/kernels_internal.h"

namespace yunzhi::engine::kernels {
namespace internal {
namespace {

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

float LoadF32(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Blocks whose largest magnitude is below this quantise to zero: 127 / amax would overflow for
// tiny (denormal) amax, and such a block contributes nothing measurable next to any other.
constexpr float kTinyAmax = 1e-30f;

// ---- float weights

void TileF32(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const auto* x = reinterpret_cast<const float*>(a.x + t * a.x_stride_bytes);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* w = a.w + r * a.w_row_bytes;
      float sum = 0.0f;
      for (int64_t c = 0; c < a.cols; ++c) sum += LoadF32(w + 4 * c) * x[c];
      a.y[t * a.ldy + r] = sum;
    }
  }
}

void TileF16(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const auto* x = reinterpret_cast<const float*>(a.x + t * a.x_stride_bytes);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* w = a.w + r * a.w_row_bytes;
      float sum = 0.0f;
      for (int64_t c = 0; c < a.cols; ++c) sum += HalfToFloatRef(LoadU16(w + 2 * c)) * x[c];
      a.y[t * a.ldy + r] = sum;
    }
  }
}

void TileBf16(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const auto* x = reinterpret_cast<const float*>(a.x + t * a.x_stride_bytes);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* w = a.w + r * a.w_row_bytes;
      float sum = 0.0f;
      for (int64_t c = 0; c < a.cols; ++c) sum += Bf16ToFloat(LoadU16(w + 2 * c)) * x[c];
      a.y[t * a.ldy + r] = sum;
    }
  }
}

// ---- Q8_0 / Q4_0 / Q5_0 / Q5_1 weights x kQ8 activations: integer dot per 32-block, scaled in
// float.

void TileQ8_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t nb = a.cols / kQK8_0;
  for (int64_t t = t0; t < t1; ++t) {
    const ActQ8Row x = ViewQ8(a.x + t * a.x_stride_bytes, a.cols);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* blk = a.w + r * a.w_row_bytes;
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; ++b, blk += sizeof(BlockQ8_0)) {
        const auto* qs = reinterpret_cast<const int8_t*>(blk + 2);
        const int8_t* xq = x.qs + b * kQK8_0;
        int32_t isum = 0;
        for (int i = 0; i < kQK8_0; ++i) isum += qs[i] * xq[i];
        sum += HalfToFloatRef(LoadU16(blk)) * x.d[b] * static_cast<float>(isum);
      }
      a.y[t * a.ldy + r] = sum;
    }
  }
}

// Q4_0, Q5_0, Q5_1, IQ4_NL (F: NibblesQ4_0 etc.): a block's 32 values q (Q5: with the fifth bit
// from qh, bit j for element j), then value = (q - kOffset) * d, IQ4_NL's kIq4nlValues[q] * d, or
// Q5_1's q * d + m (whose min applies to the sum of the block's x, which ds holds: d_w * d_x *
// sum q x + m_w * ds).
template <class F>
void TileNibbles(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t nb = a.cols / 32;
  for (int64_t t = t0; t < t1; ++t) {
    const ActQ8Row x = ViewQ8(a.x + t * a.x_stride_bytes, a.cols);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* blk = a.w + r * a.w_row_bytes;
      float sum = 0.0f;
      for (int64_t b = 0; b < nb; ++b, blk += sizeof(typename F::Block)) {
        uint32_t qh = 0;
        if constexpr (F::kQh >= 0) std::memcpy(&qh, blk + F::kQh, sizeof qh);
        const uint8_t* qs = blk + F::kQs;
        constexpr int kOffset = static_cast<int>(F::kOffset);
        const int8_t* xq = x.qs + b * 32;
        int32_t isum = 0;
        for (int j = 0; j < 16; ++j) {
          const int lo = (qs[j] & 0x0F) | static_cast<int>((qh >> j) & 1) << 4;
          const int hi = (qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1) << 4;
          if constexpr (F::kTable) {
            isum += kIq4nlValues[static_cast<size_t>(lo)] * xq[j] +
                    kIq4nlValues[static_cast<size_t>(hi)] * xq[j + 16];
          } else {
            isum += (lo - kOffset) * xq[j] + (hi - kOffset) * xq[j + 16];
          }
        }
        float v = HalfToFloatRef(LoadU16(blk)) * x.d[b] * static_cast<float>(isum);
        if constexpr (F::kMin >= 0) v += HalfToFloatRef(LoadU16(blk + F::kMin)) * x.ds[b];
        sum += v;
      }
      a.y[t * a.ldy + r] = sum;
    }
  }
}
constexpr TileFn TileQ4_0 = TileNibbles<NibblesQ4_0>;
constexpr TileFn TileQ5_0 = TileNibbles<NibblesQ5_0>;
constexpr TileFn TileQ5_1 = TileNibbles<NibblesQ5_1>;
constexpr TileFn TileIQ4_NL = TileNibbles<NibblesIQ4_NL>;

// Panel-layout Q8_0/Q4_0/Q5_0/Q5_1: each row back in its blocks, then the row-layout tile above (a
// reference, not a fast path: only an ISA without a panel kernel for the type runs it).
template <WKind kKind, TileFn kRowTile>
void TilePanels(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  std::vector<uint8_t> row(static_cast<size_t>(a.w_row_bytes));
  for (int64_t r = r0; r < r1; ++r) {
    PanelRowToBlocks(kKind, a.w, r, a.cols, row.data());
    TileArgs one = a;
    one.w = row.data();
    one.y = a.y + r;
    kRowTile(one, 0, 1, t0, t1);
  }
}

// ---- K-quants and IQ4_XS x kQ8K activations.

// Sub-block s's 6-bit scale and min (layout in tensor_type.h).
void ScaleMinK4(int s, const uint8_t* q, int* scale, int* min) {
  if (s < 4) {
    *scale = q[s] & 63;
    *min = q[s + 4] & 63;
  } else {
    *scale = (q[s + 4] & 0x0F) | ((q[s - 4] >> 6) << 4);
    *min = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

// value = d * sc[s] * q - dmin * m[s] (Q4_K: q the nibble; Q5_K: with bit 4 from qh, bit 2c of
// qh[l] for chunk c's first 32 elements and 2c + 1 for the next 32); so per super-block
//   dot = dx * (d * sum_s sc[s] * sum_i q_i x_i  -  dmin * sum_s m[s] * sum_i x_i).
template <bool kQ5>
float DotKQuant4Ref(const uint8_t* blk, ActQ8KRow x, int64_t nb) {
  using Block = std::conditional_t<kQ5, BlockQ5_K, BlockQ4_K>;
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, blk += sizeof(Block)) {
    const float d = HalfToFloatRef(LoadU16(blk));
    const float dmin = HalfToFloatRef(LoadU16(blk + 2));
    const uint8_t* scales = blk + 4;
    const uint8_t* qh = blk + 4 + kKScaleBytes;  // Q5_K only
    const uint8_t* qs = qh + (kQ5 ? kQK_K / 8 : 0);
    const int8_t* xq = x.qs + b * kQK_K;
    const int16_t* bs = x.bsums + b * (kQK_K / 16);
    int32_t sumi = 0, summ = 0;
    for (int chunk = 0; chunk < 4; ++chunk) {
      int sc0, m0, sc1, m1;
      ScaleMinK4(2 * chunk, scales, &sc0, &m0);
      ScaleMinK4(2 * chunk + 1, scales, &sc1, &m1);
      int32_t lo = 0, hi = 0;
      for (int l = 0; l < 32; ++l) {
        int q0 = qs[32 * chunk + l] & 0x0F, q1 = qs[32 * chunk + l] >> 4;
        if constexpr (kQ5) {
          q0 |= (qh[l] >> (2 * chunk) & 1) << 4;
          q1 |= (qh[l] >> (2 * chunk + 1) & 1) << 4;
        }
        lo += q0 * xq[64 * chunk + l];
        hi += q1 * xq[64 * chunk + 32 + l];
      }
      sumi += sc0 * lo + sc1 * hi;
      summ +=
          m0 * (bs[4 * chunk] + bs[4 * chunk + 1]) + m1 * (bs[4 * chunk + 2] + bs[4 * chunk + 3]);
    }
    sum += x.d[b] * (d * static_cast<float>(sumi) - dmin * static_cast<float>(summ));
  }
  return sum;
}

// value = d * scales[i / 16] * (q - 32).
float DotQ6_KRef(const uint8_t* blk, ActQ8KRow x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, blk += sizeof(BlockQ6_K)) {
    const uint8_t* ql = blk;
    const uint8_t* qh = blk + kQK_K / 2;
    const auto* sc = reinterpret_cast<const int8_t*>(blk + kQK_K / 2 + kQK_K / 4);
    const float d = HalfToFloatRef(LoadU16(blk + kQK_K / 2 + kQK_K / 4 + kQK_K / 16));
    const int8_t* xq = x.qs + b * kQK_K;
    int q[kQK_K];
    for (int h = 0; h < 2; ++h) {
      for (int l = 0; l < 32; ++l) {
        const uint8_t l0 = ql[64 * h + l], l1 = ql[64 * h + l + 32], hb = qh[32 * h + l];
        q[128 * h + l] = (l0 & 0x0F) | ((hb >> 0) & 3) << 4;
        q[128 * h + l + 32] = (l1 & 0x0F) | ((hb >> 2) & 3) << 4;
        q[128 * h + l + 64] = (l0 >> 4) | ((hb >> 4) & 3) << 4;
        q[128 * h + l + 96] = (l1 >> 4) | ((hb >> 6) & 3) << 4;
      }
    }
    int32_t sumi = 0;
    for (int j = 0; j < kQK_K / 16; ++j) {
      int32_t s = 0;
      for (int i = 0; i < 16; ++i) s += (q[16 * j + i] - 32) * xq[16 * j + i];
      sumi += sc[j] * s;
    }
    sum += d * x.d[b] * static_cast<float>(sumi);
  }
  return sum;
}

// value = d * (ls[s] - 32) * kIq4nlValues[q] (layout in tensor_type.h): per super-block
//   dot = dx * d * sum_s (ls[s] - 32) * sum_i kIq4nlValues[q_i] x_i.
float DotIQ4_XSRef(const uint8_t* blk, ActQ8KRow x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, blk += sizeof(BlockIQ4_XS)) {
    const float d = HalfToFloatRef(LoadU16(blk));
    const uint16_t scales_h = LoadU16(blk + offsetof(BlockIQ4_XS, scales_h));
    const uint8_t* scales_l = blk + offsetof(BlockIQ4_XS, scales_l);
    const uint8_t* qs = blk + offsetof(BlockIQ4_XS, qs);
    const int8_t* xq = x.qs + b * kQK_K;
    int32_t sumi = 0;
    for (int s = 0; s < 8; ++s) {
      const int ls = (scales_l[s / 2] >> (4 * (s % 2)) & 15) | (scales_h >> (2 * s) & 3) << 4;
      int32_t dot = 0;
      for (int j = 0; j < 16; ++j) {
        dot += kIq4nlValues[qs[16 * s + j] & 0x0F] * xq[32 * s + j] +
               kIq4nlValues[qs[16 * s + j] >> 4] * xq[32 * s + 16 + j];
      }
      sumi += (ls - 32) * dot;
    }
    sum += d * x.d[b] * static_cast<float>(sumi);
  }
  return sum;
}

// Q3_K: value = d * sc[s] * q, q in [-4, 3], sub-blocks of 16 (layout in tensor_type.h); the
// signed values directly, with no use of the activation sums (the AVX2 kernel uses them, so the
// two compute the same integers two ways). Per super-block the exact integer
//   sumi = sum_s sc[s] * sum_{i in s} q_i x_i,
// then one float step, Q6_K's (the AVX-512 prompt path runs Q6_K's panels), fused explicitly so
// that a kernel built with FMA gives the same bits:
//   sum = fma(dx, d * sumi, sum).
float DotQ3_KRef(const uint8_t* blk, ActQ8KRow x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, blk += sizeof(BlockQ3_K)) {
    const uint8_t* hmask = blk + offsetof(BlockQ3_K, hmask);
    const uint8_t* qs = blk + offsetof(BlockQ3_K, qs);
    const uint8_t* scales = blk + offsetof(BlockQ3_K, scales);
    const float d = HalfToFloatRef(LoadU16(blk + offsetof(BlockQ3_K, d)));
    const int8_t* xq = x.qs + b * kQK_K;
    int32_t sumi = 0;
    // Sub-block s = 8n + 2j + half: elements 128n + 32j + 16 half + i, i = 0..15.
    for (int n = 0; n < 2; ++n) {
      for (int j = 0; j < 4; ++j) {
        for (int half = 0; half < 2; ++half) {
          const int s = 8 * n + 2 * j + half;
          const int low4 = s < 8 ? scales[s] & 0x0F : scales[s - 8] >> 4;
          const int high2 = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
          const int sc = (low4 | high2 << 4) - 32;
          const int8_t* xs = xq + 16 * s;
          // The values first, then the dot: GCC 12 with -march=native (AVX-512) vectorised the
          // fused loop wrongly (a standalone copy of it gave other sums than at -O2 alone).
          int8_t q[16];
          for (int i = 0; i < 16; ++i) {
            const int l = 16 * half + i;
            const int q2 = (qs[32 * n + l] >> (2 * j)) & 3;
            const int h = (hmask[l] >> (4 * n + j)) & 1;
            q[i] = static_cast<int8_t>(q2 - 4 + 4 * h);
          }
          int32_t dot = 0;
          for (int i = 0; i < 16; ++i) dot += q[i] * xs[i];
          sumi += sc * dot;
        }
      }
    }
    sum = std::fma(x.d[b], d * static_cast<float>(sumi), sum);
  }
  return sum;
}

// Q2_K: value = d * sc[s] * q - dmin * m[s], q in [0, 3], sub-blocks of 16 (layout in
// tensor_type.h); per super-block the exact integers
//   sumi = sum_s sc[s] * sum_{i in s} q_i x_i,   summ = sum_s m[s] * sum_{i in s} x_i (bsums),
// then the float steps, fused explicitly as DotQ3_KRef's:
//   sum = fma(dx, fma(d, sumi, -(dmin * summ)), sum).
float DotQ2_KRef(const uint8_t* blk, ActQ8KRow x, int64_t nb) {
  float sum = 0.0f;
  for (int64_t b = 0; b < nb; ++b, blk += sizeof(BlockQ2_K)) {
    const uint8_t* scales = blk + offsetof(BlockQ2_K, scales);
    const uint8_t* qs = blk + offsetof(BlockQ2_K, qs);
    const float d = HalfToFloatRef(LoadU16(blk + offsetof(BlockQ2_K, d)));
    const float dmin = HalfToFloatRef(LoadU16(blk + offsetof(BlockQ2_K, dmin)));
    const int8_t* xq = x.qs + b * kQK_K;
    const int16_t* bs = x.bsums + b * (kQK_K / 16);
    int32_t sumi = 0, summ = 0;
    // Sub-block s = 8n + 2j + half: elements 128n + 32j + 16 half + i, i = 0..15.
    for (int n = 0; n < 2; ++n) {
      for (int j = 0; j < 4; ++j) {
        for (int half = 0; half < 2; ++half) {
          const int s = 8 * n + 2 * j + half;
          const int8_t* xs = xq + 16 * s;
          int32_t dot = 0;
          for (int i = 0; i < 16; ++i) {
            dot += ((qs[32 * n + 16 * half + i] >> (2 * j)) & 3) * xs[i];
          }
          sumi += (scales[s] & 0x0F) * dot;
          summ += (scales[s] >> 4) * bs[s];
        }
      }
    }
    const float v = std::fma(d, static_cast<float>(sumi), -(dmin * static_cast<float>(summ)));
    sum = std::fma(x.d[b], v, sum);
  }
  return sum;
}

// The super-block types against kQ8K rows: each row's dot product with each token's activations.
template <float (*kDot)(const uint8_t*, ActQ8KRow, int64_t)>
void TileQ8K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    const ActQ8KRow x = ViewQ8K(a.x + t * a.x_stride_bytes, a.cols);
    for (int64_t r = r0; r < r1; ++r) {
      a.y[t * a.ldy + r] = kDot(a.w + r * a.w_row_bytes, x, a.cols / kQK_K);
    }
  }
}
constexpr TileFn TileQ2_K = TileQ8K<DotQ2_KRef>;
constexpr TileFn TileQ3_K = TileQ8K<DotQ3_KRef>;
constexpr TileFn TileQ4_K = TileQ8K<DotKQuant4Ref<false>>;
constexpr TileFn TileQ5_K = TileQ8K<DotKQuant4Ref<true>>;
constexpr TileFn TileQ6_K = TileQ8K<DotQ6_KRef>;
constexpr TileFn TileIQ4_XS = TileQ8K<DotIQ4_XSRef>;

// ---- attention helpers

float KvAt(const void* row, bool f16, int64_t i) {
  return f16 ? HalfToFloatRef(static_cast<const uint16_t*>(row)[i])
             : static_cast<const float*>(row)[i];
}

void ScoresRef(const float* q, int64_t n_q, const void* const* k_rows, bool k_f16, int64_t n,
               int64_t head_dim, float scale, float* out) {
  for (int64_t h = 0; h < n_q; ++h) {
    for (int64_t j = 0; j < n; ++j) {
      float s = 0.0f;
      for (int64_t i = 0; i < head_dim; ++i) s += q[h * head_dim + i] * KvAt(k_rows[j], k_f16, i);
      out[h * n + j] = s * scale;
    }
  }
}

void WeightedSumRef(const float* p, int64_t n_q, const void* const* v_rows, bool v_f16,
                    int64_t n, int64_t head_dim, float* out) {
  std::fill(out, out + n_q * head_dim, 0.0f);
  for (int64_t h = 0; h < n_q; ++h) {
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < head_dim; ++i) {
        out[h * head_dim + i] += p[h * n + j] * KvAt(v_rows[j], v_f16, i);
      }
    }
  }
}

void HalfToFloatRow(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = HalfToFloatRef(x[i]);
}
void FloatToHalfRow(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = FloatToHalfRef(x[i]);
}

}  // namespace

float HalfToFloatRef(uint16_t h) { return engine::HalfToFloat(h); }
uint16_t FloatToHalfRef(float f) { return engine::FloatToHalf(f); }

void QuantizeActQ8Ref(const float* x, int64_t cols, uint8_t* out) {
  auto* qs = reinterpret_cast<int8_t*>(out);
  auto* d = reinterpret_cast<float*>(out + cols);
  float* ds = d + cols / kActQ8Block;
  for (int64_t b = 0; b < cols / kActQ8Block; ++b) {
    const float* xb = x + b * kActQ8Block;
    float amax = 0.0f;
    for (int i = 0; i < kActQ8Block; ++i) amax = std::max(amax, std::fabs(xb[i]));
    // NaN inputs would poison amax through fabs/max inconsistently; max() drops them here and
    // they quantise to 0 below, which keeps the integer path memory-safe.
    const bool tiny = !(amax >= kTinyAmax);
    const float id = tiny ? 0.0f : 127.0f / amax;
    int32_t sum = 0;
    for (int i = 0; i < kActQ8Block; ++i) {
      const float v = std::nearbyint(xb[i] * id);
      const int q = v >= 127.0f ? 127 : (v <= -127.0f ? -127 : (v == v ? static_cast<int>(v) : 0));
      qs[b * kActQ8Block + i] = static_cast<int8_t>(q);
      sum += q;
    }
    d[b] = tiny ? 0.0f : amax / 127.0f;
    ds[b] = d[b] * static_cast<float>(sum);
  }
}

void QuantizeActQ8x4Ref(const float* x, int64_t cols, uint8_t* out) {
  // The kQ8 numbers, regrouped (layout in kernels_internal.h).
  const int64_t nb = cols / kActQ8Block;
  std::vector<uint8_t> q8(static_cast<size_t>(ActStrideBytes(ActFormat::kQ8, cols)));
  QuantizeActQ8Ref(x, cols, q8.data());
  const ActQ8Row row = ViewQ8(q8.data(), cols);
  std::memset(out, 0, static_cast<size_t>(ActStrideBytes(ActFormat::kQ8x4, cols)));
  for (int64_t b = 0; b < nb; ++b) {
    uint8_t* group = out + (b / 4) * kActQ8x4GroupBytes;
    const int64_t k = b % 4;
    std::memcpy(group + 16 * k, row.qs + 32 * b, 16);
    std::memcpy(group + 64 + 16 * k, row.qs + 32 * b + 16, 16);
    auto* d = reinterpret_cast<float*>(group + 128);
    for (int i = 0; i < 4; ++i) {
      d[4 * k + i] = row.d[b];
      d[16 + 4 * k + i] = row.ds[b];
    }
  }
}

void QuantizeActQ8KRef(const float* x, int64_t cols, uint8_t* out) {
  auto* qs = reinterpret_cast<int8_t*>(out);
  auto* d = reinterpret_cast<float*>(out + cols);
  auto* bsums = reinterpret_cast<int16_t*>(d + cols / kActQ8KBlock);
  for (int64_t b = 0; b < cols / kActQ8KBlock; ++b) {
    const float* xb = x + b * kActQ8KBlock;
    float amax = 0.0f;
    for (int i = 0; i < kActQ8KBlock; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const bool tiny = !(amax >= kTinyAmax);
    const float id = tiny ? 0.0f : 127.0f / amax;
    for (int g = 0; g < kActQ8KBlock / 16; ++g) {
      int sum = 0;
      for (int i = 16 * g; i < 16 * g + 16; ++i) {
        const float v = std::nearbyint(xb[i] * id);
        const int q =
            v >= 127.0f ? 127 : (v <= -127.0f ? -127 : (v == v ? static_cast<int>(v) : 0));
        qs[b * kActQ8KBlock + i] = static_cast<int8_t>(q);
        sum += q;
      }
      bsums[b * (kActQ8KBlock / 16) + g] = static_cast<int16_t>(sum);
    }
    d[b] = tiny ? 0.0f : amax / 127.0f;
  }
}

void SoftmaxRef(float* x, int64_t n) {
  if (n <= 0) return;
  const float max = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  const float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void SiluMulRef(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

namespace {

// The portable probe read (ReadSumFn).
uint64_t ReadSumRef(const uint8_t* p, int64_t n, int64_t prefetch_bytes) {
  const bool prefetch = prefetch_bytes > 0;
#if defined(__SSE2__)
  // 16-byte loads into eight independent sums (a scalar 8-byte loop can itself be the limit at
  // ~40 GB/s). The AVX2/AVX-512 tables have wider ones, which read faster still.
  const auto* v = reinterpret_cast<const __m128i*>(p);
  __m128i s[8];
  for (__m128i& x : s) x = _mm_setzero_si128();
  for (int64_t i = 0; i < n / 16; i += 8) {
    if (prefetch) {
      for (int k = 0; k < 2; ++k) {
        _mm_prefetch(reinterpret_cast<const char*>(v + i) + prefetch_bytes + 64 * k,
                     _MM_HINT_NTA);
      }
    }
    for (int k = 0; k < 8; ++k) s[k] = _mm_add_epi64(s[k], _mm_load_si128(v + i + k));
  }
  __m128i t = _mm_setzero_si128();
  for (const __m128i& x : s) t = _mm_add_epi64(t, x);
  alignas(16) uint64_t lanes[2];
  _mm_store_si128(reinterpret_cast<__m128i*>(lanes), t);
  return lanes[0] + lanes[1];
#else
  uint64_t s[8] = {};
  for (int64_t i = 0; i < n; i += 64) {
    if (prefetch) __builtin_prefetch(p + i + prefetch_bytes, 0, 0);
    for (int k = 0; k < 8; ++k) {
      uint64_t x;
      std::memcpy(&x, p + i + 8 * k, 8);
      s[k] += x;
    }
  }
  uint64_t t = 0;
  for (uint64_t x : s) t += x;
  return t;
#endif
}

}  // namespace

const IsaKernels& ScalarKernels() {
  static const IsaKernels k = [] {
    IsaKernels t;
    t.tile[static_cast<int>(WKind::kF32)] = TileF32;
    t.tile[static_cast<int>(WKind::kF16)] = TileF16;
    t.tile[static_cast<int>(WKind::kBf16)] = TileBf16;
    t.tile[static_cast<int>(WKind::kQ8_0)] = TileQ8_0;
    t.tile[static_cast<int>(WKind::kQ4_0)] = TileQ4_0;
    t.tile[static_cast<int>(WKind::kQ5_0)] = TileQ5_0;
    t.tile[static_cast<int>(WKind::kQ5_1)] = TileQ5_1;
    t.tile[static_cast<int>(WKind::kQ4_K)] = TileQ4_K;
    t.tile[static_cast<int>(WKind::kQ5_K)] = TileQ5_K;
    t.tile[static_cast<int>(WKind::kQ6_K)] = TileQ6_K;
    t.tile[static_cast<int>(WKind::kIQ4_NL)] = TileIQ4_NL;
    t.tile[static_cast<int>(WKind::kIQ4_XS)] = TileIQ4_XS;
    t.tile[static_cast<int>(WKind::kQ2_K)] = TileQ2_K;
    t.tile[static_cast<int>(WKind::kQ3_K)] = TileQ3_K;
    t.tile[static_cast<int>(WKind::kQ8_0P)] = TilePanels<WKind::kQ8_0P, TileQ8_0>;
    t.tile[static_cast<int>(WKind::kQ4_0P)] = TilePanels<WKind::kQ4_0P, TileQ4_0>;
    t.tile[static_cast<int>(WKind::kIQ4_NLP)] = TilePanels<WKind::kIQ4_NLP, TileIQ4_NL>;
    t.tile[static_cast<int>(WKind::kQ5_0P)] = TilePanels<WKind::kQ5_0P, TileQ5_0>;
    t.tile[static_cast<int>(WKind::kQ5_1P)] = TilePanels<WKind::kQ5_1P, TileQ5_1>;
    t.tile[static_cast<int>(WKind::kQ4_KP)] = TilePanels<WKind::kQ4_KP, TileQ4_K>;
    t.tile[static_cast<int>(WKind::kQ5_KP)] = TilePanels<WKind::kQ5_KP, TileQ5_K>;
    t.tile[static_cast<int>(WKind::kQ6_KP)] = TilePanels<WKind::kQ6_KP, TileQ6_K>;
    t.tile[static_cast<int>(WKind::kQ3_KP)] = TilePanels<WKind::kQ3_KP, TileQ3_K>;
    t.tile[static_cast<int>(WKind::kQ2_KP)] = TilePanels<WKind::kQ2_KP, TileQ2_K>;
    t.tile[static_cast<int>(WKind::kIQ4_XSP)] = TilePanels<WKind::kIQ4_XSP, TileIQ4_XS>;
    t.quantize_q8 = QuantizeActQ8Ref;
    t.quantize_q8k = QuantizeActQ8KRef;
    t.quantize_q8x4 = QuantizeActQ8x4Ref;
    t.scores = ScoresRef;
    t.weighted_sum = WeightedSumRef;
    t.half_to_float = HalfToFloatRow;
    t.float_to_half = FloatToHalfRow;
    t.silu_mul = SiluMulRef;
    t.softmax = SoftmaxRef;
    t.read_sum = ReadSumRef;
    return t;
  }();
  return k;
}

}  // namespace internal

// ---- element-wise and normalisation: one portable version each (cheap next to the matmuls).

void RmsNorm(const float* x, const float* weight, float eps, int64_t n, float* y) {
  // In double (n is up to ~16k and the result scales everything after it), over 8 independent
  // sums: one chain of dependent additions took ~1 us for 896 values, twice per layer on the
  // thread every other core waits for.
  double part[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int k = 0; k < 8; ++k) part[k] += static_cast<double>(x[j + k]) * x[j + k];
  }
  for (; j < n; ++j) part[0] += static_cast<double>(x[j]) * x[j];
  const double ss = ((part[0] + part[1]) + (part[2] + part[3])) +
                    ((part[4] + part[5]) + (part[6] + part[7]));
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  if (weight != nullptr) {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv * weight[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = x[i] * inv;
  }
}

void AddInPlace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void RopeAngles(int64_t head_dim, int64_t pos, const float* inv_freq, float* cos_sin) {
  const int64_t half = head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    // Angle in double: pos * theta reaches 1e5+ rad at long context, where float loses the
    // fractional part that the rotation depends on.
    const double angle = static_cast<double>(pos) * inv_freq[i];
    cos_sin[i] = static_cast<float>(std::cos(angle));
    cos_sin[half + i] = static_cast<float>(std::sin(angle));
  }
}

void RopeRotate(float* x, int64_t n_heads, int64_t head_dim, const float* cos_sin, RopeStyle style) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* xh = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float c = cos_sin[i], s = cos_sin[half + i];
      const int64_t i0 = style == RopeStyle::kNormal ? 2 * i : i;
      const int64_t i1 = style == RopeStyle::kNormal ? 2 * i + 1 : i + half;
      const float a = xh[i0], b = xh[i1];
      xh[i0] = a * c - b * s;
      xh[i1] = a * s + b * c;
    }
  }
}

void Rope(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, const float* inv_freq,
          RopeStyle style) {
  std::vector<float> cos_sin(static_cast<size_t>(head_dim));
  RopeAngles(head_dim, pos, inv_freq, cos_sin.data());
  RopeRotate(x, n_heads, head_dim, cos_sin.data(), style);
}

}  // namespace yunzhi::engine::kernels
