#include "yunzhi/engine/safetensors.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("yunzhi_st_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string File(const std::string& name) const { return (path_ / name).string(); }
  std::string str() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

std::span<const uint8_t> AsBytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::vector<uint8_t> F32Bytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 4);
  std::memcpy(out.data(), v.data(), out.size());
  return out;
}

std::vector<uint8_t> Encode(TensorType type, const std::vector<float>& v) {
  std::vector<uint8_t> out(static_cast<size_t>(RowSizeBytes(type, static_cast<int64_t>(v.size()))));
  Quantize(type, v.data(), out.data(), static_cast<int64_t>(v.size()));
  return out;
}

std::vector<float> Decode(const TensorView& view) {
  std::vector<float> out(static_cast<size_t>(view.n_elements()));
  Dequantize(view.type, view.data, out.data(), view.n_elements());
  return out;
}

// A header + data image built by hand, for malformed inputs.
std::string Image(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + std::string(data_bytes, '\0');
}

std::string ParseError(const std::string& bytes) {
  auto r = SafetensorsFile::FromMemory(AsBytes(bytes), "bad.safetensors");
  if (r) return "";
  EXPECT_EQ(r.error().code, Code::kInvalidArgument) << r.error().message;
  EXPECT_THAT(r.error().message, StartsWith("bad.safetensors: "));
  return r.error().message;
}

TEST(Safetensors, DtypeTable) {
  EXPECT_EQ(SafetensorsDtypeBits("F32"), 32);
  EXPECT_EQ(SafetensorsDtypeBits("BF16"), 16);
  EXPECT_EQ(SafetensorsDtypeBits("F8_E4M3"), 8);
  EXPECT_EQ(SafetensorsDtypeBits("I64"), 64);
  EXPECT_EQ(SafetensorsDtypeBits("F4"), 4);
  EXPECT_FALSE(SafetensorsDtypeBits("float32"));
  EXPECT_EQ(SafetensorsDtypeToType("F16"), TensorType::kF16);
  EXPECT_FALSE(SafetensorsDtypeToType("U8"));
}

TEST(Safetensors, SingleFileRoundTripWithShapesInBothOrders) {
  SafetensorsWriter w;
  w.SetMetadata("format", "pt");
  const std::vector<float> weight = {1, 2, 3, 4, 5, 6};  // [2, 3] row-major
  ASSERT_TRUE(w.AddTensor("proj.weight", TensorType::kF32, {2, 3}, F32Bytes(weight)));
  const std::vector<float> halfs = {0.5f, -1.0f, 2.0f, 3.0f};
  ASSERT_TRUE(w.AddTensor("h", TensorType::kF16, {4}, Encode(TensorType::kF16, halfs)));
  ASSERT_TRUE(w.AddTensor("b", TensorType::kBF16, {2, 2}, Encode(TensorType::kBF16, halfs)));
  const std::vector<float> scalar = {7.0f};
  ASSERT_TRUE(w.AddTensor("scalar", TensorType::kF32, std::vector<int64_t>{}, F32Bytes(scalar)));
  std::vector<uint8_t> ids(3 * 8, 1);
  const std::vector<int64_t> ids_shape = {3};
  ASSERT_TRUE(w.AddRawTensor("position_ids", "I64", ids_shape, ids));

  TempDir dir;
  const std::string path = dir.File("model.safetensors");
  ASSERT_TRUE(w.WriteFile(path));
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f) << f.error().ToString();
  EXPECT_EQ(f->data_offset_bytes() % 8, 0u);
  EXPECT_EQ(f->FindMetadata("format"), "pt");
  EXPECT_EQ(f->tensors().size(), 5u);

  const SafetensorsTensorInfo* info = f->FindTensor("proj.weight");
  ASSERT_NE(info, nullptr);
  EXPECT_EQ(info->shape, (std::vector<int64_t>{2, 3}));  // file (row-major) order
  EXPECT_EQ(info->dtype, "F32");
  auto view = f->GetTensor("proj.weight");
  ASSERT_TRUE(view);
  EXPECT_EQ(view->n_dims, 2);
  EXPECT_EQ(view->ne[0], 3);  // GGML order: the row length first
  EXPECT_EQ(view->ne[1], 2);
  EXPECT_EQ(view->RowMajorShape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(Decode(*view), weight);
  EXPECT_EQ(Decode(f->GetTensor("h").value()), halfs);
  EXPECT_EQ(Decode(f->GetTensor("b").value()), halfs);
  auto s = f->GetTensor("scalar");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->n_dims, 0);
  EXPECT_EQ(s->n_elements(), 1);
  EXPECT_EQ(Decode(*s), scalar);

  auto ids_view = f->GetTensor("position_ids");
  ASSERT_FALSE(ids_view);
  EXPECT_EQ(ids_view.error().code, Code::kUnimplemented);
  EXPECT_EQ(ids_view.error().message,
            "tensor position_ids has unsupported dtype I64, which this build cannot run "
            "(supported: F32, F16, BF16)");
  auto missing = f->GetTensor("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);

  auto model = SafetensorsModel::Open(dir.str());  // a directory with model.safetensors
  ASSERT_TRUE(model) << model.error().ToString();
  EXPECT_EQ(model->shards().size(), 1u);
  EXPECT_EQ(model->tensor_names().size(), 5u);
  EXPECT_EQ(Decode(model->GetTensor("proj.weight").value()), weight);
}

