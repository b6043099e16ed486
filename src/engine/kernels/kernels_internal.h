// Private plumbing between the kernel dispatcher (kernels.cc) and the per-ISA sources
// (kernels_ref.cc, kernels_avx2.cc, kernels_avx512.cc). Nothing outside src/engine/kernels/ and
// its tests/benchmarks includes this.
//
// A matrix product is split in two steps so that every ISA shares one driver:
//  1. the activations are converted to the weight type's partner format (a float row for
//     F32/F16/BF16; 8-bit quantised rows for the quantised types, layouts below), once per call;
//  2. a "tile" function computes Y[t][r] for a rectangle of rows x tokens. The driver hands each
//     thread row chunks (cache-sized) and token blocks; the tile function register-tiles inside.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/kernels/kernels.h"

namespace yunzhi::engine::kernels::internal {

// --- quantised activation rows -----------------------------------------------------------------
//
// kQ8 (partner of Q8_0, Q4_0, Q5_0, Q5_1 and IQ4_NL weights), blocks of 32:
//   int8  qs[cols]        q = round(x * 127 / amax(block)), |q| <= 127
//   float d[cols / 32]    amax / 127 (x ~= d * q)
//   float ds[cols / 32]   d * sum(q of the block): lets kernels run unsigned x signed integer
//                         dot products on offset weights (w + 128, Q4_0's raw nibbles, Q5_0's
//                         raw five bits) and
//                         remove the offset afterwards in float.
// kQ8K (partner of Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS), super-blocks of 256 (our own design,
// not a file format):
//   int8  qs[cols]
//   float d[cols / 256]
//   int16 bsums[cols / 16]  sum of q over each 16 elements (|sum| <= 2032): the K-quant mins
//                           and the offsets of Q6_K (-32) and Q3_K (-4) are applied through
//                           these.
// kQ8x4 (partner of Q8_0 and Q4_0 weights in the AVX-512 decoding kernels), the same numbers as
// kQ8 regrouped for 512-bit vectors, our own layout: groups of 4 blocks (128 elements), 256 bytes
// per group, the missing blocks of a last partial group all zero:
//   int8  lo[64]   elements 0-15 of each of the 4 blocks (16 bytes per block)
//   int8  hi[64]   elements 16-31 of each block
//   float d[16]    lanes 4k..4k+3: d of block k
//   float ds[16]   lanes 4k..4k+3: ds of block k
// A VPDPBUSD of the weights' 4 blocks laid out the same way leaves each block's sum in the 4
// int32 lanes of one 128-bit lane, so the block scales of 4 blocks apply in one vector FMA with
// no horizontal work (see kernels_avx512.cc).
// Each token's row starts at a 64-byte aligned offset (`ActStrideBytes`).
enum class ActFormat { kFloat, kQ8, kQ8K, kQ8x4 };

inline constexpr int64_t kActQ8Block = 32;
inline constexpr int64_t kActQ8KBlock = 256;
inline constexpr int64_t kActQ8x4GroupBytes = 256;  // per 4 blocks of 32

// The small helpers below have internal linkage (`static`) on purpose: this header is compiled into
// sources built with different -m flags, and an external inline function would let the linker
// keep, say, the AVX-512 copy for every caller.
static inline int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

static inline int64_t ActStrideBytes(ActFormat f, int64_t cols) {
  switch (f) {
    case ActFormat::kFloat: return cols * 4;
    case ActFormat::kQ8: return RoundUp(cols + 2 * 4 * (cols / kActQ8Block), 64);
    case ActFormat::kQ8K: return RoundUp(cols + 4 * (cols / kActQ8KBlock) + 2 * (cols / 16), 64);
    case ActFormat::kQ8x4: return (cols / kActQ8Block + 3) / 4 * kActQ8x4GroupBytes;
  }
  return 0;
}

// Views into one quantised activation row.
struct ActQ8Row {
  const int8_t* qs;
  const float* d;
  const float* ds;
};
static inline ActQ8Row ViewQ8(const uint8_t* row, int64_t cols) {
  const auto* d = reinterpret_cast<const float*>(row + cols);
  return {reinterpret_cast<const int8_t*>(row), d, d + cols / kActQ8Block};
}
struct ActQ8KRow {
  const int8_t* qs;
  const float* d;
  const int16_t* bsums;
};
static inline ActQ8KRow ViewQ8K(const uint8_t* row, int64_t cols) {
  const auto* d = reinterpret_cast<const float*>(row + cols);
  return {reinterpret_cast<const int8_t*>(row), d,
          reinterpret_cast<const int16_t*>(d + cols / kActQ8KBlock)};
}

// --- IQ4_NL's table and Q3_K's scales, as the SIMD kernels read them ---------------------------

// kIq4nlValues plus 128 (1..241): the unsigned weights VPDPBUSD takes, the offset 128 removed
// through the activation sums.
inline constexpr std::array<uint8_t, 16> kIq4nlUnsigned = [] {
  std::array<uint8_t, 16> t{};
  for (size_t k = 0; k < t.size(); ++k) t[k] = static_cast<uint8_t>(kIq4nlValues[k] + 128);
  return t;
}();

// The 16 six-bit scale fields (sc[s] + 32, 0..63) of a Q3_K block's 12 packed bytes q, byte s of
// lo | hi << 64 = sub-block s: the low nibbles of bytes 0-7 then their high nibbles, each with its
// two high bits from byte 8 + s % 4, bits 2 (s / 4) (layout in tensor_type.h).
static inline void Q3_KScaleFields(const uint8_t* q, uint64_t* lo, uint64_t* hi) {
  uint64_t a;
  uint32_t c;
  std::memcpy(&a, q, 8);
  std::memcpy(&c, q + 8, 4);
  const uint64_t high0 = (c & 0x03030303u) | static_cast<uint64_t>((c >> 2) & 0x03030303u) << 32;
  const uint64_t high1 =
      ((c >> 4) & 0x03030303u) | static_cast<uint64_t>((c >> 6) & 0x03030303u) << 32;
  *lo = (a & 0x0F0F0F0F0F0F0F0FULL) | high0 << 4;
  *hi = ((a >> 4) & 0x0F0F0F0F0F0F0F0FULL) | high1 << 4;
}

// --- the 32-element nibble blocks against kQ8 ---------------------------------------------------
//
// Where a Q4_0, Q5_0, Q5_1 or IQ4_NL block keeps its parts (byte offsets; -1: none) and how its
// values q (the nibble, plus 16 from qh's bit for Q5) read: (q - kOffset) * d, Q5_1's q * d + m,
// or with kTable IQ4_NL's kIq4nlValues[q] * d (signed: no offset to remove afterwards).
struct NibblesQ4_0 {
  using Block = BlockQ4_0;
  static constexpr int kQs = offsetof(Block, qs), kQh = -1, kMin = -1;
  static constexpr float kOffset = 8.0f;
  static constexpr bool kTable = false;
};
struct NibblesQ5_0 {
  using Block = BlockQ5_0;
  static constexpr int kQs = offsetof(Block, qs), kQh = offsetof(Block, qh), kMin = -1;
  static constexpr float kOffset = 16.0f;
  static constexpr bool kTable = false;
};
struct NibblesQ5_1 {
  using Block = BlockQ5_1;
  static constexpr int kQs = offsetof(Block, qs), kQh = offsetof(Block, qh);
  static constexpr int kMin = offsetof(Block, m);
  static constexpr float kOffset = 0.0f;
  static constexpr bool kTable = false;
};
struct NibblesIQ4_NL {
  using Block = BlockIQ4_NL;
  static constexpr int kQs = offsetof(Block, qs), kQh = -1, kMin = -1;
  static constexpr float kOffset = 0.0f;
  static constexpr bool kTable = true;
};

// --- tiles -------------------------------------------------------------------------------------

// Weight kinds the tile table is indexed by: the row layout of every supported type, then (kQ8_0P
// to kIQ4_XSP) Q8_0/Q4_0/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K/IQ4_NL/Q3_K/Q2_K/IQ4_XS in the panel layout
// (IQ4_NL's is Q4_0's: the blocks are alike byte for byte).
enum class WKind {
  kF32 = 0,
  kF16,
  kBf16,
  kQ8_0,
  kQ4_0,
  kQ5_0,
  kQ5_1,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kQ2_K,
  kQ3_K,
  kIQ4_NL,
  kIQ4_XS,
  kQ8_0P,
  kQ4_0P,
  kQ5_0P,
  kQ5_1P,
  kQ4_KP,
  kQ5_KP,
  kQ6_KP,
  kIQ4_NLP,
  kQ3_KP,
  kQ2_KP,
  kIQ4_XSP,
  kCount
};

// --- the panel layout of Q8_0/Q4_0/Q5_0 weights (WeightLayout::kPanels) ------------------------
//
// Rows go in groups of 16 (a last partial group is padded with zero rows). Group g starts at
// g * 16 * RowSizeBytes(type, cols): the layout takes the bytes of the row layout. Inside a group,
// block b (columns 32b..32b+31) of the 16 rows is
//   a payload of 64-byte vectors whose lane i (bytes 4i..4i+3) belongs to row i:
//     Q8_0: 8 vectors; vector k holds elements 4k..4k+3 as unsigned bytes (q + 128);
//     Q4_0: 4 vectors; vector k holds the block's raw bytes 4k..4k+3, whose low nibbles are
//           elements 4k..4k+3 and high nibbles elements 16+4k..16+4k+3, each q + 8;
//     Q5_0: 5 vectors: vector 0 lane i holds row i's 32 fifth bits regrouped (Q5PanelBits),
//           byte j bit 2k = the bit of element 4k + j and bit 2k + 1 that of element 16 + 4k + j,
//           so one VPTESTMB per vector selects the bytes of vector k + 1 to add 16 to; vectors
//           1-4 the nibbles as Q4_0's vectors 0-3 (each element q + 16 with its fifth bit);
//   the 16 rows' fp16 scales d (32 bytes, row i at bytes 2i..2i+1).
// Blocks go in pairs, [payload b][payload b+1][scales b][scales b+1] (an odd last block is
// [payload][scales]), so that with an even block count (every real model's widths) and a 64-byte
// aligned buffer every vector is 64-byte aligned; kernels still load them unaligned. So a kernel
// reading one group front to back reads one sequential stream, and the block's integer sums of 16
// rows land in the 16 lanes of one vector (VPDPBUSD against a broadcast 4-byte slice of the
// activations), with no transposing at run time -- the work the per-call packing of
// kernels_avx512_gemm.cc did for row-layout weights, done once at load.
// Q4_K (kQ4_KP), the same idea per super-block of 256 columns: group g starts at g * 16 *
// RowSizeBytes too, and super-block b of the 16 rows is 2304 bytes at b * 2304 (16 x 144):
//   [0, 2048)     32 vectors, vector 8c + k lane i: bytes 4k..4k+3 of row i's nibbles of chunk c
//                 (qs[32c .. 32c + 31]: low nibbles columns 64c + 4k.. of sub-block 2c, high
//                 nibbles the same columns of sub-block 2c + 1, each q + 0, unsigned);
//   [2048, 2240)  3 vectors, vector q lane i: dword q of row i's 12 packed scale bytes;
//   [2240, 2304)  1 vector, lane i: row i's d | dmin << 16 (fp16 bits).
// Q5_K (kQ5_KP): Q4_K's 2304 bytes, then [2304, 2816) 8 vectors, vector k lane i: bytes
// 4k..4k+3 of row i's qh, so that the fifth bits of Q4_K vector 8c + k's bytes are bit 2c (low
// nibbles) and 2c + 1 (high) of the same bytes of vector k: a super-block of 16 rows is 2816
// bytes (16 x 176).
// Every vector is 64-byte aligned in a 64-byte aligned buffer.
// Q6_K (kQ6_KP): super-block b of 16 rows is a payload of 52 vectors, vector j lane i = dword j of
// row i's block (ql: 0-31, qh: 32-47, the int8 scales: 48-51), and the 16 rows' fp16 d (32
// bytes); super-blocks go in pairs as Q8_0/Q4_0 blocks do, [payload b][payload b+1][d b][d b+1]
// (PanelBlockAt with a payload of kQ6KPanelPayload), so every vector is 64-byte aligned.
// Q3_K (kQ3_KP): Q6_K's scheme with 27 dwords: super-block b of 16 rows is a payload of 27
// vectors, vector j lane i = dword j of row i's block (hmask: 0-7, qs: 8-23, the 12 packed scale
// bytes: 24-26), and the 16 rows' fp16 d (32 bytes); super-blocks in pairs, [payload b][payload
// b+1][d b][d b+1] (PanelBlockAt with a payload of kQ3KPanelPayload): 1760 bytes (16 x 110) per
// super-block, every vector 64-byte aligned with an even count. Element 128n + 32j + l of a row
// is then bits 2j..2j+1 of qs vector 8n + l / 4 and bit 4n + j of hmask vector l / 4, byte l % 4.
// Q2_K (kQ2_KP): super-block b of 16 rows is 1344 bytes at b * 1344 (16 x 84): 21 vectors,
// vector j lane i = dword j of row i's block (the 16 scale | min << 4 bytes: 0-3, qs: 4-19,
// d | dmin << 16: 20), every vector 64-byte aligned. Element 128n + 32j + l of a row is bits
// 2j..2j+1 of qs vector 4 + 8n + l / 4, byte l % 4.
// Q5_1 (kQ5_1P): block b of 16 rows is 384 bytes at b * 384, Q5_0's five payload vectors (q + 0,
// unsigned) then one vector, lane i = row i's d | m << 16 (fp16 bits); blocks are not paired.
// IQ4_XS (kIQ4_XSP): super-block b of 16 rows is 2176 bytes at b * 2176 (16 x 136):
//   [0, 2048)     32 vectors, vector 4s + k lane i: bytes 4k..4k+3 of row i's nibbles of
//                 sub-block s (qs[16s + 4k ..]: low nibbles columns 32s + 4k.., high nibbles
//                 columns 32s + 16 + 4k.., indices into IQ4_NL's table, as Q4_0's vectors);
//   [2048, 2112)  1 vector, lane i: row i's scales_l (the low 4 bits of its 8 scales);
//   [2112, 2176)  1 vector, lane i: row i's d | scales_h << 16 (the block's first dword).
inline constexpr int64_t kQ5_1PanelBlockBytes = 16 * 24;
inline constexpr int64_t kQ6KPanelPayload = 52 * 64;
inline constexpr int64_t kQ3KPanelPayload = 27 * 64;
inline constexpr int64_t kQ2KPanelBlockBytes = 16 * 84;
inline constexpr int64_t kQ4KPanelBlockBytes = 16 * 144;
inline constexpr int64_t kQ4KPanelScales = 2048;
inline constexpr int64_t kQ4KPanelD = 2240;
inline constexpr int64_t kQ5KPanelQh = 2304;
inline constexpr int64_t kQ5KPanelBlockBytes = 16 * 176;
inline constexpr int64_t kIQ4XSPBlockBytes = 16 * 136;
inline constexpr int64_t kIQ4XSPScalesL = 2048;
inline constexpr int64_t kIQ4XSPDH = 2112;
static inline int64_t PanelPayloadBytes(WKind k) {
  return k == WKind::kQ8_0P ? 512 : k == WKind::kQ5_0P ? 320 : 256;
}
// A Q5_0 block's fifth bits (qh, bit e = element e) in the panel's order (layout above), and back.
inline uint32_t Q5PanelBits(uint32_t qh) {
  // Four bits spread to bit 0 of four bytes.
  static constexpr auto kSpread = [] {
    std::array<uint32_t, 16> t{};
    for (uint32_t x = 0; x < 16; ++x) {
      t[x] = (x & 1) | (x >> 1 & 1) << 8 | (x >> 2 & 1) << 16 | (x >> 3 & 1) << 24;
    }
    return t;
  }();
  uint32_t out = 0;
  for (int s = 0; s < 8; ++s) {  // the bits of elements 4(s/2) + 16(s%2) + j, j = 0..3
    out |= kSpread[qh >> (4 * (s / 2) + 16 * (s % 2)) & 0xF] << s;
  }
  return out;
}
inline uint32_t Q5RowBits(uint32_t panel_bits) {
  uint32_t qh = 0;
  for (int s = 0; s < 8; ++s) {
    for (int j = 0; j < 4; ++j) {
      qh |= (panel_bits >> (8 * j + s) & 1u) << (4 * (s / 2) + 16 * (s % 2) + j);
    }
  }
  return qh;
}
// Bytes per row-layout block of the Q8_0/Q4_0/Q5_0 panel kinds.
static inline int64_t PanelRowBlockBytes(WKind k) {
  return k == WKind::kQ8_0P ? sizeof(BlockQ8_0)
         : k == WKind::kQ5_0P ? sizeof(BlockQ5_0)
                              : sizeof(BlockQ4_0);
}
struct PanelBlock {
  int64_t payload;  // byte offsets from the group's start
  int64_t scales;
};
static inline PanelBlock PanelBlockAt(int64_t payload_bytes, int64_t nb, int64_t b) {
  const int64_t pair = (b / 2) * 2 * (payload_bytes + 32);
  if (b % 2 == 1) return {pair + payload_bytes, pair + 2 * payload_bytes + 32};
  return {pair, pair + (b + 1 < nb ? 2 * payload_bytes : payload_bytes)};
}

struct TileArgs {
  const uint8_t* w;    // row r starts at w + r * w_row_bytes
  int64_t w_row_bytes;
  int64_t cols;
  const uint8_t* x;    // token t's (converted) activations start at x + t * x_stride_bytes
  int64_t x_stride_bytes;
  float* y;            // Y[t * ldy + r]
  int64_t ldy;
};

// Computes Y[t][r] for r in [r0, r1), t in [t0, t1).
using TileFn = void (*)(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
// Converts one token's float activations (cols elements) to a quantised row at `out`.
using QuantizeActFn = void (*)(const float* x, int64_t cols, uint8_t* out);
// Attention of n_q query heads sharing one KV head (K and V rows of head_dim elements: float or
// fp16). Scores: out[h * n + j] = dot(q_h, K[j]) * scale for h < n_q, j < n, with query head h
// at q + h * head_dim.
using ScoresFn = void (*)(const float* q, int64_t n_q, const void* const* k_rows, bool k_f16,
                          int64_t n, int64_t head_dim, float scale, float* out);
// out[h * head_dim + i] = sum_j p[h * n + j] * V[j][i].
using WeightedSumFn = void (*)(const float* p, int64_t n_q, const void* const* v_rows,
                               bool v_f16, int64_t n, int64_t head_dim, float* out);
using HalfToFloatFn = void (*)(const uint16_t* x, float* y, int64_t n);
using FloatToHalfFn = void (*)(const float* x, uint16_t* y, int64_t n);
using SiluMulFn = void (*)(const float* gate, const float* up, float* out, int64_t n);
using SoftmaxFn = void (*)(float* x, int64_t n);
// The bandwidth probe's read: sums n bytes (a multiple of 512) at p (64-byte aligned) with the
// ISA's widest loads, so the reads cannot be optimised out. With prefetch_bytes > 0, each line is
// also prefetched that far ahead with the non-temporal hint, which reads faster than the loads
// alone in some machine states and slower in others, and the best distance differs between
// states too (2 threads, 512 MiB: slow state 4 KiB 46-47 GB/s against 45-47 plain, 8 KiB no
// better; fast state plain 62-66, 4 KiB 76-78, 8 KiB 77-82). The probe takes the best of all.
using ReadSumFn = uint64_t (*)(const uint8_t* p, int64_t n, int64_t prefetch_bytes);
// The variants BandwidthProbe::Measure cycles through, pass after pass (0: no prefetch).
inline constexpr int64_t kProbePrefetchBytes[] = {4096, 0, 8192};

// A decoding-only tile (at most kGemvMaxTokens tokens) with its own activation format; where an
// ISA has none, `tile` serves decoding too.
inline constexpr int64_t kGemvMaxTokens = 2;
struct GemvKernel {
  TileFn tile = nullptr;
  ActFormat act = ActFormat::kFloat;
};

// One ISA's kernels. A null entry falls back to the scalar reference.
struct IsaKernels {
  TileFn tile[static_cast<int>(WKind::kCount)] = {};
  GemvKernel gemv[static_cast<int>(WKind::kCount)] = {};
  QuantizeActFn quantize_q8 = nullptr;
  QuantizeActFn quantize_q8k = nullptr;
  QuantizeActFn quantize_q8x4 = nullptr;
  ScoresFn scores = nullptr;
  WeightedSumFn weighted_sum = nullptr;
  HalfToFloatFn half_to_float = nullptr;
  FloatToHalfFn float_to_half = nullptr;
  SiluMulFn silu_mul = nullptr;
  SoftmaxFn softmax = nullptr;
  ReadSumFn read_sum = nullptr;
};

// Tables defined by each ISA source. The AVX2/AVX-512 tables are empty in a build whose compiler
// cannot target them (never the case with g++ 12 on x86-64, but keeps the dispatcher honest).
const IsaKernels& ScalarKernels();
const IsaKernels& Avx2Kernels();
const IsaKernels& Avx512Kernels();

// Prompt-processing tiles of kernels_avx512_gemm.cc (TileFn contract, any token count, meant for
// more than kGemvMaxTokens): weights repacked per call into L1-resident panels of 16 rows, F32/
// F16/BF16 against float activations, Q8_0/Q4_0 against kQ8. Only for CPUs that run AVX-512 (F,
// BW, VL, VNNI); reached through Avx512Kernels().
void Avx512GemmF32(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512GemmF16(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512GemmBf16(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512GemmQ8_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512GemmQ4_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
// Q4_K and Q6_K against kQ8K activations, 16-row panels packed per call the same way (Q5_K's
// rows on AVX-512 run the AVX2 kernel: it is always repacked there).
void Avx512GemmQ4_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512GemmQ6_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
// Q2_K through panels of Q6_K's shape with mins.
void Avx512GemmQ2_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
// Q3_K through Q6_K's panels (values q3 + 32, the same exact integers and float steps).
void Avx512GemmQ3_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
// IQ4_XS through panels of Q4_K's shape (values table + 128, the offset through the bsums).
void Avx512GemmIQ4_XS(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
// Panel-layout Q8_0/Q4_0/Q5_0/Q5_1/IQ4_NL (TileArgs::w the panel buffer, w_row_bytes the row
// layout's row size; r0 a multiple of 16), any token count, against kQ8 activations;
// Q4_K/Q5_K/Q6_K/Q3_K/Q2_K/IQ4_XS against kQ8K.
void Avx512PanelsQ8_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsQ4_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsIQ4_NL(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsQ5_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsQ5_1(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsQ4_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsQ5_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsQ6_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsQ3_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsQ2_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx512PanelsIQ4_XS(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
// Panel-layout Q8_0/Q4_0/Q5_0 (kQ8) and Q4_K/Q5_K/Q6_K (kQ8K) for AVX2 (kernels_avx2_panels.cc;
// the same contract): the 16 rows of a group as two halves of 8.
void Avx2PanelsQ8_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx2PanelsQ4_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx2PanelsQ5_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx2PanelsQ4_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx2PanelsQ5_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
void Avx2PanelsQ6_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1);

// Row `row` of a panel-layout matrix back in its row-layout blocks (RowSizeBytes(type, cols) bytes
// at out): panels.cc, for the scalar reference tiles and DequantizeRow.
void PanelRowToBlocks(WKind kind, const uint8_t* panels, int64_t row, int64_t cols, uint8_t* out);

// Scalar references, also used directly by tests.
void SiluMulRef(const float* gate, const float* up, float* out, int64_t n);
void SoftmaxRef(float* x, int64_t n);
void QuantizeActQ8Ref(const float* x, int64_t cols, uint8_t* out);
void QuantizeActQ8KRef(const float* x, int64_t cols, uint8_t* out);
void QuantizeActQ8x4Ref(const float* x, int64_t cols, uint8_t* out);

// fp16 <-> float of one value without a table (the library's reference conversions).
float HalfToFloatRef(uint16_t h);
uint16_t FloatToHalfRef(float f);

}  // namespace yunzhi::engine::kernels::internal
