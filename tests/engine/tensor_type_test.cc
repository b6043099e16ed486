#include "yunzhi/engine/tensor_type.h"

#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace yunzhi::engine {
namespace {

using ::testing::HasSubstr;

// ---- type table

TEST(TensorType, IdsAndSizesMatchTheGgufSpecification) {
  struct Row {
    uint32_t id;
    std::string_view name;
    int64_t block_size;
    int64_t block_bytes;
  };
  // (id, name, elements per block, bytes per block) as the GGUF/ggml format defines them.
  const Row rows[] = {
      {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
      {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
      {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 36},      {10, "Q2_K", 256, 84},
      {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
      {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
      {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
      {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
      {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
      {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
      {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},       {34, "TQ1_0", 256, 54},
      {35, "TQ2_0", 256, 66},   {39, "MXFP4", 32, 17},
  };
  for (const Row& row : rows) {
    const TypeTraits* t = FindTraitsByGgmlId(row.id);
    ASSERT_NE(t, nullptr) << row.name;
    EXPECT_EQ(t->name, row.name);
    EXPECT_EQ(static_cast<uint32_t>(t->type), row.id);
    EXPECT_EQ(t->block_size, row.block_size) << row.name;
    EXPECT_EQ(t->block_bytes, row.block_bytes) << row.name;
  }
}

TEST(TensorType, RetiredAndUnknownIdsAreNotRecognised) {
  for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 63u, 64u, 1000u, 0xFFFFFFFFu}) {
    EXPECT_EQ(FindTraitsByGgmlId(id), nullptr) << id;
  }
}

TEST(TensorType, ExactlyTheFourteenComputableTypesAreSupported) {
  EXPECT_EQ(SupportedTypeNames(),
            "F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS");
  for (TensorType t :
       {TensorType::kF32, TensorType::kF16, TensorType::kBF16, TensorType::kQ8_0, TensorType::kQ4_0,
        TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ2_K, TensorType::kQ3_K,
        TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K, TensorType::kIQ4_NL,
        TensorType::kIQ4_XS}) {
    EXPECT_TRUE(IsSupported(t)) << TypeName(t);
  }
  for (TensorType t : {TensorType::kQ4_1, TensorType::kQ8_K, TensorType::kIQ2_XXS,
                       TensorType::kIQ3_S, TensorType::kI32, TensorType::kF64}) {
    EXPECT_FALSE(IsSupported(t)) << TypeName(t);
  }
}

TEST(TensorType, ParsesNamesCaseInsensitively) {
  EXPECT_EQ(ParseTensorType("q4_0").value(), TensorType::kQ4_0);
  EXPECT_EQ(ParseTensorType("Q4_K").value(), TensorType::kQ4_K);
  EXPECT_EQ(ParseTensorType("q5_k").value(), TensorType::kQ5_K);
  EXPECT_EQ(ParseTensorType("q5_1").value(), TensorType::kQ5_1);
  EXPECT_EQ(ParseTensorType("iq4_nl").value(), TensorType::kIQ4_NL);
  EXPECT_EQ(ParseTensorType("IQ4_xs").value(), TensorType::kIQ4_XS);
  EXPECT_EQ(ParseTensorType("q3_k").value(), TensorType::kQ3_K);
  EXPECT_EQ(ParseTensorType("Q2_k").value(), TensorType::kQ2_K);
  EXPECT_EQ(ParseTensorType("bf16").value(), TensorType::kBF16);
  EXPECT_EQ(ParseTensorType("iq2_xxs").value(), TensorType::kIQ2_XXS);
  auto bad = ParseTensorType("q4");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
  EXPECT_THAT(bad.error().message, HasSubstr("unknown tensor type 'q4'"));
  EXPECT_THAT(bad.error().message, HasSubstr("Q4_K"));
  EXPECT_FALSE(ParseTensorType(""));
}

TEST(TensorType, UnsupportedTypeErrorNamesTensorTypeAndAlternatives) {
  Status s = CheckSupported(TensorType::kQ4_1, "blk.0.attn_q.weight");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kUnimplemented);
  EXPECT_EQ(s.error().message,
            "tensor blk.0.attn_q.weight has type Q4_1, which this build cannot run (supported: "
            "F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)");
  EXPECT_TRUE(CheckSupported(TensorType::kQ6_K, "x"));
}

TEST(TensorType, RowSizes) {
  EXPECT_EQ(RowSizeBytes(TensorType::kF32, 10), 40);
  EXPECT_EQ(RowSizeBytes(TensorType::kBF16, 10), 20);
  EXPECT_EQ(RowSizeBytes(TensorType::kQ8_0, 64), 68);
  EXPECT_EQ(RowSizeBytes(TensorType::kQ4_0, 4096), 128 * 18);
  EXPECT_EQ(RowSizeBytes(TensorType::kQ5_0, 896), 28 * 22);
  EXPECT_EQ(RowSizeBytes(TensorType::kQ5_1, 896), 28 * 24);
  EXPECT_EQ(RowSizeBytes(TensorType::kQ4_K, 4096), 16 * 144);
  EXPECT_EQ(RowSizeBytes(TensorType::kQ5_K, 4096), 16 * 176);
  EXPECT_EQ(RowSizeBytes(TensorType::kQ6_K, 256), 210);
  EXPECT_EQ(RowSizeBytes(TensorType::kQ3_K, 4096), 16 * 110);
  EXPECT_FALSE(IsValidRowLength(TensorType::kQ3_K, 896));
  EXPECT_EQ(RowSizeBytes(TensorType::kQ2_K, 4096), 16 * 84);
  EXPECT_FALSE(IsValidRowLength(TensorType::kQ2_K, 1280 + 128));
  EXPECT_EQ(RowSizeBytes(TensorType::kQ5_1, 64), 48);
  EXPECT_EQ(RowSizeBytes(TensorType::kIQ4_NL, 896), 28 * 18);
  EXPECT_TRUE(IsValidRowLength(TensorType::kIQ4_NL, 896));
  EXPECT_FALSE(IsValidRowLength(TensorType::kIQ4_NL, 48));
  EXPECT_EQ(RowSizeBytes(TensorType::kIQ4_XS, 4864), 19 * 136);
  EXPECT_FALSE(IsValidRowLength(TensorType::kIQ4_XS, 896));
  EXPECT_TRUE(IsValidRowLength(TensorType::kQ4_K, 0));
  EXPECT_FALSE(IsValidRowLength(TensorType::kQ4_K, 128));
  EXPECT_TRUE(IsValidRowLength(TensorType::kQ5_K, 1536));
  EXPECT_FALSE(IsValidRowLength(TensorType::kQ5_K, 896));
  EXPECT_FALSE(IsValidRowLength(TensorType::kQ8_0, 33));
  EXPECT_FALSE(IsValidRowLength(TensorType::kQ5_0, 48));
  EXPECT_TRUE(IsValidRowLength(TensorType::kQ5_1, 896));
  EXPECT_FALSE(IsValidRowLength(TensorType::kQ5_1, 48));
  EXPECT_FALSE(IsValidRowLength(TensorType::kF32, -1));
}

TEST(TensorType, ViewGivesBothShapeOrders) {
  TensorView v;
  v.n_dims = 2;
  v.ne = {64, 512, 1, 1};
  EXPECT_EQ(v.RowMajorShape(), (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(v.n_elements(), 64 * 512);
  EXPECT_EQ(v.n_rows(), 512);
}

// ---- fp16 / bf16

float Bits(uint32_t b) { return std::bit_cast<float>(b); }

TEST(Half, EveryHalfSurvivesARoundTripThroughFloat) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    const bool is_nan = (h & 0x7C00u) == 0x7C00u && (h & 0x3FFu) != 0;
    if (is_nan) {
      EXPECT_TRUE(std::isnan(f)) << h;
      const uint16_t back = FloatToHalf(f);
      EXPECT_EQ(back & 0x7C00u, 0x7C00u);
      EXPECT_NE(back & 0x3FFu, 0u);
    } else {
      EXPECT_EQ(FloatToHalf(f), h) << h;
    }
  }
}

TEST(Half, KnownValues) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(FloatToHalf(0.5f), 0x3800);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(HalfToFloat(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125f);
}

TEST(Half, RoundsToNearestEven) {
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties go to the even mantissa (1.0).
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  // 1 + 3*2^-11 lies halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even).
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  // Just above halfway rounds up.
  EXPECT_EQ(FloatToHalf(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
  // Overflow: 65519 rounds down to 65504; 65520 (halfway to 2^16) rounds to even = inf.
  EXPECT_EQ(FloatToHalf(65519.0f), 0x7BFF);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7C00);
  EXPECT_EQ(FloatToHalf(1e10f), 0x7C00);
  // Subnormals: 2^-25 is halfway between 0 and 2^-24 -> 0 (even); a bit more -> 2^-24.
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(FloatToHalf(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), 0x0001);
  EXPECT_EQ(FloatToHalf(3 * std::ldexp(1.0f, -25)), 0x0002);  // 1.5 ulp: tie -> even (2)
  EXPECT_EQ(FloatToHalf(-std::ldexp(1.0f, -30)), 0x8000);
  // The largest subnormal rounds up into the smallest normal.
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -26)), 0x0400);
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::numeric_limits<float>::quiet_NaN()))));
}

