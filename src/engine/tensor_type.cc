#include "yunzhi/engine/tensor_type.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>

#include <fmt/format.h>

namespace yunzhi::engine {

static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must be 34 bytes");
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block must be 18 bytes");
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block must be 22 bytes");
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block must be 24 bytes");
static_assert(sizeof(BlockIQ4_NL) == 18, "IQ4_NL block must be 18 bytes");
static_assert(sizeof(BlockIQ4_XS) == 136, "IQ4_XS block must be 136 bytes");
static_assert(sizeof(BlockQ2_K) == 84, "Q2_K block must be 84 bytes");
static_assert(offsetof(BlockQ2_K, dmin) == 82, "Q2_K dmin must be last");
static_assert(sizeof(BlockQ3_K) == 110, "Q3_K block must be 110 bytes");
static_assert(offsetof(BlockQ3_K, d) == 108, "Q3_K d must be last");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block must be 144 bytes");
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block must be 176 bytes");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block must be 210 bytes");
static_assert(offsetof(BlockQ6_K, d) == 208, "Q6_K d must be last");

namespace {

// Block sizes and bytes per block of every GGML type, as the GGUF format defines them.
constexpr std::array kTraits = {
    TypeTraits{TensorType::kF32, "F32", 1, 4, true},
    TypeTraits{TensorType::kF16, "F16", 1, 2, true},
    TypeTraits{TensorType::kQ4_0, "Q4_0", 32, 18, true},
    TypeTraits{TensorType::kQ4_1, "Q4_1", 32, 20, false},
    TypeTraits{TensorType::kQ5_0, "Q5_0", 32, 22, true},
    TypeTraits{TensorType::kQ5_1, "Q5_1", 32, 24, true},
    TypeTraits{TensorType::kQ8_0, "Q8_0", 32, 34, true},
    TypeTraits{TensorType::kQ8_1, "Q8_1", 32, 36, false},
    TypeTraits{TensorType::kQ2_K, "Q2_K", 256, 84, true},
    TypeTraits{TensorType::kQ3_K, "Q3_K", 256, 110, true},
    TypeTraits{TensorType::kQ4_K, "Q4_K", 256, 144, true},
    TypeTraits{TensorType::kQ5_K, "Q5_K", 256, 176, true},
    TypeTraits{TensorType::kQ6_K, "Q6_K", 256, 210, true},
    TypeTraits{TensorType::kQ8_K, "Q8_K", 256, 292, false},
    TypeTraits{TensorType::kIQ2_XXS, "IQ2_XXS", 256, 66, false},
    TypeTraits{TensorType::kIQ2_XS, "IQ2_XS", 256, 74, false},
    TypeTraits{TensorType::kIQ3_XXS, "IQ3_XXS", 256, 98, false},
    TypeTraits{TensorType::kIQ1_S, "IQ1_S", 256, 50, false},
    TypeTraits{TensorType::kIQ4_NL, "IQ4_NL", 32, 18, true},
    TypeTraits{TensorType::kIQ3_S, "IQ3_S", 256, 110, false},
    TypeTraits{TensorType::kIQ2_S, "IQ2_S", 256, 82, false},
    TypeTraits{TensorType::kIQ4_XS, "IQ4_XS", 256, 136, true},
    TypeTraits{TensorType::kI8, "I8", 1, 1, false},
    TypeTraits{TensorType::kI16, "I16", 1, 2, false},
    TypeTraits{TensorType::kI32, "I32", 1, 4, false},
    TypeTraits{TensorType::kI64, "I64", 1, 8, false},
    TypeTraits{TensorType::kF64, "F64", 1, 8, false},
    TypeTraits{TensorType::kIQ1_M, "IQ1_M", 256, 56, false},
    TypeTraits{TensorType::kBF16, "BF16", 1, 2, true},
    TypeTraits{TensorType::kTQ1_0, "TQ1_0", 256, 54, false},
    TypeTraits{TensorType::kTQ2_0, "TQ2_0", 256, 66, false},
    TypeTraits{TensorType::kMXFP4, "MXFP4", 32, 17, false},
    TypeTraits{TensorType::kNVFP4, "NVFP4", 64, 36, false},
    TypeTraits{TensorType::kQ1_0, "Q1_0", 128, 18, false},
};

// Indexed by GGML id; -1 for ids that are not listed.
constexpr auto kIndexById = [] {
  std::array<int, 64> index{};
  for (int& i : index) i = -1;
  for (size_t i = 0; i < kTraits.size(); ++i) {
    index[static_cast<uint32_t>(kTraits[i].type)] = static_cast<int>(i);
  }
  return index;
}();

// The supported types in the order users think of them (not id order).
constexpr std::array kSupportedOrder = {TensorType::kF32,    TensorType::kF16,   TensorType::kBF16,
                                        TensorType::kQ8_0,   TensorType::kQ4_0,  TensorType::kQ5_0,
                                        TensorType::kQ5_1,   TensorType::kQ2_K,  TensorType::kQ3_K,
                                        TensorType::kQ4_K,   TensorType::kQ5_K,  TensorType::kQ6_K,
                                        TensorType::kIQ4_NL, TensorType::kIQ4_XS};

char ToUpper(char c) { return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c; }

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void StoreU16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof v); }

// Round to nearest (ties to even). Saturates far outside any quant range, and maps NaN to 0, so
// that non-finite input cannot cause an undefined float-to-int conversion.
int RoundToInt(float x) {
  const float r = std::nearbyint(x);
  if (r >= -1e9f && r <= 1e9f) return static_cast<int>(r);
  return r > 0 ? 1000000000 : (r < 0 ? -1000000000 : 0);
}

// ---- Q8_0

constexpr size_t kQ8_0Bytes = sizeof(BlockQ8_0);

void DequantizeQ8_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, src += kQ8_0Bytes, dst += kQK8_0) {
    const float d = HalfToFloat(LoadU16(src));
    const auto* qs = reinterpret_cast<const int8_t*>(src + 2);
    for (int i = 0; i < kQK8_0; ++i) dst[i] = d * static_cast<float>(qs[i]);
  }
}

