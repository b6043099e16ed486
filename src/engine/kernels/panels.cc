// The panel layout of the quantised weights (Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K,
// Q6_K, IQ4_NL, IQ4_XS; kernels_internal.h): packing at load, reading a row back. Portable code:
// packing runs once per model load, a few bytes of shuffling per weight byte.

#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "yunzhi/base/status.h"

#include "engine/kernels/kernels_internal.h"

namespace yunzhi::engine::kernels {
namespace {

using internal::PanelBlockAt;
using internal::PanelPayloadBytes;
using internal::WKind;

constexpr int64_t kGroupRows = 16;

#if defined(__SSE2__)
// r[q] holds dwords j..j+3 of row q; v[k] gets dword j + k of rows 0..3.
inline void Transpose4x4(const __m128i (&r)[4], __m128i (&v)[4]) {
  const __m128i t0 = _mm_unpacklo_epi32(r[0], r[1]), t1 = _mm_unpacklo_epi32(r[2], r[3]);
  const __m128i t2 = _mm_unpackhi_epi32(r[0], r[1]), t3 = _mm_unpackhi_epi32(r[2], r[3]);
  v[0] = _mm_unpacklo_epi64(t0, t1);
  v[1] = _mm_unpackhi_epi64(t0, t1);
  v[2] = _mm_unpacklo_epi64(t2, t3);
  v[3] = _mm_unpackhi_epi64(t2, t3);
}
#endif

WKind PanelKind(TensorType type) {
  switch (type) {
    case TensorType::kQ8_0: return WKind::kQ8_0P;
    case TensorType::kQ4_0: return WKind::kQ4_0P;
    case TensorType::kIQ4_NL: return WKind::kIQ4_NLP;
    case TensorType::kQ5_0: return WKind::kQ5_0P;
    case TensorType::kQ5_1: return WKind::kQ5_1P;
    case TensorType::kQ4_K: return WKind::kQ4_KP;
    case TensorType::kQ5_K: return WKind::kQ5_KP;
    case TensorType::kQ6_K: return WKind::kQ6_KP;
    case TensorType::kQ3_K: return WKind::kQ3_KP;
    case TensorType::kQ2_K: return WKind::kQ2_KP;
    case TensorType::kIQ4_XS: return WKind::kIQ4_XSP;
    default: YZ_CHECK(false && "no panel layout for this type");
  }
  return WKind::kQ8_0P;
}

// Q6_K and Q3_K: one group's super-block b (of nb) from the rows' blocks: dword j of row i's
// block (j < kDwords: all of the block but its fp16 d, which ends it) to lane i of payload vector
// j, its d to the d half-vector.
template <class Block, int64_t kPayloadBytes>
void PackBlockDwords(const uint8_t* const* row, int64_t nb, int64_t b, uint8_t* group) {
  constexpr int64_t kBlockBytes = sizeof(Block), kDwords = (kBlockBytes - 2) / 4;
  static_assert(kDwords * 64 == kPayloadBytes && kDwords * 4 + 2 == kBlockBytes);
  const internal::PanelBlock at = PanelBlockAt(kPayloadBytes, nb, b);
  uint8_t* payload = group + at.payload;
  for (int64_t i = 0; i < kGroupRows; ++i) {
    const uint8_t* blk = row[i] != nullptr ? row[i] + b * kBlockBytes : nullptr;
    uint16_t d = 0;
    if (blk != nullptr) std::memcpy(&d, blk + kBlockBytes - 2, 2);
    std::memcpy(group + at.scales + 2 * i, &d, 2);
  }
  int64_t j0 = 0;  // the dwords before j0 are packed
#if defined(__SSE2__)
  bool full = true;
  for (int64_t i = 0; i < kGroupRows; ++i) full = full && row[i] != nullptr;
  if (full) {  // four rows and four dwords at a time, as PackBlock
    for (int64_t i = 0; i < kGroupRows; i += 4) {
      for (int64_t j = 0; j + 4 <= kDwords; j += 4) {
        __m128i r[4];
        for (int q = 0; q < 4; ++q) {
          r[q] = _mm_loadu_si128(
              reinterpret_cast<const __m128i*>(row[i + q] + b * kBlockBytes + 4 * j));
        }
        __m128i v[4];
        Transpose4x4(r, v);
        for (int q = 0; q < 4; ++q) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(payload + 64 * (j + q) + 4 * i), v[q]);
        }
      }
    }
    j0 = kDwords / 4 * 4;  // Q3_K's last 3 dwords below: 16 bytes would read past the block
  }
#endif
  for (int64_t i = 0; i < kGroupRows; ++i) {
    const uint8_t* blk = row[i] != nullptr ? row[i] + b * kBlockBytes : nullptr;
    for (int64_t j = j0; j < kDwords; ++j) {
      uint32_t v = 0;
      if (blk != nullptr) std::memcpy(&v, blk + 4 * j, 4);
      std::memcpy(payload + 64 * j + 4 * i, &v, 4);
    }
  }
}

