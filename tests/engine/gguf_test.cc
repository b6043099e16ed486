#include "yunzhi/engine/gguf.h"

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/engine/mapped_file.h"
#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kTestdata = YUNZHI_TESTDATA_DIR;

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("yunzhi_gguf_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// ---- MappedFile

TEST(MappedFile, MissingFileIsNotFoundAndNamesThePath) {
  auto r = MappedFile::Open("/nonexistent/dir/model.gguf");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kNotFound);
  EXPECT_THAT(r.error().message, HasSubstr("/nonexistent/dir/model.gguf"));
}

TEST(MappedFile, DirectoryIsRejected) {
  TempDir dir;
  auto r = MappedFile::Open(dir.path().string());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  EXPECT_THAT(r.error().message, HasSubstr("directory"));
}

TEST(MappedFile, UnreadableFileIsUnavailable) {
  if (::geteuid() == 0) {
    // root reads everything; use a path whose open fails for another reason than ENOENT.
    auto r = MappedFile::Open("/proc/self/mem/x");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().code, Code::kOk);
    return;
  }
  TempDir dir;
  const std::string path = dir.File("secret");
  std::ofstream(path) << "x";
  fs::permissions(path, fs::perms::none);
  auto r = MappedFile::Open(path);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kUnavailable);
  EXPECT_THAT(r.error().message, HasSubstr(path));
}

TEST(MappedFile, MapsContentsAndMovesWithoutCopying) {
  TempDir dir;
  const std::string path = dir.File("f");
  std::ofstream(path) << "hello";
  auto r = MappedFile::Open(path);
  ASSERT_TRUE(r) << r.error().ToString();
  MappedFile a = std::move(*r);
  ASSERT_EQ(a.size(), 5u);
  const uint8_t* p = a.data();
  MappedFile b = std::move(a);
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data()), b.size()), "hello");
  b.Advise(MappedFile::Advice::kWillNeed);
  b.Advise(MappedFile::Advice::kRandom, 3, 100);  // clipped to the file
  b.Advise(MappedFile::Advice::kSequential, 10);  // past the end: no-op
  b.Advise(MappedFile::Advice::kHugePages);        // a hint: the contents do not change
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(b.data()), b.size()), "hello");
  EXPECT_EQ(b.path(), path);
}

TEST(MappedFile, EmptyFileIsAnEmptyMapping) {
  TempDir dir;
  const std::string path = dir.File("empty");
  std::ofstream(path).close();
  auto r = MappedFile::Open(path);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->size(), 0u);
  EXPECT_EQ(r->data(), nullptr);
}

// ---- real files

TEST(GgufRealFiles, Stories260K) {
  auto r = GgufFile::Open(kTestdata + "/models/stories260K.gguf");
  ASSERT_TRUE(r) << r.error().ToString();
  const GgufFile& f = *r;
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment_bytes(), 32u);
  EXPECT_EQ(f.GetString("general.architecture").value(), "llama");
  EXPECT_EQ(f.GetU32("llama.block_count").value(), 5u);
  EXPECT_EQ(f.GetU32("llama.attention.head_count").value(), 8u);
  EXPECT_EQ(f.GetU32("llama.attention.head_count_kv").value(), 4u);
  EXPECT_EQ(f.GetU32("llama.embedding_length").value(), 64u);
  EXPECT_EQ(f.GetU32("llama.feed_forward_length").value(), 172u);
  EXPECT_EQ(f.GetU32("llama.context_length").value(), 2048u);
  EXPECT_GT(f.GetF32("llama.attention.layer_norm_rms_epsilon").value(), 0.0f);
  EXPECT_EQ(f.GetString("tokenizer.ggml.model").value(), "llama");
  auto tokens = f.GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens) << tokens.error().ToString();
  EXPECT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[0], "<unk>");
  EXPECT_EQ(f.GetF32Array("tokenizer.ggml.scores").value().size(), 512u);
  EXPECT_EQ(f.GetI32Array("tokenizer.ggml.token_type").value().size(), 512u);

  // 2 global tensors + 9 per layer (attn norm, q, k, v, o, ffn norm, gate, up, down).
  EXPECT_EQ(f.tensors().size(), 2u + 1u + 5u * 9u);
  for (const GgufTensorInfo& t : f.tensors()) {
    auto view = f.GetTensor(t.name);
    ASSERT_TRUE(view) << view.error().ToString();
    EXPECT_EQ(view->type, TensorType::kF32) << t.name;
    std::vector<float> row(static_cast<size_t>(view->ne[0]));
    const auto* data = static_cast<const uint8_t*>(view->data);
    for (int64_t r = 0; r < view->n_rows(); ++r) {
      Dequantize(view->type, data + r * view->row_size_bytes(), row.data(), view->ne[0]);
      for (float v : row) ASSERT_TRUE(std::isfinite(v)) << t.name;
    }
  }
  auto emb = f.GetTensor("token_embd.weight");
  ASSERT_TRUE(emb);
  EXPECT_EQ(emb->n_dims, 2);
  EXPECT_EQ(emb->ne[0], 64);   // row length = embedding size
  EXPECT_EQ(emb->ne[1], 512);  // one row per token
  EXPECT_EQ(emb->RowMajorShape(), (std::vector<int64_t>{512, 64}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(emb->data) % 32, 0u);
  auto wk = f.GetTensor("blk.0.attn_k.weight");
  ASSERT_TRUE(wk);
  EXPECT_EQ(wk->ne[0], 64);
  EXPECT_EQ(wk->ne[1], 32);  // 4 kv heads x head size 8
}

