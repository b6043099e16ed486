// GGUF: reading and writing the weight files of llama.cpp / ggml (format versions 2 and 3).
//
// A GGUF file is a header (magic "GGUF", version, tensor count, metadata count), typed key/value
// metadata ("general.architecture" = "llama", "tokenizer.ggml.tokens" = [strings], ...), a table
// of tensor infos (name, shape, type, offset) and, aligned to `general.alignment` (default 32),
// the tensor data. Only little-endian files are read (big-endian ones get a clear error).
//
// Reading: `GgufFile::Open` maps the file read-only and validates ALL of its structure up front:
// after a successful open every metadata value and every tensor lies inside the file, so the
// accessors never read out of bounds. Hostile input gives an error naming the file, never a crash
// and never an allocation larger than a small multiple of the file size. Metadata is not copied:
// strings and arrays are decoded from the mapping when asked for.
//
//   YZ_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Open(path));
//   YZ_ASSIGN_OR_RETURN(std::string_view arch, gguf.GetString("general.architecture"));
//   YZ_ASSIGN_OR_RETURN(uint32_t n_layers, gguf.GetU32(std::string(arch) + ".block_count"));
//   YZ_ASSIGN_OR_RETURN(std::vector<std::string_view> tokens,
//                       gguf.GetStringArray("tokenizer.ggml.tokens"));
//   YZ_ASSIGN_OR_RETURN(TensorView wq, gguf.GetTensor("blk.0.attn_q.weight"));
//
// Lifetimes: every string_view, GgufValue and TensorView obtained from a GgufFile points into its
// mapping and stays valid until the GgufFile is destroyed. Moving a GgufFile keeps them valid.
//
// Writing: `GgufWriter` collects metadata and tensors and writes a GGUF v3 file atomically.
//
// Thread safety: a GgufFile is immutable after Open; all its const methods may be called from
// any number of threads. A GgufWriter is a plain builder: use it from one thread at a time.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/mapped_file.h"
#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine {

// Metadata value types, numbered as in the file.
enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "uint32", "string", "array", ...
std::string_view GgufValueTypeName(GgufValueType type);

// The default alignment of the data section and of every tensor's data (bytes).
inline constexpr uint32_t kGgufDefaultAlignment = 32;

// One metadata value: a small view into the file. Cheap to copy. Scalars are decoded when the
// file is opened; strings and arrays are decoded on access (the file was validated on open).
//
// Conversions are lossless or they fail: the integer accessors accept a value of ANY integer
// type whose value fits the requested type (files in the wild store e.g. block_count as uint32,
// int32 or uint64); the float accessors accept float32 or float64. A wrong type or an
// out-of-range value gives kInvalidArgument naming the actual type.
class GgufValue {
 public:
  GgufValue() = default;

  GgufValueType type() const { return type_; }
  bool is_array() const { return type_ == GgufValueType::kArray; }

  Result<uint8_t> AsU8() const;
  Result<int8_t> AsI8() const;
  Result<uint16_t> AsU16() const;
  Result<int16_t> AsI16() const;
  Result<uint32_t> AsU32() const;
  Result<int32_t> AsI32() const;
  Result<uint64_t> AsU64() const;
  Result<int64_t> AsI64() const;
  Result<float> AsF32() const;   // float32, or float64 rounded to float
  Result<double> AsF64() const;  // float32 or float64
  Result<bool> AsBool() const;
  Result<std::string_view> AsString() const;  // bytes as stored (GGUF says UTF-8; not checked)

  // Arrays. array_type()/array_size() are meaningful only when is_array().
  GgufValueType array_type() const { return array_type_; }
  uint64_t array_size() const { return array_size_; }

  // The elements of an array converted element-wise with the rules above (e.g. AsI32Array on an
  // array of uint8 works; on an array of strings it fails). Errors: not an array, or an element
  // of the wrong type / out of range.
  Result<std::vector<std::string_view>> AsStringArray() const;
  Result<std::vector<uint8_t>> AsU8Array() const;
  Result<std::vector<int32_t>> AsI32Array() const;
  Result<std::vector<uint32_t>> AsU32Array() const;
  Result<std::vector<int64_t>> AsI64Array() const;
  Result<std::vector<uint64_t>> AsU64Array() const;
  Result<std::vector<float>> AsF32Array() const;
  Result<std::vector<double>> AsF64Array() const;
  Result<std::vector<bool>> AsBoolArray() const;
  // Every element as a GgufValue: works for arrays of any type, including nested arrays.
  Result<std::vector<GgufValue>> AsArray() const;

 private:
  friend class GgufParser;
  friend class GgufFile;

  Error TypeError(std::string_view wanted) const;
  Result<int64_t> SignedValue(std::string_view wanted) const;
  Result<uint64_t> UnsignedValue(std::string_view wanted) const;
  template <typename T>
  Result<std::vector<T>> ConvertArray(Result<T> (GgufValue::*convert)() const) const;