// Q4_K: the panel vector that dword j of a block (36 dwords) goes to: d and dmin (dword 0) to 35,
// the scale bytes (1-3) to 32-34, the nibbles (4-35) to 0-31. Q5_K (44 dwords): the same, its qh
// (dwords 4-11) to 36-43 and its nibbles (12-43) to 0-31. IQ4_XS (34 dwords): d | scales_h
// (dword 0) to 33, scales_l (1) to 32, the nibbles (2-33) to 0-31.
int64_t Q4KVectorOf(int64_t j) { return j == 0 ? 35 : j < 4 ? 31 + j : j - 4; }
int64_t Q5KVectorOf(int64_t j) { return j < 4 ? Q4KVectorOf(j) : j < 12 ? 32 + j : j - 12; }
int64_t IQ4XSVectorOf(int64_t j) { return j < 2 ? 33 - j : j - 2; }
template <class Block>
int64_t VectorOfK(int64_t j) {
  if constexpr (std::is_same_v<Block, BlockQ5_K>) return Q5KVectorOf(j);
  if constexpr (std::is_same_v<Block, BlockIQ4_XS>) return IQ4XSVectorOf(j);
  if constexpr (std::is_same_v<Block, BlockQ2_K>) return j;
  return Q4KVectorOf(j);
}

// Q4_K, Q5_K, Q2_K or IQ4_XS: one group's super-block b from the rows' blocks (`row[i]` null for a
// padding row). Lane i of each vector is row i's dword (layout in kernels_internal.h): a 16 x 36
// (44, 21, 34) dword transpose.
template <class Block>
void PackBlockK(const uint8_t* const* row, int64_t b, uint8_t* group) {
  constexpr int64_t kDwords = sizeof(Block) / 4;
  uint8_t* out = group + b * 16 * static_cast<int64_t>(sizeof(Block));
  int64_t j0 = 0;  // the dwords before j0 are packed
#if defined(__SSE2__)
  bool full = true;
  for (int64_t i = 0; i < kGroupRows; ++i) full = full && row[i] != nullptr;
  if (full) {  // four rows and four dwords at a time: 4 x 4 transposes (~4x the loop below)
    j0 = kDwords / 4 * 4;
    for (int64_t i = 0; i < kGroupRows; i += 4) {
      for (int64_t j = 0; j < j0; j += 4) {
        __m128i r[4];
        for (int q = 0; q < 4; ++q) {
          r[q] = _mm_loadu_si128(
              reinterpret_cast<const __m128i*>(row[i + q] + b * sizeof(Block) + 4 * j));
        }
        __m128i v[4];
        Transpose4x4(r, v);
        for (int q = 0; q < 4; ++q) {  // dword j + q of rows i..i+3
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 64 * VectorOfK<Block>(j + q) + 4 * i),
                           v[q]);
        }
      }
    }
    if (j0 == kDwords) return;  // else Q2_K's last dword, IQ4_XS's last two below: 16 bytes
                                // would read past the block
  }
#endif
  for (int64_t i = 0; i < kGroupRows; ++i) {
    const uint8_t* blk = row[i] != nullptr ? row[i] + b * sizeof(Block) : nullptr;
    for (int64_t j = j0; j < kDwords; ++j) {
      uint32_t v = 0;
      if (blk != nullptr) std::memcpy(&v, blk + 4 * j, 4);
      std::memcpy(out + 64 * VectorOfK<Block>(j) + 4 * i, &v, 4);
    }
  }
}

// Q5_1: the panel vector that dword j of a block (6 dwords) goes to: d | m (dword 0) to 5, qh
// (1, regrouped) to 0, the nibbles (2-5) to 1-4.
int64_t Q5_1VectorOf(int64_t j) { return j == 0 ? 5 : j - 1; }