TEST(GgufRealFiles, LlamaTinyRandomIsF16WithFullVocab) {
  auto r = GgufFile::Open(kTestdata + "/models/llama-2-tiny-random.gguf");
  ASSERT_TRUE(r) << r.error().ToString();
  EXPECT_EQ(r->GetString("general.architecture").value(), "llama");
  EXPECT_EQ(r->GetStringArray("tokenizer.ggml.tokens").value().size(), 32000u);
  EXPECT_EQ(r->GetF32Array("tokenizer.ggml.scores").value().size(), 32000u);
  int n_f16 = 0;
  for (const GgufTensorInfo& t : r->tensors()) {
    auto view = r->GetTensor(t.name);
    ASSERT_TRUE(view) << view.error().ToString();
    if (view->type == TensorType::kF16) ++n_f16;
    std::vector<float> values(static_cast<size_t>(view->n_elements()));
    Dequantize(view->type, view->data, values.data(), view->n_elements());
    for (float v : values) ASSERT_TRUE(std::isfinite(v)) << t.name;
  }
  EXPECT_GT(n_f16, 0);
}

TEST(GgufRealFiles, VocabOnlyFilesOpenAndHaveTokens) {
  int n_files = 0;
  for (const auto& entry : fs::directory_iterator(kTestdata + "/tokenizer")) {
    if (entry.path().extension() != ".gguf") continue;
    ++n_files;
    auto r = GgufFile::Open(entry.path().string());
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_TRUE(r->GetString("tokenizer.ggml.model")) << entry.path();
    auto tokens = r->GetStringArray("tokenizer.ggml.tokens");
    ASSERT_TRUE(tokens) << tokens.error().ToString();
    EXPECT_GT(tokens->size(), 100u) << entry.path();
    for (const GgufMetadataEntry& e : r->metadata()) {
      if (e.value.is_array()) {
        EXPECT_TRUE(e.value.AsArray()) << e.key;
      }
    }
  }
  EXPECT_GE(n_files, 10);
}

// ---- accessors

GgufWriter SmallWriter() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.block_count", 5);
  w.SetI32("neg", -1);
  w.SetU64("big", 1ull << 40);
  w.SetF64("pi", 3.25);
  return w;
}

TEST(GgufAccessors, MissingKeyIsNotFoundAndNamesFileAndKey) {
  const std::string bytes = SmallWriter().Serialize().value();
  auto f = GgufFile::FromMemory(AsBytes(bytes), "mem.gguf");
  ASSERT_TRUE(f);
  auto r = f->GetU32("llama.nope");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kNotFound);
  EXPECT_EQ(r.error().message, "mem.gguf: metadata key 'llama.nope' not found");
  EXPECT_FALSE(f->HasKey("llama.nope"));
  EXPECT_TRUE(f->HasKey("big"));
}

TEST(GgufAccessors, WrongTypeIsInvalidArgumentNamingBothTypes) {
  const std::string bytes = SmallWriter().Serialize().value();
  auto f = GgufFile::FromMemory(AsBytes(bytes), "mem.gguf");
  ASSERT_TRUE(f);
  auto r = f->GetU32("general.architecture");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kInvalidArgument);
  EXPECT_EQ(r.error().message,
            "mem.gguf: metadata key 'general.architecture' has type string, expected uint32");
  EXPECT_FALSE(f->GetString("llama.block_count"));
  EXPECT_FALSE(f->GetStringArray("general.architecture"));
  EXPECT_FALSE(f->GetF32("llama.block_count"));  // no int -> float conversion
}

