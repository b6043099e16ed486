// AVX2 kernels for panel-layout Q8_0, Q4_0, Q5_0, Q4_K, Q5_K and Q6_K weights (layout in
// kernels_internal.h), for CPUs without AVX-512 (Zen 3, Haswell to Alder Lake): compiled with
// kernels_avx2.cc's flags, reached through Avx2Kernels().
//
// The panels are the ones AVX-512 reads: a 64-byte vector holds dword i of rows 0-15, so its two
// 32-byte halves hold rows 0-7 and rows 8-15, and one group of 16 rows is one sequential stream.
// Against a broadcast 4-byte slice of a token's activations, VPMADDUBSW then VPMADDWD put each
// row's integer sum in its own lane: nothing is reduced across lanes, and a block's float step
// (the scales, the offset) is one vector operation for 8 rows instead of one per row.
//  - Q4_0: the nibbles (q + 8, 0..15) are unsigned as they are; 8 pair sums of at most
//    2 * 15 * 127 add up within int16 (30480), so a block costs one VPMADDWD per 8 rows.
//  - Q5_0: Q4_0's nibbles with each fifth bit (the regrouped bits' vector) OR'd in as 16; values
//    up to 31 let 4 pair sums add up in int16 (31496), so two VPMADDWD per block and 8 rows.
//  - Q8_0: the panel holds q + 128; VPMADDUBSW would saturate on it (2 * 255 * 127), so the sign
//    moves onto the activations as in the row kernels, |q| x sign(x, q) (pair sums within
//    2 * 128 * 127), each widened by its own VPMADDWD.
//  - Q4_K, Q5_K and Q6_K: see Q4_KBlocks and Q6_KBlocks.
// Per block and row: v = sum * dx - offset * ds, acc += v * d_w (two FMAs, blocks in order), the
// same steps for every token whatever the tile shape, so a token's outputs are the same bits
// decoded alone, in a batch or in a prompt, on any thread count.
//
// Everything here but the Avx2Panels* entry points has internal linkage (compiled with -mavx2: see
// kernels_avx512.cc), and those are reached only through the AVX2 table.

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_internal.h"

namespace yunzhi::engine::kernels::internal {
namespace {

// The kQ8 kinds: blocks of 32 columns, kPayload bytes of vectors then 32 bytes of scales.
struct Q8Act {
  using Act = ActQ8Row;
  static constexpr int64_t kCols = 32;
  static Act View(const uint8_t* row, int64_t cols) { return ViewQ8(row, cols); }
};
struct PanelsQ8_0 : Q8Act {
  static constexpr int64_t kPayload = 512;
  static constexpr float kOffset = 0.0f;  // the kernel takes q itself (see above)
  static constexpr int64_t kStreamBytes = kPayload + 32;
};
struct PanelsQ4_0 : Q8Act {
  static constexpr int64_t kPayload = 256;
  static constexpr float kOffset = 8.0f;
  static constexpr int64_t kStreamBytes = kPayload + 32;
};
struct PanelsQ5_0 : Q8Act {
  static constexpr int64_t kPayload = 320;
  static constexpr float kOffset = 16.0f;
  static constexpr int64_t kStreamBytes = kPayload + 32;
};
// Q4_K against kQ8K: super-blocks of 256 columns, kQ4KPanelBlockBytes each (kernels_internal.h).
struct PanelsQ4_K {
  using Act = ActQ8KRow;
  static constexpr int64_t kCols = 256;
  static constexpr int64_t kStreamBytes = kQ4KPanelBlockBytes;
  static constexpr bool kQ5 = false;
  static Act View(const uint8_t* row, int64_t cols) { return ViewQ8K(row, cols); }
};
// Q5_K: Q4_K's panel followed by the 16 rows' qh (kQ5KPanelBlockBytes per super-block).
struct PanelsQ5_K : PanelsQ4_K {
  static constexpr int64_t kStreamBytes = kQ5KPanelBlockBytes;
  static constexpr bool kQ5 = true;
};
// Q6_K against kQ8K: super-blocks of 256 columns in pairs (kernels_internal.h).
struct PanelsQ6_K {
  using Act = ActQ8KRow;
  static constexpr int64_t kCols = 256;
  static constexpr int64_t kStreamBytes = kQ6KPanelPayload + 32;
  static Act View(const uint8_t* row, int64_t cols) { return ViewQ8K(row, cols); }
};

// Tokens per pass over a group: two tokens' accumulators for 16 rows (8 registers) leave room
// for the weights and activations in AVX2's 16.
constexpr int kTokens = 2;
// Several tokens (a batch, a prompt) take the blocks in chunks of about this many bytes of a
// group, so that every token tile reads the chunk from L1.
constexpr int64_t kChunkBytes = 16384;
// Decoding's software prefetch distance in a group's stream, non-temporal as on AVX-512
// (kernels_avx512_gemm.cc), when DecodeSoftwarePrefetch() says so. DecodeStepFused Q4_0 (Zen 3,
// 2 threads), GB/s: none 13-16, 1 KiB 21, 2 KiB 20-23, 4 KiB 19-20, 8 KiB 16; T0 instead of NTA
// 19-20 at 1-8 KiB. Q4_K (DecodeStepFused, Qwen2.5-1.5B shapes): 17-19.6 GB/s at 2-18 KiB alike.
constexpr int64_t kDecodePrefetchBytes = 2048;

// Decoding's prefetch for block b of a group read as one stream of stream_bytes per block:
// that block's bytes, kDecodePrefetchBytes further on.
inline void PrefetchStream(const uint8_t* group, int64_t b, int64_t stream_bytes) {
  const uint8_t* ahead = group + b * stream_bytes + kDecodePrefetchBytes;
  for (int64_t o = 0; o < stream_bytes; o += 64) {
    _mm_prefetch(reinterpret_cast<const char*>(ahead + o), _MM_HINT_NTA);
  }
}

inline __m256i Broadcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);
}

