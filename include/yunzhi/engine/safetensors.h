// safetensors: reading and writing the weight files of Hugging Face models.
//
// A .safetensors file is an 8-byte little-endian header length N, N bytes of JSON header, then a
// data section. The header maps each tensor name to {"dtype": "BF16", "shape": [rows, cols],
// "data_offsets": [begin, end]} (offsets relative to the data section) and may hold a
// "__metadata__" object of string -> string. Large models are split into shards
// (model-00001-of-00004.safetensors, ...) listed by model.safetensors.index.json, whose
// "weight_map" maps every tensor name to the shard file that holds it.
//
// SHAPES: safetensors stores shapes in row-major (PyTorch) order, [rows, cols], the REVERSE of
// GGUF's ne[]. SafetensorsTensorInfo::shape keeps the file's order; the TensorView returned by
// GetTensor has ne[] in GGML order (ne[0] = cols, the contiguous dimension) and
// RowMajorShape() gives back the file's order. A Linear weight of shape [out, in] therefore has
// ne = {in, out}: rows of `in` elements, exactly like the same tensor in a GGUF file.
//
// Computable dtypes: F32, F16, BF16. All other dtypes of the format (F64, I64, I32, I16, I8, U8,
// U16, U32, U64, BOOL, F8_E4M3, F8_E5M2, F8_E8M0, ...) are recognised and size-checked, so such
// files open and can be listed, but GetTensor on such a tensor fails with "unsupported dtype".
//
// Validation happens on open: header length beyond the file, header not a JSON object, missing
// or ill-typed fields, unknown dtype, negative or overflowing shape, data_offsets out of bounds or
// not matching shape x dtype size, overlapping tensors, shards named by the index that are
// missing or do not hold their tensors. Every error names the file. Hostile input never causes a
// crash or an allocation larger than a small multiple of the header size (which is capped).
//
// Lifetimes: views (names, data pointers) point into the object that produced them and stay valid
// until it is destroyed; moving it keeps them valid. Tensor data is only as aligned as the writer
// made it (this writer and Hugging Face's align the data section to 8 bytes; element offsets are
// multiples of the element size in practice, but this is not guaranteed by the format).
//
// Thread safety: SafetensorsFile and SafetensorsModel are immutable after Open; const methods may
// be called from any number of threads. SafetensorsWriter: one thread at a time.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"
#include "yunzhi/engine/tensor_type.h"

namespace yunzhi::engine {

// Largest JSON header accepted (the reference implementation's limit is 100 MB too).
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull << 20;

// The element size of a safetensors dtype name ("F32" -> 32 bits, "F4" -> 4), or nullopt if the
// name is not a dtype of the format.
std::optional<int> SafetensorsDtypeBits(std::string_view dtype);

// The TensorType of a computable dtype ("F32", "F16", "BF16"), or nullopt for any other dtype.
std::optional<TensorType> SafetensorsDtypeToType(std::string_view dtype);

struct SafetensorsTensorInfo {
  std::string name;
  std::string dtype;               // as in the header: "F32", "BF16", "I64", "F8_E4M3", ...
  std::vector<int64_t> shape;      // ROW-MAJOR (PyTorch) order, as in the header
  uint64_t offset_bytes = 0;       // begin, relative to the data section
  uint64_t size_bytes = 0;         // end - begin
  const void* data = nullptr;      // points into the mapping
  std::optional<TensorType> type;  // set for F32/F16/BF16
};

class SafetensorsFile {
 public:
  // Maps and validates one .safetensors file.
  // Errors: kNotFound (no such file), kUnavailable (cannot be read), kInvalidArgument (malformed;
  // see the list above). Messages start with the path.
  static Result<SafetensorsFile> Open(const std::string& path);

  // Parses an image already in memory; `bytes` is NOT copied and must outlive the object.
  // `name` appears in error messages. For tests and fuzzing.
  static Result<SafetensorsFile> FromMemory(std::span<const uint8_t> bytes, std::string name);

  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;
  ~SafetensorsFile();

  const std::string& name() const;
  uint64_t header_size_bytes() const;  // N, the JSON header's length
  uint64_t data_offset_bytes() const;  // 8 + N
  uint64_t file_size_bytes() const;

  // The "__metadata__" entries in header order (empty if absent).
  const std::vector<std::pair<std::string, std::string>>& metadata() const;
  // The value of one "__metadata__" entry, or nullopt.
  std::optional<std::string_view> FindMetadata(std::string_view key) const;

  // All tensors, in header order.
  const std::vector<SafetensorsTensorInfo>& tensors() const;
  // The tensor called `name` (any dtype), or nullptr.
  const SafetensorsTensorInfo* FindTensor(std::string_view name) const;
  // The tensor as a view for computing (ne[] in GGML order; see the note on shapes above).
  // Errors: kNotFound; kUnimplemented "tensor X has unsupported dtype I64, which this build
  // cannot run (supported: F32, F16, BF16)"; kUnimplemented for more than 4 dimensions.
  Result<TensorView> GetTensor(std::string_view name) const;