TEST(GgufAccessors, IntegerConversionsAreLosslessOrFail) {
  const std::string bytes = SmallWriter().Serialize().value();
  auto f = GgufFile::FromMemory(AsBytes(bytes), "mem.gguf");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->GetU64("llama.block_count").value(), 5u);
  EXPECT_EQ(f->GetI64("llama.block_count").value(), 5);
  EXPECT_EQ(f->GetI32("neg").value(), -1);
  auto neg = f->GetU32("neg");
  ASSERT_FALSE(neg);
  EXPECT_THAT(neg.error().message, HasSubstr("is -1, which does not fit uint32"));
  EXPECT_FALSE(f->GetU32("big"));
  EXPECT_EQ(f->GetU64("big").value(), 1ull << 40);
  EXPECT_EQ(f->GetF32("pi").value(), 3.25f);
}

// ---- write -> read round trips

TEST(GgufRoundTrip, EveryMetadataType) {
  GgufWriter w;
  w.SetU8("u8", 200);
  w.SetI8("i8", -100);
  w.SetU16("u16", 60000);
  w.SetI16("i16", -30000);
  w.SetU32("u32", 4000000000u);
  w.SetI32("i32", -2000000000);
  w.SetU64("u64", 18000000000000000000ull);
  w.SetI64("i64", -9000000000000000000ll);
  w.SetF32("f32", 1.5f);
  w.SetF64("f64", -2.0e300);
  w.SetBool("yes", true);
  w.SetBool("no", false);
  w.SetString("str", "héllo, 世界");
  w.SetString("empty", "");
  const std::vector<std::string> strings = {"a", "", "<0x0A>", "▁the"};
  w.SetStringArray("strs", strings);
  const std::vector<float> floats = {0.5f, -1.0f, 1e-20f};
  w.SetF32Array("floats", floats);
  const std::vector<int32_t> ints = {1, -2, 3};
  w.SetI32Array("ints", ints);
  const std::vector<uint32_t> uints = {7, 8};
  w.SetU32Array("uints", uints);
  GgufWriter::Array bools(GgufValueType::kBool);
  bools.AddBool(true).AddBool(false).AddBool(true);
  w.SetArray("bools", bools);
  GgufWriter::Array u8s(GgufValueType::kUint8);
  u8s.AddU8(1).AddU8(255);
  w.SetArray("u8s", u8s);
  GgufWriter::Array f64s(GgufValueType::kFloat64);
  f64s.AddF64(0.125);
  w.SetArray("f64s", f64s);
  GgufWriter::Array i64s(GgufValueType::kInt64);
  i64s.AddI64(-5).AddI64(1ll << 50);
  w.SetArray("i64s", i64s);
  GgufWriter::Array empty(GgufValueType::kString);
  w.SetArray("empty_arr", empty);
  // Nested: [[1, 2], [], [3]] of uint16, and [["x"], ["y", "z"]].
  GgufWriter::Array a1(GgufValueType::kUint16), a2(GgufValueType::kUint16),
      a3(GgufValueType::kUint16);
  a1.AddU16(1).AddU16(2);
  a3.AddU16(3);
  GgufWriter::Array nested(GgufValueType::kArray);
  nested.AddArray(a1).AddArray(a2).AddArray(a3);
  w.SetArray("nested", nested);
  GgufWriter::Array s1(GgufValueType::kString), s2(GgufValueType::kString);
  s1.AddString("x");
  s2.AddString("y").AddString("z");
  GgufWriter::Array nested_str(GgufValueType::kArray);
  nested_str.AddArray(s1).AddArray(s2);
  w.SetArray("nested_str", nested_str);
  GgufWriter::Array i8s(GgufValueType::kInt8), u64s(GgufValueType::kUint64),
      i16s(GgufValueType::kInt16), f32s(GgufValueType::kFloat32);
  i8s.AddI8(-8);
  u64s.AddU64(~0ull);
  i16s.AddI16(-16);
  f32s.AddF32(2.5f);
  w.SetArray("i8s", i8s);
  w.SetArray("u64s", u64s);
  w.SetArray("i16s", i16s);
  w.SetArray("f32s", f32s);
  w.SetU32("replaced", 1);
  w.SetString("replaced", "now a string");

  TempDir dir;
  const std::string path = dir.File("meta.gguf");
  ASSERT_TRUE(w.WriteFile(path));
  auto r = GgufFile::Open(path);
  ASSERT_TRUE(r) << r.error().ToString();
  const GgufFile& f = *r;
  EXPECT_EQ(f.metadata().size(), 30u);
  EXPECT_EQ(f.metadata()[0].key, "u8");
  EXPECT_EQ(f.Get("u8")->type(), GgufValueType::kUint8);
  EXPECT_EQ(f.Get("u8")->AsU8().value(), 200);
  EXPECT_EQ(f.Get("i8")->AsI8().value(), -100);
  EXPECT_EQ(f.Get("u16")->AsU16().value(), 60000);
  EXPECT_EQ(f.Get("i16")->AsI16().value(), -30000);
  EXPECT_EQ(f.GetU32("u32").value(), 4000000000u);
  EXPECT_EQ(f.GetI32("i32").value(), -2000000000);
  EXPECT_EQ(f.GetU64("u64").value(), 18000000000000000000ull);
  EXPECT_EQ(f.GetI64("i64").value(), -9000000000000000000ll);
  EXPECT_EQ(f.Get("f32")->type(), GgufValueType::kFloat32);
  EXPECT_EQ(f.GetF32("f32").value(), 1.5f);
  EXPECT_EQ(f.GetF64("f64").value(), -2.0e300);
  EXPECT_TRUE(f.GetBool("yes").value());
  EXPECT_FALSE(f.GetBool("no").value());
  EXPECT_EQ(f.GetString("str").value(), "héllo, 世界");
  EXPECT_EQ(f.GetString("empty").value(), "");
  auto strs = f.GetStringArray("strs").value();
  ASSERT_EQ(strs.size(), 4u);
  EXPECT_EQ(strs[2], "<0x0A>");
  EXPECT_EQ(strs[3], "▁the");
  EXPECT_EQ(f.GetF32Array("floats").value(), floats);
  EXPECT_EQ(f.GetI32Array("ints").value(), ints);
  EXPECT_EQ(f.GetU32Array("uints").value(), uints);
  EXPECT_EQ(f.Get("bools")->AsBoolArray().value(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(f.Get("u8s")->AsU8Array().value(), (std::vector<uint8_t>{1, 255}));
  EXPECT_EQ(f.Get("u8s")->AsI32Array().value(), (std::vector<int32_t>{1, 255}));
  EXPECT_EQ(f.Get("f64s")->AsF64Array().value(), (std::vector<double>{0.125}));
  EXPECT_EQ(f.Get("i64s")->AsI64Array().value(), (std::vector<int64_t>{-5, 1ll << 50}));
  EXPECT_FALSE(f.Get("i64s")->AsI32Array());  // 2^50 does not fit
  EXPECT_EQ(f.Get("u64s")->AsU64Array().value(), (std::vector<uint64_t>{~0ull}));
  EXPECT_EQ(f.Get("i8s")->AsArray().value()[0].AsI8().value(), -8);
  EXPECT_EQ(f.Get("i16s")->AsArray().value()[0].AsI16().value(), -16);
  EXPECT_EQ(f.Get("f32s")->AsF32Array().value(), (std::vector<float>{2.5f}));
  EXPECT_EQ(f.Get("empty_arr")->array_size(), 0u);
  EXPECT_EQ(f.Get("empty_arr")->array_type(), GgufValueType::kString);
  EXPECT_TRUE(f.GetStringArray("empty_arr").value().empty());

  auto outer = f.GetArray("nested").value();
  ASSERT_EQ(outer.size(), 3u);
  EXPECT_EQ(f.Get("nested")->array_type(), GgufValueType::kArray);
  EXPECT_EQ(outer[0].AsU32Array().value(), (std::vector<uint32_t>{1, 2}));
  EXPECT_TRUE(outer[1].AsArray().value().empty());
  EXPECT_EQ(outer[2].AsU32Array().value(), (std::vector<uint32_t>{3}));
  auto outer_str = f.GetArray("nested_str").value();
  ASSERT_EQ(outer_str.size(), 2u);
  EXPECT_EQ(outer_str[1].AsStringArray().value(), (std::vector<std::string_view>{"y", "z"}));
  EXPECT_FALSE(f.GetStringArray("nested_str"));
  EXPECT_EQ(f.GetString("replaced").value(), "now a string");

  // No temporary file is left behind by the atomic write.
  int n_files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) ++n_files;
  EXPECT_EQ(n_files, 1);
}

std::vector<float> Ramp(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = std::sin(0.37f * i) * 2.0f;
  return x;
}

TEST(GgufRoundTrip, EveryTensorType) {
  GgufWriter w;
  const std::vector<TensorType> types = {TensorType::kF32,  TensorType::kF16,  TensorType::kBF16,
                                         TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kQ5_0,
                                         TensorType::kQ5_1, TensorType::kQ4_K, TensorType::kQ5_K,
                                         TensorType::kQ6_K, TensorType::kIQ4_NL,
                                         TensorType::kIQ4_XS};
  const int64_t cols = 512, rows = 3;
  const std::vector<float> x = Ramp(cols * rows);
  std::vector<std::vector<uint8_t>> encoded;
  for (TensorType t : types) {
    std::vector<uint8_t> bytes(static_cast<size_t>(RowSizeBytes(t, cols) * rows));
    for (int64_t r = 0; r < rows; ++r) {
      Quantize(t, x.data() + r * cols, bytes.data() + r * RowSizeBytes(t, cols), cols);
    }
    encoded.push_back(bytes);
    ASSERT_TRUE(w.AddTensor(std::string("t.") + std::string(TypeName(t)), t, {cols, rows},
                            std::move(bytes)));
  }
  // A recognised type this build cannot run, and a 1-D and a 4-D tensor.
  std::vector<uint8_t> q4(static_cast<size_t>(RowSizeBytes(TensorType::kQ4_1, 64)), 0xAB);
  ASSERT_TRUE(w.AddTensor("blk.0.attn_q.weight", TensorType::kQ4_1, {64}, q4));
  std::vector<uint8_t> vec(4 * 7);
  ASSERT_TRUE(w.AddTensor("vec", TensorType::kF32, {7}, vec));
  std::vector<uint8_t> four(2 * 2 * 3 * 4 * 5);
  ASSERT_TRUE(w.AddTensor("four", TensorType::kF16, {2, 3, 4, 5}, four));

  TempDir dir;
  const std::string path = dir.File("tensors.gguf");
  ASSERT_TRUE(w.WriteFile(path));
  auto r = GgufFile::Open(path);
  ASSERT_TRUE(r) << r.error().ToString();
  for (size_t i = 0; i < types.size(); ++i) {
    auto view = r->GetTensor(std::string("t.") + std::string(TypeName(types[i])));
    ASSERT_TRUE(view) << view.error().ToString();
    EXPECT_EQ(view->type, types[i]);
    EXPECT_EQ(view->n_dims, 2);
    EXPECT_EQ(view->ne[0], cols);
    EXPECT_EQ(view->ne[1], rows);
    ASSERT_EQ(view->size_bytes, encoded[i].size());
    EXPECT_EQ(std::memcmp(view->data, encoded[i].data(), encoded[i].size()), 0);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(view->data) % 32, 0u);
  }
  const GgufTensorInfo* q4_info = r->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q4_info, nullptr);
  EXPECT_EQ(q4_info->type, TensorType::kQ4_1);
  EXPECT_EQ(q4_info->size_bytes, q4.size());
  auto q4_view = r->GetTensor("blk.0.attn_q.weight");
  ASSERT_FALSE(q4_view);
  EXPECT_EQ(q4_view.error().code, Code::kUnimplemented);
  EXPECT_EQ(q4_view.error().message,
            "tensor blk.0.attn_q.weight has type Q4_1, which this build cannot run (supported: "
            "F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)");
  EXPECT_EQ(r->GetTensor("vec")->n_dims, 1);
  EXPECT_EQ(r->GetTensor("four")->ne, (std::array<int64_t, 4>{2, 3, 4, 5}));
  EXPECT_EQ(r->GetTensor("four")->RowMajorShape(), (std::vector<int64_t>{5, 4, 3, 2}));
  auto missing = r->GetTensor("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);
  EXPECT_THAT(missing.error().message, HasSubstr("tensor 'nope' not found"));
}