// Bit p of each byte of a Q5_0 panel's regrouped fifth bits (kernels_internal.h) as 16 or 0 in
// the same byte. The 16-bit shift moves bits across bytes, but bit 4 of a byte comes from bit p
// of the same byte for any p in 0..7.
inline __m256i FifthBitAs16(__m256i bits, int p, __m256i sixteen) {
  const __m256i at4 = p <= 4 ? _mm256_slli_epi16(bits, 4 - p) : _mm256_srli_epi16(bits, p - 4);
  return _mm256_and_si256(at4, sixteen);
}

template <int NT>
struct Acc {
  __m256 v[2][NT];  // [rows 0-7 | rows 8-15][token]
};

// Blocks [b0, b1) of one group (16 rows) for tokens t..t+NT-1: acc in and out.
template <class W, int NT>
void GroupBlocks(const uint8_t* group, int64_t nb, int64_t b0, int64_t b1, const ActQ8Row* x,
                 bool prefetch, Acc<NT>& acc_io) {
  // The accumulators in registers for the loop (through the reference they stayed in memory).
  __m256 acc[2][NT];
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < NT; ++j) acc[h][j] = acc_io.v[h][j];
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = b0; b < b1; ++b) {
    const PanelBlock at = PanelBlockAt(W::kPayload, nb, b);
    const uint8_t* pw = group + at.payload;
    if (prefetch) PrefetchStream(group, b, W::kStreamBytes);
    __m256i dot[2][NT];
    if constexpr (W::kPayload == 256 || W::kPayload == 320) {
      // Q5_0: the fifth bits' vector, then Q4_0's four nibble vectors.
      constexpr bool kFifth = W::kPayload == 320;
      constexpr int64_t kNibbles = kFifth ? 64 : 0;
      // Q4_0's 8 pair sums per block fit int16 (8 * 2 * 15 * 127 = 30480); Q5_0's values up to
      // 31 allow 4 (4 * 2 * 31 * 127 = 31496) before they are widened.
      constexpr int kWidenEvery = kFifth ? 2 : 4;
      const __m256i nibble = _mm256_set1_epi8(0x0F);
      [[maybe_unused]] const __m256i sixteen = _mm256_set1_epi8(16);
      [[maybe_unused]] __m256i bits[2];
      if constexpr (kFifth) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          bits[h] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pw + 32 * h));
        }
      }
      __m256i s16[2][NT];
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h)
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) {
          s16[h][j] = _mm256_setzero_si256();
          dot[h][j] = _mm256_setzero_si256();
        }
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        __m256i lo[2], hi[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m256i v =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pw + kNibbles + 64 * k + 32 * h));
          lo[h] = _mm256_and_si256(v, nibble);
          hi[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
          if constexpr (kFifth) {
            lo[h] = _mm256_or_si256(lo[h], FifthBitAs16(bits[h], 2 * k, sixteen));
            hi[h] = _mm256_or_si256(hi[h], FifthBitAs16(bits[h], 2 * k + 1, sixteen));
          }
        }
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) {
          const __m256i xl = Broadcast4(x[j].qs + 32 * b + 4 * k);
          const __m256i xh = Broadcast4(x[j].qs + 32 * b + 16 + 4 * k);
#pragma GCC unroll 2
          for (int h = 0; h < 2; ++h) {
            s16[h][j] = _mm256_add_epi16(s16[h][j], _mm256_maddubs_epi16(lo[h], xl));
            s16[h][j] = _mm256_add_epi16(s16[h][j], _mm256_maddubs_epi16(hi[h], xh));
            if ((k + 1) % kWidenEvery == 0) {
              dot[h][j] = _mm256_add_epi32(dot[h][j], _mm256_madd_epi16(s16[h][j], ones));
              s16[h][j] = _mm256_setzero_si256();
            }
          }
        }
      }
    } else {
      const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h)
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) dot[h][j] = _mm256_setzero_si256();
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        __m256i q[2], qabs[2];
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          q[h] = _mm256_xor_si256(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pw + 64 * k + 32 * h)), flip);
          qabs[h] = _mm256_sign_epi8(q[h], q[h]);
        }
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) {
          const __m256i xv = Broadcast4(x[j].qs + 32 * b + 4 * k);
#pragma GCC unroll 2
          for (int h = 0; h < 2; ++h) {
            const __m256i p = _mm256_maddubs_epi16(qabs[h], _mm256_sign_epi8(xv, q[h]));
            dot[h][j] = _mm256_add_epi32(dot[h][j], _mm256_madd_epi16(p, ones));
          }
        }
      }
    }
    __m256 wd[2];
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      wd[h] = _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(group + at.scales + 16 * h)));
    }
