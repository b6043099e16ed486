#include "yunzhi/engine/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

#include "engine/atomic_file.h"

namespace yunzhi::engine {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kMaxValueType = 12;

// Smallest encodings, used to reject counts that cannot fit in the rest of the file before
// anything is allocated for them.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;              // empty key, type, one-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims 0, type, offset
constexpr uint64_t kMinStringBytes = 8;
constexpr uint64_t kMinArrayBytes = 4 + 8;

// Size of a fixed-size value type; 0 for string and array.
uint64_t FixedSize(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
    case GgufValueType::kInt8:
    case GgufValueType::kBool:
      return 1;
    case GgufValueType::kUint16:
    case GgufValueType::kInt16:
      return 2;
    case GgufValueType::kUint32:
    case GgufValueType::kInt32:
    case GgufValueType::kFloat32:
      return 4;
    case GgufValueType::kUint64:
    case GgufValueType::kInt64:
    case GgufValueType::kFloat64:
      return 8;
    case GgufValueType::kString:
    case GgufValueType::kArray:
      return 0;
  }
  return 0;
}

bool IsUnsignedType(GgufValueType t) {
  return t == GgufValueType::kUint8 || t == GgufValueType::kUint16 || t == GgufValueType::kUint32 ||
         t == GgufValueType::kUint64;
}
bool IsSignedType(GgufValueType t) {
  return t == GgufValueType::kInt8 || t == GgufValueType::kInt16 || t == GgufValueType::kInt32 ||
         t == GgufValueType::kInt64;
}

template <typename T>
T Load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
void Append(std::string& out, T v) {
  char buf[sizeof v];
  std::memcpy(buf, &v, sizeof v);
  out.append(buf, sizeof v);
}

void AppendString(std::string& out, std::string_view s) {
  Append<uint64_t>(out, s.size());
  out.append(s);
}

uint64_t AlignUp(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

}  // namespace