TEST(Safetensors, OtherDtypesAreRecognisedButRejected) {
  SafetensorsWriter w;
  std::vector<uint8_t> bytes(4);
  const std::vector<int64_t> shape = {4};
  ASSERT_TRUE(w.AddRawTensor("u8", "U8", shape, bytes));
  ASSERT_TRUE(w.AddRawTensor("f8", "F8_E4M3", shape, bytes));
  const std::vector<int64_t> one = {1};
  ASSERT_TRUE(w.AddRawTensor("i32", "I32", one, bytes));
  EXPECT_FALSE(w.AddRawTensor("bad", "F12", one, bytes));
  const std::string image = w.Serialize().value();
  auto f = SafetensorsFile::FromMemory(AsBytes(image), "mem");
  ASSERT_TRUE(f) << f.error().ToString();
  for (const char* name : {"u8", "f8", "i32"}) {
    auto v = f->GetTensor(name);
    ASSERT_FALSE(v);
    EXPECT_THAT(v.error().message, HasSubstr("unsupported dtype"));
  }
}

TEST(Safetensors, ShardedModelWithIndex) {
  SafetensorsWriter w;
  std::vector<std::vector<float>> values;
  for (int i = 0; i < 5; ++i) {
    values.push_back(std::vector<float>(16, static_cast<float>(i)));
    ASSERT_TRUE(w.AddTensor("layers." + std::to_string(i) + ".weight", TensorType::kF32, {4, 4},
                            F32Bytes(values.back())));
  }
  TempDir dir;
  ASSERT_TRUE(w.WriteSharded(dir.str(), 2 * 64));  // two tensors per shard -> 3 shards
  EXPECT_TRUE(fs::exists(dir.File("model-00001-of-00003.safetensors")));
  EXPECT_TRUE(fs::exists(dir.File("model-00003-of-00003.safetensors")));
  ASSERT_TRUE(fs::exists(dir.File("model.safetensors.index.json")));

  for (const std::string& path : {dir.str(), dir.File("model.safetensors.index.json")}) {
    auto model = SafetensorsModel::Open(path);
    ASSERT_TRUE(model) << model.error().ToString();
    EXPECT_EQ(model->shards().size(), 3u);
    ASSERT_EQ(model->tensor_names().size(), 5u);
    EXPECT_EQ(model->tensor_names()[0], "layers.0.weight");
    for (int i = 0; i < 5; ++i) {
      auto v = model->GetTensor("layers." + std::to_string(i) + ".weight");
      ASSERT_TRUE(v) << v.error().ToString();
      EXPECT_EQ(Decode(*v), values[static_cast<size_t>(i)]);
    }
    bool found_total = false;
    for (const auto& [k, v] : model->metadata()) {
      if (k == "total_size") {
        EXPECT_EQ(v, "320");
        found_total = true;
      }
    }
    EXPECT_TRUE(found_total);
    auto missing = model->GetTensor("nope");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, Code::kNotFound);
  }
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(Safetensors, BadIndexes) {
  TempDir dir;
  SafetensorsWriter w;
  const std::vector<float> v = {1, 2};
  ASSERT_TRUE(w.AddTensor("a", TensorType::kF32, {2}, F32Bytes(v)));
  ASSERT_TRUE(w.WriteFile(dir.File("shard.safetensors")));

  auto open = [&](const std::string& json) {
    WriteText(dir.File("model.safetensors.index.json"), json);
    return SafetensorsModel::Open(dir.str());
  };
  auto r = open(R"({"weight_map": {"a": "shard.safetensors", "b": "shard.safetensors"}})");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("puts tensor 'b' in shard.safetensors, which has no"));
  r = open(R"({"weight_map": {"a": "missing.safetensors"}})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kNotFound);
  EXPECT_THAT(r.error().message, HasSubstr("missing.safetensors"));
  r = open(R"({"weight_map": {"a": "../etc/passwd"}})");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("does not name a shard file"));
  r = open(R"({"weight_map": {"a": 3}})");
  ASSERT_FALSE(r);
  r = open(R"({"metadata": {}})");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("no \"weight_map\""));
  r = open("{not json");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("is not valid JSON"));
  r = open(R"({"weight_map": {"a": "shard.safetensors"}})");
  EXPECT_TRUE(r) << r.error().ToString();

  // The same tensor in two shards.
  SafetensorsWriter w2;
  ASSERT_TRUE(w2.AddTensor("a", TensorType::kF32, {2}, F32Bytes(v)));
  ASSERT_TRUE(w2.AddTensor("b", TensorType::kF32, {2}, F32Bytes(v)));
  ASSERT_TRUE(w2.WriteFile(dir.File("shard2.safetensors")));
  r = open(R"({"weight_map": {"a": "shard.safetensors", "b": "shard2.safetensors"}})");
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, HasSubstr("is in more than one shard"));

  TempDir empty;
  auto none = SafetensorsModel::Open(empty.str());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Code::kNotFound);
}

