// Weight element types and quantisation block layouts.
//
// Every type a GGUF file may name is listed here with its GGML type id (the number stored in the
// file, as in the GGUF specification), its block size in elements and its size in bytes per block,
// so that the size of any tensor in any file can be computed and checked. Only some types can be
// computed with in this build (`IsSupported`): F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL and IQ4_XS. For those, this header also gives the block layouts —
// bit-compatible with GGUF/ggml, so files written by other tools load here and files written here
// load there — and scalar reference conversions (`Dequantize`, `Quantize`) that optimised kernels
// are tested against.
//
// Conventions:
//  - All multi-byte values in blocks are little-endian (the build requires a little-endian host).
//  - fp16 values are IEEE 754 binary16 and are stored as their bit pattern (`uint16_t`).
//  - A row of `n` elements of a block type holds n / block_size consecutive blocks; `n` must be a
//    multiple of the block size.
//
// Thread safety: everything here is a pure function or a constant.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::engine {

static_assert(std::endian::native == std::endian::little, "Yunzhi requires a little-endian host");

// Element types, numbered by their GGML type id. Ids that GGML has retired (4, 5, 31-33, 36-38)
// and ids newer than this list are reported as unknown by FindTraitsByGgmlId.
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
  kNVFP4 = 40,
  kQ1_0 = 41,
};

// Static facts about one type.
struct TypeTraits {
  TensorType type;
  std::string_view name;  // canonical upper-case name, e.g. "Q4_K", "BF16"
  int64_t block_size;     // elements per block (1 for plain element types)
  int64_t block_bytes;    // bytes per block
  bool supported;         // this build can dequantise/quantise and compute with it
};

// Traits of `type`. Precondition: `type` is one of the enumerators above.
const TypeTraits& Traits(TensorType type);

// Traits of the type with GGML id `ggml_id`, or nullptr if the id is unknown (a newer or retired
// type). Use this on ids read from files.
const TypeTraits* FindTraitsByGgmlId(uint32_t ggml_id);

// Canonical name, e.g. "Q4_0".
std::string_view TypeName(TensorType type);

// Parses a type name, case-insensitively: "q4_0", "Q4_K", "bf16", "f32", "iq2_xxs", ...
// Errors: kInvalidArgument naming the input and listing the names this build supports.
Result<TensorType> ParseTensorType(std::string_view name);

// Whether this build can compute with `type` (F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS).
bool IsSupported(TensorType type);

// "F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS": the
// supported types, for error messages.
std::string SupportedTypeNames();

// Ok if `type` is supported; otherwise kUnimplemented with the message
// "tensor <tensor_name> has type Q5_1, which this build cannot run (supported: F32, ...)".
Status CheckSupported(TensorType type, std::string_view tensor_name);

// Whether a row of `n` elements is representable: n >= 0 and a multiple of the block size.
bool IsValidRowLength(TensorType type, int64_t n);

// Bytes of a row of `n` elements. Precondition: IsValidRowLength(type, n) and no overflow
// (n * block_bytes / block_size fits in int64_t; true for any tensor that fits in memory).
int64_t RowSizeBytes(TensorType type, int64_t n);

// ---------------------------------------------------------------------------------------------
// Block layouts (bit-compatible with GGUF). Structs are packed by construction (no padding; the
// static_asserts in tensor_type.cc check the sizes) and have alignment 2 at most, but data in
// files may be only byte-aligned: read blocks with memcpy or through these structs only when the
// address is known to be suitably aligned.

inline constexpr int64_t kQK8_0 = 32;    // elements per Q8_0 block
inline constexpr int64_t kQK4_0 = 32;    // elements per Q4_0 block
inline constexpr int64_t kQK5_0 = 32;    // elements per Q5_0 block
inline constexpr int64_t kQK5_1 = 32;    // elements per Q5_1 block
inline constexpr int64_t kQK4_NL = 32;   // elements per IQ4_NL block
inline constexpr int64_t kQK_K = 256;    // elements per K-quant super-block
inline constexpr int kKScaleBytes = 12;  // packed 6-bit scales (and mins) of Q3_K/Q4_K/Q5_K