#if defined(__FLT16_MAX__)
TEST(Half, MatchesTheCompilersFloat16OnRandomFloats) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    // Random bit patterns cover every exponent; restrict to finite values.
    const float f = Bits(bits(rng));
    if (!std::isfinite(f)) continue;
    const auto expected = std::bit_cast<uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(FloatToHalf(f), expected) << f;
  }
}
#endif

TEST(Bf16, RoundsToNearestEvenAndKeepsNaN) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3F80);
  EXPECT_EQ(Bf16ToFloat(0x3F80), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
  EXPECT_EQ(FloatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(FloatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_EQ(FloatToBf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 0x3F81);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to inf
  EXPECT_EQ(FloatToBf16(-std::numeric_limits<float>::infinity()), 0xFF80);
  const uint16_t nan = FloatToBf16(Bits(0x7F800001u));  // a NaN whose payload is in the low bits
  EXPECT_TRUE(std::isnan(Bf16ToFloat(nan)));
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = Bf16ToFloat(static_cast<uint16_t>(h));
    if (!std::isnan(f)) {
      ASSERT_EQ(FloatToBf16(f), h);
    }
  }
}

// ---- golden blocks: hand-built bytes with known values (catches any layout mistake)

std::vector<float> Decode(TensorType type, const std::vector<uint8_t>& bytes, int64_t n) {
  EXPECT_EQ(static_cast<int64_t>(bytes.size()), RowSizeBytes(type, n));
  std::vector<float> out(static_cast<size_t>(n));
  Dequantize(type, bytes.data(), out.data(), n);
  return out;
}

void PutU16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = static_cast<uint8_t>(v & 0xFF);
  b[at + 1] = static_cast<uint8_t>(v >> 8);
}

TEST(GoldenBlock, Q8_0) {
  // d = 0.5 (fp16 0x3800) at bytes 0-1, then 32 int8 quants: q[i] = 3 * i - 50.
  std::vector<uint8_t> b(34);
  PutU16(b, 0, 0x3800);
  for (int i = 0; i < 32; ++i) b[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(3 * i - 50));
  const std::vector<float> y = Decode(TensorType::kQ8_0, b, 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(y[i], 0.5f * static_cast<float>(3 * i - 50)) << i;
}

TEST(GoldenBlock, Q4_0LowNibblesAreTheFirstHalf) {
  // d = 2.0 (0x4000); byte j holds element j in its low nibble, element j + 16 in its high one.
  std::vector<uint8_t> b(18);
  PutU16(b, 0, 0x4000);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  const std::vector<float> y = Decode(TensorType::kQ4_0, b, 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 2.0f * static_cast<float>(j - 8)) << j;
    EXPECT_EQ(y[j + 16], 2.0f * static_cast<float>(15 - j - 8)) << j;
  }
}