// Q5_1: one group's block b from the rows' blocks (`row[i]` null for a padding row).
void PackBlockQ5_1(const uint8_t* const* row, int64_t b, uint8_t* group) {
  uint8_t* out = group + b * internal::kQ5_1PanelBlockBytes;
  for (int64_t i = 0; i < kGroupRows; ++i) {
    const uint8_t* blk = row[i] != nullptr ? row[i] + b * sizeof(BlockQ5_1) : nullptr;
    for (int64_t j = 0; j < 6; ++j) {
      uint32_t v = 0;
      if (blk != nullptr) std::memcpy(&v, blk + 4 * j, 4);
      if (j == 1) v = internal::Q5PanelBits(v);
      std::memcpy(out + 64 * Q5_1VectorOf(j) + 4 * i, &v, 4);
    }
  }
}

// One group's block b from the rows' blocks (`row[i]` null for a padding row), into `group`.
void PackBlock(WKind kind, const uint8_t* const* row, int64_t nb, int64_t b, uint8_t* group) {
  const int64_t payload_bytes = PanelPayloadBytes(kind);
  const internal::PanelBlock at = PanelBlockAt(payload_bytes, nb, b);
  uint8_t* payload = group + at.payload;
  uint8_t* scales = group + at.scales;
  const int64_t block_bytes = internal::PanelRowBlockBytes(kind);
  const int64_t n_vectors = payload_bytes / 64;
  int64_t k0 = 0;  // the vectors before k0 are packed
#if defined(__SSE2__)
  // Four rows at a time: a 4 x 4 transpose of dwords per 16 bytes of each row (a model's load
  // repacks hundreds of MB; this is ~4x the scalar loop below).
  bool full = true;
  for (int64_t i = 0; i < kGroupRows; ++i) full = full && row[i] != nullptr;
  if (full) {
    const __m128i flip = _mm_set1_epi8(static_cast<char>(kind == WKind::kQ8_0P ? 0x80 : 0));
    for (int64_t i = 0; i < kGroupRows; i += 4) {
      const uint8_t* blk[4];
      for (int64_t q = 0; q < 4; ++q) {
        blk[q] = row[i + q] + b * block_bytes;
        std::memcpy(scales + 2 * (i + q), blk[q], 2);
      }
      for (int64_t k = 0; k + 4 <= n_vectors; k += 4) {
        __m128i r[4];
        for (int q = 0; q < 4; ++q) {
          r[q] = _mm_xor_si128(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[q] + 2 + 4 * k)), flip);
        }
        __m128i v[4];
        Transpose4x4(r, v);
        for (int q = 0; q < 4; ++q) {  // vector k + q, lanes i..i+3: dword k + q of rows i..i+3
          _mm_storeu_si128(reinterpret_cast<__m128i*>(payload + 64 * (k + q) + 4 * i), v[q]);
        }
      }
    }
    k0 = n_vectors / 4 * 4;
    if (k0 == n_vectors) return;  // else Q5_0's last vector below, and its bits regrouped
  }
#endif
  for (int64_t i = 0; i < kGroupRows; ++i) {
    const uint8_t* blk = row[i] != nullptr ? row[i] + b * block_bytes : nullptr;
    if (blk == nullptr) {
      for (int64_t k = k0; k < n_vectors; ++k) std::memset(payload + 64 * k + 4 * i, 0, 4);
      std::memset(scales + 2 * i, 0, 2);
      continue;
    }
    std::memcpy(scales + 2 * i, blk, 2);
    for (int64_t k = k0; k < n_vectors; ++k) {
      uint32_t v;
      std::memcpy(&v, blk + 2 + 4 * k, 4);
      if (kind == WKind::kQ8_0P) v ^= 0x80808080u;  // signed q -> unsigned q + 128
      std::memcpy(payload + 64 * k + 4 * i, &v, 4);
    }
    if (kind == WKind::kQ5_0P) {
      uint32_t qh;
      std::memcpy(&qh, blk + 2, 4);
      qh = internal::Q5PanelBits(qh);
      std::memcpy(payload + 4 * i, &qh, 4);
    }
  }
}

}  // namespace

