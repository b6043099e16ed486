// Mutation smoke test for the GGUF and safetensors parsers: the deterministic, always-built
// stand-in for the libFuzzer targets in tests/fuzz/ (which need clang).
//
// Real files (every GGUF in the test data, and safetensors images written by our writer) are
// truncated at random points, bit-flipped, and have random header words overwritten with
// boundary values. Every parse must either fail with kInvalidArgument or produce a file whose
// every metadata value, array element and tensor byte range can be touched. Run under
// -DYUNZHI_SANITIZE=address,undefined this is what proves "no crash, no out-of-bounds read".
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/safetensors.h"
#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine {
namespace {

namespace fs = std::filesystem;

const std::string kTestdata = YUNZHI_TESTDATA_DIR;

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// Reads every byte the parsed file points at, so that a bad pointer shows up under ASan.
uint64_t TouchTensorBytes(const void* data, uint64_t size) {
  if (size == 0) return 0;
  const auto* p = static_cast<const uint8_t*>(data);
  return p[0] + p[size - 1] + p[size / 2];
}

uint64_t TouchGguf(const GgufFile& f, bool deep) {
  uint64_t sum = 0;
  for (const GgufMetadataEntry& e : f.metadata()) {
    sum += e.key.size();
    if (auto s = e.value.AsString()) sum += s->size();
    if (e.value.is_array() && deep) {
      auto elements = e.value.AsArray();
      EXPECT_TRUE(elements) << elements.error().ToString();
      if (!elements) continue;
      for (const GgufValue& v : *elements) {
        if (auto s = v.AsString()) sum += s->empty() ? 0 : static_cast<uint8_t>((*s)[0]);
        if (v.is_array()) sum += v.AsArray() ? 1 : 0;
      }
    }
  }
  for (const GgufTensorInfo& t : f.tensors()) {
    sum += TouchTensorBytes(t.data, t.size_bytes);
    auto view = f.GetTensor(t.name);
    if (view) {
      EXPECT_EQ(static_cast<int64_t>(view->size_bytes), view->row_size_bytes() * view->n_rows());
    }
  }
  return sum;
}

uint64_t TouchSafetensors(const SafetensorsFile& f) {
  uint64_t sum = 0;
  for (const auto& [k, v] : f.metadata()) sum += k.size() + v.size();
  for (const SafetensorsTensorInfo& t : f.tensors()) {
    sum += TouchTensorBytes(t.data, t.size_bytes);
    auto view = f.GetTensor(t.name);
    if (view) {
      EXPECT_EQ(static_cast<int64_t>(view->size_bytes), view->row_size_bytes() * view->n_rows());
    }
  }
  return sum;
}

// Values that make length and count fields interesting.
constexpr uint64_t kBoundaryWords[] = {0,
                                       1,
                                       2,
                                       7,
                                       9,
                                       12,
                                       31,
                                       32,
                                       255,
                                       0x7FFFFFFF,
                                       0xFFFFFFFF,
                                       0x100000000ull,
                                       0x7FFFFFFFFFFFFFFFull,
                                       0x8000000000000000ull,
                                       0xFFFFFFFFFFFFFFFFull};

// Applies one random mutation to `bytes` within [0, limit) and records how to undo it.
struct Mutation {
  std::vector<std::pair<size_t, uint8_t>> saved;  // (position, original byte)