// Q5_0 with fifth bits in both halves: d = 0.5 (0x3800) | qh, little-endian | 16 nibble bytes.
// qh = 0xC35A0F96 (qh bytes 96 0F 5A C3): elements 0-15 take bits 0-15 (0x0F96), elements 16-31
// bits 16-31 (0xC35A). Element 0 (bit 0 clear, nibble 0) is q = 0, the block's extreme, so the
// quantiser must reproduce these bytes exactly (QuantiserProducesTheSameBytesAsTheHandBuiltLayout).
constexpr uint32_t kGoldenQ5Qh = 0xC35A0F96u;
std::vector<uint8_t> GoldenQ5_0Block() {
  std::vector<uint8_t> b(22);
  PutU16(b, 0, 0x3800);
  b[2] = 0x96;
  b[3] = 0x0F;
  b[4] = 0x5A;
  b[5] = 0xC3;
  for (int j = 0; j < 16; ++j) b[6 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  return b;
}

TEST(GoldenBlock, Q5_0FifthBitsOfBothHalves) {
  const std::vector<float> y = Decode(TensorType::kQ5_0, GoldenQ5_0Block(), 32);
  for (int j = 0; j < 16; ++j) {
    const int lo = j | static_cast<int>((kGoldenQ5Qh >> j) & 1) << 4;
    const int hi = (15 - j) | static_cast<int>((kGoldenQ5Qh >> (j + 16)) & 1) << 4;
    EXPECT_EQ(y[j], 0.5f * static_cast<float>(lo - 16)) << j;
    EXPECT_EQ(y[j + 16], 0.5f * static_cast<float>(hi - 16)) << j;
  }
  // A few spelled out. Element 1: nibble 1, bit 1 of 0x96 set: q = 17. Element 0: q = 0.
  // Element 16: nibble 15, bit 16 (bit 0 of 0x5A) clear: q = 15. Element 31: nibble 0, bit 31
  // (top bit of 0xC3) set: q = 16. Element 17: nibble 14, bit 17 set: q = 30.
  EXPECT_EQ(y[0], -8.0f);
  EXPECT_EQ(y[1], 0.5f);
  EXPECT_EQ(y[16], -0.5f);
  EXPECT_EQ(y[17], 7.0f);
  EXPECT_EQ(y[31], 0.0f);
}

// Q5_1: d = 0.5 (0x3800) | m = -3.25 (0xC280) | qh, little-endian | the nibbles of Q5_0's golden
// block. qh = 0xC35B0F96 (bytes 96 0F 5B C3): Q5_0's with bit 16 set, so that element 16 is
// q = 31 and element 0 q = 0, the block's ends: d = (12.25 - -3.25) / 31 and m are exact, and
// the quantiser must reproduce these bytes (QuantiserProducesTheSameBytesAsTheHandBuiltLayout).
// m is not a multiple of d, so it cannot pass for an offset on q.
constexpr uint32_t kGoldenQ5_1Qh = 0xC35B0F96u;
std::vector<uint8_t> GoldenQ5_1Block() {
  std::vector<uint8_t> b(24);
  PutU16(b, 0, 0x3800);
  PutU16(b, 2, 0xC280);
  b[4] = 0x96;
  b[5] = 0x0F;
  b[6] = 0x5B;
  b[7] = 0xC3;
  for (int j = 0; j < 16; ++j) b[8 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  return b;
}

TEST(GoldenBlock, Q5_1FifthBitsOfBothHalvesAndTheMin) {
  const std::vector<float> y = Decode(TensorType::kQ5_1, GoldenQ5_1Block(), 32);
  for (int j = 0; j < 16; ++j) {
    const int lo = j | static_cast<int>((kGoldenQ5_1Qh >> j) & 1) << 4;
    const int hi = (15 - j) | static_cast<int>((kGoldenQ5_1Qh >> (j + 16)) & 1) << 4;
    EXPECT_EQ(y[j], 0.5f * static_cast<float>(lo) - 3.25f) << j;
    EXPECT_EQ(y[j + 16], 0.5f * static_cast<float>(hi) - 3.25f) << j;
  }
  // Spelled out. Element 0: q = 0, the min. Element 1: nibble 1, bit 1 of 0x96 set: q = 17.
  // Element 16: nibble 15, bit 16 (bit 0 of 0x5B) set: q = 31. Element 17: nibble 14, bit 17
  // set: q = 30. Element 18: nibble 13, bit 18 clear: q = 13. Element 31: nibble 0, bit 31 set:
  // q = 16.
  EXPECT_EQ(y[0], -3.25f);
  EXPECT_EQ(y[1], 5.25f);
  EXPECT_EQ(y[16], 12.25f);
  EXPECT_EQ(y[17], 11.75f);
  EXPECT_EQ(y[18], 3.25f);
  EXPECT_EQ(y[31], 4.75f);
}

// IQ4_NL's 16 values by the format description (ggml's kvalues_iq4nl), typed in here, not read
// from the header: index 0 is the most negative, and the grid is not symmetric.
constexpr int kIq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                            1,    13,   25,  38,  53,  69,  89,  113};

TEST(GoldenBlock, Iq4nlTableIsTheFormatsTable) {
  for (int i = 0; i < 16; ++i) EXPECT_EQ(kIq4nlValues[static_cast<size_t>(i)], kIq4nl[i]) << i;
}

// IQ4_NL: d = 0.5 (0x3800) | 16 bytes, byte j = index j (low nibble, element j) and index 15 - j
// (high nibble, element j + 16): every index once in each half. The largest magnitude is -63.5
// (index 0, the table's -127 end) and the values are exactly d times table values, so the
// quantiser must reproduce these bytes (QuantiserProducesTheSameBytesAsTheHandBuiltLayout).
std::vector<uint8_t> GoldenIQ4_NLBlock() {
  std::vector<uint8_t> b(18);
  PutU16(b, 0, 0x3800);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  return b;
}

TEST(GoldenBlock, IQ4_NLLowNibblesAreTheFirstHalfThroughTheTable) {
  const std::vector<float> y = Decode(TensorType::kIQ4_NL, GoldenIQ4_NLBlock(), 32);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(y[j], 0.5f * static_cast<float>(kIq4nl[j])) << j;
    EXPECT_EQ(y[j + 16], 0.5f * static_cast<float>(kIq4nl[15 - j])) << j;
  }
  // Spelled out: element 0 index 0 (-127), element 8 index 8 (1), element 15 index 15 (113),
  // element 16 index 15, element 31 index 0, element 24 index 7 (-10).
  EXPECT_EQ(y[0], -63.5f);
  EXPECT_EQ(y[8], 0.5f);
  EXPECT_EQ(y[15], 56.5f);
  EXPECT_EQ(y[16], 56.5f);
  EXPECT_EQ(y[24], -5.0f);
  EXPECT_EQ(y[31], -63.5f);
}

// IQ4_XS: d (fp16) | scales_h (u16) | scales_l[4] | qs[128]. Sub-block s (elements 32s..32s+31)
// has the 6-bit scale ls[s], its low 4 bits in scales_l[s / 2] (even s the low nibble) and its top
// 2 bits at bits 2s, 2s + 1 of scales_h; value = d * (ls - 32) * table[index], the indices of
// sub-block s in qs[16s .. 16s + 15] as one IQ4_NL block's. The scales below take every pair of
// top bits and both nibble positions; 32 makes a zero sub-block, 0 the -32 end.
TEST(GoldenBlock, IQ4_XSSixBitScalesAndSubBlockOrder) {
  const int ls[8] = {0, 63, 32, 31, 17, 48, 5, 44};
  std::vector<uint8_t> b(136, 0);
  PutU16(b, 0, 0x3400);  // d = 0.25
  uint16_t scales_h = 0;
  for (int s = 0; s < 8; ++s) {
    b[4 + s / 2] = static_cast<uint8_t>(b[4 + s / 2] | (ls[s] & 15) << (4 * (s % 2)));
    scales_h = static_cast<uint16_t>(scales_h | (ls[s] >> 4) << (2 * s));
  }
  PutU16(b, 2, scales_h);
  EXPECT_EQ(scales_h, 0b1000'1101'0110'1100);  // top bits 0, 3, 2, 1, 1, 3, 0, 2 from bit 0
  EXPECT_EQ(b[4], 0xF0);                       // ls[0] = 0 low nibble, ls[1] = 63 high nibble
  for (int s = 0; s < 8; ++s) {
    for (int j = 0; j < 16; ++j) {
      b[8 + 16 * s + j] = static_cast<uint8_t>(((j + s) & 15) | ((15 - j + 3 * s) & 15) << 4);
    }
  }
  const std::vector<float> y = Decode(TensorType::kIQ4_XS, b, 256);
  for (int s = 0; s < 8; ++s) {
    const float dl = 0.25f * static_cast<float>(ls[s] - 32);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(y[32 * s + j], dl * static_cast<float>(kIq4nl[(j + s) & 15])) << s << " " << j;
      EXPECT_EQ(y[32 * s + 16 + j], dl * static_cast<float>(kIq4nl[(15 - j + 3 * s) & 15]))
          << s << " " << j;
    }
  }
  // Spelled out: element 0 (ls 0: -8 * index 0, -127) = 1016; element 16 (index 15, 113) = -904;
  // element 32 (ls 63: 7.75 * index 1, -104) = -806; sub-block 2 (ls 32) all zero; element 96
  // (ls 31: -0.25 * index 3, -65) = 16.25; element 255 (ls 44: 3 * index (15 - 15 + 21) & 15 = 5,
  // -35) = -105.
  EXPECT_EQ(y[0], 1016.0f);
  EXPECT_EQ(y[16], -904.0f);
  EXPECT_EQ(y[32], -806.0f);
  for (int i = 64; i < 96; ++i) EXPECT_EQ(y[i], 0.0f) << i;
  EXPECT_EQ(y[96], 16.25f);
  EXPECT_EQ(y[255], -105.0f);
}