void QuantizeQ8_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, src += kQK8_0, dst += kQ8_0Bytes) {
    float amax = 0.0f;
    for (int i = 0; i < kQK8_0; ++i) amax = std::max(amax, std::fabs(src[i]));
    const uint16_t d_bits = FloatToHalf(amax / 127.0f);
    // Quantise with the scale as it will be stored, so the rounding matches what is decoded.
    const float d = HalfToFloat(d_bits);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreU16(dst, d_bits);
    auto* qs = reinterpret_cast<int8_t*>(dst + 2);
    for (int i = 0; i < kQK8_0; ++i) {
      qs[i] = static_cast<int8_t>(std::clamp(RoundToInt(src[i] * id), -127, 127));
    }
  }
}

// ---- Q4_0

constexpr size_t kQ4_0Bytes = sizeof(BlockQ4_0);

void DequantizeQ4_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_0; ++b, src += kQ4_0Bytes, dst += kQK4_0) {
    const float d = HalfToFloat(LoadU16(src));
    const uint8_t* qs = src + 2;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      dst[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
      dst[j + kQK4_0 / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
    }
  }
}

// The first of the values of largest magnitude (0 if all are 0), with its sign.
float LargestMagnitude(const float* x, int n) {
  float amax = 0.0f;
  float max = 0.0f;
  for (int i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  return max;
}

void QuantizeQ4_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_0; ++b, src += kQK4_0, dst += kQ4_0Bytes) {
    // The value of largest magnitude maps to -8, the end of [-8, 7] with the larger reach, so it
    // is represented exactly; values of the other sign are clamped at +7.
    const uint16_t d_bits = FloatToHalf(LargestMagnitude(src, kQK4_0) / -8.0f);
    const float d = HalfToFloat(d_bits);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreU16(dst, d_bits);
    uint8_t* qs = dst + 2;
    for (int j = 0; j < kQK4_0 / 2; ++j) {
      const int lo = std::clamp(RoundToInt(src[j] * id) + 8, 0, 15);
      const int hi = std::clamp(RoundToInt(src[j + kQK4_0 / 2] * id) + 8, 0, 15);
      qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

// ---- Q5_0 and Q5_1: 32 five-bit values, bits 0-3 in qs (element j low nibble of qs[j], j + 16
// its high one) and bit 4 of element e in bit e of qh (a little-endian 32-bit word).

constexpr size_t kQ5_0Bytes = sizeof(BlockQ5_0);
constexpr size_t kQ5_1Bytes = sizeof(BlockQ5_1);

void UnpackFiveBits(const uint8_t* qh_bytes, const uint8_t* qs, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, sizeof qh);
  for (int j = 0; j < 16; ++j) {
    q[j] = (qs[j] & 0x0F) | static_cast<int>((qh >> j) & 1) << 4;
    q[j + 16] = (qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1) << 4;
  }
}

void PackFiveBits(const int* q, uint8_t* qh_bytes, uint8_t* qs) {
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>((q[j] & 0x0F) | (q[j + 16] & 0x0F) << 4);
    qh |= static_cast<uint32_t>(q[j] >> 4) << j | static_cast<uint32_t>(q[j + 16] >> 4) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, sizeof qh);
}

void DequantizeQ5_0(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_0; ++b, src += kQ5_0Bytes, dst += kQK5_0) {
    const float d = HalfToFloat(LoadU16(src));
    std::array<int, kQK5_0> q;
    UnpackFiveBits(src + 2, src + 6, q.data());
    for (int j = 0; j < kQK5_0; ++j) dst[j] = static_cast<float>(q[j] - 16) * d;
  }
}

void QuantizeQ5_0(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_0; ++b, src += kQK5_0, dst += kQ5_0Bytes) {
    // As Q4_0: the value of largest magnitude maps to -16, exactly; the other sign clamps at 15.
    const uint16_t d_bits = FloatToHalf(LargestMagnitude(src, kQK5_0) / -16.0f);
    const float d = HalfToFloat(d_bits);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreU16(dst, d_bits);
    std::array<int, kQK5_0> q;
    for (int j = 0; j < kQK5_0; ++j) q[j] = std::clamp(RoundToInt(src[j] * id) + 16, 0, 31);
    PackFiveBits(q.data(), dst + 2, dst + 6);
  }
}

void DequantizeQ5_1(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_1; ++b, src += kQ5_1Bytes, dst += kQK5_1) {
    const float d = HalfToFloat(LoadU16(src));
    const float m = HalfToFloat(LoadU16(src + 2));
    std::array<int, kQK5_1> q;
    UnpackFiveBits(src + 4, src + 8, q.data());
    for (int j = 0; j < kQK5_1; ++j) dst[j] = static_cast<float>(q[j]) * d + m;
  }
}

void QuantizeQ5_1(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_1; ++b, src += kQK5_1, dst += kQ5_1Bytes) {
    // The block's range [min, max] in 31 steps: q = 0 is the min (stored as m), q = 31 the max.
    float lo = src[0], hi = src[0];
    for (int i = 1; i < kQK5_1; ++i) {
      lo = std::min(lo, src[i]);
      hi = std::max(hi, src[i]);
    }
    const uint16_t d_bits = FloatToHalf((hi - lo) / 31.0f);
    const uint16_t m_bits = FloatToHalf(lo);
    const float d = HalfToFloat(d_bits);
    const float m = HalfToFloat(m_bits);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    StoreU16(dst, d_bits);
    StoreU16(dst + 2, m_bits);
    std::array<int, kQK5_1> q;
    for (int j = 0; j < kQK5_1; ++j) q[j] = std::clamp(RoundToInt((src[j] - m) * id), 0, 31);
    PackFiveBits(q.data(), dst + 4, dst + 8);
  }
}

// ---- IQ4_NL: 32 indices into kIq4nlValues, nibbles in Q4_0's order.

constexpr size_t kIQ4_NLBytes = sizeof(BlockIQ4_NL);

void DequantizeIQ4_NL(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_NL; ++b, src += kIQ4_NLBytes, dst += kQK4_NL) {
    const float d = HalfToFloat(LoadU16(src));
    const uint8_t* qs = src + offsetof(BlockIQ4_NL, qs);
    for (int j = 0; j < kQK4_NL / 2; ++j) {
      dst[j] = d * static_cast<float>(kIq4nlValues[qs[j] & 0x0F]);
      dst[j + kQK4_NL / 2] = d * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
    }
  }
}

// The midpoints between neighbouring table values (exact in float: halves of integers).
constexpr auto kIq4nlMidpoints = [] {
  std::array<float, 15> mid{};
  for (size_t k = 0; k < mid.size(); ++k) {
    mid[k] = 0.5f * static_cast<float>(kIq4nlValues[k] + kIq4nlValues[k + 1]);
  }
  return mid;
}();