TEST(SafetensorsCorrupt, HeaderErrors) {
  EXPECT_THAT(ParseError("abc"), HasSubstr("less than the 8-byte header length"));
  std::string huge(8, '\xff');
  EXPECT_THAT(ParseError(huge + "{}"), HasSubstr("header length 18446744073709551615 runs past"));
  EXPECT_THAT(ParseError(Image("[1, 2]", 0)), HasSubstr("the header is not a JSON object"));
  EXPECT_THAT(ParseError(Image("{\"a\": ", 0)), HasSubstr("is not valid JSON"));
  EXPECT_EQ(ParseError(Image("{}", 0)), "");
  EXPECT_EQ(ParseError(Image("{}      ", 0)), "");  // space padding is allowed
  EXPECT_THAT(ParseError(Image(R"({"__metadata__": {"a": 1}})", 0)),
              HasSubstr("__metadata__ value of 'a' is not a string"));
  EXPECT_THAT(ParseError(Image(R"({"__metadata__": []})", 0)), HasSubstr("not a JSON object"));
}

TEST(SafetensorsCorrupt, TensorEntryErrors) {
  auto entry = [](const std::string& body, size_t data) {
    return ParseError(Image("{\"t\": " + body + "}", data));
  };
  EXPECT_EQ(entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})", 8), "");
  EXPECT_THAT(entry("3", 0), HasSubstr("tensor 't': entry is not a JSON object"));
  EXPECT_THAT(entry(R"({"shape": [2], "data_offsets": [0, 8]})", 8),
              HasSubstr("missing or non-string \"dtype\""));
  EXPECT_THAT(entry(R"({"dtype": "F31", "shape": [2], "data_offsets": [0, 8]})", 8),
              HasSubstr("unknown dtype 'F31'"));
  EXPECT_THAT(entry(R"({"dtype": "F32", "data_offsets": [0, 8]})", 8),
              HasSubstr("missing or non-array \"shape\""));
  EXPECT_THAT(entry(R"({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]})", 8),
              HasSubstr("negative, non-integer or overflowing"));
  EXPECT_THAT(entry(R"({"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]})", 8),
              HasSubstr("negative, non-integer or overflowing"));
  EXPECT_THAT(
      entry(R"({"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]})", 8),
      HasSubstr("overflowing"));
  EXPECT_THAT(entry(R"({"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904, 0],)"
                    R"( "data_offsets": [0, 0]})",
                    0),
              HasSubstr("overflowing"));
  EXPECT_THAT(entry(R"({"dtype": "F32", "shape": [0, 4611686018427387904],)"
                    R"( "data_offsets": [0, 0]})",
                    0),
              HasSubstr("overflows when counted in bytes"));
  EXPECT_EQ(entry(R"({"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]})", 0), "");
  EXPECT_THAT(entry(R"({"dtype": "F32", "shape": [2]})", 8), HasSubstr("missing \"data_offsets\""));
  EXPECT_THAT(entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]})", 8),
              HasSubstr("not two ordered non-negative integers"));
  EXPECT_THAT(entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 8]})", 7),
              HasSubstr("run past the end of the data section (7 bytes"));
  EXPECT_THAT(entry(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]})", 8),
              HasSubstr("hold 8 bytes, but shape [3] of F32 needs 12"));
  EXPECT_THAT(
      entry(R"({"dtype": "F32", "shape": [2], "data_offsets": [0, 18446744073709551615]})", 8),
      HasSubstr("run past the end"));
}