TEST(GgufRoundTrip, CustomAlignmentIsRecordedAndHonoured) {
  GgufWriter w(GgufWriter::Options{.alignment_bytes = 256});
  std::vector<uint8_t> a(4 * 3), b(4 * 5);
  ASSERT_TRUE(w.AddTensor("a", TensorType::kF32, {3}, a));
  ASSERT_TRUE(w.AddTensor("b", TensorType::kF32, {5}, b));
  const std::string bytes = w.Serialize().value();
  auto f = GgufFile::FromMemory(AsBytes(bytes), "aligned.gguf");
  ASSERT_TRUE(f) << f.error().ToString();
  EXPECT_EQ(f->alignment_bytes(), 256u);
  EXPECT_EQ(f->GetU32("general.alignment").value(), 256u);
  EXPECT_EQ(f->data_offset_bytes() % 256, 0u);
  EXPECT_EQ(f->FindTensor("b")->offset_bytes, 256u);

  GgufWriter conflicting(GgufWriter::Options{.alignment_bytes = 64});
  conflicting.SetU32("general.alignment", 32);
  EXPECT_FALSE(conflicting.Serialize());
}

TEST(GgufWriterErrors, RejectsBadTensors) {
  GgufWriter w;
  std::vector<uint8_t> row(34);
  EXPECT_TRUE(w.AddTensor("x", TensorType::kQ8_0, {32}, row));
  EXPECT_FALSE(w.AddTensor("x", TensorType::kQ8_0, {32}, row));      // duplicate
  EXPECT_FALSE(w.AddTensor("y", TensorType::kQ8_0, {33}, row));      // not a block multiple
  EXPECT_FALSE(w.AddTensor("z", TensorType::kQ8_0, {64}, row));      // wrong size
  EXPECT_FALSE(w.AddTensor("w", TensorType::kQ8_0, {32, -1}, row));  // negative
  const std::vector<int64_t> five = {1, 1, 1, 1, 1};
  EXPECT_FALSE(w.AddTensor("v", TensorType::kF32, five, std::span<const uint8_t>(row.data(), 4)));
}