#pragma GCC unroll 4
    for (int j = 0; j < NT; ++j) {
      const __m256 dx = _mm256_set1_ps(x[j].d[b]);
      const __m256 m = _mm256_set1_ps(-W::kOffset * x[j].ds[b]);
#pragma GCC unroll 2
      for (int h = 0; h < 2; ++h) {
        const __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[h][j]), dx, m);
        acc[h][j] = _mm256_fmadd_ps(v, wd[h], acc[h][j]);
      }
    }
  }
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < NT; ++j) acc_io.v[h][j] = acc[h][j];
}

// Q4_K: per super-block and half (8 rows), each sub-block's 8 nibble vectors against the token's
// 32 activations (8 pair sums within int16, 30480), weighted by the rows' 6-bit scales in the
// VPMADDWD that widens them; the mins against the activations' 16-element sums (bsums), one
// VPMADDWD per sub-block. Exact integers, then the float steps of the AVX-512 kernels:
// v = d * sumi - dmin * summ, acc += dx * v. Q5_K (kQ5): each nibble with its fifth bit from the qh
// vectors OR'd in as 16 (values up to 31: widened every 4 pair sums, 31496).

// The 8 rows' scales and mins (0..63) from their 12 packed bytes (the three dwords of each row in
// q0, q1, q2), as bytes: byte s of a row's dword in lo is sub-block s's value, in hi sub-block
// 4 + s's. The 16-bit shifts move bits across bytes; the masks keep only a byte's own.
struct Q4_KScaleBytes {
  __m256i sc_lo, sc_hi, m_lo, m_hi;
};
inline Q4_KScaleBytes Q4_KScales(__m256i q0, __m256i q1, __m256i q2) {
  const __m256i six = _mm256_set1_epi8(0x3F), low4 = _mm256_set1_epi8(0x0F);
  const __m256i top2 = _mm256_set1_epi8(0x30);  // a byte's bits 6-7 moved to 4-5
  return {
      _mm256_and_si256(q0, six),
      _mm256_or_si256(_mm256_and_si256(q2, low4), _mm256_and_si256(_mm256_srli_epi16(q0, 2), top2)),
      _mm256_and_si256(q1, six),
      _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q2, 4), low4),
                      _mm256_and_si256(_mm256_srli_epi16(q1, 2), top2))};
}
// Byte s of every dword as an int16 in both halves of the dword (VPMADDWD's weight of a row's
// pair sums).
inline __m256i DwordByteAsPair(__m256i bytes, int s) {
  const char z = static_cast<char>(0x80);
  const auto b = [s](int i) { return static_cast<char>(4 * i + s); };
  const __m256i ctrl =
      _mm256_setr_epi8(b(0), z, b(0), z, b(1), z, b(1), z, b(2), z, b(2), z, b(3), z, b(3), z, b(0),
                       z, b(0), z, b(1), z, b(1), z, b(2), z, b(2), z, b(3), z, b(3), z);
  return _mm256_shuffle_epi8(bytes, ctrl);
}