  void Apply(std::vector<uint8_t>& bytes, size_t limit, std::mt19937_64& rng) {
    saved.clear();
    limit = std::min(limit, bytes.size());
    if (limit == 0) return;
    // Half of the mutations hit the first 512 bytes, where the header, the first keys and the
    // first length fields are; the rest anywhere below `limit`.
    if (rng() % 2 == 0) limit = std::min<size_t>(limit, 512);
    std::uniform_int_distribution<size_t> pos(0, limit - 1);
    switch (rng() % 3) {
      case 0: {  // flip 1-4 random bits
        const int n = 1 + static_cast<int>(rng() % 4);
        for (int i = 0; i < n; ++i) {
          const size_t p = pos(rng);
          saved.emplace_back(p, bytes[p]);
          bytes[p] ^= static_cast<uint8_t>(1u << (rng() % 8));
        }
        break;
      }
      case 1: {  // overwrite a 4- or 8-byte word with a boundary value
        const size_t width = rng() % 2 == 0 ? 4 : 8;
        const size_t p = pos(rng);
        if (p + width > bytes.size()) break;
        const uint64_t v = kBoundaryWords[rng() % std::size(kBoundaryWords)];
        for (size_t i = 0; i < width; ++i) {
          saved.emplace_back(p + i, bytes[p + i]);
          bytes[p + i] = static_cast<uint8_t>(v >> (8 * i));
        }
        break;
      }
      default: {  // random byte
        const size_t p = pos(rng);
        saved.emplace_back(p, bytes[p]);
        bytes[p] = static_cast<uint8_t>(rng());
        break;
      }
    }
  }

  void Undo(std::vector<uint8_t>& bytes) const {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) bytes[it->first] = it->second;
  }
};

struct Counts {
  int ok = 0;
  int errors = 0;
};

void MutateGguf(const std::string& name, std::vector<uint8_t> bytes, int iterations, uint64_t seed,
                Counts* counts) {
  auto original = GgufFile::FromMemory(bytes, name);
  ASSERT_TRUE(original) << original.error().ToString();
  // Mutate the header, metadata and tensor table (and a little of the data).
  const size_t limit = static_cast<size_t>(original->data_offset_bytes()) + 64;
  std::mt19937_64 rng(seed);
  Mutation m;
  for (int i = 0; i < iterations; ++i) {
    std::span<const uint8_t> input(bytes);
    if (rng() % 4 == 0) {  // truncation
      input = input.first(static_cast<size_t>(rng() % (std::min(bytes.size(), limit) + 1)));
      m.saved.clear();
    } else {
      m.Apply(bytes, limit, rng);
    }
    auto r = GgufFile::FromMemory(input, name);
    if (r) {
      ++counts->ok;
      TouchGguf(*r, /*deep=*/i % 16 == 0);
    } else {
      ++counts->errors;
      ASSERT_EQ(r.error().code, Code::kInvalidArgument) << r.error().ToString();
      ASSERT_EQ(r.error().message.rfind(name + ": ", 0), 0u) << r.error().message;
    }
    m.Undo(bytes);
  }
}

TEST(FormatMutation, GgufParsersSurviveMutationsOfEveryTestdataFile) {
  std::vector<std::string> paths = {kTestdata + "/models/stories260K.gguf",
                                    kTestdata + "/models/llama-2-tiny-random.gguf"};
  for (const auto& entry : fs::directory_iterator(kTestdata + "/tokenizer")) {
    if (entry.path().extension() == ".gguf") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  ASSERT_GE(paths.size(), 10u);
  Counts counts;
  uint64_t seed = 1;
  for (const std::string& path : paths) {
    const std::vector<uint8_t> bytes = ReadAll(path);
    ASSERT_FALSE(bytes.empty()) << path;
    // Parsing cost grows with the file (vocab files are big string arrays): spend about the same
    // number of bytes parsed on each file, so the test stays within seconds under ASan.
    const int iterations = std::clamp(static_cast<int>((200u << 20) / bytes.size()), 80, 400);
    MutateGguf(fs::path(path).filename().string(), bytes, iterations, seed++, &counts);
  }
  // Both outcomes must occur, or the mutations are not reaching the parser.
  std::printf("%d mutated files parsed, %d rejected\n", counts.ok, counts.errors);
  EXPECT_GT(counts.ok, 100);
  EXPECT_GT(counts.errors, 1000);
}

TEST(FormatMutation, GgufWrittenFilesWithEveryTypeSurviveMutations) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.block_count", 2);
  GgufWriter::Array inner(GgufValueType::kInt16);
  inner.AddI16(1).AddI16(-2);
  GgufWriter::Array outer(GgufValueType::kArray);
  outer.AddArray(inner).AddArray(inner);
  w.SetArray("nested", outer);
  const std::vector<std::string> tokens = {"<s>", "</s>", "a", "b"};
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  std::vector<float> x(512);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 17) - 8.0f;
  for (TensorType t : {TensorType::kF32, TensorType::kQ8_0, TensorType::kQ4_K, TensorType::kQ6_K}) {
    std::vector<uint8_t> bytes(static_cast<size_t>(RowSizeBytes(t, 256) * 2));
    Quantize(t, x.data(), bytes.data(), 512);
    ASSERT_TRUE(w.AddTensor(std::string(TypeName(t)), t, {256, 2}, std::move(bytes)));
  }
  const std::string image = w.Serialize().value();
  Counts counts;
  MutateGguf("written.gguf", std::vector<uint8_t>(image.begin(), image.end()), 20000, 99, &counts);
  std::printf("%d mutated files parsed, %d rejected\n", counts.ok, counts.errors);
  EXPECT_GT(counts.ok, 100);
  EXPECT_GT(counts.errors, 1000);
}