// Q4_K's and Q5_K's 12 bytes of 6-bit scales and mins, packed by the spec.
void PutKScales(const int* sc, const int* mn, uint8_t* s) {
  // Sub-blocks 0-3: scale in the low 6 bits of byte j, min in the low 6 bits of byte j + 4.
  // Sub-blocks 4-7: low 4 bits of scale and min share byte j + 4 (scale low nibble, min high
  // nibble); their top 2 bits go to the top 2 bits of bytes j - 4 (scale) and j (min).
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

TEST(GoldenBlock, Q4_KScalesMinsAndNibbleOrder) {
  // Layout: d (fp16) | dmin (fp16) | 12 bytes of 6-bit scales/mins | 128 bytes of nibbles.
  const int sc[8] = {1, 2, 3, 4, 33, 45, 63, 17};  // the last four need their high 2 bits
  const int mn[8] = {0, 5, 10, 63, 32, 48, 7, 20};
  std::vector<uint8_t> b(144, 0);
  PutU16(b, 0, 0x3C00);  // d = 1.0
  PutU16(b, 2, 0x3800);  // dmin = 0.5
  PutKScales(sc, mn, b.data() + 4);
  // Chunk c (32 bytes) covers elements 64c..64c+63: low nibbles -> 64c + l, high -> 64c + 32 + l.
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      b[16 + 32 * c + l] = static_cast<uint8_t>((l & 15) | (((l + 5 * c) & 15) << 4));
    }
  }
  const std::vector<float> y = Decode(TensorType::kQ4_K, b, 256);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const float lo = 1.0f * static_cast<float>(sc[2 * c] * (l & 15)) - 0.5f * mn[2 * c];
      const float hi =
          1.0f * static_cast<float>(sc[2 * c + 1] * ((l + 5 * c) & 15)) - 0.5f * mn[2 * c + 1];
      EXPECT_EQ(y[64 * c + l], lo) << "chunk " << c << " l " << l;
      EXPECT_EQ(y[64 * c + 32 + l], hi) << "chunk " << c << " l " << l;
    }
  }
}

// Q5_K: d (fp16) | dmin (fp16) | 12 scale bytes as Q4_K's | qh[32] | 128 bytes of nibbles as
// Q4_K's. Element 64c + l takes bit 2c of qh[l] as its bit 4, element 64c + 32 + l bit 2c + 1.
// qh[l] = 0x96 + 73 l (mod 256; 73 is odd, so the 32 bytes differ): every bit position, so both
// halves of every chunk, is set in some bytes and clear in others.
TEST(GoldenBlock, Q5_KFifthBitsOfBothHalvesOfEveryChunk) {
  const int sc[8] = {1, 2, 3, 4, 33, 45, 63, 17};
  const int mn[8] = {0, 5, 10, 63, 32, 48, 7, 20};
  std::vector<uint8_t> b(176, 0);
  PutU16(b, 0, 0x3C00);  // d = 1.0
  PutU16(b, 2, 0x3800);  // dmin = 0.5
  PutKScales(sc, mn, b.data() + 4);
  uint8_t* qh = b.data() + 16;
  for (int l = 0; l < 32; ++l) qh[l] = static_cast<uint8_t>(0x96 + 73 * l);
  for (int bit = 0; bit < 8; ++bit) {
    int set = 0;
    for (int l = 0; l < 32; ++l) set += qh[l] >> bit & 1;
    ASSERT_GT(set, 0) << bit;
    ASSERT_LT(set, 32) << bit;
  }
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      b[48 + 32 * c + l] = static_cast<uint8_t>((l & 15) | (((l + 5 * c) & 15) << 4));
    }
  }
  const std::vector<float> y = Decode(TensorType::kQ5_K, b, 256);
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      const int q_lo = (l & 15) + 16 * (qh[l] >> (2 * c) & 1);
      const int q_hi = ((l + 5 * c) & 15) + 16 * (qh[l] >> (2 * c + 1) & 1);
      const float lo = static_cast<float>(sc[2 * c] * q_lo) - 0.5f * mn[2 * c];
      const float hi = static_cast<float>(sc[2 * c + 1] * q_hi) - 0.5f * mn[2 * c + 1];
      EXPECT_EQ(y[64 * c + l], lo) << "chunk " << c << " l " << l;
      EXPECT_EQ(y[64 * c + 32 + l], hi) << "chunk " << c << " l " << l;
    }
  }
  // Spelled out, qh[0] = 0x96 (bits 1, 2, 4, 7 set), qh[1] = 0xDF (all but bit 5).
  EXPECT_EQ(y[0], 0.0f);      // chunk 0 first half: nibble 0, bit 0 clear, q = 0; min 0
  EXPECT_EQ(y[32], 29.5f);    // chunk 0 second half: nibble 0, bit 1 set: 2 * 16 - 2.5
  EXPECT_EQ(y[64], 43.0f);    // chunk 1 first half: nibble 0, bit 2 set: 3 * 16 - 5
  EXPECT_EQ(y[96], -11.5f);   // chunk 1 second half: nibble 5, bit 3 clear: 4 * 5 - 31.5
  EXPECT_EQ(y[128], 512.0f);  // chunk 2 first half: nibble 0, bit 4 set: 33 * 16 - 16
  EXPECT_EQ(y[192], -3.5f);   // chunk 3 first half: nibble 0, bit 6 clear: 63 * 0 - 3.5
  EXPECT_EQ(y[224], 517.0f);  // chunk 3 second half: nibble 15, bit 7 set: 17 * 31 - 10
  EXPECT_EQ(y[1], 17.0f);     // nibble 1, bit 0 of 0xDF set: 1 * 17 - 0
  EXPECT_EQ(y[161], 471.0f);  // chunk 2 second half: nibble 11, bit 5 of 0xDF clear: 45 * 11 - 24
}

TEST(GoldenBlock, Q6_KBitPlanesAndScaleOrder) {
  // Layout: ql[128] | qh[64] | int8 scales[16] | d (fp16). Choose a distinct 6-bit q per element
  // and a distinct scale per 16-element sub-block, encode by the spec, and check the decode.
  std::vector<uint8_t> b(210, 0);
  int q[256];
  for (int i = 0; i < 256; ++i) q[i] = (i * 37 + 11) % 64;
  int8_t scales[16];
  for (int s = 0; s < 16; ++s) scales[s] = static_cast<int8_t>(s % 2 == 0 ? s + 1 : -(s + 1) * 3);
  uint8_t* ql = b.data();
  uint8_t* qh = b.data() + 128;
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const int e = 128 * h;
      // ql byte l: element l (low nibble) and l + 64 (high); ql byte l + 32: l + 32 and l + 96.
      ql[64 * h + l] = static_cast<uint8_t>((q[e + l] & 15) | ((q[e + l + 64] & 15) << 4));
      ql[64 * h + l + 32] =
          static_cast<uint8_t>((q[e + l + 32] & 15) | ((q[e + l + 96] & 15) << 4));
      // qh byte l: 2-bit high parts of elements l, l + 32, l + 64, l + 96 from bit 0 upwards.
      qh[32 * h + l] =
          static_cast<uint8_t>((q[e + l] >> 4) | ((q[e + l + 32] >> 4) << 2) |
                               ((q[e + l + 64] >> 4) << 4) | ((q[e + l + 96] >> 4) << 6));
    }
  }
  std::memcpy(b.data() + 192, scales, 16);
  PutU16(b, 208, 0x3400);  // d = 0.25
  const std::vector<float> y = Decode(TensorType::kQ6_K, b, 256);
  for (int i = 0; i < 256; ++i) {
    EXPECT_EQ(y[i], 0.25f * static_cast<float>(scales[i / 16]) * static_cast<float>(q[i] - 32))
        << i;
  }
}