// The low (kHigh: high) halves of 8 dwords as 8 floats from fp16.
template <bool kHigh>
inline __m256 HalvesToFloat(__m256i v) {
  v = kHigh ? _mm256_srli_epi32(v, 16) : _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
  return _mm256_cvtph_ps(
      _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

template <int NT, bool kQ5>
void Q4_KBlocks(const uint8_t* group, int64_t b0, int64_t b1, const ActQ8KRow* x, bool prefetch,
                Acc<NT>& acc_io) {
  constexpr int64_t kBlockBytes = kQ5 ? kQ5KPanelBlockBytes : kQ4KPanelBlockBytes;
  [[maybe_unused]] const __m256i sixteen = _mm256_set1_epi8(16);
  __m256 acc[2][NT];
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < NT; ++j) acc[h][j] = acc_io.v[h][j];
  const __m256i nibble = _mm256_set1_epi8(0x0F);
  for (int64_t b = b0; b < b1; ++b) {
    const uint8_t* blk = group + b * kBlockBytes;
    if (prefetch) PrefetchStream(group, b, kBlockBytes);
      // The two halves one after the other: the second reads the block's lines from L1.
#pragma GCC unroll 1
    for (int h = 0; h < 2; ++h) {
      const auto* packed = reinterpret_cast<const __m256i*>(blk + kQ4KPanelScales + 32 * h);
      const __m256i q0 = _mm256_loadu_si256(packed);
      const __m256i q1 = _mm256_loadu_si256(packed + 2);
      const __m256i q2 = _mm256_loadu_si256(packed + 4);
      // The 8 sub-blocks' scales as int16 pairs (both halves of a row's dword), for VPMADDWD; the
      // mins' products with the activations' sums first.
      __m256i sc2[8];
      __m256i sumi[NT], summ[NT];
      for (int j = 0; j < NT; ++j) sumi[j] = summ[j] = _mm256_setzero_si256();
      const Q4_KScaleBytes scales = Q4_KScales(q0, q1, q2);
#pragma GCC unroll 8
      for (int sb = 0; sb < 8; ++sb) {
        sc2[sb] = DwordByteAsPair(sb < 4 ? scales.sc_lo : scales.sc_hi, sb % 4);
        const __m256i m2 = DwordByteAsPair(sb < 4 ? scales.m_lo : scales.m_hi, sb % 4);
#pragma GCC unroll 4
        for (int j = 0; j < NT; ++j) {
          int32_t bs;  // the sub-block's two 16-element sums
          std::memcpy(&bs, x[j].bsums + (kQK_K / 16) * b + 2 * sb, sizeof bs);
          summ[j] = _mm256_add_epi32(summ[j], _mm256_madd_epi16(m2, _mm256_set1_epi32(bs)));
        }
      }
      // Chunk c: 8 vectors whose low nibbles are sub-block 2c and high nibbles 2c + 1 (Q5_K: their
      // fifth bits bit 2c and 2c + 1 of the same bytes of qh vector k).
#pragma GCC unroll 1
      for (int c = 0; c < 4; ++c) {
        const uint8_t* chunk = blk + 64 * 8 * c + 32 * h;
        __m256i lo16[NT], hi16[NT];
        for (int j = 0; j < NT; ++j) lo16[j] = hi16[j] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; ++k) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(chunk + 64 * k));
          __m256i lo = _mm256_and_si256(v, nibble);
          __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
          if constexpr (kQ5) {
            const __m256i qh = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(blk + kQ5KPanelQh + 64 * k + 32 * h));
            lo = _mm256_or_si256(lo, FifthBitAs16(qh, 2 * c, sixteen));
            hi = _mm256_or_si256(hi, FifthBitAs16(qh, 2 * c + 1, sixteen));
          }
#pragma GCC unroll 4
          for (int j = 0; j < NT; ++j) {
            const int8_t* xq = x[j].qs + kQK_K * b + 64 * c + 4 * k;
            lo16[j] = _mm256_add_epi16(lo16[j], _mm256_maddubs_epi16(lo, Broadcast4(xq)));
            hi16[j] = _mm256_add_epi16(hi16[j], _mm256_maddubs_epi16(hi, Broadcast4(xq + 32)));
            // Q4_K: 8 pair sums of at most 2 * 15 * 127 fit int16; Q5_K's values up to 31 allow 4.
            if (k == 7 || (kQ5 && k == 3)) {
              sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(lo16[j], sc2[2 * c]));
              sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(hi16[j], sc2[2 * c + 1]));
              lo16[j] = hi16[j] = _mm256_setzero_si256();
            }
          }
        }
      }
      const __m256i dm =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + kQ4KPanelD + 32 * h));
      const __m256 d = HalvesToFloat<false>(dm), dmin = HalvesToFloat<true>(dm);
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) {
        __m256 v = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sumi[j]));
        v = _mm256_fnmadd_ps(dmin, _mm256_cvtepi32_ps(summ[j]), v);
        acc[h][j] = _mm256_fmadd_ps(_mm256_set1_ps(x[j].d[b]), v, acc[h][j]);
      }
    }
  }
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < NT; ++j) acc_io.v[h][j] = acc[h][j];
}