// ---- corrupt files: a raw builder so that each field can be broken on purpose

class Raw {
 public:
  Raw& U32(uint32_t v) { return Put(&v, 4); }
  Raw& U64(uint64_t v) { return Put(&v, 8); }
  Raw& U8(uint8_t v) { return Put(&v, 1); }
  Raw& Str(std::string_view s) {
    U64(s.size());
    bytes_.append(s);
    return *this;
  }
  Raw& Header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    bytes_.append("GGUF");
    U32(version);
    U64(n_tensors);
    return U64(n_kv);
  }
  Raw& KvU32(std::string_view key, uint32_t v) {
    Str(key);
    U32(4);
    return U32(v);
  }
  Raw& Tensor(std::string_view name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
    Str(name);
    U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    U32(type);
    return U64(offset);
  }
  Raw& PadTo(size_t alignment) {
    bytes_.resize((bytes_.size() + alignment - 1) / alignment * alignment, '\0');
    return *this;
  }
  Raw& Zeros(size_t n) {
    bytes_.append(n, '\0');
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  Raw& Put(const void* p, size_t n) {
    bytes_.append(static_cast<const char*>(p), n);
    return *this;
  }
  std::string bytes_;
};

// Parses `bytes` and returns the error message (empty if it parsed).
std::string ParseError(const std::string& bytes, GgufOpenOptions options = {}) {
  auto r = GgufFile::FromMemory(AsBytes(bytes), "bad.gguf", options);
  if (r) return "";
  EXPECT_EQ(r.error().code, Code::kInvalidArgument) << r.error().message;
  EXPECT_THAT(r.error().message, StartsWith("bad.gguf: "));
  return r.error().message;
}