// Q3_K: hmask[32] | qs[64] | 12 scale bytes | d (fp16). Element e = 128n + 32j + l (sub-block
// e / 16) has q = its two bits (qs[32n + l] >> 2j) & 3, minus 4 where bit 4n + j of hmask[l] is
// clear; the 6-bit scale field f of sub-block s (the scale is f - 32) has its low four bits in
// the low nibble of byte s (s < 8) or the high nibble of byte s - 8, its high two bits in byte
// 8 + s % 4 at bits 2 (s / 4). Distinct q patterns and fields whose high bits take all four
// values, encoded here from that description.
TEST(GoldenBlock, Q3_KHighBitsTwoBitFieldsAndSignedScales) {
  int q[256];
  for (int e = 0; e < 256; ++e) q[e] = (e * 5 + e / 16 * 3 + 1) % 8 - 4;
  int field[16];
  for (int s = 0; s < 16; ++s) field[s] = (s * 23 + 7) % 64;
  std::vector<uint8_t> b(110, 0);
  uint8_t* hmask = b.data();
  uint8_t* qs = b.data() + 32;
  uint8_t* sc = b.data() + 96;
  for (int n = 0; n < 2; ++n) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * n + 32 * j + l;
        const int bits = q[e] + 4;  // 0..7
        qs[32 * n + l] |= static_cast<uint8_t>((bits & 3) << (2 * j));
        hmask[l] |= static_cast<uint8_t>((bits >> 2) << (4 * n + j));
      }
    }
  }
  for (int s = 0; s < 16; ++s) {
    if (s < 8) {
      sc[s] |= static_cast<uint8_t>(field[s] & 15);
    } else {
      sc[s - 8] |= static_cast<uint8_t>((field[s] & 15) << 4);
    }
    sc[8 + s % 4] |= static_cast<uint8_t>((field[s] >> 4) << (2 * (s / 4)));
  }
  PutU16(b, 108, 0x3400);  // d = 0.25
  const std::vector<float> y = Decode(TensorType::kQ3_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y[e], 0.25f * static_cast<float>(field[e / 16] - 32) * static_cast<float>(q[e])) << e;
  }
  // Spelled out. Fields: 7, 30, 53, 12, 35, 58, 17, 40, 63, 22, 45, 4, 27, 50, 9, 32 (scales
  // -25, -2, 21, -20, 3, 26, -15, 8, 31, -10, 13, -28, -5, 18, -23, 0).
  EXPECT_EQ(y[0], 18.75f);    // q = 1 - 4 = -3 (two bits 1, high bit clear), scale -25
  EXPECT_EQ(y[17], 1.5f);     // q = 89 % 8 - 4 = -3, sub-block 1: scale -2
  EXPECT_EQ(y[130], -7.75f);  // q = 675 % 8 - 4 = -1, sub-block 8: scale 31 (field 63)
  EXPECT_EQ(y[255], 0.0f);    // sub-block 15: scale 0 (field 32)
}

// Q2_K: 16 scale bytes | qs[64] | d (fp16) | dmin (fp16). Sub-block s (elements 16s..16s+15)
// has the scale scales[s] & 15 and the min scales[s] >> 4; element e = 128n + 32j + l has
// q = (qs[32n + l] >> 2j) & 3 (as Q3_K's two low bits). Distinct q patterns, scales and mins
// (every 4-bit value of each), encoded here from that description.
TEST(GoldenBlock, Q2_KTwoBitFieldsScalesAndMins) {
  int q[256];
  for (int e = 0; e < 256; ++e) q[e] = (e * 3 + e / 32) % 4;
  int sc[16], mn[16];
  for (int s = 0; s < 16; ++s) {
    sc[s] = (s * 7 + 3) % 16;
    mn[s] = (s * 5 + 11) % 16;
  }
  std::vector<uint8_t> b(84, 0);
  for (int s = 0; s < 16; ++s) b[s] = static_cast<uint8_t>(sc[s] | mn[s] << 4);
  uint8_t* qs = b.data() + 16;
  for (int n = 0; n < 2; ++n) {
    for (int j = 0; j < 4; ++j) {
      for (int l = 0; l < 32; ++l) {
        qs[32 * n + l] |= static_cast<uint8_t>(q[128 * n + 32 * j + l] << (2 * j));
      }
    }
  }
  PutU16(b, 80, 0x3800);  // d = 0.5
  PutU16(b, 82, 0x3400);  // dmin = 0.25
  const std::vector<float> y = Decode(TensorType::kQ2_K, b, 256);
  for (int e = 0; e < 256; ++e) {
    EXPECT_EQ(y[e], 0.5f * static_cast<float>(sc[e / 16]) * static_cast<float>(q[e]) -
                        0.25f * static_cast<float>(mn[e / 16]))
        << e;
  }
  // Spelled out. Sub-block 0: scale 3, min 11; sub-block 5: scale 6, min 4; sub-block 15:
  // scale 12, min 6.
  EXPECT_EQ(y[0], -2.75f);  // q = 0: -0.25 * 11
  EXPECT_EQ(y[1], 1.75f);   // q = 3: 0.5 * 3 * 3 - 2.75
  EXPECT_EQ(y[90], -1.0f);  // q = (270 + 2) % 4 = 0: -0.25 * 4
  EXPECT_EQ(y[250], 4.5f);  // q = (750 + 7) % 4 = 1: 0.5 * 12 - 0.25 * 6
}

TEST(GoldenBlock, F16AndBf16AreLittleEndianBitPatterns) {
  std::vector<uint8_t> h = {0x00, 0x3C, 0x00, 0xC0};  // 1.0, -2.0
  EXPECT_EQ(Decode(TensorType::kF16, h, 2), (std::vector<float>{1.0f, -2.0f}));
  std::vector<uint8_t> bf = {0x80, 0x3F, 0x40, 0xC0};  // 1.0, -3.0
  EXPECT_EQ(Decode(TensorType::kBF16, bf, 2), (std::vector<float>{1.0f, -3.0f}));
}