TEST(FormatMutation, SafetensorsParserSurvivesMutations) {
  SafetensorsWriter w;
  w.SetMetadata("format", "pt");
  std::vector<float> values(64, 1.5f);
  std::vector<uint8_t> f32(values.size() * 4);
  std::memcpy(f32.data(), values.data(), f32.size());
  ASSERT_TRUE(w.AddTensor("model.embed_tokens.weight", TensorType::kF32, {8, 8}, f32));
  std::vector<uint8_t> bf16(32 * 2);
  ASSERT_TRUE(w.AddTensor("model.norm.weight", TensorType::kBF16, {32}, bf16));
  std::vector<uint8_t> i64(3 * 8);
  const std::vector<int64_t> shape = {3};
  ASSERT_TRUE(w.AddRawTensor("position_ids", "I64", shape, i64));
  const std::string image = w.Serialize().value();
  std::vector<uint8_t> bytes(image.begin(), image.end());
  auto original = SafetensorsFile::FromMemory(bytes, "written.safetensors");
  ASSERT_TRUE(original) << original.error().ToString();
  const size_t limit = static_cast<size_t>(original->data_offset_bytes());
  const std::string digits = "0123456789";

  std::mt19937_64 rng(7);
  Mutation m;
  Counts counts;
  for (int i = 0; i < 10000; ++i) {
    std::span<const uint8_t> input(bytes);
    m.saved.clear();
    const uint64_t kind = rng() % 4;
    if (kind == 0) {
      input = input.first(static_cast<size_t>(rng() % (bytes.size() + 1)));
    } else if (kind == 1) {
      // JSON-aware: change one digit of the header (shapes and offsets), keeping it valid JSON.
      std::vector<size_t> positions;
      for (size_t p = 8; p < limit; ++p) {
        if (digits.find(static_cast<char>(bytes[p])) != std::string::npos) positions.push_back(p);
      }
      const size_t p = positions[rng() % positions.size()];
      m.saved.emplace_back(p, bytes[p]);
      bytes[p] = static_cast<uint8_t>(digits[rng() % 10]);
    } else {
      m.Apply(bytes, limit, rng);
    }
    auto r = SafetensorsFile::FromMemory(input, "written.safetensors");
    if (r) {
      ++counts.ok;
      TouchSafetensors(*r);
    } else {
      ++counts.errors;
      ASSERT_EQ(r.error().code, Code::kInvalidArgument) << r.error().ToString();
    }
    m.Undo(bytes);
  }
  std::printf("%d mutated files parsed, %d rejected\n", counts.ok, counts.errors);
  EXPECT_GT(counts.ok, 50);
  EXPECT_GT(counts.errors, 1000);
}

}  // namespace
}  // namespace yunzhi::engine