// The index of the table value nearest to v (v in units of the scale; ties to the lower value):
// the number of midpoints below v, counted without branches (a binary search mispredicted on
// every other step and made the quantiser three times slower). NaN gives 0.
int NearestIq4nl(float v) {
  int index = 0;
  for (const float mid : kIq4nlMidpoints) index += v > mid ? 1 : 0;
  return index;
}

// Fits x ~= d * kIq4nlValues[q_i] for n values: scales that put the value of largest magnitude at
// or near either end of the table (-127 or 113; the grid is not symmetric, so either may fit a
// block better), each refitted by least squares for the indices it gives; returns the d of least
// squared error (0 for an all-zero block). The caller rounds d (fp16, or a 6-bit multiple) and
// picks the indices again for the d it stores.
float FitIq4nl(const float* x, int n) {
  YZ_DCHECK(n <= kQK4_NL);
  const float max = LargestMagnitude(x, n);
  if (max == 0.0f) return 0.0f;
  double sum_xx = 0;
  for (int i = 0; i < n; ++i) sum_xx += static_cast<double>(x[i]) * x[i];
  float best_d = max / static_cast<float>(kIq4nlValues[0]);
  double best_err = INFINITY;
  for (const int8_t end : {kIq4nlValues[0], kIq4nlValues[15]}) {
    for (int step = -6; step <= 6; ++step) {
      const float id = static_cast<float>(end) * (1.0f + 0.02f * static_cast<float>(step)) / max;
      // The indices first, in a loop of its own that the compiler can vectorise.
      std::array<int, kQK4_NL> index{};
      for (int i = 0; i < n; ++i) index[static_cast<size_t>(i)] = NearestIq4nl(x[i] * id);
      double sum_qx = 0, sum_qq = 0;
      for (int i = 0; i < n; ++i) {
        const double q = kIq4nlValues[static_cast<size_t>(index[static_cast<size_t>(i)])];
        sum_qx += q * x[i];
        sum_qq += q * q;
      }
      // Least squares: d = sum(q x) / sum(q q), leaving sum(x x) - sum(q x)^2 / sum(q q).
      const double err = sum_xx - sum_qx * sum_qx / sum_qq;
      if (err < best_err) {
        best_err = err;
        best_d = static_cast<float>(sum_qx / sum_qq);
      }
    }
  }
  return best_d;
}

// Packs the indices of n = 32 values x / d (element j's low nibble, j + 16's high) into qs[16].
void PackIq4nl(const float* x, float d, uint8_t* qs) {
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < 16; ++j) {
    qs[j] = static_cast<uint8_t>(NearestIq4nl(x[j] * id) | NearestIq4nl(x[j + 16] * id) << 4);
  }
}

void QuantizeIQ4_NL(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_NL; ++b, src += kQK4_NL, dst += kIQ4_NLBytes) {
    const uint16_t d_bits = FloatToHalf(FitIq4nl(src, kQK4_NL));
    StoreU16(dst, d_bits);
    PackIq4nl(src, HalfToFloat(d_bits), dst + offsetof(BlockIQ4_NL, qs));
  }
}

// ---- IQ4_XS: IQ4_NL's indices per sub-block of 32, 6-bit sub-block scales (ls - 32) * d.

constexpr size_t kIQ4_XSBytes = sizeof(BlockIQ4_XS);
constexpr int kIQ4_XSSub = 32;  // elements per sub-block

// Sub-block s's 6-bit scale ls (0..63; the value's multiplier is ls - 32).
int Iq4xsScale(const uint8_t* block, int s) {
  const uint16_t scales_h = LoadU16(block + offsetof(BlockIQ4_XS, scales_h));
  const uint8_t* scales_l = block + offsetof(BlockIQ4_XS, scales_l);
  return (scales_l[s / 2] >> (4 * (s % 2)) & 15) | (scales_h >> (2 * s) & 3) << 4;
}

void DequantizeIQ4_XS(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kIQ4_XSBytes) {
    const float d = HalfToFloat(LoadU16(src));
    const uint8_t* qs = src + offsetof(BlockIQ4_XS, qs);
    for (int s = 0; s < kQK_K / kIQ4_XSSub; ++s, qs += 16, dst += kIQ4_XSSub) {
      const float dl = d * static_cast<float>(Iq4xsScale(src, s) - 32);
      for (int j = 0; j < 16; ++j) {
        dst[j] = dl * static_cast<float>(kIq4nlValues[qs[j] & 0x0F]);
        dst[j + 16] = dl * static_cast<float>(kIq4nlValues[qs[j] >> 4]);
      }
    }
  }
}

// Squared error of n = 32 values x against scale dl and their nearest table values.
float Iq4nlError(const float* x, float dl) {
  const float id = dl != 0.0f ? 1.0f / dl : 0.0f;
  float err = 0.0f;
  for (int i = 0; i < 32; ++i) {
    const int q = kIq4nlValues[static_cast<size_t>(NearestIq4nl(x[i] * id))];
    const float e = dl * static_cast<float>(q) - x[i];
    err += e * e;
  }
  return err;
}

void QuantizeIQ4_XS(const float* src, uint8_t* dst, int64_t n) {
  constexpr int kSubs = kQK_K / kIQ4_XSSub;
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQK_K, dst += kIQ4_XSBytes) {
    // Each sub-block's own best scale (as IQ4_NL's), then the super-block's d: the sub-block
    // scale of largest magnitude maps to -32, the end of [-32, 31] with the larger reach, and
    // every sub-block takes the 6-bit multiple of d nearest its own, or a neighbour of it where
    // that fits its values better (the search's scale was refitted for unrounded indices).
    std::array<float, kSubs> sub_d{};
    float max_d = 0.0f;
    for (int s = 0; s < kSubs; ++s) {
      sub_d[s] = FitIq4nl(src + s * kIQ4_XSSub, kIQ4_XSSub);
      if (std::fabs(sub_d[s]) > std::fabs(max_d)) max_d = sub_d[s];
    }
    const uint16_t d_bits = FloatToHalf(max_d / -32.0f);
    const float d = HalfToFloat(d_bits);
    uint16_t scales_h = 0;
    uint8_t* scales_l = dst + offsetof(BlockIQ4_XS, scales_l);
    uint8_t* qs = dst + offsetof(BlockIQ4_XS, qs);
    std::memset(scales_l, 0, kQK_K / 64);
    for (int s = 0; s < kSubs; ++s) {
      const float* x = src + s * kIQ4_XSSub;
      int best = 0;
      if (d != 0.0f) {
        const int nearest = std::clamp(RoundToInt(sub_d[s] / d), -32, 31);
        float best_err = INFINITY;
        for (int l = std::max(nearest - 1, -32); l <= std::min(nearest + 1, 31); ++l) {
          const float err = Iq4nlError(x, d * static_cast<float>(l));
          if (err < best_err) {
            best_err = err;
            best = l;
          }
        }
      }
      const int ls = best + 32;
      scales_l[s / 2] |= static_cast<uint8_t>((ls & 15) << (4 * (s % 2)));
      scales_h |= static_cast<uint16_t>((ls >> 4) << (2 * s));
      PackIq4nl(x, d * static_cast<float>(best), qs + 16 * s);
    }
    StoreU16(dst, d_bits);
    StoreU16(dst + offsetof(BlockIQ4_XS, scales_h), scales_h);
  }
}