TEST(SafetensorsCorrupt, OverlappingTensors) {
  const std::string header = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                             R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_THAT(ParseError(Image(header, 12)), HasSubstr("tensors 'a' and 'b' overlap"));
}

TEST(SafetensorsCorrupt, OpenNamesThePath) {
  TempDir dir;
  const std::string path = dir.File("x.safetensors");
  WriteText(path, "short");
  auto r = SafetensorsFile::Open(path);
  ASSERT_FALSE(r);
  EXPECT_THAT(r.error().message, StartsWith(path + ": truncated file"));
  auto missing = SafetensorsFile::Open(dir.File("nope.safetensors"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);
}

TEST(SafetensorsWriterErrors, RejectsBadInput) {
  SafetensorsWriter w;
  std::vector<uint8_t> bytes(8);
  EXPECT_FALSE(w.AddTensor("q", TensorType::kQ8_0, {2}, bytes));  // not a safetensors dtype
  EXPECT_FALSE(w.AddTensor("", TensorType::kF32, {2}, bytes));
  EXPECT_FALSE(w.AddTensor("__metadata__", TensorType::kF32, {2}, bytes));
  EXPECT_FALSE(w.AddTensor("x", TensorType::kF32, {3}, bytes));  // size mismatch
  EXPECT_TRUE(w.AddTensor("x", TensorType::kF32, {2}, bytes));
  EXPECT_FALSE(w.AddTensor("x", TensorType::kF32, {2}, bytes));  // duplicate
  EXPECT_FALSE(w.WriteSharded("/tmp", 0));
}

}  // namespace
}  // namespace yunzhi::engine