TEST(GgufCorrupt, ValidMinimalFileParses) {
  Raw raw;
  raw.Header(1, 1).KvU32("k", 1).Tensor("t", {8}, 0, 0).PadTo(32).Zeros(32);
  EXPECT_EQ(ParseError(raw.bytes()), "");
}

TEST(GgufCorrupt, BadMagic) {
  EXPECT_THAT(ParseError("GGUX\3\0\0\0"), HasSubstr("not a GGUF file (bad magic 47 47 55 58"));
  EXPECT_THAT(ParseError("GG"), HasSubstr("truncated file"));
  EXPECT_THAT(ParseError(""), HasSubstr("truncated file"));
}

TEST(GgufCorrupt, UnsupportedVersions) {
  EXPECT_THAT(ParseError(Raw().Header(0, 0, 1).bytes()), HasSubstr("GGUF version 1 is not"));
  EXPECT_THAT(ParseError(Raw().Header(0, 0, 4).bytes()), HasSubstr("unsupported GGUF version 4"));
  EXPECT_THAT(ParseError(Raw().Header(0, 0, 0x03000000).bytes()),
              HasSubstr("big-endian GGUF files are not supported"));
  EXPECT_EQ(ParseError(Raw().Header(0, 0, 2).bytes()), "");
}

TEST(GgufCorrupt, EveryTruncationOfAValidFileIsAnError) {
  GgufWriter w = SmallWriter();
  std::vector<std::string> strings = {"a", "bb"};
  w.SetStringArray("strs", strings);
  std::vector<uint8_t> data(4 * 16);
  ASSERT_TRUE(w.AddTensor("t", TensorType::kF32, {16}, data));
  const std::string full = w.Serialize().value();
  ASSERT_EQ(ParseError(full), "");
  for (size_t n = 0; n < full.size(); ++n) {
    EXPECT_NE(ParseError(full.substr(0, n)), "") << "prefix of " << n << " bytes parsed";
  }
}