TEST(GoldenBlock, QuantiserProducesTheSameBytesAsTheHandBuiltLayout) {
  // Values that Q8_0 and Q4_0 represent exactly must encode to the hand-built bytes above.
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[i] = 0.5f * static_cast<float>(3 * i - 50);
  // amax = 0.5 * 50 = 25 -> d = 25/127, not 0.5; so check the Q4_0 case, whose d is exact.
  for (int j = 0; j < 16; ++j) {
    x[j] = 2.0f * static_cast<float>(j - 8);
    x[j + 16] = 2.0f * static_cast<float>(15 - j - 8);
  }
  std::vector<uint8_t> b(18);
  Quantize(TensorType::kQ4_0, x.data(), b.data(), 32);
  EXPECT_EQ(b[0], 0x00);
  EXPECT_EQ(b[1], 0x40);  // d = max / -8 = -16 / -8 = 2.0
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[2 + j], j | ((15 - j) << 4)) << j;
  // Q5_0: the golden block's values (extreme -8 = -16 * 0.5, so d = 0.5 exactly).
  const std::vector<uint8_t> golden = GoldenQ5_0Block();
  Dequantize(TensorType::kQ5_0, golden.data(), x.data(), 32);
  std::vector<uint8_t> b5(22, 0xEE);
  Quantize(TensorType::kQ5_0, x.data(), b5.data(), 32);
  EXPECT_EQ(b5, golden);
  // Q5_1: the golden block's values (min -3.25 = m, max 12.25 = m + 31 * 0.5).
  const std::vector<uint8_t> golden_q5_1 = GoldenQ5_1Block();
  Dequantize(TensorType::kQ5_1, golden_q5_1.data(), x.data(), 32);
  std::vector<uint8_t> b51(24, 0xEE);
  Quantize(TensorType::kQ5_1, x.data(), b51.data(), 32);
  EXPECT_EQ(b51, golden_q5_1);
  // IQ4_NL: the golden block's values (d times every table value).
  const std::vector<uint8_t> golden_iq4_nl = GoldenIQ4_NLBlock();
  Dequantize(TensorType::kIQ4_NL, golden_iq4_nl.data(), x.data(), 32);
  std::vector<uint8_t> bnl(18, 0xEE);
  Quantize(TensorType::kIQ4_NL, x.data(), bnl.data(), 32);
  EXPECT_EQ(bnl, golden_iq4_nl);
}

// ---- quantise -> dequantise error bounds

std::vector<float> Gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = dist(rng);
  return x;
}

std::vector<float> RoundTrip(TensorType type, const std::vector<float>& x) {
  const auto n = static_cast<int64_t>(x.size());
  std::vector<uint8_t> q(static_cast<size_t>(RowSizeBytes(type, n)));
  Quantize(type, x.data(), q.data(), n);
  std::vector<float> y(x.size());
  Dequantize(type, q.data(), y.data(), n);
  return y;
}

double Rms(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * static_cast<double>(a[i] - b[i]);
  return std::sqrt(sum / static_cast<double>(a.size()));
}

// Largest error within each block divided by the block's largest magnitude.
double MaxBlockRelativeError(const std::vector<float>& x, const std::vector<float>& y,
                             int64_t block) {
  double worst = 0;
  for (size_t b = 0; b < x.size(); b += static_cast<size_t>(block)) {
    float amax = 0, err = 0;
    for (size_t i = b; i < b + static_cast<size_t>(block); ++i) {
      amax = std::max(amax, std::fabs(x[i]));
      err = std::max(err, std::fabs(x[i] - y[i]));
    }
    if (amax > 0) worst = std::max(worst, static_cast<double>(err / amax));
  }
  return worst;
}

// Stated tolerances (data: 64K samples of N(0, 1), several seeds):
//  F16:  relative error <= 2^-11 per element (round to nearest, no subnormals in this data range
//        that matter; checked as |err| <= 2^-11 |x| + 2^-24).
//  BF16: relative error <= 2^-8 per element.
//  Q8_0: |err| <= 0.5 * d, d = amax/127: per block, max |err| / amax <= 1/254 * 1.01.
//  Q4_0: |err| <= d = amax/8 (values of the sign opposite to the extreme clamp at +7d):
//        max |err| / amax <= 1/8 * 1.01; RMS error <= 0.095 sigma.
//  Q5_0: the same with d = amax/16 (clamp at +15d): max |err| / amax <= 1/16 * 1.01; RMS error
//        <= 0.048 sigma.
//  Q5_1: |err| <= d / 2 with d = (max - min) / 31 <= 2 amax / 31: max |err| / amax <= 1/31 * 1.01
//        (measured over seeds 1-6: 0.03215-0.03223); RMS error <= 0.039 sigma (measured
//        0.0374-0.0381, about d / sqrt(12); Q5_0 there: 0.0422-0.0430).
//  IQ4_NL: RMS error <= 0.080 sigma (measured over seeds 1-6: 0.0726-0.0737; Q4_0 there
//        0.0850-0.0864); max |err| per block of 32 <= 0.15 * amax (measured 0.119-0.126: half
//        the widest gap, 23 table units, or the clamp at 113 of values opposite an extreme at
//        -127, at a scale the search may move by a few percent).
//  IQ4_XS: RMS error <= 0.080 sigma (measured over seeds 1-6: 0.0734-0.0744; the 6-bit
//        sub-block scales cost little next to IQ4_NL's fp16 ones); max |err| per super-block <=
//        0.15 * amax (measured 0.112-0.131).
//  Q4_K: RMS error <= 0.075 sigma; max |err| per block <= 0.25 * amax.
//  Q5_K: RMS error <= 0.038 sigma; max |err| per block <= 0.125 * amax (measured over seeds 1-6:
//        RMS 0.0355-0.0359, max per block 0.052-0.060; Q4_K there: 0.0707-0.0716, 0.097-0.122).
//  Q6_K: RMS error <= 0.020 sigma; max |err| per block <= 0.05 * amax.
//  Q3_K: RMS error <= 0.15 sigma; max |err| per super-block <= 0.3 * amax (values of the sign
//        opposite a sub-block's extreme clamp at 3 steps of amax / 4; measured over seeds 1-3:
//        RMS 0.1431-0.1442, max per super-block 0.211-0.248).
//  Q2_K: RMS error <= 0.28 sigma; max |err| per super-block <= 0.55 * amax (4 levels per
//        sub-block of 16, scale and min in 4 bits; measured over seeds 1-3: RMS 0.2633-0.2646,
//        max per super-block 0.433-0.471).
TEST(QuantRoundTrip, ErrorBoundsPerType) {
  constexpr int64_t kN = 65536;
  for (uint32_t seed : {1u, 2u, 3u}) {
    const std::vector<float> x = Gaussian(kN, seed);

    std::vector<float> y = RoundTrip(TensorType::kF32, x);
    EXPECT_EQ(y, x);

    y = RoundTrip(TensorType::kF16, x);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_LE(std::fabs(y[i] - x[i]), std::ldexp(std::fabs(x[i]), -11) + std::ldexp(1.0f, -24));
    }
    y = RoundTrip(TensorType::kBF16, x);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_LE(std::fabs(y[i] - x[i]), std::ldexp(std::fabs(x[i]), -8));
    }

    y = RoundTrip(TensorType::kQ8_0, x);
    EXPECT_LE(MaxBlockRelativeError(x, y, 32), 1.01 / 254);
    EXPECT_LE(Rms(x, y), 0.006);

    y = RoundTrip(TensorType::kQ4_0, x);
    EXPECT_LE(MaxBlockRelativeError(x, y, 32), 1.01 / 8);
    EXPECT_LE(Rms(x, y), 0.095);

    y = RoundTrip(TensorType::kQ5_0, x);
    EXPECT_LE(MaxBlockRelativeError(x, y, 32), 1.01 / 16);
    EXPECT_LE(Rms(x, y), 0.048);

    y = RoundTrip(TensorType::kQ5_1, x);
    EXPECT_LE(MaxBlockRelativeError(x, y, 32), 1.01 / 31);
    EXPECT_LE(Rms(x, y), 0.039);

    y = RoundTrip(TensorType::kIQ4_NL, x);
    EXPECT_LE(MaxBlockRelativeError(x, y, 32), 0.15);
    EXPECT_LE(Rms(x, y), 0.080);

    y = RoundTrip(TensorType::kIQ4_XS, x);
    EXPECT_LE(MaxBlockRelativeError(x, y, 256), 0.15);
    EXPECT_LE(Rms(x, y), 0.080);

    y = RoundTrip(TensorType::kQ4_K, x);
    EXPECT_LE(Rms(x, y), 0.075);
    EXPECT_LE(MaxBlockRelativeError(x, y, 256), 0.25);

    y = RoundTrip(TensorType::kQ5_K, x);
    EXPECT_LE(Rms(x, y), 0.038);
    EXPECT_LE(MaxBlockRelativeError(x, y, 256), 0.125);

    y = RoundTrip(TensorType::kQ6_K, x);
    EXPECT_LE(Rms(x, y), 0.020);
    EXPECT_LE(MaxBlockRelativeError(x, y, 256), 0.05);

    y = RoundTrip(TensorType::kQ3_K, x);
    EXPECT_LE(Rms(x, y), 0.15);
    EXPECT_LE(MaxBlockRelativeError(x, y, 256), 0.3);

    y = RoundTrip(TensorType::kQ2_K, x);
    EXPECT_LE(Rms(x, y), 0.28);
    EXPECT_LE(MaxBlockRelativeError(x, y, 256), 0.55);
  }
}