// Q8_0: 34 bytes for 32 elements. value[i] = d * qs[i].
struct BlockQ8_0 {
  uint16_t d;         // fp16 scale
  int8_t qs[kQK8_0];  // quants
};

// Q4_0: 18 bytes for 32 elements. Byte j of `qs` holds element j in its low nibble and element
// j + 16 in its high nibble; value = (nibble - 8) * d.
struct BlockQ4_0 {
  uint16_t d;              // fp16 scale
  uint8_t qs[kQK4_0 / 2];  // nibbles
};

// Q5_0: 22 bytes for 32 elements, Q4_0's nibbles plus a fifth bit per element: element j (j < 16)
// is the low nibble of qs[j] with bit j of qh as its bit 4, element j + 16 the high nibble of
// qs[j] with bit j + 16 of qh (qh read as a little-endian 32-bit word); value = (q - 16) * d.
// llama.cpp's quantiser writes it where a Q4_K_M file's rows are not whole 256-element
// super-blocks (Qwen2.5-0.5B: 896 columns).
struct BlockQ5_0 {
  uint16_t d;              // fp16 scale
  uint8_t qh[4];           // fifth bits
  uint8_t qs[kQK5_0 / 2];  // low four bits
};

// Q5_1: 24 bytes for 32 elements, Q5_0's bits with a min instead of the offset: value = q * d + m,
// q in [0, 31] (the fifth bits and nibbles as Q5_0's). llama.cpp writes it where a Q5_K_M file's
// rows are not whole super-blocks.
struct BlockQ5_1 {
  uint16_t d;              // fp16 scale
  uint16_t m;              // fp16 min (the value of q = 0)
  uint8_t qh[4];           // fifth bits
  uint8_t qs[kQK5_1 / 2];  // low four bits
};

// The 16 values a 4-bit index of IQ4_NL (and IQ4_XS) stands for, in units of the block scale:
// a fixed non-linear grid, denser near zero, from -127 (index 0) to 113 (index 15).
inline constexpr std::array<int8_t, 16> kIq4nlValues = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                        1,    13,   25,  38,  53,  69,  89,  113};

// IQ4_NL: 18 bytes for 32 elements, Q4_0's nibble order with a table instead of the offset: byte
// j of `qs` holds element j's index in its low nibble and element j + 16's in its high nibble;
// value = d * kIq4nlValues[index]. llama.cpp writes it where the rows of a Q2_K/Q3_K/IQ4_XS file
// are not whole 256-element super-blocks.
struct BlockIQ4_NL {
  uint16_t d;               // fp16 scale
  uint8_t qs[kQK4_NL / 2];  // indices into kIq4nlValues
};

// IQ4_XS: 136 bytes for 256 elements, as 8 sub-blocks of 32 with IQ4_NL's table and a 6-bit
// scale ls[s] each: value = d * (ls[s] - 32) * kIq4nlValues[index], with
//   ls[s] = (scales_l[s / 2] >> 4 * (s % 2) & 15) | (scales_h >> 2 * s & 3) << 4
// (the low 4 bits two to a byte, low nibble first; the top 2 bits two to a bit pair of scales_h,
// a little-endian 16-bit word). Sub-block s's indices are qs[16s .. 16s + 15] in IQ4_NL's order:
// element 32s + j (j < 16) in the low nibble of qs[16s + j], element 32s + 16 + j in its high one.
struct BlockIQ4_XS {
  uint16_t d;                    // fp16 super-block scale
  uint16_t scales_h;             // top 2 bits of the 8 sub-block scales
  uint8_t scales_l[kQK_K / 64];  // low 4 bits of the 8 sub-block scales
  uint8_t qs[kQK_K / 2];         // indices into kIq4nlValues
};