std::string_view GgufValueTypeName(GgufValueType type) {
  switch (type) {
    case GgufValueType::kUint8:
      return "uint8";
    case GgufValueType::kInt8:
      return "int8";
    case GgufValueType::kUint16:
      return "uint16";
    case GgufValueType::kInt16:
      return "int16";
    case GgufValueType::kUint32:
      return "uint32";
    case GgufValueType::kInt32:
      return "int32";
    case GgufValueType::kFloat32:
      return "float32";
    case GgufValueType::kBool:
      return "bool";
    case GgufValueType::kString:
      return "string";
    case GgufValueType::kArray:
      return "array";
    case GgufValueType::kUint64:
      return "uint64";
    case GgufValueType::kInt64:
      return "int64";
    case GgufValueType::kFloat64:
      return "float64";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// Parsing

struct GgufFile::State {
  std::string name;
  MappedFile mapping;  // empty for FromMemory
  std::span<const uint8_t> bytes;
  uint32_t version = 0;
  uint32_t alignment = kGgufDefaultAlignment;
  uint64_t data_offset = 0;
  std::vector<GgufMetadataEntry> metadata;
  std::unordered_map<std::string_view, size_t> key_index;
  std::vector<GgufTensorInfo> tensors;
  std::unordered_map<std::string_view, size_t> tensor_index;
};

// A bounds-checked cursor over the file (or over one array's elements). Every read checks the
// remaining length first, so no input can make it read outside `bytes`.
class GgufParser {
 public:
  GgufParser(std::span<const uint8_t> bytes, uint64_t base_offset, const std::string* name,
             int max_depth)
      : bytes_(bytes), base_(base_offset), name_(name), max_depth_(max_depth) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  Error Malformed(std::string_view message) const {
    return InvalidArgumentError(fmt::format("{}: {}", *name_, message));
  }

  Error Truncated(std::string_view what, uint64_t need) const {
    return Malformed(
        fmt::format("truncated file: {} needs {} bytes at offset {}, but only {} "
                    "remain",
                    what, need, base_ + pos_, remaining()));
  }

  template <typename T>
  Result<T> Read(std::string_view what) {
    if (remaining() < sizeof(T)) return Truncated(what, sizeof(T));
    T v = Load<T>(bytes_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }

  Result<std::string_view> ReadString(std::string_view what) {
    YZ_ASSIGN_OR_RETURN(const uint64_t len, Read<uint64_t>(what));
    if (len > remaining()) {
      return Malformed(
          fmt::format("{} has length {} at offset {}, past the end of the file "
                      "({} bytes remain)",
                      what, len, base_ + pos_ - 8, remaining()));
    }
    std::string_view s(reinterpret_cast<const char*>(bytes_.data() + pos_),
                       static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

  Result<GgufValueType> ReadType(std::string_view what) {
    YZ_ASSIGN_OR_RETURN(const uint32_t raw, Read<uint32_t>(what));
    if (raw > kMaxValueType) {
      return Malformed(fmt::format("{} has unknown value type {}", what, raw));
    }
    return static_cast<GgufValueType>(raw);
  }

  // Reads one value of `type`; `what` names it in errors; `depth` counts enclosing arrays.
  Result<GgufValue> ReadValue(GgufValueType type, std::string_view key, std::string_view what,
                              int depth) {
    GgufValue v;
    v.type_ = type;
    v.file_name_ = name_;
    v.key_ = key;
    switch (type) {
      case GgufValueType::kUint8: {
        YZ_ASSIGN_OR_RETURN(v.u64_, Read<uint8_t>(what));
        return v;
      }
      case GgufValueType::kInt8: {
        YZ_ASSIGN_OR_RETURN(v.i64_, Read<int8_t>(what));
        return v;
      }
      case GgufValueType::kUint16: {
        YZ_ASSIGN_OR_RETURN(v.u64_, Read<uint16_t>(what));
        return v;
      }
      case GgufValueType::kInt16: {
        YZ_ASSIGN_OR_RETURN(v.i64_, Read<int16_t>(what));
        return v;
      }
      case GgufValueType::kUint32: {
        YZ_ASSIGN_OR_RETURN(v.u64_, Read<uint32_t>(what));
        return v;
      }
      case GgufValueType::kInt32: {
        YZ_ASSIGN_OR_RETURN(v.i64_, Read<int32_t>(what));
        return v;
      }
      case GgufValueType::kUint64: {
        YZ_ASSIGN_OR_RETURN(v.u64_, Read<uint64_t>(what));
        return v;
      }
      case GgufValueType::kInt64: {
        YZ_ASSIGN_OR_RETURN(v.i64_, Read<int64_t>(what));
        return v;
      }
      case GgufValueType::kFloat32: {
        YZ_ASSIGN_OR_RETURN(v.f64_, Read<float>(what));
        return v;
      }
      case GgufValueType::kFloat64: {
        YZ_ASSIGN_OR_RETURN(v.f64_, Read<double>(what));
        return v;
      }
      case GgufValueType::kBool: {
        // Writers store 0 or 1; any other byte is read as true rather than rejected.
        YZ_ASSIGN_OR_RETURN(const uint8_t b, Read<uint8_t>(what));
        v.u64_ = b != 0 ? 1 : 0;
        return v;
      }
      case GgufValueType::kString: {
        YZ_ASSIGN_OR_RETURN(std::string_view s, ReadString(what));
        v.bytes_ = reinterpret_cast<const uint8_t*>(s.data());
        v.size_ = s.size();
        return v;
      }
      case GgufValueType::kArray:
        return ReadArray(v, what, depth);
    }
    return Malformed(fmt::format("{} has unknown value type", what));
  }

  // Parses the whole file into `state` (whose `bytes` and `name` are set).
  Status ParseFile(GgufFile::State* state);

 private:
  Result<GgufValue> ReadArray(GgufValue v, std::string_view what, int depth) {
    if (depth >= max_depth_) {
      return Malformed(fmt::format("{} nests arrays deeper than {} levels", what, max_depth_));
    }
    YZ_ASSIGN_OR_RETURN(v.array_type_, ReadType(what));
    YZ_ASSIGN_OR_RETURN(v.array_size_, Read<uint64_t>(what));
    const uint64_t start = pos_;
    const uint64_t fixed = FixedSize(v.array_type_);
    const uint64_t min_element =
        fixed != 0 ? fixed
                   : (v.array_type_ == GgufValueType::kString ? kMinStringBytes : kMinArrayBytes);
    if (v.array_size_ > remaining() / min_element) {
      return Malformed(fmt::format(
          "{} is an array of {} {} elements at offset {}, which cannot "
          "fit in the {} bytes that remain",
          what, v.array_size_, GgufValueTypeName(v.array_type_), base_ + start, remaining()));
    }
    if (fixed != 0) {
      pos_ += v.array_size_ * fixed;
    } else if (v.array_type_ == GgufValueType::kString) {
      // The common big case (vocabularies, merges): a tight bounds-checked walk.
      for (uint64_t i = 0; i < v.array_size_; ++i) {
        if (remaining() < 8) return Truncated(what, 8);
        const uint64_t len = Load<uint64_t>(bytes_.data() + pos_);
        pos_ += 8;
        if (len > remaining()) {
          return Malformed(
              fmt::format("{}: string #{} has length {} at offset {}, past the end "
                          "of the file ({} bytes remain)",
                          what, i, len, base_ + pos_ - 8, remaining()));
        }
        pos_ += len;
      }
    } else {
      // Variable-size elements: walk them once so that the whole array is known to be in bounds.
      for (uint64_t i = 0; i < v.array_size_; ++i) {
        YZ_RETURN_IF_ERROR(ReadValue(v.array_type_, v.key_, what, depth + 1));
      }
    }
    v.bytes_ = bytes_.data() + start;
    v.size_ = pos_ - start;
    return v;
  }

  std::span<const uint8_t> bytes_;
  uint64_t base_;  // offset of bytes_[0] in the file, for messages
  const std::string* name_;
  int max_depth_;
  uint64_t pos_ = 0;
};

Status GgufParser::ParseFile(GgufFile::State* state) {
  // ---- header
  if (bytes_.size() < 4) return Truncated("the magic number", 4);
  YZ_ASSIGN_OR_RETURN(const uint32_t magic, Read<uint32_t>("the magic number"));
  if (magic != kMagic) {
    return Malformed(
        fmt::format("not a GGUF file (bad magic {:02x} {:02x} {:02x} {:02x}, "
                    "expected \"GGUF\")",
                    bytes_[0], bytes_[1], bytes_[2], bytes_[3]));
  }
  YZ_ASSIGN_OR_RETURN(const uint32_t version, Read<uint32_t>("the version"));
  if (version != 2 && version != 3) {
    if ((version & 0xFFFFu) == 0 && version != 0) {
      return Malformed(
          fmt::format("big-endian GGUF files are not supported (version field "
                      "reads {} when byte-swapped)",
                      __builtin_bswap32(version)));
    }
    if (version == 1) {
      return Malformed(
          "GGUF version 1 is not supported (only versions 2 and 3); convert the "
          "file again with a current llama.cpp");
    }
    return Malformed(fmt::format("unsupported GGUF version {} (only versions 2 and 3)", version));
  }
  state->version = version;
  YZ_ASSIGN_OR_RETURN(const uint64_t n_tensors, Read<uint64_t>("the tensor count"));
  YZ_ASSIGN_OR_RETURN(const uint64_t n_kv, Read<uint64_t>("the metadata count"));
  if (n_kv > remaining() / kMinKvBytes) {
    return Malformed(
        fmt::format("header claims {} metadata entries, which cannot fit in the {} "
                    "bytes that follow",
                    n_kv, remaining()));
  }
  if (n_tensors > remaining() / kMinTensorInfoBytes) {
    return Malformed(
        fmt::format("header claims {} tensors, which cannot fit in the {} bytes "
                    "that follow",
                    n_tensors, remaining()));
  }

  // ---- metadata
  // Reserve only a little up front: the count is not trusted yet (each entry actually parsed
  // consumes file bytes, which is what bounds the memory used).
  state->metadata.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv, 1024)));
  for (uint64_t i = 0; i < n_kv; ++i) {
    YZ_ASSIGN_OR_RETURN(std::string_view key,
                        ReadString(fmt::format("the key of metadata entry #{}", i)));
    const std::string what = fmt::format("metadata key '{}'", key);
    YZ_ASSIGN_OR_RETURN(const GgufValueType type, ReadType(what));
    YZ_ASSIGN_OR_RETURN(GgufValue value, ReadValue(type, key, what, 0));
    if (!state->key_index.emplace(key, state->metadata.size()).second) {
      return Malformed(fmt::format("duplicate metadata key '{}'", key));
    }
    state->metadata.push_back({key, value});
  }

  if (auto it = state->key_index.find("general.alignment"); it != state->key_index.end()) {
    const GgufValue& v = state->metadata[it->second].value;
    auto alignment = v.AsU32();
    if (!alignment) return std::move(alignment).error();
    if (*alignment == 0 || (*alignment & (*alignment - 1)) != 0) {
      return Malformed(
          fmt::format("general.alignment is {}, which is not a power of two", *alignment));
    }
    state->alignment = *alignment;
  }

  // ---- tensor infos
  state->tensors.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors, 1024)));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    YZ_ASSIGN_OR_RETURN(t.name, ReadString(fmt::format("the name of tensor #{}", i)));
    const std::string what = fmt::format("tensor '{}'", t.name);
    YZ_ASSIGN_OR_RETURN(const uint32_t n_dims, Read<uint32_t>(what));
    if (n_dims > static_cast<uint32_t>(kMaxDims)) {
      return Malformed(
          fmt::format("{} has {} dimensions (at most {} are allowed)", what, n_dims, kMaxDims));
    }
    t.n_dims = static_cast<int>(n_dims);
    // The product is taken over max(dim, 1) so that a zero dimension cannot hide an overflow of
    // the others: every partial product a consumer may form (ne[0] * ne[1], n_rows, ...) fits.
    int64_t n_elements = 1;
    int64_t product = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      YZ_ASSIGN_OR_RETURN(const uint64_t dim, Read<uint64_t>(what));
      if (dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          __builtin_mul_overflow(product, std::max<int64_t>(static_cast<int64_t>(dim), 1),
                                 &product)) {
        return Malformed(fmt::format("{}: dimensions overflow (dim {} is {})", what, d, dim));
      }
      n_elements *= static_cast<int64_t>(dim);  // <= product: cannot overflow
      t.ne[d] = static_cast<int64_t>(dim);
    }
    YZ_ASSIGN_OR_RETURN(const uint32_t type_id, Read<uint32_t>(what));
    const TypeTraits* traits = FindTraitsByGgmlId(type_id);
    if (traits == nullptr) {
      return Malformed(
          fmt::format("{} has unknown tensor type id {} (newer than this build, or "
                      "not a GGML type)",
                      what, type_id));
    }
    t.type = traits->type;
    YZ_ASSIGN_OR_RETURN(t.offset_bytes, Read<uint64_t>(what));
    if (t.ne[0] % traits->block_size != 0) {
      return Malformed(fmt::format("{}: row length {} is not a multiple of the {} block size {}",
                                   what, t.ne[0], traits->name, traits->block_size));
    }
    int64_t max_bytes = 0;  // the size if no dimension were zero; must fit in int64_t
    if (__builtin_mul_overflow(product / traits->block_size, traits->block_bytes, &max_bytes)) {
      return Malformed(fmt::format("{}: size in bytes overflows", what));
    }
    t.size_bytes = static_cast<uint64_t>(n_elements / traits->block_size * traits->block_bytes);
    if (!state->tensor_index.emplace(t.name, state->tensors.size()).second) {
      return Malformed(fmt::format("duplicate tensor name '{}'", t.name));
    }
    state->tensors.push_back(t);
  }

  // ---- data section
  const uint64_t file_size = bytes_.size();
  state->data_offset = AlignUp(pos_, state->alignment);  // pos_ <= file size: cannot overflow
  if (n_tensors > 0 && state->data_offset > file_size) {
    return Malformed(
        fmt::format("truncated file: the data section starts at offset {}, past "
                    "the end of the file ({} bytes)",
                    state->data_offset, file_size));
  }
  const uint64_t data_size = n_tensors > 0 ? file_size - state->data_offset : 0;
  for (GgufTensorInfo& t : state->tensors) {
    if (t.offset_bytes % state->alignment != 0) {
      return Malformed(
          fmt::format("tensor '{}' data offset {} is not a multiple of the "
                      "alignment {}",
                      t.name, t.offset_bytes, state->alignment));
    }
    if (t.offset_bytes > data_size || t.size_bytes > data_size - t.offset_bytes) {
      return Malformed(
          fmt::format("tensor '{}' data [{}, +{}) runs past the end of the file "
                      "(the data section has {} bytes; the file may be truncated)",
                      t.name, t.offset_bytes, t.size_bytes, data_size));
    }
    t.data = bytes_.data() + state->data_offset + t.offset_bytes;
  }
  std::vector<size_t> order(state->tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return state->tensors[a].offset_bytes < state->tensors[b].offset_bytes;
  });
  const GgufTensorInfo* prev = nullptr;
  for (size_t i : order) {
    const GgufTensorInfo& t = state->tensors[i];
    if (t.size_bytes == 0) continue;
    if (prev != nullptr && prev->offset_bytes + prev->size_bytes > t.offset_bytes) {
      return Malformed(fmt::format("tensors '{}' and '{}' overlap (data [{}, +{}) and [{}, +{}))",
                                   prev->name, t.name, prev->offset_bytes, prev->size_bytes,
                                   t.offset_bytes, t.size_bytes));
    }
    prev = &t;
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------------------------
// GgufValue

Error GgufValue::TypeError(std::string_view wanted) const {
  const std::string file = file_name_ != nullptr ? *file_name_ : std::string("gguf");
  std::string actual(GgufValueTypeName(type_));
  if (type_ == GgufValueType::kArray) {
    actual = fmt::format("array of {}", GgufValueTypeName(array_type_));
  }
  return InvalidArgumentError(
      fmt::format("{}: metadata key '{}' has type {}, expected {}", file, key_, actual, wanted));
}

Result<uint64_t> GgufValue::UnsignedValue(std::string_view wanted) const {
  if (IsUnsignedType(type_)) return u64_;
  if (IsSignedType(type_)) {
    if (i64_ < 0) {
      return InvalidArgumentError(fmt::format("{}: metadata key '{}' is {}, which does not fit {}",
                                              file_name_ != nullptr ? *file_name_ : "gguf", key_,
                                              i64_, wanted));
    }
    return static_cast<uint64_t>(i64_);
  }
  return TypeError(wanted);
}

Result<int64_t> GgufValue::SignedValue(std::string_view wanted) const {
  if (IsSignedType(type_)) return i64_;
  if (IsUnsignedType(type_)) {
    if (u64_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidArgumentError(fmt::format("{}: metadata key '{}' is {}, which does not fit {}",
                                              file_name_ != nullptr ? *file_name_ : "gguf", key_,
                                              u64_, wanted));
    }
    return static_cast<int64_t>(u64_);
  }
  return TypeError(wanted);
}

namespace {

template <typename T>
Result<T> NarrowUnsigned(Result<uint64_t> v, const std::string* file, std::string_view key,
                         std::string_view wanted) {
  if (!v) return std::move(v).error();
  if (*v > std::numeric_limits<T>::max()) {
    return InvalidArgumentError(fmt::format("{}: metadata key '{}' is {}, which does not fit {}",
                                            file != nullptr ? *file : "gguf", key, *v, wanted));
  }
  return static_cast<T>(*v);
}

template <typename T>
Result<T> NarrowSigned(Result<int64_t> v, const std::string* file, std::string_view key,
                       std::string_view wanted) {
  if (!v) return std::move(v).error();
  if (*v > std::numeric_limits<T>::max() || *v < std::numeric_limits<T>::min()) {
    return InvalidArgumentError(fmt::format("{}: metadata key '{}' is {}, which does not fit {}",
                                            file != nullptr ? *file : "gguf", key, *v, wanted));
  }
  return static_cast<T>(*v);
}

}  // namespace

Result<uint8_t> GgufValue::AsU8() const {
  return NarrowUnsigned<uint8_t>(UnsignedValue("uint8"), file_name_, key_, "uint8");
}
Result<uint16_t> GgufValue::AsU16() const {
  return NarrowUnsigned<uint16_t>(UnsignedValue("uint16"), file_name_, key_, "uint16");
}
Result<uint32_t> GgufValue::AsU32() const {
  return NarrowUnsigned<uint32_t>(UnsignedValue("uint32"), file_name_, key_, "uint32");
}
Result<uint64_t> GgufValue::AsU64() const { return UnsignedValue("uint64"); }
Result<int8_t> GgufValue::AsI8() const {
  return NarrowSigned<int8_t>(SignedValue("int8"), file_name_, key_, "int8");
}
Result<int16_t> GgufValue::AsI16() const {
  return NarrowSigned<int16_t>(SignedValue("int16"), file_name_, key_, "int16");
}
Result<int32_t> GgufValue::AsI32() const {
  return NarrowSigned<int32_t>(SignedValue("int32"), file_name_, key_, "int32");
}
Result<int64_t> GgufValue::AsI64() const { return SignedValue("int64"); }

Result<float> GgufValue::AsF32() const {
  if (type_ == GgufValueType::kFloat32 || type_ == GgufValueType::kFloat64) {
    return static_cast<float>(f64_);
  }
  return TypeError("float32");
}

Result<double> GgufValue::AsF64() const {
  if (type_ == GgufValueType::kFloat32 || type_ == GgufValueType::kFloat64) return f64_;
  return TypeError("float64");
}

Result<bool> GgufValue::AsBool() const {
  if (type_ == GgufValueType::kBool) return u64_ != 0;
  return TypeError("bool");
}

Result<std::string_view> GgufValue::AsString() const {
  if (type_ == GgufValueType::kString) {
    return std::string_view(reinterpret_cast<const char*>(bytes_), static_cast<size_t>(size_));
  }
  return TypeError("string");
}

namespace {

// Decodes the elements of an array one by one, calling `fn(const GgufValue&) -> Status`.
// The elements were validated when the file was opened; decoding them again through the
// bounds-checked parser costs little and keeps this safe even for a hand-built value.
template <typename Fn>
Status ForEachElement(const GgufValue& array, const uint8_t* bytes, uint64_t size,
                      const std::string* file_name, std::string_view key, Fn&& fn) {
  static const std::string kUnnamed = "gguf";
  GgufParser parser(std::span<const uint8_t>(bytes, static_cast<size_t>(size)), 0,
                    file_name != nullptr ? file_name : &kUnnamed, std::numeric_limits<int>::max());
  const std::string what = fmt::format("metadata key '{}' element", key);
  for (uint64_t i = 0; i < array.array_size(); ++i) {
    YZ_ASSIGN_OR_RETURN(const GgufValue element,
                        parser.ReadValue(array.array_type(), key, what, 0));
    YZ_RETURN_IF_ERROR(fn(element));
  }
  return OkStatus();
}

}  // namespace

Result<std::vector<GgufValue>> GgufValue::AsArray() const {
  if (type_ != GgufValueType::kArray) return TypeError("array");
  std::vector<GgufValue> out;
  // Every element occupies at least one byte, so this reserve is bounded by the file size.
  out.reserve(static_cast<size_t>(std::min<uint64_t>(array_size_, size_)));
  YZ_RETURN_IF_ERROR(
      ForEachElement(*this, bytes_, size_, file_name_, key_, [&](const GgufValue& e) -> Status {
        out.push_back(e);
        return OkStatus();
      }));
  return out;
}

template <typename T>
Result<std::vector<T>> GgufValue::ConvertArray(Result<T> (GgufValue::*convert)() const) const {
  if (type_ != GgufValueType::kArray) return TypeError("array");
  std::vector<T> out;
  out.reserve(static_cast<size_t>(std::min<uint64_t>(array_size_, size_)));
  YZ_RETURN_IF_ERROR(
      ForEachElement(*this, bytes_, size_, file_name_, key_, [&](const GgufValue& e) -> Status {
        Result<T> v = (e.*convert)();
        if (!v) {
          return InvalidArgumentError(fmt::format("{} (in an array)", v.error().message));
        }
        out.push_back(*v);
        return OkStatus();
      }));
  return out;
}

Result<std::vector<std::string_view>> GgufValue::AsStringArray() const {
  if (type_ != GgufValueType::kArray) return TypeError("array of string");
  if (array_type_ != GgufValueType::kString) return TypeError("array of string");
  return ConvertArray<std::string_view>(&GgufValue::AsString);
}
Result<std::vector<uint8_t>> GgufValue::AsU8Array() const {
  return ConvertArray<uint8_t>(&GgufValue::AsU8);
}
Result<std::vector<int32_t>> GgufValue::AsI32Array() const {
  return ConvertArray<int32_t>(&GgufValue::AsI32);
}
Result<std::vector<uint32_t>> GgufValue::AsU32Array() const {
  return ConvertArray<uint32_t>(&GgufValue::AsU32);
}
Result<std::vector<int64_t>> GgufValue::AsI64Array() const {
  return ConvertArray<int64_t>(&GgufValue::AsI64);
}
Result<std::vector<uint64_t>> GgufValue::AsU64Array() const {
  return ConvertArray<uint64_t>(&GgufValue::AsU64);
}
Result<std::vector<float>> GgufValue::AsF32Array() const {
  return ConvertArray<float>(&GgufValue::AsF32);
}
Result<std::vector<double>> GgufValue::AsF64Array() const {
  return ConvertArray<double>(&GgufValue::AsF64);
}
Result<std::vector<bool>> GgufValue::AsBoolArray() const {
  if (type_ != GgufValueType::kArray) return TypeError("array");
  std::vector<bool> out;
  out.reserve(static_cast<size_t>(std::min<uint64_t>(array_size_, size_)));
  YZ_RETURN_IF_ERROR(
      ForEachElement(*this, bytes_, size_, file_name_, key_, [&](const GgufValue& e) -> Status {
        YZ_ASSIGN_OR_RETURN(const bool b, e.AsBool());
        out.push_back(b);
        return OkStatus();
      }));
  return out;
}

// ---------------------------------------------------------------------------------------------
// GgufFile

GgufFile::GgufFile(std::unique_ptr<State> state) : state_(std::move(state)) {}
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

Result<GgufFile> GgufFile::FromMemory(std::span<const uint8_t> bytes, std::string name,
                                      const GgufOpenOptions& options) {
  auto state = std::make_unique<State>();
  state->name = std::move(name);
  state->bytes = bytes;
  GgufParser parser(bytes, 0, &state->name, std::max(options.max_array_depth, 1));
  YZ_RETURN_IF_ERROR(parser.ParseFile(state.get()));
  return GgufFile(std::move(state));
}

Result<GgufFile> GgufFile::Open(const std::string& path, const GgufOpenOptions& options) {
  YZ_ASSIGN_OR_RETURN(MappedFile mapping, MappedFile::Open(path));
  auto state = std::make_unique<State>();
  state->name = path;
  state->bytes = mapping.bytes();
  state->mapping = std::move(mapping);  // the mapped address does not change
  // Tensors are streamed every token: 2 MiB pages where the system gives them, asked for before
  // the first touch so the page cache is filled in 2 MiB folios. The header and metadata are
  // read front to back once.
  state->mapping.Advise(MappedFile::Advice::kHugePages);
  state->mapping.Advise(MappedFile::Advice::kSequential);
  GgufParser parser(state->bytes, 0, &state->name, std::max(options.max_array_depth, 1));
  YZ_RETURN_IF_ERROR(parser.ParseFile(state.get()));
  state->mapping.Advise(MappedFile::Advice::kNormal);
  if (options.prefetch) {
    state->mapping.Advise(MappedFile::Advice::kWillNeed, state->data_offset);
  }
  return GgufFile(std::move(state));
}

const std::string& GgufFile::name() const { return state_->name; }
uint32_t GgufFile::version() const { return state_->version; }
uint32_t GgufFile::alignment_bytes() const { return state_->alignment; }
uint64_t GgufFile::data_offset_bytes() const { return state_->data_offset; }
uint64_t GgufFile::file_size_bytes() const { return state_->bytes.size(); }

const std::vector<GgufMetadataEntry>& GgufFile::metadata() const { return state_->metadata; }

const GgufValue* GgufFile::FindValue(std::string_view key) const {
  auto it = state_->key_index.find(key);
  return it == state_->key_index.end() ? nullptr : &state_->metadata[it->second].value;
}

Result<GgufValue> GgufFile::Get(std::string_view key) const {
  const GgufValue* v = FindValue(key);
  if (v == nullptr) {
    return NotFoundError(fmt::format("{}: metadata key '{}' not found", state_->name, key));
  }
  return *v;
}

#define YZ_GGUF_GETTER(Type, Name, As)                      \
  Result<Type> GgufFile::Name(std::string_view key) const { \
    YZ_ASSIGN_OR_RETURN(const GgufValue v, Get(key));       \
    return v.As();                                          \
  }
YZ_GGUF_GETTER(std::string_view, GetString, AsString)
YZ_GGUF_GETTER(bool, GetBool, AsBool)
YZ_GGUF_GETTER(uint32_t, GetU32, AsU32)
YZ_GGUF_GETTER(int32_t, GetI32, AsI32)
YZ_GGUF_GETTER(uint64_t, GetU64, AsU64)
YZ_GGUF_GETTER(int64_t, GetI64, AsI64)
YZ_GGUF_GETTER(float, GetF32, AsF32)
YZ_GGUF_GETTER(double, GetF64, AsF64)
YZ_GGUF_GETTER(std::vector<std::string_view>, GetStringArray, AsStringArray)
YZ_GGUF_GETTER(std::vector<int32_t>, GetI32Array, AsI32Array)
YZ_GGUF_GETTER(std::vector<uint32_t>, GetU32Array, AsU32Array)
YZ_GGUF_GETTER(std::vector<float>, GetF32Array, AsF32Array)
YZ_GGUF_GETTER(std::vector<GgufValue>, GetArray, AsArray)
#undef YZ_GGUF_GETTER

const std::vector<GgufTensorInfo>& GgufFile::tensors() const { return state_->tensors; }

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = state_->tensor_index.find(name);
  return it == state_->tensor_index.end() ? nullptr : &state_->tensors[it->second];
}