// Q6_K: per super-block and half (8 rows), for each 128-element half n and k in 0..7 the ql
// vectors 16n + k and 16n + 8 + k and the qh vector 32 + 8n + k give four vectors of 6-bit values
// u = q + 32 (0..63): elements 128n + 4k.. (low nibbles of the first, qh bits 0-1), +32 (the
// second's low nibbles, bits 2-3), +64 (high nibbles of the first, bits 4-5) and +96 (bits 6-7),
// in sub-blocks of 16 (8n + k / 4, +2, +4, +6). Two pair sums of u x (at most 2 * 2 * 63 * 127
// = 32004) add up in int16 before the sub-block's int8 scale multiplies them in VPMADDWD; the
// offset 32 comes off through the activations' 16-element sums: sumi = sum_s sc[s] * (sum u x -
// 32 * bsum[s]), exact in int32. Then acc += (d_w * dx) * sumi.

// Byte s of every dword, sign-extended, as an int16 in both halves of the dword: placed in the
// high byte of each half, then shifted down arithmetically.
inline __m256i DwordInt8AsPair(__m256i bytes, int s) {
  const char z = static_cast<char>(0x80);
  const auto b = [s](int i) { return static_cast<char>(4 * i + s); };
  const __m256i ctrl =
      _mm256_setr_epi8(z, b(0), z, b(0), z, b(1), z, b(1), z, b(2), z, b(2), z, b(3), z, b(3), z,
                       b(0), z, b(0), z, b(1), z, b(1), z, b(2), z, b(2), z, b(3), z, b(3));
  return _mm256_srai_epi16(_mm256_shuffle_epi8(bytes, ctrl), 8);
}