  GgufValueType type_ = GgufValueType::kUint8;
  // Scalars: the value, widened. Strings: bytes_/size_. Arrays: element type, count, and the
  // encoded elements at bytes_ (size_ bytes).
  union {
    uint64_t u64_ = 0;
    int64_t i64_;
    double f64_;
  };
  const uint8_t* bytes_ = nullptr;
  uint64_t size_ = 0;
  GgufValueType array_type_ = GgufValueType::kUint8;
  uint64_t array_size_ = 0;
  const std::string* file_name_ = nullptr;  // for error messages; owned by the GgufFile
  std::string_view key_;                    // for error messages ("" for array elements)
};

// One metadata entry, in file order.
struct GgufMetadataEntry {
  std::string_view key;
  GgufValue value;
};

// One entry of the tensor table, whatever its type (also types this build cannot compute with).
struct GgufTensorInfo {
  std::string_view name;
  TensorType type = TensorType::kF32;
  int n_dims = 0;
  std::array<int64_t, kMaxDims> ne = {1, 1, 1, 1};  // GGML order: ne[0] is the row length
  uint64_t offset_bytes = 0;                        // from the start of the data section, as stored
  uint64_t size_bytes = 0;                          // computed from type and shape
  const void* data = nullptr;                       // points into the mapping
};

// Limits applied while parsing; the defaults accept every real model.
struct GgufOpenOptions {
  // Nesting depth of arrays inside arrays (1 = arrays of scalars/strings only).
  int max_array_depth = 8;
  // Call madvise(MADV_WILLNEED) on the tensor data after validating (Open only).
  bool prefetch = false;
};

class GgufFile {
 public:
  // Maps and validates the file at `path`.
  // Errors: kNotFound (no such file), kUnavailable (cannot be read/mapped), kInvalidArgument for
  // any malformed content: bad magic, unsupported version or big-endian file, truncation, lengths
  // or counts that run past the end, duplicate keys or tensor names, bad general.alignment,
  // unknown tensor type ids, dimension overflow, a row length that is not a multiple of the
  // type's block size, tensor data out of bounds, misaligned or overlapping. Every message starts
  // with the file name.
  static Result<GgufFile> Open(const std::string& path, const GgufOpenOptions& options = {});

  // Parses a GGUF image already in memory. `bytes` is NOT copied and must outlive the GgufFile;
  // `name` is used in error messages. Same validation and errors as Open. For tests and fuzzing.
  static Result<GgufFile> FromMemory(std::span<const uint8_t> bytes, std::string name,
                                     const GgufOpenOptions& options = {});

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  const std::string& name() const;     // the path (or the name given to FromMemory)
  uint32_t version() const;            // 2 or 3
  uint32_t alignment_bytes() const;    // general.alignment or 32
  uint64_t data_offset_bytes() const;  // start of the data section in the file
  uint64_t file_size_bytes() const;

  // ---- metadata

  // All entries in file order.
  const std::vector<GgufMetadataEntry>& metadata() const;
  // The value stored under `key`, or nullptr if there is none.
  const GgufValue* FindValue(std::string_view key) const;
  bool HasKey(std::string_view key) const { return FindValue(key) != nullptr; }

  // Typed access by key. Errors: kNotFound "<file>: metadata key '<key>' not found";
  // kInvalidArgument for a wrong type or out-of-range value (see GgufValue for the conversions).
  Result<GgufValue> Get(std::string_view key) const;
  Result<std::string_view> GetString(std::string_view key) const;
  Result<bool> GetBool(std::string_view key) const;
  Result<uint32_t> GetU32(std::string_view key) const;
  Result<int32_t> GetI32(std::string_view key) const;
  Result<uint64_t> GetU64(std::string_view key) const;
  Result<int64_t> GetI64(std::string_view key) const;
  Result<float> GetF32(std::string_view key) const;
  Result<double> GetF64(std::string_view key) const;
  Result<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  Result<std::vector<int32_t>> GetI32Array(std::string_view key) const;
  Result<std::vector<uint32_t>> GetU32Array(std::string_view key) const;
  Result<std::vector<float>> GetF32Array(std::string_view key) const;
  Result<std::vector<GgufValue>> GetArray(std::string_view key) const;

  // ---- tensors

  // All tensor infos in file order.
  const std::vector<GgufTensorInfo>& tensors() const;
  // The tensor called `name`, or nullptr. Any type, including types this build cannot run.
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // The tensor called `name` as a view, for computing.
  // Errors: kNotFound "<file>: tensor '<name>' not found"; kUnimplemented when its type is not
  // supported by this build ("tensor blk.0.attn_q.weight has type Q5_1, which this build cannot
  // run (supported: ...)").
  Result<TensorView> GetTensor(std::string_view name) const;

  // Hints the kernel about the access pattern of the whole mapping (no-op for FromMemory).
  void Advise(MappedFile::Advice advice) const;