Result<TensorView> GgufFile::GetTensor(std::string_view name) const {
  const GgufTensorInfo* t = FindTensor(name);
  if (t == nullptr) {
    return NotFoundError(fmt::format("{}: tensor '{}' not found", state_->name, name));
  }
  YZ_RETURN_IF_ERROR(CheckSupported(t->type, t->name));
  TensorView view;
  view.name = t->name;
  view.type = t->type;
  view.n_dims = t->n_dims;
  view.ne = t->ne;
  view.data = t->data;
  view.size_bytes = t->size_bytes;
  return view;
}

void GgufFile::Advise(MappedFile::Advice advice) const { state_->mapping.Advise(advice); }

// ---------------------------------------------------------------------------------------------
// GgufWriter

GgufWriter::Array::Array(GgufValueType element_type) : element_type_(element_type) {}

void GgufWriter::Array::Expect(GgufValueType type) {
  // Mixing element types is a programmer error: arrays are homogeneous in GGUF.
  YZ_CHECK(type == element_type_);
  ++size_;
}

GgufWriter::Array& GgufWriter::Array::AddU8(uint8_t v) {
  Expect(GgufValueType::kUint8);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddI8(int8_t v) {
  Expect(GgufValueType::kInt8);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddU16(uint16_t v) {
  Expect(GgufValueType::kUint16);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddI16(int16_t v) {
  Expect(GgufValueType::kInt16);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddU32(uint32_t v) {
  Expect(GgufValueType::kUint32);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddI32(int32_t v) {
  Expect(GgufValueType::kInt32);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddU64(uint64_t v) {
  Expect(GgufValueType::kUint64);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddI64(int64_t v) {
  Expect(GgufValueType::kInt64);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddF32(float v) {
  Expect(GgufValueType::kFloat32);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddF64(double v) {
  Expect(GgufValueType::kFloat64);
  Append(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddBool(bool v) {
  Expect(GgufValueType::kBool);
  Append<uint8_t>(encoded_, v ? 1 : 0);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddString(std::string_view v) {
  Expect(GgufValueType::kString);
  AppendString(encoded_, v);
  return *this;
}
GgufWriter::Array& GgufWriter::Array::AddArray(const Array& v) {
  Expect(GgufValueType::kArray);
  Append<uint32_t>(encoded_, static_cast<uint32_t>(v.element_type_));
  Append<uint64_t>(encoded_, v.size_);
  encoded_ += v.encoded_;
  return *this;
}

struct GgufWriter::Impl {
  struct Kv {
    std::string key;
    GgufValueType type;
    std::string encoded;  // the value, without key and type
  };
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> ne;
    std::span<const uint8_t> data;
    std::vector<uint8_t> owned;
  };

  Options options;
  std::vector<Kv> kvs;
  std::unordered_map<std::string, size_t> kv_index;
  std::vector<Tensor> tensors;
  std::unordered_map<std::string, size_t> tensor_index;

  void Set(std::string_view key, GgufValueType type, std::string encoded) {
    auto it = kv_index.find(std::string(key));
    if (it != kv_index.end()) {
      kvs[it->second].type = type;
      kvs[it->second].encoded = std::move(encoded);
      return;
    }
    kv_index.emplace(std::string(key), kvs.size());
    kvs.push_back({std::string(key), type, std::move(encoded)});
  }

  Status AddTensor(std::string_view name, TensorType type, std::span<const int64_t> ne,
                   std::span<const uint8_t> data, std::vector<uint8_t> owned);

  // Header, metadata, tensor infos and the padding up to the data section.
  Result<std::string> Head() const;
};

namespace {
template <typename T>
std::string Encode(T v) {
  std::string s;
  Append(s, v);
  return s;
}
}  // namespace

GgufWriter::GgufWriter() : GgufWriter(Options{}) {}
GgufWriter::GgufWriter(Options options) : impl_(std::make_unique<Impl>()) {
  YZ_CHECK(options.alignment_bytes != 0 &&
           (options.alignment_bytes & (options.alignment_bytes - 1)) == 0);
  impl_->options = options;
}
GgufWriter::~GgufWriter() = default;
GgufWriter::GgufWriter(GgufWriter&&) noexcept = default;
GgufWriter& GgufWriter::operator=(GgufWriter&&) noexcept = default;

void GgufWriter::SetU8(std::string_view k, uint8_t v) {
  impl_->Set(k, GgufValueType::kUint8, Encode(v));
}
void GgufWriter::SetI8(std::string_view k, int8_t v) {
  impl_->Set(k, GgufValueType::kInt8, Encode(v));
}
void GgufWriter::SetU16(std::string_view k, uint16_t v) {
  impl_->Set(k, GgufValueType::kUint16, Encode(v));
}
void GgufWriter::SetI16(std::string_view k, int16_t v) {
  impl_->Set(k, GgufValueType::kInt16, Encode(v));
}
void GgufWriter::SetU32(std::string_view k, uint32_t v) {
  impl_->Set(k, GgufValueType::kUint32, Encode(v));
}
void GgufWriter::SetI32(std::string_view k, int32_t v) {
  impl_->Set(k, GgufValueType::kInt32, Encode(v));
}
void GgufWriter::SetU64(std::string_view k, uint64_t v) {
  impl_->Set(k, GgufValueType::kUint64, Encode(v));
}
void GgufWriter::SetI64(std::string_view k, int64_t v) {
  impl_->Set(k, GgufValueType::kInt64, Encode(v));
}
void GgufWriter::SetF32(std::string_view k, float v) {
  impl_->Set(k, GgufValueType::kFloat32, Encode(v));
}
void GgufWriter::SetF64(std::string_view k, double v) {
  impl_->Set(k, GgufValueType::kFloat64, Encode(v));
}
void GgufWriter::SetBool(std::string_view k, bool v) {
  impl_->Set(k, GgufValueType::kBool, Encode<uint8_t>(v ? 1 : 0));
}
void GgufWriter::SetString(std::string_view k, std::string_view v) {
  std::string s;
  AppendString(s, v);
  impl_->Set(k, GgufValueType::kString, std::move(s));
}
void GgufWriter::SetArray(std::string_view k, const Array& v) {
  std::string s;
  Append<uint32_t>(s, static_cast<uint32_t>(v.element_type_));
  Append<uint64_t>(s, v.size_);
  s += v.encoded_;
  impl_->Set(k, GgufValueType::kArray, std::move(s));
}
void GgufWriter::SetStringArray(std::string_view k, std::span<const std::string> values) {
  Array a(GgufValueType::kString);
  for (const std::string& v : values) a.AddString(v);
  SetArray(k, a);
}
void GgufWriter::SetStringArray(std::string_view k, std::span<const std::string_view> values) {
  Array a(GgufValueType::kString);
  for (std::string_view v : values) a.AddString(v);
  SetArray(k, a);
}
void GgufWriter::SetF32Array(std::string_view k, std::span<const float> values) {
  Array a(GgufValueType::kFloat32);
  for (float v : values) a.AddF32(v);
  SetArray(k, a);
}
void GgufWriter::SetI32Array(std::string_view k, std::span<const int32_t> values) {
  Array a(GgufValueType::kInt32);
  for (int32_t v : values) a.AddI32(v);
  SetArray(k, a);
}
void GgufWriter::SetU32Array(std::string_view k, std::span<const uint32_t> values) {
  Array a(GgufValueType::kUint32);
  for (uint32_t v : values) a.AddU32(v);
  SetArray(k, a);
}

Status GgufWriter::Impl::AddTensor(std::string_view name, TensorType type,
                                   std::span<const int64_t> ne, std::span<const uint8_t> data,
                                   std::vector<uint8_t> owned) {
  const std::string label = fmt::format("tensor '{}'", name);
  if (tensor_index.contains(std::string(name))) {
    return InvalidArgumentError(fmt::format("duplicate {}", label));
  }
  if (ne.size() > static_cast<size_t>(kMaxDims)) {
    return InvalidArgumentError(fmt::format("{} has {} dims (max {})", label, ne.size(), kMaxDims));
  }
  int64_t n_elements = 1;
  int64_t product = 1;  // over max(d, 1): a zero must not hide an overflow of the others
  for (int64_t d : ne) {
    if (d < 0 || __builtin_mul_overflow(product, std::max<int64_t>(d, 1), &product)) {
      return InvalidArgumentError(fmt::format("{}: negative or overflowing dimension", label));
    }
    n_elements *= d;
  }
  const int64_t row = ne.empty() ? 1 : ne[0];
  if (!IsValidRowLength(type, row)) {
    return InvalidArgumentError(
        fmt::format("{}: row length {} is not a multiple of the {} "
                    "block size {}",
                    label, row, TypeName(type), Traits(type).block_size));
  }
  const TypeTraits& traits = Traits(type);
  uint64_t expected = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(n_elements / traits.block_size),
                             static_cast<uint64_t>(traits.block_bytes), &expected)) {
    return InvalidArgumentError(fmt::format("{}: size overflows", label));
  }
  if (data.size() != expected) {
    return InvalidArgumentError(
        fmt::format("{}: {} bytes of data given, but a {} tensor of "
                    "this shape has {} bytes",
                    label, data.size(), TypeName(type), expected));
  }
  tensor_index.emplace(std::string(name), tensors.size());
  Tensor t{std::string(name), type, std::vector<int64_t>(ne.begin(), ne.end()), data,
           std::move(owned)};
  if (!t.owned.empty()) t.data = std::span<const uint8_t>(t.owned);
  tensors.push_back(std::move(t));
  return OkStatus();
}

Status GgufWriter::AddTensor(std::string_view name, TensorType type, std::span<const int64_t> ne,
                             std::span<const uint8_t> data) {
  return impl_->AddTensor(name, type, ne, data, {});
}

Status GgufWriter::AddTensor(std::string_view name, TensorType type, std::span<const int64_t> ne,
                             std::vector<uint8_t>&& data) {
  const std::span<const uint8_t> view(data);
  return impl_->AddTensor(name, type, ne, view, std::move(data));
}

Result<std::string> GgufWriter::Impl::Head() const {
  const uint32_t alignment = options.alignment_bytes;
  const bool has_alignment_key = kv_index.contains("general.alignment");
  if (has_alignment_key) {
    const Kv& kv = kvs[kv_index.at("general.alignment")];
    if (kv.type != GgufValueType::kUint32 ||
        Load<uint32_t>(reinterpret_cast<const uint8_t*>(kv.encoded.data())) != alignment) {
      return InvalidArgumentError(
          fmt::format("general.alignment must be a uint32 equal to "
                      "GgufWriter::Options::alignment_bytes ({})",
                      alignment));
    }
  }
  const bool add_alignment_key = !has_alignment_key && alignment != kGgufDefaultAlignment;

  std::string out;
  Append<uint32_t>(out, kMagic);
  Append<uint32_t>(out, 3);
  Append<uint64_t>(out, tensors.size());
  Append<uint64_t>(out, kvs.size() + (add_alignment_key ? 1 : 0));
  if (add_alignment_key) {
    AppendString(out, "general.alignment");
    Append<uint32_t>(out, static_cast<uint32_t>(GgufValueType::kUint32));
    Append<uint32_t>(out, alignment);
  }
  for (const Kv& kv : kvs) {
    AppendString(out, kv.key);
    Append<uint32_t>(out, static_cast<uint32_t>(kv.type));
    out += kv.encoded;
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors) {
    AppendString(out, t.name);
    Append<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) Append<uint64_t>(out, static_cast<uint64_t>(d));
    Append<uint32_t>(out, static_cast<uint32_t>(t.type));
    Append<uint64_t>(out, offset);
    offset += AlignUp(t.data.size(), alignment);
  }
  out.resize(AlignUp(out.size(), alignment), '\0');
  return out;
}

Result<std::string> GgufWriter::Serialize() const {
  YZ_ASSIGN_OR_RETURN(std::string out, impl_->Head());
  for (const Impl::Tensor& t : impl_->tensors) {
    out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
    out.resize(AlignUp(out.size(), impl_->options.alignment_bytes), '\0');
  }
  return out;
}

Status GgufWriter::WriteFile(const std::string& path) const {
  YZ_ASSIGN_OR_RETURN(const std::string head, impl_->Head());
  YZ_ASSIGN_OR_RETURN(internal::AtomicFileWriter file, internal::AtomicFileWriter::Create(path));
  YZ_RETURN_IF_ERROR(file.Append(head));
  for (const Impl::Tensor& t : impl_->tensors) {
    YZ_RETURN_IF_ERROR(file.Append(t.data));
    YZ_RETURN_IF_ERROR(
        file.AppendZeros(AlignUp(t.data.size(), impl_->options.alignment_bytes) - t.data.size()));
  }
  return file.Commit();
}

}  // namespace yunzhi::engine