namespace internal {

void PanelRowToBlocks(WKind kind, const uint8_t* panels, int64_t row, int64_t cols, uint8_t* out) {
  if (kind == WKind::kQ6_KP || kind == WKind::kQ3_KP) {
    const bool q6 = kind == WKind::kQ6_KP;
    const int64_t block_bytes = q6 ? sizeof(BlockQ6_K) : sizeof(BlockQ3_K);
    const int64_t payload_bytes = q6 ? kQ6KPanelPayload : kQ3KPanelPayload;
    const int64_t nb = cols / kQK_K;
    const uint8_t* group = panels + (row / kGroupRows) * kGroupRows * nb * block_bytes;
    const int64_t i = row % kGroupRows;
    for (int64_t b = 0; b < nb; ++b) {
      const PanelBlock at = PanelBlockAt(payload_bytes, nb, b);
      uint8_t* blk = out + b * block_bytes;
      for (int64_t j = 0; j < payload_bytes / 64; ++j) {
        std::memcpy(blk + 4 * j, group + at.payload + 64 * j + 4 * i, 4);
      }
      std::memcpy(blk + block_bytes - 2, group + at.scales + 2 * i, 2);
    }
    return;
  }
  if (kind == WKind::kQ5_1P) {
    const int64_t nb = cols / kQK5_1;
    const uint8_t* group = panels + (row / kGroupRows) * kGroupRows * nb * sizeof(BlockQ5_1);
    const int64_t i = row % kGroupRows;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* in = group + b * kQ5_1PanelBlockBytes;
      uint8_t* blk = out + b * sizeof(BlockQ5_1);
      for (int64_t j = 0; j < 6; ++j) {
        uint32_t v;
        std::memcpy(&v, in + 64 * Q5_1VectorOf(j) + 4 * i, 4);
        if (j == 1) v = Q5RowBits(v);
        std::memcpy(blk + 4 * j, &v, 4);
      }
    }
    return;
  }
  if (kind == WKind::kQ4_KP || kind == WKind::kQ5_KP || kind == WKind::kQ2_KP ||
      kind == WKind::kIQ4_XSP) {
    const bool q5 = kind == WKind::kQ5_KP, q2 = kind == WKind::kQ2_KP, iq4 = kind == WKind::kIQ4_XSP;
    const int64_t block_bytes = q2    ? sizeof(BlockQ2_K)
                                : q5  ? sizeof(BlockQ5_K)
                                : iq4 ? sizeof(BlockIQ4_XS)
                                      : sizeof(BlockQ4_K);
    const int64_t nb = cols / kQK_K;
    const uint8_t* group = panels + (row / kGroupRows) * kGroupRows * nb * block_bytes;
    const int64_t i = row % kGroupRows;
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* in = group + b * 16 * block_bytes;
      uint8_t* blk = out + b * block_bytes;
      for (int64_t j = 0; j < block_bytes / 4; ++j) {
        const int64_t vector = q2    ? j
                               : q5  ? Q5KVectorOf(j)
                               : iq4 ? IQ4XSVectorOf(j)
                                     : Q4KVectorOf(j);
        std::memcpy(blk + 4 * j, in + 64 * vector + 4 * i, 4);
      }
    }
    return;
  }
  const bool q8 = kind == WKind::kQ8_0P;
  const int64_t block_bytes = PanelRowBlockBytes(kind);
  const int64_t nb = cols / 32;
  const int64_t payload_bytes = PanelPayloadBytes(kind);
  const uint8_t* group = panels + (row / kGroupRows) * kGroupRows * nb * block_bytes;
  const int64_t i = row % kGroupRows;
  for (int64_t b = 0; b < nb; ++b) {
    const PanelBlock at = PanelBlockAt(payload_bytes, nb, b);
    uint8_t* blk = out + b * block_bytes;
    std::memcpy(blk, group + at.scales + 2 * i, 2);
    for (int64_t k = 0; k < payload_bytes / 64; ++k) {
      uint32_t v;
      std::memcpy(&v, group + at.payload + 64 * k + 4 * i, 4);
      if (q8) v ^= 0x80808080u;
      if (kind == WKind::kQ5_0P && k == 0) v = Q5RowBits(v);
      std::memcpy(blk + 2 + 4 * k, &v, 4);
    }
  }
}

}  // namespace internal