template <int NT>
void Q6_KBlocks(const uint8_t* group, int64_t nb, int64_t b0, int64_t b1, const ActQ8KRow* x,
                bool prefetch, Acc<NT>& acc_io) {
  __m256 acc[2][NT];
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < NT; ++j) acc[h][j] = acc_io.v[h][j];
  const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
  for (int64_t b = b0; b < b1; ++b) {
    const PanelBlock at = PanelBlockAt(kQ6KPanelPayload, nb, b);
    const uint8_t* blk = group + at.payload;
    if (prefetch) PrefetchStream(group, b, PanelsQ6_K::kStreamBytes);
#pragma GCC unroll 1
    for (int h = 0; h < 2; ++h) {
      const auto vec = [&](int j) {
        return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 64 * j + 32 * h));
      };
      __m256i sumi[NT], off[NT];  // sum_s sc[s] * sum u x, sum_s sc[s] * bsum[s]
      for (int j = 0; j < NT; ++j) sumi[j] = off[j] = _mm256_setzero_si256();
#pragma GCC unroll 1
      for (int n = 0; n < 2; ++n) {
        // Scales 8n..8n+7: bytes of vectors 48 + 2n and 49 + 2n.
        const __m256i sc_lo = vec(48 + 2 * n), sc_hi = vec(49 + 2 * n);
#pragma GCC unroll 2
        for (int kk = 0; kk < 2; ++kk) {
          // The four sub-blocks 8n + kk + 2g (g = 0..3) of these four k's: scale byte kk + 2g.
          __m256i sc[4];
#pragma GCC unroll 4
          for (int g = 0; g < 4; ++g) {
            const int s = kk + 2 * g;  // sub-block 8n + s
            sc[g] = DwordInt8AsPair(s < 4 ? sc_lo : sc_hi, s % 4);
#pragma GCC unroll 4
            for (int j = 0; j < NT; ++j) {
              const uint16_t bs = static_cast<uint16_t>(x[j].bsums[(kQK_K / 16) * b + 8 * n + s]);
              off[j] = _mm256_add_epi32(off[j], _mm256_madd_epi16(sc[g], _mm256_set1_epi32(bs)));
            }
          }
          __m256i s16[NT][4];
#pragma GCC unroll 4
          for (int k = 4 * kk; k < 4 * kk + 4; ++k) {
            const __m256i a = vec(16 * n + k), c = vec(16 * n + 8 + k), hb = vec(32 + 8 * n + k);
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(a, low4),
                                   _mm256_and_si256(_mm256_slli_epi16(hb, 4), bits45));
            u[1] = _mm256_or_si256(_mm256_and_si256(c, low4),
                                   _mm256_and_si256(_mm256_slli_epi16(hb, 2), bits45));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low4),
                                   _mm256_and_si256(hb, bits45));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(c, 4), low4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), bits45));
#pragma GCC unroll 4
            for (int j = 0; j < NT; ++j) {
              const int8_t* xq = x[j].qs + kQK_K * b + 128 * n + 4 * k;
#pragma GCC unroll 4
              for (int g = 0; g < 4; ++g) {
                const __m256i p = _mm256_maddubs_epi16(u[g], Broadcast4(xq + 32 * g));
                s16[j][g] = k % 2 == 0 ? p : _mm256_add_epi16(s16[j][g], p);
                if (k % 2 == 1) {
                  sumi[j] = _mm256_add_epi32(sumi[j], _mm256_madd_epi16(s16[j][g], sc[g]));
                }
              }
            }
          }
        }
      }
      const __m256 d = _mm256_cvtph_ps(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(group + at.scales + 16 * h)));
#pragma GCC unroll 4
      for (int j = 0; j < NT; ++j) {
        sumi[j] = _mm256_sub_epi32(sumi[j], _mm256_slli_epi32(off[j], 5));
        acc[h][j] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(x[j].d[b])),
                                    _mm256_cvtepi32_ps(sumi[j]), acc[h][j]);
      }
    }
  }
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < NT; ++j) acc_io.v[h][j] = acc[h][j];
}