 private:
  friend class GgufParser;
  struct State;
  explicit GgufFile(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Builds a GGUF (version 3, little-endian) file. Keys and tensors are written in the order they
// were first added. Setting a key again replaces its value in place.
//
//   GgufWriter w;
//   w.SetString("general.architecture", "llama");
//   w.SetU32("llama.block_count", 5);
//   w.SetStringArray("tokenizer.ggml.tokens", tokens);
//   YZ_RETURN_IF_ERROR(w.AddTensor("token_embd.weight", TensorType::kQ8_0, {64, 512}, bytes));
//   YZ_RETURN_IF_ERROR(w.WriteFile(path));
class GgufWriter {
 public:
  struct Options {
    // Alignment of the data section and of each tensor: a power of two. If it is not 32 the
    // writer also stores general.alignment (uint32) unless the caller set that key.
    uint32_t alignment_bytes = kGgufDefaultAlignment;
  };

  GgufWriter();
  explicit GgufWriter(Options options);
  ~GgufWriter();
  GgufWriter(GgufWriter&&) noexcept;
  GgufWriter& operator=(GgufWriter&&) noexcept;

  // A metadata array under construction; elements must all have one type (checked with
  // YZ_CHECK: mixing types is a programmer error). Arrays may nest.
  class Array {
   public:
    explicit Array(GgufValueType element_type);
    GgufValueType element_type() const { return element_type_; }
    uint64_t size() const { return size_; }

    Array& AddU8(uint8_t v);
    Array& AddI8(int8_t v);
    Array& AddU16(uint16_t v);
    Array& AddI16(int16_t v);
    Array& AddU32(uint32_t v);
    Array& AddI32(int32_t v);
    Array& AddU64(uint64_t v);
    Array& AddI64(int64_t v);
    Array& AddF32(float v);
    Array& AddF64(double v);
    Array& AddBool(bool v);
    Array& AddString(std::string_view v);
    Array& AddArray(const Array& v);

   private:
    friend class GgufWriter;
    void Expect(GgufValueType type);
    GgufValueType element_type_;
    uint64_t size_ = 0;
    std::string encoded_;  // the encoded elements, without the array header
  };

  void SetU8(std::string_view key, uint8_t value);
  void SetI8(std::string_view key, int8_t value);
  void SetU16(std::string_view key, uint16_t value);
  void SetI16(std::string_view key, int16_t value);
  void SetU32(std::string_view key, uint32_t value);
  void SetI32(std::string_view key, int32_t value);
  void SetU64(std::string_view key, uint64_t value);
  void SetI64(std::string_view key, int64_t value);
  void SetF32(std::string_view key, float value);
  void SetF64(std::string_view key, double value);
  void SetBool(std::string_view key, bool value);
  void SetString(std::string_view key, std::string_view value);
  void SetArray(std::string_view key, const Array& value);
  // Shorthands for the common arrays.
  void SetStringArray(std::string_view key, std::span<const std::string> values);
  void SetStringArray(std::string_view key, std::span<const std::string_view> values);
  void SetF32Array(std::string_view key, std::span<const float> values);
  void SetI32Array(std::string_view key, std::span<const int32_t> values);
  void SetU32Array(std::string_view key, std::span<const uint32_t> values);

  // Adds a tensor. `ne` is in GGML order (ne[0] = row length), 1..4 entries (0 entries = a
  // scalar). `data` must hold exactly RowSizeBytes(type, ne[0]) * (rows) bytes.
  // Ownership: a span (or an lvalue vector, which converts to one) is NOT copied and must stay
  // valid until the last Serialize/WriteFile call; an rvalue vector is taken over. So
  // `AddTensor(n, t, ne, std::move(bytes))` and `AddTensor(n, t, ne, MakeBytes())` are safe.
  // Errors: kInvalidArgument for a duplicate name, too many dims, a negative dim or overflow, a
  // row length that is not a multiple of the block size, or a data size that does not match.
  Status AddTensor(std::string_view name, TensorType type, std::span<const int64_t> ne,
                   std::span<const uint8_t> data);
  Status AddTensor(std::string_view name, TensorType type, std::span<const int64_t> ne,
                   std::vector<uint8_t>&& data);
  Status AddTensor(std::string_view name, TensorType type, std::initializer_list<int64_t> ne,
                   std::span<const uint8_t> data) {
    return AddTensor(name, type, std::span<const int64_t>(ne.begin(), ne.size()), data);
  }
  Status AddTensor(std::string_view name, TensorType type, std::initializer_list<int64_t> ne,
                   std::vector<uint8_t>&& data) {
    return AddTensor(name, type, std::span<const int64_t>(ne.begin(), ne.size()), std::move(data));
  }

  // The whole file as bytes. Errors: kInvalidArgument if general.alignment was set to a value
  // other than Options::alignment_bytes or with a type other than uint32.
  Result<std::string> Serialize() const;

  // Writes the file atomically: to a temporary file in the same directory, fsync, rename over
  // `path`. Readers see either the old file or the complete new one.
  // Errors: kUnavailable for I/O errors (naming the path and the OS error); as Serialize.
  Status WriteFile(const std::string& path) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace yunzhi::engine