TEST(GgufCorrupt, AbsurdCounts) {
  EXPECT_THAT(ParseError(Raw().Header(0, 1ull << 60).bytes()),
              HasSubstr("header claims 1152921504606846976 metadata entries"));
  EXPECT_THAT(ParseError(Raw().Header(~0ull, 0).bytes()), HasSubstr("header claims"));
  Raw arr;
  arr.Header(0, 1).Str("a").U32(9).U32(4).U64(1ull << 62);  // array of 2^62 uint32
  EXPECT_THAT(ParseError(arr.bytes()), HasSubstr("is an array of 4611686018427387904 uint32"));
  Raw strs;
  strs.Header(0, 1).Str("a").U32(9).U32(8).U64(1000).Zeros(100);
  EXPECT_THAT(ParseError(strs.bytes()), HasSubstr("cannot fit"));
}

TEST(GgufCorrupt, StringLengthPastTheEnd) {
  Raw key;
  key.Header(0, 1).U64(1000).Zeros(10);
  EXPECT_THAT(ParseError(key.bytes()), HasSubstr("has length 1000"));
  Raw value;
  value.Header(0, 1).Str("k").U32(8).U64(~0ull);
  EXPECT_THAT(ParseError(value.bytes()),
              HasSubstr("metadata key 'k' has length 18446744073709551615"));
  Raw in_array;
  in_array.Header(0, 1).Str("k").U32(9).U32(8).U64(2).Str("ok").U64(50).Zeros(8);
  EXPECT_THAT(ParseError(in_array.bytes()), HasSubstr("past the end"));
}

TEST(GgufCorrupt, UnknownValueTypes) {
  Raw raw;
  raw.Header(0, 1).Str("k").U32(13).U32(0);
  EXPECT_THAT(ParseError(raw.bytes()), HasSubstr("metadata key 'k' has unknown value type 13"));
  Raw arr;
  arr.Header(0, 1).Str("k").U32(9).U32(99).U64(0);
  EXPECT_THAT(ParseError(arr.bytes()), HasSubstr("unknown value type 99"));
}

TEST(GgufCorrupt, NestingDepthIsLimited) {
  Raw raw;
  raw.Header(0, 1).Str("deep").U32(9);
  for (int i = 0; i < 20; ++i) raw.U32(9).U64(1);
  raw.U32(4).U64(0);
  EXPECT_THAT(ParseError(raw.bytes()), HasSubstr("nests arrays deeper than 8 levels"));
  EXPECT_EQ(ParseError(raw.bytes(), GgufOpenOptions{.max_array_depth = 32}), "");
}

TEST(GgufCorrupt, DuplicateKeysAndTensorNames) {
  Raw keys;
  keys.Header(0, 2).KvU32("k", 1).KvU32("k", 2);
  EXPECT_THAT(ParseError(keys.bytes()), HasSubstr("duplicate metadata key 'k'"));
  Raw tensors;
  tensors.Header(2, 0).Tensor("t", {8}, 0, 0).Tensor("t", {8}, 0, 32).PadTo(32).Zeros(64);
  EXPECT_THAT(ParseError(tensors.bytes()), HasSubstr("duplicate tensor name 't'"));
}

TEST(GgufCorrupt, BadAlignment) {
  Raw raw;
  raw.Header(0, 1).KvU32("general.alignment", 48);
  EXPECT_THAT(ParseError(raw.bytes()), HasSubstr("general.alignment is 48, which is not a power"));
  Raw zero;
  zero.Header(0, 1).KvU32("general.alignment", 0);
  EXPECT_THAT(ParseError(zero.bytes()), HasSubstr("not a power of two"));
  Raw wrong_type;
  wrong_type.Header(0, 1).Str("general.alignment").U32(8).Str("32");
  EXPECT_THAT(ParseError(wrong_type.bytes()), HasSubstr("has type string, expected uint32"));
}