// ---- Q4_K

constexpr size_t kQ4_KBytes = sizeof(BlockQ4_K);
constexpr int kQ4_KSub = 32;  // elements per sub-block

// Unpacks sub-block s's 6-bit scale and min from the 12 packed bytes.
void UnpackScaleMinK4(int s, const uint8_t* q, int* scale, int* min) {
  if (s < 4) {
    *scale = q[s] & 63;
    *min = q[s + 4] & 63;
  } else {
    *scale = (q[s + 4] & 0x0F) | ((q[s - 4] >> 6) << 4);
    *min = (q[s + 4] >> 4) | ((q[s] >> 6) << 4);
  }
}

void PackScaleMinK4(const int* scales, const int* mins, uint8_t* q) {
  std::memset(q, 0, kKScaleBytes);
  for (int s = 0; s < 8; ++s) {
    const int sc = scales[s];
    const int m = mins[s];
    if (s < 4) {
      q[s] |= static_cast<uint8_t>(sc);
      q[s + 4] |= static_cast<uint8_t>(m);
    } else {
      q[s + 4] = static_cast<uint8_t>((sc & 0x0F) | ((m & 0x0F) << 4));
      q[s - 4] |= static_cast<uint8_t>((sc >> 4) << 6);
      q[s] |= static_cast<uint8_t>((m >> 4) << 6);
    }
  }
}

void DequantizeQ4_K(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ4_KBytes) {
    const float d = HalfToFloat(LoadU16(src));
    const float dmin = HalfToFloat(LoadU16(src + 2));
    const uint8_t* scales = src + 4;
    const uint8_t* qs = src + 4 + kKScaleBytes;
    for (int chunk = 0; chunk < 4; ++chunk, qs += 32) {
      int sc0, m0, sc1, m1;
      UnpackScaleMinK4(2 * chunk, scales, &sc0, &m0);
      UnpackScaleMinK4(2 * chunk + 1, scales, &sc1, &m1);
      const float d0 = d * static_cast<float>(sc0), min0 = dmin * static_cast<float>(m0);
      const float d1 = d * static_cast<float>(sc1), min1 = dmin * static_cast<float>(m1);
      for (int l = 0; l < 32; ++l) *dst++ = d0 * static_cast<float>(qs[l] & 0x0F) - min0;
      for (int l = 0; l < 32; ++l) *dst++ = d1 * static_cast<float>(qs[l] >> 4) - min1;
    }
  }
}

// Fits x ~= scale * q - min with q in [0, nmax], scale >= 0, min >= 0, by trying a range of
// inverse scales around the plain (max - min) / nmax and refitting scale and min by least squares
// for each rounding. Returns the squared error of the best fit.
float FitScaleMin(const float* x, int n, int nmax, float* scale_out, float* min_out) {
  float lo = 0.0f;  // the fitted min is >= 0, so the represented range always includes 0
  float hi = x[0];
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (hi <= lo) {  // all values equal (and then <= 0): min alone represents them
    *scale_out = 0.0f;
    *min_out = -lo;
    return 0.0f;
  }
  float best_err = INFINITY;
  float best_scale = (hi - lo) / static_cast<float>(nmax);
  float best_min = -lo;
  std::array<int, 32> q{};
  for (int step = 0; step <= 20; ++step) {
    const float iscale =
        (static_cast<float>(nmax) - 1.0f + 0.1f * static_cast<float>(step)) / (hi - lo);
    double sum_q = 0, sum_qq = 0, sum_x = 0, sum_qx = 0;
    for (int i = 0; i < n; ++i) {
      q[i] = std::clamp(RoundToInt(iscale * (x[i] - lo)), 0, nmax);
      sum_q += q[i];
      sum_qq += static_cast<double>(q[i]) * q[i];
      sum_x += x[i];
      sum_qx += q[i] * static_cast<double>(x[i]);
    }
    // Least squares for x ~= scale * q + offset (offset = -min).
    const double det = n * sum_qq - sum_q * sum_q;
    if (det <= 0) continue;
    double scale = (n * sum_qx - sum_q * sum_x) / det;
    double offset = (sum_qq * sum_x - sum_q * sum_qx) / det;
    if (offset > 0) {  // min would be negative: pin it at 0 and refit the scale alone
      offset = 0;
      scale = sum_qx / sum_qq;
    }
    if (scale <= 0) continue;
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float diff = static_cast<float>(scale * q[i] + offset) - x[i];
      err += diff * diff;
    }
    if (err < best_err) {
      best_err = err;
      best_scale = static_cast<float>(scale);
      best_min = static_cast<float>(-offset);
    }
  }
  *scale_out = best_scale;
  *min_out = best_min;
  return best_err;
}