TEST(QuantRoundTrip, ScaleInvariantBoundsHoldForSmallAndLargeMagnitudes) {
  for (float sigma : {1e-3f, 30.0f}) {
    const std::vector<float> x = Gaussian(4096, 11, sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ8_0, x)), 0.006 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ4_0, x)), 0.095 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ5_0, x)), 0.048 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ5_1, x)), 0.039 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kIQ4_NL, x)), 0.080 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kIQ4_XS, x)), 0.080 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ4_K, x)), 0.075 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ5_K, x)), 0.038 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ6_K, x)), 0.020 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ3_K, x)), 0.15 * sigma);
    EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ2_K, x)), 0.28 * sigma);
  }
}

TEST(QuantRoundTrip, ZerosStayExactlyZero) {
  const std::vector<float> x(512, 0.0f);
  for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0, TensorType::kQ5_1,
                       TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                       TensorType::kQ6_K, TensorType::kF16, TensorType::kBF16, TensorType::kIQ4_NL,
                       TensorType::kIQ4_XS}) {
    const std::vector<float> y = RoundTrip(t, x);
    for (float v : y) ASSERT_EQ(v, 0.0f) << TypeName(t);
  }
}

TEST(QuantRoundTrip, KQuantsHandleOffsetAndOneSidedData) {
  // Q4_K decodes value = d*sc*q - dmin*m with m >= 0, so a sub-block's range always reaches
  // down to min(0, its minimum): all-negative data [-6, -5] is represented on its own range
  // (step ~1/15), all-positive data [5, 6] only on [0, 6] (step ~6/15, RMS ~0.115). Q5_K the
  // same with 31 steps (measured: 0.0092 and 0.051), Q2_K with 3 steps per 16 elements
  // (measured: 0.082 and 0.329).
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(5.0f, 6.0f);
  std::vector<float> x(1024);
  for (float& v : x) v = -dist(rng);
  EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ4_K, x)), 0.04);
  EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ5_K, x)), 0.02);
  EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ6_K, x)), 0.1);
  EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ2_K, x)), 0.1);
  for (float& v : x) v = -v;
  EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ2_K, x)), 0.36);
  EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ4_K, x)), 0.13);
  EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ5_K, x)), 0.065);
  EXPECT_LE(Rms(x, RoundTrip(TensorType::kQ6_K, x)), 0.1);
}

TEST(QuantRoundTrip, OutlierInABlockIsRepresentedClosely) {
  std::vector<float> x = Gaussian(256, 9, 0.01f);
  x[77] = 4.0f;
  for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0, TensorType::kQ5_1,
                       TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                       TensorType::kQ6_K, TensorType::kIQ4_NL, TensorType::kIQ4_XS}) {
    const std::vector<float> y = RoundTrip(t, x);
    EXPECT_NEAR(y[77], 4.0f, 0.1f) << TypeName(t);
  }
}

TEST(QuantRoundTrip, RequantisingDequantisedQ8_0Q4_0Q5_0Q5_1AndIQ4_NLIsStable) {
  const std::vector<float> x = Gaussian(1024, 21);
  for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0, TensorType::kQ5_1,
                       TensorType::kIQ4_NL}) {
    std::vector<uint8_t> a(static_cast<size_t>(RowSizeBytes(t, 1024)));
    std::vector<uint8_t> b(a.size());
    std::vector<float> y(1024);
    Quantize(t, x.data(), a.data(), 1024);
    Dequantize(t, a.data(), y.data(), 1024);
    Quantize(t, y.data(), b.data(), 1024);
    EXPECT_EQ(a, b) << TypeName(t);
  }
}

// Q5_0 (as Q4_0): in every block the value of largest magnitude is stored as q = 0 (nibble 0,
// fifth bit clear) and decodes to exactly -16 * d, the value itself whenever it is 16 times an
// fp16 number; the opposite sign clamps at q = 31, never wrapping to a small q.
TEST(QuantRoundTrip, Q5_0ExtremesMapToMinus16Exactly) {
  std::vector<float> x = Gaussian(32 * 64, 31);
  for (size_t b = 0; b < x.size() / 32; ++b) {
    // Odd blocks: an extreme that is 16 * an fp16 number, of alternating sign, at a position
    // that moves through both halves; the opposite sign at full magnitude too (clamps at 31).
    if (b % 2 == 1) {
      const size_t at = 32 * b + (b * 7) % 32;
      const float extreme = (b % 4 == 1 ? 1.0f : -1.0f) * 16.0f * 0.3125f;
      x[at] = extreme;
      x[32 * b + (b * 7 + 16) % 32] = -0.999f * extreme;
    }
  }
  std::vector<uint8_t> q(static_cast<size_t>(RowSizeBytes(TensorType::kQ5_0, 32 * 64)));
  Quantize(TensorType::kQ5_0, x.data(), q.data(), 32 * 64);
  std::vector<float> y(x.size());
  Dequantize(TensorType::kQ5_0, q.data(), y.data(), 32 * 64);
  for (size_t b = 0; b < x.size() / 32; ++b) {
    size_t at = 32 * b;
    for (size_t i = 32 * b; i < 32 * b + 32; ++i) {
      if (std::fabs(x[i]) > std::fabs(x[at])) at = i;
    }
    const uint8_t* blk = q.data() + 22 * b;
    const size_t j = at % 32;
    uint32_t qh;
    std::memcpy(&qh, blk + 2, 4);
    const int q_at = (j < 16 ? blk[6 + j] & 0x0F : blk[6 + j - 16] >> 4) | ((qh >> j) & 1) << 4;
    EXPECT_EQ(q_at, 0) << "block " << b;
    EXPECT_EQ(y[at], -16.0f * HalfToFloat(static_cast<uint16_t>(blk[0] | blk[1] << 8)))
        << "block " << b;
    if (b % 2 == 1) {
      EXPECT_EQ(y[at], x[at]) << "block " << b;
      const size_t other = 32 * b + (b * 7 + 16) % 32;
      EXPECT_EQ(y[other], -15.0f / 16.0f * x[at]) << "block " << b;
    }
  }
}