 private:
  struct State;
  explicit SafetensorsFile(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// A whole model: one file, or the shards listed by an index.
class SafetensorsModel {
 public:
  // `path` is one of:
  //  - a .safetensors file;
  //  - an index file (*.safetensors.index.json): every shard in its weight_map is opened, each
  //    shard name must be a plain file name in the index's directory (no '/' or "..");
  //  - a directory holding model.safetensors.index.json (preferred) or model.safetensors.
  // Errors: kNotFound (path, index or a shard missing, or a directory with neither file),
  // kInvalidArgument (malformed index or shard; a weight_map entry whose shard does not hold the
  // tensor; a tensor present in two shards), kUnavailable (I/O).
  static Result<SafetensorsModel> Open(const std::string& path);

  SafetensorsModel(SafetensorsModel&&) noexcept;
  SafetensorsModel& operator=(SafetensorsModel&&) noexcept;
  ~SafetensorsModel();

  // The opened files, in shard-name order.
  const std::vector<SafetensorsFile>& shards() const;
  // The index's "metadata" object with its values as JSON text (e.g. total_size -> "123"); for a
  // single file, its "__metadata__".
  const std::vector<std::pair<std::string, std::string>>& metadata() const;
  // Every tensor name of the model, sorted.
  const std::vector<std::string_view>& tensor_names() const;
  // The tensor called `name` in whichever shard holds it, or nullptr.
  const SafetensorsTensorInfo* FindTensor(std::string_view name) const;
  // As SafetensorsFile::GetTensor; kNotFound names the model path.
  Result<TensorView> GetTensor(std::string_view name) const;

 private:
  struct State;
  explicit SafetensorsModel(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Builds safetensors files: one file, or shards plus an index.
//
//   SafetensorsWriter w;
//   w.SetMetadata("format", "pt");
//   YZ_RETURN_IF_ERROR(w.AddTensor("lm_head.weight", TensorType::kBF16, {vocab, dim}, bytes));
//   YZ_RETURN_IF_ERROR(w.WriteFile(dir + "/model.safetensors"));
class SafetensorsWriter {
 public:
  SafetensorsWriter();
  ~SafetensorsWriter();
  SafetensorsWriter(SafetensorsWriter&&) noexcept;
  SafetensorsWriter& operator=(SafetensorsWriter&&) noexcept;

  // Sets one "__metadata__" entry (replacing an earlier value of the key).
  void SetMetadata(std::string_view key, std::string_view value);

  // Adds a tensor of type F32, F16 or BF16 with a ROW-MAJOR `shape` ([rows, cols]; empty for a
  // scalar). Ownership: a span (or an lvalue vector, which converts to one) is NOT copied and
  // must stay valid until the last Serialize/Write call; an rvalue vector is taken over.
  // Errors: kInvalidArgument for another type, a duplicate or empty name, "__metadata__" as a
  // name, a negative/overflowing shape, or a data size that does not match the shape.
  Status AddTensor(std::string_view name, TensorType type, std::span<const int64_t> shape,
                   std::span<const uint8_t> data);
  Status AddTensor(std::string_view name, TensorType type, std::span<const int64_t> shape,
                   std::vector<uint8_t>&& data);
  Status AddTensor(std::string_view name, TensorType type, std::initializer_list<int64_t> shape,
                   std::span<const uint8_t> data) {
    return AddTensor(name, type, std::span<const int64_t>(shape.begin(), shape.size()), data);
  }
  Status AddTensor(std::string_view name, TensorType type, std::initializer_list<int64_t> shape,
                   std::vector<uint8_t>&& data) {
    return AddTensor(name, type, std::span<const int64_t>(shape.begin(), shape.size()),
                     std::move(data));
  }
  // Adds a tensor of any dtype of the format by name ("I64", "U8", "F8_E4M3", ...): for tests of
  // readers and for copying tensors through unchanged. `data` is borrowed as above. Same errors,
  // plus an unknown dtype.
  Status AddRawTensor(std::string_view name, std::string_view dtype, std::span<const int64_t> shape,
                      std::span<const uint8_t> data);

  // The whole file as bytes (header padded with spaces to a multiple of 8 bytes).
  Result<std::string> Serialize() const;

  // Writes one file atomically (temporary file, fsync, rename). Errors: kUnavailable for I/O.
  Status WriteFile(const std::string& path) const;

  // Writes the tensors as shards of at most `max_shard_bytes` of tensor data each (a tensor
  // larger than that gets a shard of its own), named <prefix>-00001-of-0000N.safetensors, plus
  // <prefix>.safetensors.index.json with "metadata": {"total_size": bytes} and "weight_map", all
  // into the existing directory `dir`. Each file is written atomically; the index last.
  // Errors: kInvalidArgument if max_shard_bytes is 0; kUnavailable for I/O.
  Status WriteSharded(const std::string& dir, uint64_t max_shard_bytes,
                      std::string_view prefix = "model") const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace yunzhi::engine
