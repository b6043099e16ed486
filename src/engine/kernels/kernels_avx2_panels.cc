// AVX2 kernels for panel-layout Q8_0, Q4_0 and Q5_0 weights (layout in kernels_internal.h), for
// CPUs without AVX-512 (Zen 3, Haswell to Alder Lake): compiled with kernels_avx2.cc's flags,
// reached through Avx2Kernels().
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
// Per block and row: v = sum * dx - offset * ds, acc += v * d_w (two FMAs, blocks in order), the
// same steps for every token whatever the tile shape, so a token's outputs are the same bits
// decoded alone, in a batch or in a prompt, on any thread count.

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_internal.h"

namespace yunzhi::engine::kernels::internal {
namespace {

struct PanelsQ8_0 {
  static constexpr int64_t kPayload = 512;
  static constexpr float kOffset = 0.0f;  // the kernel takes q itself (see above)
};
struct PanelsQ4_0 {
  static constexpr int64_t kPayload = 256;
  static constexpr float kOffset = 8.0f;
};
struct PanelsQ5_0 {
  static constexpr int64_t kPayload = 320;
  static constexpr float kOffset = 16.0f;
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
// 19-20 at 1-8 KiB.
constexpr int64_t kDecodePrefetchBytes = 2048;

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
    if (prefetch) {
      const uint8_t* ahead = group + b * (W::kPayload + 32) + kDecodePrefetchBytes;
      for (int64_t o = 0; o < W::kPayload + 32; o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(ahead + o), _MM_HINT_NTA);
      }
    }
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

// y rows [0, n_rows) of tokens t..t+NT-1 (token j's at y + j * ldy): loaded (from_y) or zero, then
// blocks [b0, b1), then stored.
template <class W, int NT>
void GroupTile(const uint8_t* group, int64_t nb, int64_t b0, int64_t b1, const ActQ8Row* x,
               float* y, int64_t ldy, int n_rows, bool from_y, bool prefetch) {
  Acc<NT> acc;
  for (int j = 0; j < NT; ++j) {
    alignas(32) float rows[16] = {};
    if (from_y) std::copy_n(y + j * ldy, n_rows, rows);
    acc.v[0][j] = _mm256_load_ps(rows);
    acc.v[1][j] = _mm256_load_ps(rows + 8);
  }
  GroupBlocks<W, NT>(group, nb, b0, b1, x, prefetch, acc);
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
  const int64_t nb = a.cols / 32;
  const int64_t group_bytes = 16 * a.w_row_bytes;
  const int64_t n_tokens = t1 - t0;
  // One token: the whole row of blocks in one pass, a sequential stream per group.
  const int64_t chunk = n_tokens <= 1 ? nb : std::max<int64_t>(2, kChunkBytes / (W::kPayload + 32));
  const bool prefetch = n_tokens <= 1 && DecodeSoftwarePrefetch();
  ActQ8Row x[kTokens];
  for (int64_t r = r0; r < r1; r += 16) {
    const uint8_t* group = a.w + (r / 16) * group_bytes;
    const int n_rows = static_cast<int>(std::min<int64_t>(16, r1 - r));
    for (int64_t b0 = 0; b0 < nb; b0 += chunk) {
      const int64_t b1 = std::min(nb, b0 + chunk);
      for (int64_t t = t0; t < t1; t += kTokens) {
        const int nt = static_cast<int>(std::min<int64_t>(kTokens, t1 - t));
        for (int j = 0; j < nt; ++j) x[j] = ViewQ8(a.x + (t + j) * a.x_stride_bytes, a.cols);
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

}  // namespace yunzhi::engine::kernels::internal