// Q5_1 spans each block's own [min, max] in 31 steps, q = 0 at the min (stored as m): every
// element within half a step (plus fp16 rounding of d and m), and data far from zero on one side
// as close as data around it (Q5_0, whose range is always [-amax, amax], is 13 times worse
// there). Measured: max error 0.5002 steps; RMS 0.0082 on [5, 6] and [-6, -5] (Q5_0: 0.110).
TEST(QuantRoundTrip, Q5_1UsesEachBlocksOwnRange) {
  const std::vector<float> x = Gaussian(32 * 256, 41);
  const std::vector<float> y = RoundTrip(TensorType::kQ5_1, x);
  for (size_t b = 0; b < x.size(); b += 32) {
    float lo = x[b], hi = x[b];
    for (size_t i = b; i < b + 32; ++i) {
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    const float step = (hi - lo) / 31.0f;
    for (size_t i = b; i < b + 32; ++i) {
      ASSERT_LE(std::fabs(y[i] - x[i]), 0.505f * step) << "element " << i;
    }
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(5.0f, 6.0f);
  std::vector<float> one_sided(1024);
  for (float& v : one_sided) v = dist(rng);
  EXPECT_LE(Rms(one_sided, RoundTrip(TensorType::kQ5_1, one_sided)), 0.0095);
  for (float& v : one_sided) v = -v;
  EXPECT_LE(Rms(one_sided, RoundTrip(TensorType::kQ5_1, one_sided)), 0.0095);
}

// IQ4_NL: every element's index is the table value nearest to x / d for the d stored (a linear
// scan of the table here), and the scale search pays: over many blocks the squared error is well
// below that of the plain scale, the largest magnitude at -127 (measured: 0.0737 against 0.0804
// RMS, 8% less; the bound asks for 5%).
TEST(QuantRoundTrip, IQ4_NLPicksNearestTableValuesAndBeatsThePlainScale) {
  constexpr int64_t kN = 32 * 512;
  const std::vector<float> x = Gaussian(kN, 51);
  std::vector<uint8_t> q(static_cast<size_t>(RowSizeBytes(TensorType::kIQ4_NL, kN)));
  Quantize(TensorType::kIQ4_NL, x.data(), q.data(), kN);
  std::vector<float> y(x.size());
  Dequantize(TensorType::kIQ4_NL, q.data(), y.data(), kN);
  auto nearest = [](float v) {
    int best = 0;
    for (int i = 1; i < 16; ++i) {
      if (std::fabs(v - static_cast<float>(kIq4nl[i])) <
          std::fabs(v - static_cast<float>(kIq4nl[best]))) {
        best = i;
      }
    }
    return best;
  };
  double err = 0, plain_err = 0;
  for (int64_t b = 0; b < kN / 32; ++b) {
    const uint8_t* blk = q.data() + 18 * b;
    const float d = HalfToFloat(static_cast<uint16_t>(blk[0] | blk[1] << 8));
    ASSERT_NE(d, 0.0f);
    float amax = 0, max = 0;
    for (int j = 0; j < 32; ++j) {
      const float v = x[32 * b + j];
      const int index = j < 16 ? blk[2 + j] & 15 : blk[2 + j - 16] >> 4;
      // Exactly halfway between two values either is nearest.
      const float want = static_cast<float>(kIq4nl[nearest(v / d)]);
      ASSERT_EQ(std::fabs(v / d - static_cast<float>(kIq4nl[index])), std::fabs(v / d - want))
          << "block " << b << " element " << j;
      err += (y[32 * b + j] - v) * static_cast<double>(y[32 * b + j] - v);
      if (std::fabs(v) > amax) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float plain_d = HalfToFloat(FloatToHalf(max / -127.0f));
    for (int j = 0; j < 32; ++j) {
      const float v = x[32 * b + j];
      const float e = plain_d * static_cast<float>(kIq4nl[nearest(v / plain_d)]) - v;
      plain_err += static_cast<double>(e) * e;
    }
  }
  EXPECT_LE(std::sqrt(err / kN), 0.95 * std::sqrt(plain_err / kN))
      << "search " << std::sqrt(err / kN) << ", plain " << std::sqrt(plain_err / kN);
}

// IQ4_XS: in every sub-block each index is the table value nearest to x / dl for the sub-block
// scale dl = d * (ls - 32) stored, and a sub-block of zeros among large ones decodes to zeros.
TEST(QuantRoundTrip, IQ4_XSPicksNearestTableValuesForEachStoredSubBlockScale) {
  constexpr int64_t kN = 256 * 64;
  std::vector<float> x = Gaussian(kN, 52);
  for (int64_t i = 0; i < kN; ++i) x[i] *= 0.1f + static_cast<float>(i / 32 % 8);  // scales 1:80
  std::fill(x.begin() + 256 * 5 + 64, x.begin() + 256 * 5 + 96, 0.0f);
  std::vector<uint8_t> q(static_cast<size_t>(RowSizeBytes(TensorType::kIQ4_XS, kN)));
  Quantize(TensorType::kIQ4_XS, x.data(), q.data(), kN);
  std::vector<float> y(x.size());
  Dequantize(TensorType::kIQ4_XS, q.data(), y.data(), kN);
  for (int64_t b = 0; b < kN / 256; ++b) {
    const uint8_t* blk = q.data() + 136 * b;
    const float d = HalfToFloat(static_cast<uint16_t>(blk[0] | blk[1] << 8));
    const int scales_h = blk[2] | blk[3] << 8;
    for (int s = 0; s < 8; ++s) {
      const int ls = (blk[4 + s / 2] >> (4 * (s % 2)) & 15) | (scales_h >> (2 * s) & 3) << 4;
      const float dl = d * static_cast<float>(ls - 32);
      for (int j = 0; j < 32; ++j) {
        const float v = x[256 * b + 32 * s + j];
        const uint8_t byte = blk[8 + 16 * s + j % 16];
        const int index = j < 16 ? byte & 15 : byte >> 4;
        if (dl == 0.0f) {
          ASSERT_EQ(y[256 * b + 32 * s + j], 0.0f);
          continue;
        }
        float best = INFINITY;
        for (int t : kIq4nl) best = std::min(best, std::fabs(v / dl - static_cast<float>(t)));
        ASSERT_EQ(std::fabs(v / dl - static_cast<float>(kIq4nl[index])), best)
            << "block " << b << " sub-block " << s << " element " << j;
      }
    }
  }
  for (int64_t i = 256 * 5 + 64; i < 256 * 5 + 96; ++i) EXPECT_EQ(y[i], 0.0f) << i;
}

TEST(QuantRoundTrip, NonFiniteInputIsMemorySafe) {
  std::vector<float> x = Gaussian(256, 3);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[100] = std::numeric_limits<float>::infinity();
  for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0, TensorType::kQ5_1,
                       TensorType::kQ2_K, TensorType::kQ3_K, TensorType::kQ4_K, TensorType::kQ5_K,
                       TensorType::kQ6_K, TensorType::kIQ4_NL, TensorType::kIQ4_XS}) {
    (void)RoundTrip(t, x);  // must not crash or trip the sanitizers
  }
}

}  // namespace
}  // namespace yunzhi::engine