TEST(GgufCorrupt, TensorInfoErrors) {
  Raw dims;
  dims.Header(1, 0).Tensor("t", {1, 1, 1, 1, 1}, 0, 0);
  EXPECT_THAT(ParseError(dims.bytes()), HasSubstr("tensor 't' has 5 dimensions (at most 4"));
  Raw overflow;
  overflow.Header(1, 0).Tensor("t", {1ull << 32, 1ull << 32}, 0, 0);
  EXPECT_THAT(ParseError(overflow.bytes()), HasSubstr("tensor 't': dimensions overflow"));
  Raw hidden;  // a zero dimension must not hide an overflow of the others
  hidden.Header(1, 0).Tensor("t", {1ull << 62, 1ull << 62, 0}, 0, 0).PadTo(32);
  EXPECT_THAT(ParseError(hidden.bytes()), HasSubstr("dimensions overflow"));
  Raw hidden_bytes;  // 2^61 F32 elements per row, zero rows: the row size overflows int64
  hidden_bytes.Header(1, 0).Tensor("t", {1ull << 61, 0}, 0, 0).PadTo(32);
  EXPECT_THAT(ParseError(hidden_bytes.bytes()), HasSubstr("size in bytes overflows"));
  Raw huge_dim;
  huge_dim.Header(1, 0).Tensor("t", {~0ull}, 0, 0);
  EXPECT_THAT(ParseError(huge_dim.bytes()), HasSubstr("dimensions overflow"));
  Raw bytes_overflow;  // 2^62 elements of F32 overflow when counted in bytes
  bytes_overflow.Header(1, 0).Tensor("t", {1ull << 62}, 0, 0);
  EXPECT_THAT(ParseError(bytes_overflow.bytes()), HasSubstr("size in bytes overflows"));
  Raw unknown;
  unknown.Header(1, 0).Tensor("t", {8}, 200, 0);
  EXPECT_THAT(ParseError(unknown.bytes()), HasSubstr("tensor 't' has unknown tensor type id 200"));
  Raw retired;
  retired.Header(1, 0).Tensor("t", {32}, 4, 0);
  EXPECT_THAT(ParseError(retired.bytes()), HasSubstr("unknown tensor type id 4"));
  Raw row;
  row.Header(1, 0).Tensor("t", {33}, 8, 0).PadTo(32).Zeros(64);
  EXPECT_THAT(ParseError(row.bytes()),
              HasSubstr("row length 33 is not a multiple of the Q8_0 block size 32"));
}

TEST(GgufCorrupt, TensorDataOutOfBoundsMisalignedOrOverlapping) {
  Raw oob;
  oob.Header(1, 0).Tensor("t", {16}, 0, 0).PadTo(32).Zeros(63);  // needs 64 bytes
  EXPECT_THAT(ParseError(oob.bytes()), HasSubstr("tensor 't' data [0, +64) runs past the end"));
  Raw far;
  far.Header(1, 0).Tensor("t", {1}, 0, ~0ull - 31).PadTo(32).Zeros(32);
  EXPECT_THAT(ParseError(far.bytes()), HasSubstr("runs past the end"));
  Raw misaligned;
  misaligned.Header(1, 0).Tensor("t", {1}, 0, 4).PadTo(32).Zeros(64);
  EXPECT_THAT(ParseError(misaligned.bytes()),
              HasSubstr("tensor 't' data offset 4 is not a multiple of the alignment 32"));
  Raw overlap;
  overlap.Header(2, 0).Tensor("a", {16}, 0, 0).Tensor("b", {16}, 0, 32).PadTo(32).Zeros(128);
  EXPECT_THAT(ParseError(overlap.bytes()), HasSubstr("tensors 'a' and 'b' overlap"));
  Raw no_data;  // infos end exactly at the end of the file: the data section is missing
  no_data.Header(1, 0).Tensor("t", {8}, 0, 0);
  EXPECT_THAT(ParseError(no_data.bytes()), HasSubstr("truncated file"));
}

TEST(GgufCorrupt, OpenNamesThePathInErrors) {
  TempDir dir;
  const std::string path = dir.File("broken.gguf");
  std::ofstream(path, std::ios::binary) << "GGUF\x07";
  auto r = GgufFile::Open(path);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, StartsWith(path + ": truncated file"));
  auto missing = GgufFile::Open(dir.File("missing.gguf"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);
}

}  // namespace
}  // namespace yunzhi::engine