// Q4_K's and Q5_K's shared part: per super-block, the d/dmin/scales header and the quants q
// (values in [0, nmax], element order), fitted as described at FitScaleMin.
void QuantizeKScaleMin(const float* src, int nmax, uint8_t* header, uint8_t* q) {
  std::array<float, 8> scales{}, mins{};
  float max_scale = 0.0f, max_min = 0.0f;
  for (int s = 0; s < 8; ++s) {
    FitScaleMin(src + s * kQ4_KSub, kQ4_KSub, nmax, &scales[s], &mins[s]);
    max_scale = std::max(max_scale, scales[s]);
    max_min = std::max(max_min, mins[s]);
  }
  const uint16_t d_bits = FloatToHalf(max_scale / 63.0f);
  const uint16_t dmin_bits = FloatToHalf(max_min / 63.0f);
  const float d = HalfToFloat(d_bits);
  const float dmin = HalfToFloat(dmin_bits);
  std::array<int, 8> ls{}, lm{};
  for (int s = 0; s < 8; ++s) {
    ls[s] = d > 0 ? std::clamp(RoundToInt(scales[s] / d), 0, 63) : 0;
    lm[s] = dmin > 0 ? std::clamp(RoundToInt(mins[s] / dmin), 0, 63) : 0;
  }
  StoreU16(header, d_bits);
  StoreU16(header + 2, dmin_bits);
  PackScaleMinK4(ls.data(), lm.data(), header + 4);
  // Requantise against the scales and mins exactly as they will be decoded.
  for (int s = 0; s < 8; ++s) {
    const float sd = d * static_cast<float>(ls[s]);
    const float sm = dmin * static_cast<float>(lm[s]);
    for (int i = 0; i < kQ4_KSub; ++i) {
      const int idx = s * kQ4_KSub + i;
      q[idx] = sd > 0
                   ? static_cast<uint8_t>(std::clamp(RoundToInt((src[idx] + sm) / sd), 0, nmax))
                   : 0;
    }
  }
}

void QuantizeQ4_K(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQK_K, dst += kQ4_KBytes) {
    std::array<uint8_t, kQK_K> q{};
    QuantizeKScaleMin(src, 15, dst, q.data());
    uint8_t* qs = dst + 4 + kKScaleBytes;
    for (int chunk = 0; chunk < 4; ++chunk) {
      for (int l = 0; l < 32; ++l) {
        qs[chunk * 32 + l] =
            static_cast<uint8_t>(q[chunk * 64 + l] | (q[chunk * 64 + 32 + l] << 4));
      }
    }
  }
}

// ---- Q5_K

constexpr size_t kQ5_KBytes = sizeof(BlockQ5_K);

void DequantizeQ5_K(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ5_KBytes) {
    const float d = HalfToFloat(LoadU16(src));
    const float dmin = HalfToFloat(LoadU16(src + 2));
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 4 + kKScaleBytes;
    const uint8_t* qs = qh + kQK_K / 8;
    for (int chunk = 0; chunk < 4; ++chunk, qs += 32) {
      int sc0, m0, sc1, m1;
      UnpackScaleMinK4(2 * chunk, scales, &sc0, &m0);
      UnpackScaleMinK4(2 * chunk + 1, scales, &sc1, &m1);
      const float d0 = d * static_cast<float>(sc0), min0 = dmin * static_cast<float>(m0);
      const float d1 = d * static_cast<float>(sc1), min1 = dmin * static_cast<float>(m1);
      for (int l = 0; l < 32; ++l) {
        const int q = (qs[l] & 0x0F) | (qh[l] >> (2 * chunk) & 1) << 4;
        *dst++ = d0 * static_cast<float>(q) - min0;
      }
      for (int l = 0; l < 32; ++l) {
        const int q = (qs[l] >> 4) | (qh[l] >> (2 * chunk + 1) & 1) << 4;
        *dst++ = d1 * static_cast<float>(q) - min1;
      }
    }
  }
}

void QuantizeQ5_K(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQK_K, dst += kQ5_KBytes) {
    std::array<uint8_t, kQK_K> q{};
    QuantizeKScaleMin(src, 31, dst, q.data());
    uint8_t* qh = dst + 4 + kKScaleBytes;
    uint8_t* qs = qh + kQK_K / 8;
    std::memset(qh, 0, kQK_K / 8);
    for (int chunk = 0; chunk < 4; ++chunk) {
      for (int l = 0; l < 32; ++l) {
        const int lo = q[chunk * 64 + l], hi = q[chunk * 64 + 32 + l];
        qs[chunk * 32 + l] = static_cast<uint8_t>((lo & 0x0F) | (hi & 0x0F) << 4);
        qh[l] |= static_cast<uint8_t>((lo >> 4) << (2 * chunk) | (hi >> 4) << (2 * chunk + 1));
      }
    }
  }
}

// ---- Q6_K

constexpr size_t kQ6_KBytes = sizeof(BlockQ6_K);
constexpr int kQ6_KSub = 16;  // elements per sub-block

// Decodes the 6-bit quant q[i] (0..63) of all 256 elements of a block.
void UnpackQ6_K(const uint8_t* ql, const uint8_t* qh, int* q) {
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, q += 128) {
    for (int l = 0; l < 32; ++l) {
      q[l] = (ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4);
      q[l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
      q[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
      q[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
    }
  }
}

void PackQ6_K(const int* q, uint8_t* ql, uint8_t* qh) {
  for (int half = 0; half < 2; ++half, ql += 64, qh += 32, q += 128) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = q[l], q2 = q[l + 32], q3 = q[l + 64], q4 = q[l + 96];
      ql[l] = static_cast<uint8_t>((q1 & 0x0F) | ((q3 & 0x0F) << 4));
      ql[l + 32] = static_cast<uint8_t>((q2 & 0x0F) | ((q4 & 0x0F) << 4));
      qh[l] =
          static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
    }
  }
}

void DequantizeQ6_K(const uint8_t* src, float* dst, int64_t n) {
  std::array<int, kQK_K> q{};
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ6_KBytes, dst += kQK_K) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + kQK_K / 2;
    const auto* scales = reinterpret_cast<const int8_t*>(src + kQK_K / 2 + kQK_K / 4);
    const float d = HalfToFloat(LoadU16(src + kQK_K / 2 + kQK_K / 4 + kQK_K / 16));
    UnpackQ6_K(ql, qh, q.data());
    for (int i = 0; i < kQK_K; ++i) {
      dst[i] = d * static_cast<float>(scales[i / kQ6_KSub]) * static_cast<float>(q[i] - 32);
    }
  }
}