// y rows [0, n_rows) of tokens t..t+NT-1 (token j's at y + j * ldy): loaded (from_y) or zero, then
// blocks [b0, b1), then stored.
template <class W, int NT>
void GroupTile(const uint8_t* group, int64_t nb, int64_t b0, int64_t b1, const typename W::Act* x,
               float* y, int64_t ldy, int n_rows, bool from_y, bool prefetch) {
  Acc<NT> acc;
  for (int j = 0; j < NT; ++j) {
    alignas(32) float rows[16] = {};
    if (from_y) std::copy_n(y + j * ldy, n_rows, rows);
    acc.v[0][j] = _mm256_load_ps(rows);
    acc.v[1][j] = _mm256_load_ps(rows + 8);
  }
  if constexpr (std::is_same_v<W, PanelsQ6_K>) {
    Q6_KBlocks<NT>(group, nb, b0, b1, x, prefetch, acc);
  } else if constexpr (W::kCols == 256) {
    Q4_KBlocks<NT, W::kQ5>(group, b0, b1, x, prefetch, acc);
  } else {
    GroupBlocks<W, NT>(group, nb, b0, b1, x, prefetch, acc);
  }
  for (int j = 0; j < NT; ++j) {
    if (n_rows == 16) {
      _mm256_storeu_ps(y + j * ldy, acc.v[0][j]);
      _mm256_storeu_ps(y + j * ldy + 8, acc.v[1][j]);
    } else {
      alignas(32) float rows[16];
      _mm256_store_ps(rows, acc.v[0][j]);
      _mm256_store_ps(rows + 8, acc.v[1][j]);
      std::copy_n(rows, n_rows, y + j * ldy);
    }
  }
}

template <class W>
void Panels(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  const int64_t nb = a.cols / W::kCols;
  const int64_t group_bytes = 16 * a.w_row_bytes;
  const int64_t n_tokens = t1 - t0;
  // One token: the whole row of blocks in one pass, a sequential stream per group.
  const int64_t chunk = n_tokens <= 1 ? nb : std::max<int64_t>(2, kChunkBytes / W::kStreamBytes);
  const bool prefetch = n_tokens <= 1 && DecodeSoftwarePrefetch();
  typename W::Act x[kTokens];
  for (int64_t r = r0; r < r1; r += 16) {
    const uint8_t* group = a.w + (r / 16) * group_bytes;
    const int n_rows = static_cast<int>(std::min<int64_t>(16, r1 - r));
    for (int64_t b0 = 0; b0 < nb; b0 += chunk) {
      const int64_t b1 = std::min(nb, b0 + chunk);
      for (int64_t t = t0; t < t1; t += kTokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kTokens, t1 - t));
        for (int j = 0; j < nt; ++j) x[j] = W::View(a.x + (t + j) * a.x_stride_bytes, a.cols);
        float* y = a.y + t * a.ldy + r;
        if (nt == 2) {
          GroupTile<W, 2>(group, nb, b0, b1, x, y, a.ldy, n_rows, b0 > 0, prefetch);
        } else {
          GroupTile<W, 1>(group, nb, b0, b1, x, y, a.ldy, n_rows, b0 > 0, prefetch);
        }
      }
    }
  }
}

}  // namespace

void Avx2PanelsQ8_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  Panels<PanelsQ8_0>(a, r0, r1, t0, t1);
}
void Avx2PanelsQ4_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  Panels<PanelsQ4_0>(a, r0, r1, t0, t1);
}
void Avx2PanelsQ5_0(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  Panels<PanelsQ5_0>(a, r0, r1, t0, t1);
}
void Avx2PanelsQ4_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  Panels<PanelsQ4_K>(a, r0, r1, t0, t1);
}
void Avx2PanelsQ5_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  Panels<PanelsQ5_K>(a, r0, r1, t0, t1);
}
void Avx2PanelsQ6_K(const TileArgs& a, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
  Panels<PanelsQ6_K>(a, r0, r1, t0, t1);
}

}  // namespace yunzhi::engine::kernels::internal