// Q2_K: 84 bytes for 256 elements, as 16 sub-blocks of 16 elements, each with a 4-bit scale and
// a 4-bit min: value = d * sc[s] * q - dmin * m[s], q in [0, 3], sc[s] = scales[s] & 15 and
// m[s] = scales[s] >> 4. Element e = 128n + 32j + l (n = 0..1, j = 0..3, l = 0..31) is in
// sub-block s = e / 16 and q = (qs[32n + l] >> 2j) & 3 (Q3_K's low two bits). Q2_K files
// (llama.cpp file type 10) are mostly Q2_K, with Q3_K/Q4_K/Q6_K for some matrices.
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // 4-bit scales (low nibbles) and mins (high nibbles)
  uint8_t qs[kQK_K / 4];       // 2-bit values
  uint16_t d;                  // fp16 super-block scale for the scales
  uint16_t dmin;               // fp16 super-block scale for the mins
};

// Q3_K: 110 bytes for 256 elements, as 16 sub-blocks of 16 elements with signed 6-bit scales:
// value = d * sc[s] * q, q in [-4, 3]. Element e = 128n + 32j + l (n = 0..1, j = 0..3,
// l = 0..31) is in sub-block s = e / 16 = 8n + 2j + l / 16; its low two bits are
// (qs[32n + l] >> 2j) & 3 and its high bit h is bit 4n + j of hmask[l]; q = low - (h ? 0 : 4).
// `scales` packs the 16 scales (sc[s] + 32, 0..63) in 12 bytes: the low four bits of sub-block
// s < 8 are the low nibble of scales[s], those of s >= 8 the high nibble of scales[s - 8]; the
// high two bits of s are bits 2 (s / 4) .. 2 (s / 4) + 1 of scales[8 + s % 4]. Q3_K_M files
// (llama.cpp file type 12) are mostly Q3_K.
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];      // high bits
  uint8_t qs[kQK_K / 4];         // low two bits
  uint8_t scales[kKScaleBytes];  // packed 6-bit scales
  uint16_t d;                    // fp16 super-block scale
};

// Q4_K: 144 bytes for 256 elements, as 8 sub-blocks of 32 elements each with its own 6-bit scale
// sc[s] and 6-bit min m[s]: value = d * sc[s] * nibble - dmin * m[s].
//  - `scales` packs the 8 scales and 8 mins in 12 bytes: for s < 4, sc[s] = scales[s] & 63 and
//    m[s] = scales[s + 4] & 63; for s >= 4, sc[s] = (scales[s + 4] & 15) | (scales[s - 4] >> 6) <<
//    4 and m[s] = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4.
//  - `qs` holds 4 chunks of 32 bytes; chunk c covers elements 64c .. 64c+63: byte l of the chunk
//    holds element 64c + l (sub-block 2c) in its low nibble and element 64c + 32 + l (sub-block
//    2c + 1) in its high nibble.
struct BlockQ4_K {
  uint16_t d;                    // fp16 super-block scale for the scales
  uint16_t dmin;                 // fp16 super-block scale for the mins
  uint8_t scales[kKScaleBytes];  // packed 6-bit scales and mins
  uint8_t qs[kQK_K / 2];         // nibbles
};

// Q5_K: 176 bytes for 256 elements, Q4_K with a fifth bit per element: value = d * sc[s] * q -
// dmin * m[s], q in [0, 31]; `scales` packed as Q4_K's. qs holds the low four bits as Q4_K's
// nibbles; bit 4 of element 64c + l is bit 2c of qh[l], that of element 64c + 32 + l bit 2c + 1
// (c = 0..3, l = 0..31). Q5_K_M files are mostly Q5_K.
struct BlockQ5_K {
  uint16_t d;                    // fp16 super-block scale for the scales
  uint16_t dmin;                 // fp16 super-block scale for the mins
  uint8_t scales[kKScaleBytes];  // packed 6-bit scales and mins
  uint8_t qh[kQK_K / 8];         // fifth bits
  uint8_t qs[kQK_K / 2];         // low four bits
};