// Fits x ~= scale * q with q in [-nmax, nmax - 1] (n <= 16 values): tries inverse scales around
// the one that maps the value of largest magnitude to -nmax and refits the scale by least squares.
// Returns the scale (negative where the largest magnitude is positive).
float FitScaleSymmetric(const float* x, int n, int nmax) {
  const float max = LargestMagnitude(x, n);
  if (max == 0.0f) return 0.0f;
  const auto fmax = static_cast<float>(nmax);
  float best_err = INFINITY;
  float best_scale = max / -fmax;
  for (int step = -9; step <= 9; ++step) {
    const float iscale = -(fmax + 0.1f * static_cast<float>(step)) / max;
    double sum_qq = 0, sum_qx = 0;
    std::array<int, 16> q{};
    for (int i = 0; i < n; ++i) {
      q[i] = std::clamp(RoundToInt(iscale * x[i]), -nmax, nmax - 1);
      sum_qq += static_cast<double>(q[i]) * q[i];
      sum_qx += q[i] * static_cast<double>(x[i]);
    }
    if (sum_qq <= 0) continue;
    const auto scale = static_cast<float>(sum_qx / sum_qq);
    float err = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float diff = scale * static_cast<float>(q[i]) - x[i];
      err += diff * diff;
    }
    if (err < best_err) {
      best_err = err;
      best_scale = scale;
    }
  }
  return best_scale;
}

void QuantizeQ6_K(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQK_K, dst += kQ6_KBytes) {
    std::array<float, kQK_K / kQ6_KSub> scales{};
    float max_abs_scale = 0.0f;
    for (int s = 0; s < kQK_K / kQ6_KSub; ++s) {
      scales[s] = FitScaleSymmetric(src + s * kQ6_KSub, kQ6_KSub, 32);
      max_abs_scale = std::max(max_abs_scale, std::fabs(scales[s]));
    }
    const uint16_t d_bits = FloatToHalf(max_abs_scale / 127.0f);
    const float d = HalfToFloat(d_bits);
    auto* out_scales = reinterpret_cast<int8_t*>(dst + kQK_K / 2 + kQK_K / 4);
    std::array<int, kQK_K> q{};
    for (int s = 0; s < kQK_K / kQ6_KSub; ++s) {
      const int ls = d > 0 ? std::clamp(RoundToInt(scales[s] / d), -127, 127) : 0;
      out_scales[s] = static_cast<int8_t>(ls);
      const float sd = d * static_cast<float>(ls);
      for (int i = 0; i < kQ6_KSub; ++i) {
        const int idx = s * kQ6_KSub + i;
        const int v = sd != 0.0f ? std::clamp(RoundToInt(src[idx] / sd), -32, 31) : 0;
        q[idx] = v + 32;
      }
    }
    PackQ6_K(q.data(), dst, dst + kQK_K / 2);
    StoreU16(dst + kQK_K / 2 + kQK_K / 4 + kQK_K / 16, d_bits);
  }
}

// ---- Q3_K: 16 sub-blocks of 16, value = d * sc[s] * q, q in [-4, 3] (layout in tensor_type.h).

constexpr size_t kQ3_KBytes = sizeof(BlockQ3_K);
constexpr int kKSub16 = 16;  // elements per sub-block of Q2_K and Q3_K

// Sub-block s's 6-bit scale field (0..63) from the 12 packed bytes.
int UnpackScaleQ3_K(int s, const uint8_t* scales) {
  const int low = s < 8 ? scales[s] & 0x0F : scales[s - 8] >> 4;
  const int high = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
  return low | high << 4;
}

void PackScalesQ3_K(const int* fields, uint8_t* scales) {
  std::memset(scales, 0, kKScaleBytes);
  for (int s = 0; s < 16; ++s) {
    const int f = fields[s];
    scales[s % 8] |= static_cast<uint8_t>((f & 0x0F) << (s < 8 ? 0 : 4));
    scales[8 + s % 4] |= static_cast<uint8_t>((f >> 4) << (2 * (s / 4)));
  }
}

// The 2-bit fields of elements 128n + 32j + l: bits 2j of qs[32n + l] (Q2_K and Q3_K alike).
int Unpack2Bits(const uint8_t* qs, int e) {
  const int n = e / 128, j = e % 128 / 32, l = e % 32;
  return (qs[32 * n + l] >> (2 * j)) & 3;
}

void Pack2Bits(const int* q2, uint8_t* qs) {
  std::memset(qs, 0, kQK_K / 4);
  for (int e = 0; e < kQK_K; ++e) {
    const int n = e / 128, j = e % 128 / 32, l = e % 32;
    qs[32 * n + l] |= static_cast<uint8_t>((q2[e] & 3) << (2 * j));
  }
}

void DequantizeQ3_K(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ3_KBytes, dst += kQK_K) {
    const uint8_t* hmask = src + offsetof(BlockQ3_K, hmask);
    const uint8_t* qs = src + offsetof(BlockQ3_K, qs);
    const uint8_t* scales = src + offsetof(BlockQ3_K, scales);
    const float d = HalfToFloat(LoadU16(src + offsetof(BlockQ3_K, d)));
    for (int e = 0; e < kQK_K; ++e) {
      const int h = (hmask[e % 32] >> (e / 32)) & 1;  // bit 4n + j = e / 32
      const int q = Unpack2Bits(qs, e) - (h != 0 ? 0 : 4);
      const int sc = UnpackScaleQ3_K(e / kKSub16, scales) - 32;
      dst[e] = d * static_cast<float>(sc) * static_cast<float>(q);
    }
  }
}

// Squared error of x ~= sd * q over one sub-block, q = round(x / sd) clamped to [lo, hi]; the q
// are written to `q`.
float RequantiseSubBlock(const float* x, float sd, int lo, int hi, int* q) {
  float err = 0.0f;
  for (int i = 0; i < kKSub16; ++i) {
    q[i] = sd != 0.0f ? std::clamp(RoundToInt(x[i] / sd), lo, hi) : 0;
    const float diff = sd * static_cast<float>(q[i]) - x[i];
    err += diff * diff;
  }
  return err;
}