bool PanelsPreferred(TensorType type) {
  const bool has_panels =
      type == TensorType::kQ8_0 || type == TensorType::kQ4_0 || type == TensorType::kQ5_0 ||
      type == TensorType::kQ5_1 || type == TensorType::kQ4_K || type == TensorType::kQ5_K ||
      type == TensorType::kQ6_K || type == TensorType::kIQ4_NL || type == TensorType::kQ3_K ||
      type == TensorType::kQ2_K || type == TensorType::kIQ4_XS;
  if (!has_panels) return false;
  // YUNZHI_PANELS=0 keeps every matrix in the file's row layout (for measuring one against the
  // other in the same binary).
  static const bool off = [] {
    const char* env = std::getenv("YUNZHI_PANELS");
    return env != nullptr && env[0] == '0' && env[1] == '\0';
  }();
  if (off) return false;
  // Where the active ISA has a kernel for the panels (AVX-512: every type; AVX2: Q8_0, Q4_0,
  // Q5_0, Q4_K, Q5_K, Q6_K); elsewhere they would run through the scalar reference.
  const int kind = static_cast<int>(PanelKind(type));
  switch (ActiveIsa()) {
    case Isa::kAvx512: return true;
    case Isa::kAvx2: return internal::Avx2Kernels().tile[kind] != nullptr;
    case Isa::kScalar: break;
  }
  return false;
}

int64_t PanelBytes(TensorType type, int64_t rows, int64_t cols) {
  PanelKind(type);
  return (rows + kGroupRows - 1) / kGroupRows * kGroupRows * RowSizeBytes(type, cols);
}

void PackPanels(TensorType type, const void* w, int64_t rows, int64_t cols, int64_t r0, int64_t r1,
                void* panels) {
  const WKind kind = PanelKind(type);
  if (r0 == r1) return;
  const bool k_quant = kind == WKind::kQ4_KP || kind == WKind::kQ5_KP || kind == WKind::kQ6_KP ||
                       kind == WKind::kQ3_KP || kind == WKind::kQ2_KP || kind == WKind::kIQ4_XSP;
  const int64_t block = k_quant ? kQK_K : 32;
  YZ_CHECK(r0 % kGroupRows == 0 && (r1 % kGroupRows == 0 || r1 == rows) && r0 <= r1 && r1 <= rows &&
           cols % block == 0);
  const int64_t row_bytes = RowSizeBytes(type, cols);
  const int64_t nb = cols / block;
  const auto* src = static_cast<const uint8_t*>(w);
  auto* dst = static_cast<uint8_t*>(panels);
  for (int64_t g = r0 / kGroupRows; g * kGroupRows < r1; ++g) {
    const uint8_t* row[kGroupRows];
    for (int64_t i = 0; i < kGroupRows; ++i) {
      const int64_t r = g * kGroupRows + i;
      row[i] = r < rows ? src + r * row_bytes : nullptr;
    }
    uint8_t* group = dst + g * kGroupRows * row_bytes;
    for (int64_t b = 0; b < nb; ++b) {
      if (kind == WKind::kQ5_1P) {
        PackBlockQ5_1(row, b, group);
      } else if (kind == WKind::kQ4_KP) {
        PackBlockK<BlockQ4_K>(row, b, group);
      } else if (kind == WKind::kQ5_KP) {
        PackBlockK<BlockQ5_K>(row, b, group);
      } else if (kind == WKind::kIQ4_XSP) {
        PackBlockK<BlockIQ4_XS>(row, b, group);
      } else if (kind == WKind::kQ6_KP) {
        PackBlockDwords<BlockQ6_K, internal::kQ6KPanelPayload>(row, nb, b, group);
      } else if (kind == WKind::kQ3_KP) {
        PackBlockDwords<BlockQ3_K, internal::kQ3KPanelPayload>(row, nb, b, group);
      } else if (kind == WKind::kQ2_KP) {
        PackBlockK<BlockQ2_K>(row, b, group);
      } else {
        PackBlock(kind, row, nb, b, group);
      }
    }
  }
}

void DequantizeRow(TensorType type, WeightLayout layout, const void* w, int64_t row, int64_t cols,
                   float* out) {
  const int64_t row_bytes = RowSizeBytes(type, cols);
  if (layout == WeightLayout::kRows) {
    DequantizeRow(type, static_cast<const uint8_t*>(w) + row * row_bytes, out, cols);
    return;
  }
  thread_local std::vector<uint8_t> blocks;
  blocks.resize(static_cast<size_t>(row_bytes));
  internal::PanelRowToBlocks(PanelKind(type), static_cast<const uint8_t*>(w), row, cols,
                             blocks.data());
  Dequantize(type, blocks.data(), out, cols);
}

}  // namespace yunzhi::engine::kernels