// Q6_K: 210 bytes for 256 elements, as 16 sub-blocks of 16 elements with int8 scales:
// value[i] = d * scales[i / 16] * (q[i] - 32), q[i] a 6-bit number split into 4 low bits (ql) and
// 2 high bits (qh). The block is two halves of 128 elements; half h uses ql[64h .. 64h+63] and
// qh[32h .. 32h+31]. Within a half, for l in 0..31 (e = 128h):
//   q[e + l]      = (ql[64h + l] & 15)      | ((qh[32h + l] >> 0) & 3) << 4
//   q[e + l + 32] = (ql[64h + l + 32] & 15) | ((qh[32h + l] >> 2) & 3) << 4
//   q[e + l + 64] = (ql[64h + l] >> 4)      | ((qh[32h + l] >> 4) & 3) << 4
//   q[e + l + 96] = (ql[64h + l + 32] >> 4) | ((qh[32h + l] >> 6) & 3) << 4
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];  // sub-block scales
  uint16_t d;                 // fp16 super-block scale
};

// ---------------------------------------------------------------------------------------------
// Scalar reference conversions.

// IEEE binary16 <-> binary32. FloatToHalf rounds to nearest, ties to even; overflow gives +-inf;
// NaN stays NaN (quiet). HalfToFloat is exact.
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t bits);

// bfloat16 <-> binary32. FloatToBf16 rounds to nearest, ties to even; NaN stays NaN (quiet).
uint16_t FloatToBf16(float value);
float Bf16ToFloat(uint16_t bits);

// Converts `n` elements of `type` at `src` to floats at `dst`.
// Preconditions (checked with YZ_CHECK): IsSupported(type), IsValidRowLength(type, n); `src`
// holds RowSizeBytes(type, n) bytes (any alignment); `dst` holds n floats.
void Dequantize(TensorType type, const void* src, float* dst, int64_t n);

// Converts `n` floats to `type` (the reference quantiser: round to nearest; for the K-quants a
// small search for the sub-block scales that minimise the squared error; for IQ4_NL and IQ4_XS
// the nearest table value, under (sub-)block scales searched the same way). F16/BF16 round to
// nearest even. Same preconditions as Dequantize; `dst` holds RowSizeBytes(type, n) bytes.
// Non-finite inputs give unspecified (but memory-safe) quantised values.
void Quantize(TensorType type, const float* src, void* dst, int64_t n);

// ---------------------------------------------------------------------------------------------
// A read-only view of one tensor inside a weight file (GGUF or safetensors).

inline constexpr int kMaxDims = 4;

// Shapes come in two orders; both are exposed so that nobody has to guess:
//  - `ne` is the GGML order used by GGUF: ne[0] is the row length (the contiguous, innermost
//    dimension), ne[1] the number of rows, ... Unused trailing entries are 1.
//  - `RowMajorShape()` is the PyTorch/safetensors order: the reverse, e.g. a Linear weight of
//    out_features x in_features is [out, in] row-major and ne = {in, out, 1, 1}.
// Data is stored contiguously, row after row; there are no strides.
struct TensorView {
  std::string_view name;  // valid as long as the file object that produced the view
  TensorType type = TensorType::kF32;
  int n_dims = 0;  // 0..kMaxDims; 0 is a scalar (one element)
  std::array<int64_t, kMaxDims> ne = {1, 1, 1, 1};
  // Points into the mapped file; valid as long as the file object. Alignment: GGUF data is
  // aligned to the file's general.alignment (32 by default) when the file is mapped by Open;
  // safetensors data only as its writer aligned it (usually 8 bytes). Kernels that need more
  // must check or copy.
  const void* data = nullptr;
  uint64_t size_bytes = 0;  // == row_size_bytes() * n_rows()

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  int64_t row_size_bytes() const { return RowSizeBytes(type, ne[0]); }
  // The shape in row-major (PyTorch) order: {ne[n_dims-1], ..., ne[0]}; empty for a scalar.
  std::vector<int64_t> RowMajorShape() const {
    std::vector<int64_t> shape(static_cast<size_t>(n_dims));
    for (int i = 0; i < n_dims; ++i) shape[static_cast<size_t>(i)] = ne[n_dims - 1 - i];
    return shape;
  }
};

}  // namespace yunzhi::engine