void QuantizeQ3_K(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQK_K, dst += kQ3_KBytes) {
    // Each sub-block's own scale (negative where its largest magnitude is positive, so that
    // value reaches -4, the end of [-4, 3] with the larger reach), then the scales as signed
    // 6-bit multiples of d: the scale of largest magnitude maps to -32, the other sign clamps at
    // 31 as Q4_0's quants do.
    std::array<float, 16> scales{};
    for (int s = 0; s < 16; ++s) scales[s] = FitScaleSymmetric(src + s * kKSub16, kKSub16, 4);
    const uint16_t d_bits = FloatToHalf(LargestMagnitude(scales.data(), 16) / -32.0f);
    const float d = HalfToFloat(d_bits);
    std::array<int, 16> fields{};
    std::array<int, kQK_K> q{};
    for (int s = 0; s < 16; ++s) {
      // Refinement: the rounded 6-bit scale and its two neighbours, each with the quants
      // requantised against it as it will be decoded; the smallest squared error wins.
      const int ls0 = d != 0.0f ? std::clamp(RoundToInt(scales[s] / d), -32, 31) : 0;
      float best_err = INFINITY;
      for (int ls = std::max(ls0 - 1, -32); ls <= std::min(ls0 + 1, 31); ++ls) {
        std::array<int, kKSub16> qs{};
        const float err =
            RequantiseSubBlock(src + s * kKSub16, d * static_cast<float>(ls), -4, 3, qs.data());
        if (err < best_err) {
          best_err = err;
          fields[s] = ls + 32;
          std::copy(qs.begin(), qs.end(), q.begin() + s * kKSub16);
        }
      }
    }
    std::array<int, kQK_K> low{};
    uint8_t* hmask = dst + offsetof(BlockQ3_K, hmask);
    std::memset(hmask, 0, kQK_K / 8);
    for (int e = 0; e < kQK_K; ++e) {
      const int u = q[e] + 4;  // 0..7: the high bit set for q >= 0
      low[e] = u & 3;
      hmask[e % 32] |= static_cast<uint8_t>((u >> 2) << (e / 32));
    }
    Pack2Bits(low.data(), dst + offsetof(BlockQ3_K, qs));
    PackScalesQ3_K(fields.data(), dst + offsetof(BlockQ3_K, scales));
    StoreU16(dst + offsetof(BlockQ3_K, d), d_bits);
  }
}

// ---- Q2_K: 16 sub-blocks of 16, value = d * sc[s] * q - dmin * m[s], q in [0, 3] (layout in
// tensor_type.h).

constexpr size_t kQ2_KBytes = sizeof(BlockQ2_K);

void DequantizeQ2_K(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQ2_KBytes, dst += kQK_K) {
    const uint8_t* scales = src + offsetof(BlockQ2_K, scales);
    const uint8_t* qs = src + offsetof(BlockQ2_K, qs);
    const float d = HalfToFloat(LoadU16(src + offsetof(BlockQ2_K, d)));
    const float dmin = HalfToFloat(LoadU16(src + offsetof(BlockQ2_K, dmin)));
    for (int e = 0; e < kQK_K; ++e) {
      const int s = e / kKSub16;
      const float sd = d * static_cast<float>(scales[s] & 0x0F);
      const float sm = dmin * static_cast<float>(scales[s] >> 4);
      dst[e] = sd * static_cast<float>(Unpack2Bits(qs, e)) - sm;
    }
  }
}

void QuantizeQ2_K(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, src += kQK_K, dst += kQ2_KBytes) {
    // Each sub-block's own scale and min (Q4_K's fit, with 3 steps), then both as 4-bit
    // multiples of d and dmin (the largest of each maps to 15).
    std::array<float, 16> scales{}, mins{};
    float max_scale = 0.0f, max_min = 0.0f;
    for (int s = 0; s < 16; ++s) {
      FitScaleMin(src + s * kKSub16, kKSub16, 3, &scales[s], &mins[s]);
      max_scale = std::max(max_scale, scales[s]);
      max_min = std::max(max_min, mins[s]);
    }
    const uint16_t d_bits = FloatToHalf(max_scale / 15.0f);
    const uint16_t dmin_bits = FloatToHalf(max_min / 15.0f);
    const float d = HalfToFloat(d_bits);
    const float dmin = HalfToFloat(dmin_bits);
    uint8_t* out_scales = dst + offsetof(BlockQ2_K, scales);
    std::array<int, kQK_K> q{};
    for (int s = 0; s < 16; ++s) {
      // Refinement: the rounded 4-bit scale and min and their neighbours (9 pairs), each with
      // the values requantised against them as they will be decoded; the smallest squared error
      // wins.
      const float* x = src + s * kKSub16;
      const int ls0 = d > 0 ? std::clamp(RoundToInt(scales[s] / d), 0, 15) : 0;
      const int lm0 = dmin > 0 ? std::clamp(RoundToInt(mins[s] / dmin), 0, 15) : 0;
      float best_err = INFINITY;
      out_scales[s] = 0;
      for (int ls = std::max(ls0 - 1, 0); ls <= std::min(ls0 + 1, 15); ++ls) {
        for (int lm = std::max(lm0 - 1, 0); lm <= std::min(lm0 + 1, 15); ++lm) {
          const float sd = d * static_cast<float>(ls);
          const float sm = dmin * static_cast<float>(lm);
          std::array<int, kKSub16> qs{};
          float err = 0.0f;
          for (int i = 0; i < kKSub16; ++i) {
            qs[i] = sd > 0 ? std::clamp(RoundToInt((x[i] + sm) / sd), 0, 3) : 0;
            const float diff = sd * static_cast<float>(qs[i]) - sm - x[i];
            err += diff * diff;
          }
          if (err < best_err) {
            best_err = err;
            out_scales[s] = static_cast<uint8_t>(ls | lm << 4);
            std::copy(qs.begin(), qs.end(), q.begin() + s * kKSub16);
          }
        }
      }
    }
    Pack2Bits(q.data(), dst + offsetof(BlockQ2_K, qs));
    StoreU16(dst + offsetof(BlockQ2_K, d), d_bits);
    StoreU16(dst + offsetof(BlockQ2_K, dmin), dmin_bits);
  }
}

}  // namespace

// ---- traits and names

const TypeTraits& Traits(TensorType type) {
  const TypeTraits* traits = FindTraitsByGgmlId(static_cast<uint32_t>(type));
  YZ_CHECK(traits != nullptr);
  return *traits;
}

const TypeTraits* FindTraitsByGgmlId(uint32_t ggml_id) {
  if (ggml_id >= kIndexById.size() || kIndexById[ggml_id] < 0) return nullptr;
  return &kTraits[static_cast<size_t>(kIndexById[ggml_id])];
}

std::string_view TypeName(TensorType type) { return Traits(type).name; }

Result<TensorType> ParseTensorType(std::string_view name) {
  for (const TypeTraits& t : kTraits) {
    if (t.name.size() != name.size()) continue;
    bool equal = true;
    for (size_t i = 0; i < name.size() && equal; ++i) equal = ToUpper(name[i]) == t.name[i];
    if (equal) return t.type;
  }
  return InvalidArgumentError(
      fmt::format("unknown tensor type '{}' (supported: {})", name, SupportedTypeNames()));
}

bool IsSupported(TensorType type) {
  const TypeTraits* traits = FindTraitsByGgmlId(static_cast<uint32_t>(type));
  return traits != nullptr && traits->supported;
}

std::string SupportedTypeNames() {
  std::string out;
  for (TensorType t : kSupportedOrder) {
    if (!out.empty()) out += ", ";
    out += TypeName(t);
  }
  return out;
}

Status CheckSupported(TensorType type, std::string_view tensor_name) {
  if (IsSupported(type)) return OkStatus();
  const TypeTraits* traits = FindTraitsByGgmlId(static_cast<uint32_t>(type));
  const std::string type_name = traits != nullptr ? std::string(traits->name)
                                                  : fmt::format("#{}", static_cast<uint32_t>(type));
  return UnimplementedError(
      fmt::format("tensor {} has type {}, which this build cannot run (supported: {})", tensor_name,
                  type_name, SupportedTypeNames()));
}

bool IsValidRowLength(TensorType type, int64_t n) {
  const TypeTraits* traits = FindTraitsByGgmlId(static_cast<uint32_t>(type));
  return traits != nullptr && n >= 0 && n % traits->block_size == 0;
}

int64_t RowSizeBytes(TensorType type, int64_t n) {
  const TypeTraits& traits = Traits(type);
  YZ_DCHECK(n >= 0 && n % traits.block_size == 0);
  return n / traits.block_size * traits.block_bytes;
}

// ---- fp16 / bf16

uint16_t FloatToHalf(float value) {
  const auto bits = std::bit_cast<uint32_t>(value);
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t exp = (bits >> 23) & 0xFFu;
  const uint32_t mant = bits & 0x7FFFFFu;
  if (exp == 0xFF) {  // inf or NaN; NaN keeps its top payload bits and is made quiet
    return mant == 0 ? static_cast<uint16_t>(sign | 0x7C00u)
                     : static_cast<uint16_t>(sign | 0x7E00u | (mant >> 13));
  }
  const int e = static_cast<int>(exp) - 127 + 15;             // the biased half exponent
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7C00u);  // overflow: inf
  if (e <= 0) {
    // Subnormal half (or zero): value = m * 2^(e - 14 - 24 + 24) with the implicit bit restored.
    if (e < -10) return sign;  // below half the smallest subnormal: rounds to zero
    const uint32_t m = mant | 0x800000u;
    const int shift = 14 - e;  // 14..24
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;  // may carry into the normal range
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // a carry may give inf: correct
  return static_cast<uint16_t>(sign | h);
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24, exact in float.
    const float magnitude = static_cast<float>(mant) * 0x1p-24f;
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t FloatToBf16(float value) {
  const auto bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {  // NaN: keep sign and top payload, force quiet
    return static_cast<uint16_t>((bits >> 16) | 0x40u);
  }
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);  // ties to even
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float Bf16ToFloat(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// ---- row conversions

void Dequantize(TensorType type, const void* src, float* dst, int64_t n) {
  YZ_CHECK(IsSupported(type) && IsValidRowLength(type, n));
  const auto* in = static_cast<const uint8_t*>(src);
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, in, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = HalfToFloat(LoadU16(in + 2 * i));
      return;
    case TensorType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToFloat(LoadU16(in + 2 * i));
      return;
    case TensorType::kQ8_0:
      DequantizeQ8_0(in, dst, n);
      return;
    case TensorType::kQ4_0:
      DequantizeQ4_0(in, dst, n);
      return;
    case TensorType::kQ5_0:
      DequantizeQ5_0(in, dst, n);
      return;
    case TensorType::kQ5_1:
      DequantizeQ5_1(in, dst, n);
      return;
    case TensorType::kQ2_K:
      DequantizeQ2_K(in, dst, n);
      return;
    case TensorType::kQ3_K:
      DequantizeQ3_K(in, dst, n);
      return;
    case TensorType::kQ4_K:
      DequantizeQ4_K(in, dst, n);
      return;
    case TensorType::kQ5_K:
      DequantizeQ5_K(in, dst, n);
      return;
    case TensorType::kQ6_K:
      DequantizeQ6_K(in, dst, n);
      return;
    case TensorType::kIQ4_NL:
      DequantizeIQ4_NL(in, dst, n);
      return;
    case TensorType::kIQ4_XS:
      DequantizeIQ4_XS(in, dst, n);
      return;
    default:
      YZ_CHECK(false && "unreachable: unsupported type");
  }
}

void Quantize(TensorType type, const float* src, void* dst, int64_t n) {
  YZ_CHECK(IsSupported(type) && IsValidRowLength(type, n));
  auto* out = static_cast<uint8_t*>(dst);
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case TensorType::kF16:
      for (int64_t i = 0; i < n; ++i) StoreU16(out + 2 * i, FloatToHalf(src[i]));
      return;
    case TensorType::kBF16:
      for (int64_t i = 0; i < n; ++i) StoreU16(out + 2 * i, FloatToBf16(src[i]));
      return;
    case TensorType::kQ8_0:
      QuantizeQ8_0(src, out, n);
      return;
    case TensorType::kQ4_0:
      QuantizeQ4_0(src, out, n);
      return;
    case TensorType::kQ5_0:
      QuantizeQ5_0(src, out, n);
      return;
    case TensorType::kQ5_1:
      QuantizeQ5_1(src, out, n);
      return;
    case TensorType::kQ2_K:
      QuantizeQ2_K(src, out, n);
      return;
    case TensorType::kQ3_K:
      QuantizeQ3_K(src, out, n);
      return;
    case TensorType::kQ4_K:
      QuantizeQ4_K(src, out, n);
      return;
    case TensorType::kQ5_K:
      QuantizeQ5_K(src, out, n);
      return;
    case TensorType::kQ6_K:
      QuantizeQ6_K(src, out, n);
      return;
    case TensorType::kIQ4_NL:
      QuantizeIQ4_NL(src, out, n);
      return;
    case TensorType::kIQ4_XS:
      QuantizeIQ4_XS(src, out, n);
      return;
    default:
      YZ_CHECK(false && "unreachable: unsupported type");
  }
}

}  // namespace yunzhi::engine
