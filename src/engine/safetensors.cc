#include "yunzhi/engine/safetensors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <numeric>
#include <unordered_map>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <sys/stat.h>

#include "yunzhi/engine/mapped_file.h"

#include "engine/atomic_file.h"

namespace yunzhi::engine {
namespace json = boost::json;

namespace {

struct DtypeInfo {
  std::string_view name;
  int bits;
};

// Every dtype of the safetensors format (including the newer sub-byte float formats).
constexpr std::array kDtypes = {
    DtypeInfo{"BOOL", 8},    DtypeInfo{"U8", 8},      DtypeInfo{"I8", 8},
    DtypeInfo{"F8_E5M2", 8}, DtypeInfo{"F8_E4M3", 8}, DtypeInfo{"F8_E8M0", 8},
    DtypeInfo{"I16", 16},    DtypeInfo{"U16", 16},    DtypeInfo{"F16", 16},
    DtypeInfo{"BF16", 16},   DtypeInfo{"I32", 32},    DtypeInfo{"U32", 32},
    DtypeInfo{"F32", 32},    DtypeInfo{"F64", 64},    DtypeInfo{"I64", 64},
    DtypeInfo{"U64", 64},    DtypeInfo{"C64", 64},    DtypeInfo{"F4", 4},
    DtypeInfo{"F6_E2M3", 6}, DtypeInfo{"F6_E3M2", 6},
};

constexpr std::string_view kMetadataKey = "__metadata__";
constexpr std::string_view kSupportedDtypes = "F32, F16, BF16";

std::string_view TypeToDtype(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return "F32";
    case TensorType::kF16:
      return "F16";
    case TensorType::kBF16:
      return "BF16";
    default:
      return {};
  }
}

// Bytes of `n_elements` of a dtype of `bits` bits, or nullopt on overflow or a fractional byte.
std::optional<uint64_t> DtypeBytes(int64_t n_elements, int bits) {
  uint64_t total_bits = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(n_elements), static_cast<uint64_t>(bits),
                             &total_bits) ||
      total_bits % 8 != 0) {
    return std::nullopt;
  }
  return total_bits / 8;
}

// A non-negative JSON integer, or nullopt.
std::optional<uint64_t> AsNonNegative(const json::value& v) {
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<uint64_t>(v.get_int64());
  return std::nullopt;
}

// Parses JSON text without exceptions. Errors: kInvalidArgument naming `name` and `what`.
Result<json::value> ParseJson(std::string_view text, const std::string& name,
                              std::string_view what) {
  try {
    json::error_code ec;
    json::parse_options options;
    options.max_depth = 64;
    json::value v = json::parse(text, ec, json::storage_ptr(), options);
    if (ec) {
      return InvalidArgumentError(
          fmt::format("{}: {} is not valid JSON: {}", name, what, ec.message()));
    }
    return v;
  } catch (const std::exception& e) {  // bad_alloc and the like: report, never crash
    return InvalidArgumentError(
        fmt::format("{}: {} could not be parsed: {}", name, what, e.what()));
  }
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string JoinPath(const std::string& dir, std::string_view file) {
  if (dir.empty()) return std::string(file);
  return dir.back() == '/' ? dir + std::string(file) : dir + "/" + std::string(file);
}

std::string DirName(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

std::optional<int> SafetensorsDtypeBits(std::string_view dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.name == dtype) return d.bits;
  }
  return std::nullopt;
}

std::optional<TensorType> SafetensorsDtypeToType(std::string_view dtype) {
  if (dtype == "F32") return TensorType::kF32;
  if (dtype == "F16") return TensorType::kF16;
  if (dtype == "BF16") return TensorType::kBF16;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

namespace {

// Everything parsed from one file; SafetensorsFile::State derives from it.
struct ParsedSafetensors {
  std::string name;
  std::span<const uint8_t> bytes;
  uint64_t header_size = 0;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::vector<SafetensorsTensorInfo> tensors;
  std::unordered_map<std::string_view, size_t> index;
};

Error Malformed(const std::string& name, std::string_view message) {
  return InvalidArgumentError(fmt::format("{}: {}", name, message));
}

Status ParseTensorEntry(const std::string& file, std::string_view tensor, const json::value& v,
                        uint64_t data_size, SafetensorsTensorInfo* out) {
  const std::string what = fmt::format("tensor '{}'", tensor);
  const json::object* obj = v.if_object();
  if (obj == nullptr) return Malformed(file, fmt::format("{}: entry is not a JSON object", what));

  const json::value* dtype = obj->if_contains("dtype");
  if (dtype == nullptr || !dtype->is_string()) {
    return Malformed(file, fmt::format("{}: missing or non-string \"dtype\"", what));
  }
  out->dtype = std::string(dtype->get_string());
  const std::optional<int> bits = SafetensorsDtypeBits(out->dtype);
  if (!bits) return Malformed(file, fmt::format("{}: unknown dtype '{}'", what, out->dtype));
  out->type = SafetensorsDtypeToType(out->dtype);

  const json::value* shape = obj->if_contains("shape");
  if (shape == nullptr || !shape->is_array()) {
    return Malformed(file, fmt::format("{}: missing or non-array \"shape\"", what));
  }
  // As in GGUF, overflow is checked on the product of max(dim, 1), so that a zero dimension
  // cannot hide an overflow of the others, and the byte size of that product must fit too.
  int64_t n_elements = 1;
  int64_t product = 1;
  out->shape.reserve(shape->get_array().size());
  for (const json::value& d : shape->get_array()) {
    const std::optional<uint64_t> dim = AsNonNegative(d);
    if (!dim || *dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        __builtin_mul_overflow(product, std::max<int64_t>(static_cast<int64_t>(*dim), 1),
                               &product)) {
      return Malformed(file, fmt::format("{}: shape {} has a negative, non-integer or "
                                         "overflowing dimension",
                                         what, json::serialize(*shape)));
    }
    n_elements *= static_cast<int64_t>(*dim);
    out->shape.push_back(static_cast<int64_t>(*dim));
  }
  uint64_t max_bits = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(product), static_cast<uint64_t>(*bits),
                             &max_bits) ||
      max_bits / 8 > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Malformed(file, fmt::format("{}: shape {} overflows when counted in bytes", what,
                                       json::serialize(*shape)));
  }

  const json::value* offsets = obj->if_contains("data_offsets");
  const json::array* pair = offsets != nullptr ? offsets->if_array() : nullptr;
  if (pair == nullptr || pair->size() != 2) {
    return Malformed(file, fmt::format("{}: missing \"data_offsets\" [begin, end]", what));
  }
  const std::optional<uint64_t> begin = AsNonNegative((*pair)[0]);
  const std::optional<uint64_t> end = AsNonNegative((*pair)[1]);
  if (!begin || !end || *begin > *end) {
    return Malformed(file, fmt::format("{}: data_offsets {} are not two ordered non-negative "
                                       "integers",
                                       what, json::serialize(*offsets)));
  }
  if (*end > data_size) {
    return Malformed(file, fmt::format("{}: data_offsets [{}, {}) run past the end of the data "
                                       "section ({} bytes; the file may be truncated)",
                                       what, *begin, *end, data_size));
  }
  const std::optional<uint64_t> expected = DtypeBytes(n_elements, *bits);
  if (!expected || *expected != *end - *begin) {
    return Malformed(
        file, fmt::format("{}: data_offsets [{}, {}) hold {} bytes, but shape {} of "
                          "{} needs {}",
                          what, *begin, *end, *end - *begin, json::serialize(*shape), out->dtype,
                          expected ? fmt::format("{}", *expected) : "an overflow"));
  }
  out->offset_bytes = *begin;
  out->size_bytes = *end - *begin;
  return OkStatus();
}

Status ParseSafetensors(ParsedSafetensors* state) {
  const std::string& name = state->name;
  const uint64_t file_size = state->bytes.size();
  if (file_size < 8) {
    return Malformed(name, fmt::format("truncated file: {} bytes, less than the 8-byte header "
                                       "length",
                                       file_size));
  }
  uint64_t n = 0;
  std::memcpy(&n, state->bytes.data(), 8);
  if (n > file_size - 8) {
    return Malformed(name, fmt::format("header length {} runs past the end of the file ({} "
                                       "bytes; not a safetensors file, or truncated)",
                                       n, file_size));
  }
  if (n > kSafetensorsMaxHeaderBytes) {
    return Malformed(name, fmt::format("header length {} exceeds the limit of {} bytes", n,
                                       kSafetensorsMaxHeaderBytes));
  }
  state->header_size = n;
  const std::string_view text(reinterpret_cast<const char*>(state->bytes.data() + 8),
                              static_cast<size_t>(n));
  YZ_ASSIGN_OR_RETURN(json::value header, ParseJson(text, name, "the header"));
  const json::object* root = header.if_object();
  if (root == nullptr) return Malformed(name, "the header is not a JSON object");

  const uint64_t data_size = file_size - 8 - n;
  const uint8_t* data = state->bytes.data() + 8 + n;
  state->tensors.reserve(root->size());
  for (const json::key_value_pair& kv : *root) {
    if (kv.key() == kMetadataKey) {
      const json::object* meta = kv.value().if_object();
      if (meta == nullptr) return Malformed(name, "__metadata__ is not a JSON object");
      for (const json::key_value_pair& m : *meta) {
        if (!m.value().is_string()) {
          return Malformed(name, fmt::format("__metadata__ value of '{}' is not a string",
                                             std::string_view(m.key())));
        }
        state->metadata.emplace_back(std::string(m.key()), std::string(m.value().get_string()));
      }
      continue;
    }
    SafetensorsTensorInfo info;
    info.name = std::string(kv.key());
    YZ_RETURN_IF_ERROR(ParseTensorEntry(name, info.name, kv.value(), data_size, &info));
    info.data = data + info.offset_bytes;
    state->tensors.push_back(std::move(info));
  }
  // Names are unique: the JSON parser keeps one value per key.
  for (size_t i = 0; i < state->tensors.size(); ++i) {
    state->index.emplace(state->tensors[i].name, i);
  }

  std::vector<size_t> order(state->tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return state->tensors[a].offset_bytes < state->tensors[b].offset_bytes;
  });
  const SafetensorsTensorInfo* prev = nullptr;
  for (size_t i : order) {
    const SafetensorsTensorInfo& t = state->tensors[i];
    if (t.size_bytes == 0) continue;
    if (prev != nullptr && prev->offset_bytes + prev->size_bytes > t.offset_bytes) {
      return Malformed(name, fmt::format("tensors '{}' and '{}' overlap (data [{}, {}) and "
                                         "[{}, {}))",
                                         prev->name, t.name, prev->offset_bytes,
                                         prev->offset_bytes + prev->size_bytes, t.offset_bytes,
                                         t.offset_bytes + t.size_bytes));
    }
    prev = &t;
  }
  return OkStatus();
}

Result<TensorView> MakeView(const SafetensorsTensorInfo& t) {
  if (!t.type) {
    return UnimplementedError(
        fmt::format("tensor {} has unsupported dtype {}, which this build "
                    "cannot run (supported: {})",
                    t.name, t.dtype, kSupportedDtypes));
  }
  if (t.shape.size() > static_cast<size_t>(kMaxDims)) {
    return UnimplementedError(fmt::format("tensor {} has {} dimensions; at most {} are supported",
                                          t.name, t.shape.size(), kMaxDims));
  }
  TensorView view;
  view.name = t.name;
  view.type = *t.type;
  view.n_dims = static_cast<int>(t.shape.size());
  for (int i = 0; i < view.n_dims; ++i) {
    view.ne[static_cast<size_t>(i)] = t.shape[t.shape.size() - 1 - static_cast<size_t>(i)];
  }
  view.data = t.data;
  view.size_bytes = t.size_bytes;
  return view;
}

}  // namespace

struct SafetensorsFile::State : ParsedSafetensors {
  MappedFile mapping;  // empty for FromMemory
};

SafetensorsFile::SafetensorsFile(std::unique_ptr<State> state) : state_(std::move(state)) {}
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;
SafetensorsFile::~SafetensorsFile() = default;

Result<SafetensorsFile> SafetensorsFile::FromMemory(std::span<const uint8_t> bytes,
                                                    std::string name) {
  auto state = std::make_unique<State>();
  state->name = std::move(name);
  state->bytes = bytes;
  YZ_RETURN_IF_ERROR(ParseSafetensors(state.get()));
  return SafetensorsFile(std::move(state));
}

Result<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  YZ_ASSIGN_OR_RETURN(MappedFile mapping, MappedFile::Open(path));
  auto state = std::make_unique<State>();
  // Tensors are streamed every token: 2 MiB pages where the system gives them (GgufFile::Open).
  mapping.Advise(MappedFile::Advice::kHugePages);
  state->name = path;
  state->bytes = mapping.bytes();
  state->mapping = std::move(mapping);
  YZ_RETURN_IF_ERROR(ParseSafetensors(state.get()));
  return SafetensorsFile(std::move(state));
}

const std::string& SafetensorsFile::name() const { return state_->name; }
uint64_t SafetensorsFile::header_size_bytes() const { return state_->header_size; }
uint64_t SafetensorsFile::data_offset_bytes() const { return 8 + state_->header_size; }
uint64_t SafetensorsFile::file_size_bytes() const { return state_->bytes.size(); }

const std::vector<std::pair<std::string, std::string>>& SafetensorsFile::metadata() const {
  return state_->metadata;
}

std::optional<std::string_view> SafetensorsFile::FindMetadata(std::string_view key) const {
  for (const auto& [k, v] : state_->metadata) {
    if (k == key) return std::string_view(v);
  }
  return std::nullopt;
}

const std::vector<SafetensorsTensorInfo>& SafetensorsFile::tensors() const {
  return state_->tensors;
}

const SafetensorsTensorInfo* SafetensorsFile::FindTensor(std::string_view name) const {
  auto it = state_->index.find(name);
  return it == state_->index.end() ? nullptr : &state_->tensors[it->second];
}

Result<TensorView> SafetensorsFile::GetTensor(std::string_view name) const {
  const SafetensorsTensorInfo* t = FindTensor(name);
  if (t == nullptr) {
    return NotFoundError(fmt::format("{}: tensor '{}' not found", state_->name, name));
  }
  return MakeView(*t);
}

// ---------------------------------------------------------------------------------------------
// SafetensorsModel

struct SafetensorsModel::State {
  std::string path;
  std::vector<SafetensorsFile> shards;
  std::vector<std::pair<std::string, std::string>> metadata;
  std::vector<std::string_view> names;
  std::unordered_map<std::string_view, const SafetensorsTensorInfo*> tensors;
};

SafetensorsModel::SafetensorsModel(std::unique_ptr<State> state) : state_(std::move(state)) {}
SafetensorsModel::SafetensorsModel(SafetensorsModel&&) noexcept = default;
SafetensorsModel& SafetensorsModel::operator=(SafetensorsModel&&) noexcept = default;
SafetensorsModel::~SafetensorsModel() = default;

namespace {

// Checks that a shard name from an index is a plain file name, so that a hostile index cannot
// make us open files outside the model's directory.
bool IsPlainFileName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

}  // namespace

Result<SafetensorsModel> SafetensorsModel::Open(const std::string& path) {
  std::string target = path;
  if (IsDirectory(path)) {
    const std::string index = JoinPath(path, "model.safetensors.index.json");
    const std::string single = JoinPath(path, "model.safetensors");
    if (IsFile(index)) {
      target = index;
    } else if (IsFile(single)) {
      target = single;
    } else {
      return NotFoundError(
          fmt::format("{}: directory has neither model.safetensors.index.json "
                      "nor model.safetensors",
                      path));
    }
  }

  auto state = std::make_unique<State>();
  state->path = target;
  if (!EndsWith(target, ".json")) {
    YZ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(target));
    state->metadata = file.metadata();
    state->shards.push_back(std::move(file));
  } else {
    YZ_ASSIGN_OR_RETURN(MappedFile mapping, MappedFile::Open(target));
    if (mapping.size() > kSafetensorsMaxHeaderBytes) {
      return Malformed(target, "index file is larger than the 100 MB limit");
    }
    const std::string_view text(reinterpret_cast<const char*>(mapping.data()), mapping.size());
    YZ_ASSIGN_OR_RETURN(json::value index, ParseJson(text, target, "the index"));
    const json::object* root = index.if_object();
    if (root == nullptr) return Malformed(target, "the index is not a JSON object");
    if (const json::value* meta = root->if_contains("metadata"); meta != nullptr) {
      if (const json::object* m = meta->if_object(); m != nullptr) {
        for (const json::key_value_pair& kv : *m) {
          state->metadata.emplace_back(std::string(kv.key()),
                                       kv.value().is_string() ? std::string(kv.value().get_string())
                                                              : json::serialize(kv.value()));
        }
      }
    }
    const json::value* weight_map = root->if_contains("weight_map");
    if (weight_map == nullptr || !weight_map->is_object()) {
      return Malformed(target, "the index has no \"weight_map\" object");
    }
    std::map<std::string, size_t> shard_of_name;  // sorted shard names -> position
    for (const json::key_value_pair& kv : weight_map->get_object()) {
      const json::string* shard = kv.value().if_string();
      if (shard == nullptr || !IsPlainFileName(*shard)) {
        return Malformed(target, fmt::format("weight_map entry '{}' does not name a shard file "
                                             "in the index's directory",
                                             std::string_view(kv.key())));
      }
      shard_of_name.emplace(std::string(*shard), 0);
    }
    const std::string dir = DirName(target);
    for (auto& [shard, position] : shard_of_name) {
      position = state->shards.size();
      YZ_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(JoinPath(dir, shard)));
      state->shards.push_back(std::move(file));
    }
    for (const json::key_value_pair& kv : weight_map->get_object()) {
      const std::string shard(kv.value().get_string());
      const SafetensorsFile& file = state->shards[shard_of_name.at(shard)];
      if (file.FindTensor(kv.key()) == nullptr) {
        return Malformed(target, fmt::format("the index puts tensor '{}' in {}, which has no such "
                                             "tensor",
                                             std::string_view(kv.key()), shard));
      }
    }
  }

  for (const SafetensorsFile& shard : state->shards) {
    for (const SafetensorsTensorInfo& t : shard.tensors()) {
      if (!state->tensors.emplace(t.name, &t).second) {
        return Malformed(state->path, fmt::format("tensor '{}' is in more than one shard (again "
                                                  "in {})",
                                                  t.name, shard.name()));
      }
      state->names.push_back(t.name);
    }
  }
  std::sort(state->names.begin(), state->names.end());
  return SafetensorsModel(std::move(state));
}

const std::vector<SafetensorsFile>& SafetensorsModel::shards() const { return state_->shards; }
const std::vector<std::pair<std::string, std::string>>& SafetensorsModel::metadata() const {
  return state_->metadata;
}
const std::vector<std::string_view>& SafetensorsModel::tensor_names() const {
  return state_->names;
}

const SafetensorsTensorInfo* SafetensorsModel::FindTensor(std::string_view name) const {
  auto it = state_->tensors.find(name);
  return it == state_->tensors.end() ? nullptr : it->second;
}

Result<TensorView> SafetensorsModel::GetTensor(std::string_view name) const {
  const SafetensorsTensorInfo* t = FindTensor(name);
  if (t == nullptr) {
    return NotFoundError(fmt::format("{}: tensor '{}' not found", state_->path, name));
  }
  return MakeView(*t);
}

// ---------------------------------------------------------------------------------------------
// SafetensorsWriter

struct SafetensorsWriter::Impl {
  struct Tensor {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    std::span<const uint8_t> data;
    std::vector<uint8_t> owned;
  };
  std::vector<std::pair<std::string, std::string>> metadata;
  std::vector<Tensor> tensors;
  std::unordered_map<std::string, size_t> index;

  Status Add(std::string_view name, std::string_view dtype, std::span<const int64_t> shape,
             std::span<const uint8_t> data, std::vector<uint8_t> owned) {
    const std::string label = fmt::format("tensor '{}'", name);
    if (name.empty() || name == kMetadataKey) {
      return InvalidArgumentError(fmt::format("{}: invalid tensor name", label));
    }
    if (index.contains(std::string(name))) {
      return InvalidArgumentError(fmt::format("duplicate {}", label));
    }
    const std::optional<int> bits = SafetensorsDtypeBits(dtype);
    if (!bits) return InvalidArgumentError(fmt::format("{}: unknown dtype '{}'", label, dtype));
    int64_t n_elements = 1;
    int64_t product = 1;  // over max(d, 1): a zero must not hide an overflow of the others
    for (int64_t d : shape) {
      if (d < 0 || __builtin_mul_overflow(product, std::max<int64_t>(d, 1), &product)) {
        return InvalidArgumentError(fmt::format("{}: negative or overflowing shape", label));
      }
      n_elements *= d;
    }
    const std::optional<uint64_t> expected = DtypeBytes(n_elements, *bits);
    if (!expected || *expected != data.size()) {
      return InvalidArgumentError(
          fmt::format("{}: {} bytes of data given for a {} tensor that "
                      "needs {}",
                      label, data.size(), dtype, expected ? fmt::format("{}", *expected) : "?"));
    }
    index.emplace(std::string(name), tensors.size());
    Tensor t{std::string(name), std::string(dtype),
             std::vector<int64_t>(shape.begin(), shape.end()), data, std::move(owned)};
    if (!t.owned.empty()) t.data = std::span<const uint8_t>(t.owned);
    tensors.push_back(std::move(t));
    return OkStatus();
  }

  // The 8-byte length plus the padded JSON header for the tensors at `which`.
  std::string Head(const std::vector<size_t>& which) const {
    json::object header;
    if (!metadata.empty()) {
      json::object meta;
      for (const auto& [k, v] : metadata) meta[k] = v;
      header[kMetadataKey] = std::move(meta);
    }
    uint64_t offset = 0;
    for (size_t i : which) {
      const Tensor& t = tensors[i];
      json::object entry;
      entry["dtype"] = t.dtype;
      json::array shape;
      for (int64_t d : t.shape) shape.push_back(d);
      entry["shape"] = std::move(shape);
      entry["data_offsets"] = json::array{offset, offset + t.data.size()};
      header[t.name] = std::move(entry);
      offset += t.data.size();
    }
    std::string text = json::serialize(header);
    // Pad with spaces so that the data section starts 8-byte aligned.
    text.resize((text.size() + 7) / 8 * 8, ' ');
    std::string out(8, '\0');
    const uint64_t n = text.size();
    std::memcpy(out.data(), &n, 8);
    return out + text;
  }

  std::vector<size_t> All() const {
    std::vector<size_t> all(tensors.size());
    std::iota(all.begin(), all.end(), size_t{0});
    return all;
  }

  Status Write(const std::string& path, const std::vector<size_t>& which) const {
    YZ_ASSIGN_OR_RETURN(internal::AtomicFileWriter file, internal::AtomicFileWriter::Create(path));
    YZ_RETURN_IF_ERROR(file.Append(Head(which)));
    for (size_t i : which) YZ_RETURN_IF_ERROR(file.Append(tensors[i].data));
    return file.Commit();
  }
};

SafetensorsWriter::SafetensorsWriter() : impl_(std::make_unique<Impl>()) {}
SafetensorsWriter::~SafetensorsWriter() = default;
SafetensorsWriter::SafetensorsWriter(SafetensorsWriter&&) noexcept = default;
SafetensorsWriter& SafetensorsWriter::operator=(SafetensorsWriter&&) noexcept = default;

void SafetensorsWriter::SetMetadata(std::string_view key, std::string_view value) {
  for (auto& [k, v] : impl_->metadata) {
    if (k == key) {
      v = std::string(value);
      return;
    }
  }
  impl_->metadata.emplace_back(std::string(key), std::string(value));
}

Status SafetensorsWriter::AddTensor(std::string_view name, TensorType type,
                                    std::span<const int64_t> shape, std::span<const uint8_t> data) {
  const std::string_view dtype = TypeToDtype(type);
  if (dtype.empty()) {
    return InvalidArgumentError(
        fmt::format("tensor '{}': safetensors cannot hold type {} "
                    "(only {})",
                    name, TypeName(type), kSupportedDtypes));
  }
  return impl_->Add(name, dtype, shape, data, {});
}

Status SafetensorsWriter::AddTensor(std::string_view name, TensorType type,
                                    std::span<const int64_t> shape, std::vector<uint8_t>&& data) {
  const std::string_view dtype = TypeToDtype(type);
  if (dtype.empty()) {
    return InvalidArgumentError(
        fmt::format("tensor '{}': safetensors cannot hold type {} "
                    "(only {})",
                    name, TypeName(type), kSupportedDtypes));
  }
  const std::span<const uint8_t> view(data);
  return impl_->Add(name, dtype, shape, view, std::move(data));
}

Status SafetensorsWriter::AddRawTensor(std::string_view name, std::string_view dtype,
                                       std::span<const int64_t> shape,
                                       std::span<const uint8_t> data) {
  return impl_->Add(name, dtype, shape, data, {});
}

Result<std::string> SafetensorsWriter::Serialize() const {
  std::string out = impl_->Head(impl_->All());
  for (const Impl::Tensor& t : impl_->tensors) {
    out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size());
  }
  return out;
}

Status SafetensorsWriter::WriteFile(const std::string& path) const {
  return impl_->Write(path, impl_->All());
}

Status SafetensorsWriter::WriteSharded(const std::string& dir, uint64_t max_shard_bytes,
                                       std::string_view prefix) const {
  if (max_shard_bytes == 0) return InvalidArgumentError("max_shard_bytes must be positive");
  std::vector<std::vector<size_t>> shards;
  uint64_t current = 0;
  uint64_t total = 0;
  for (size_t i = 0; i < impl_->tensors.size(); ++i) {
    const uint64_t size = impl_->tensors[i].data.size();
    if (shards.empty() || (current > 0 && current + size > max_shard_bytes)) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(i);
    current += size;
    total += size;
  }
  if (shards.empty()) shards.emplace_back();  // a model with no tensors still gets one shard

  std::map<std::string, std::string> weight_map;  // sorted by tensor name
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string file =
        fmt::format("{}-{:05d}-of-{:05d}.safetensors", prefix, s + 1, shards.size());
    YZ_RETURN_IF_ERROR(impl_->Write(JoinPath(dir, file), shards[s]));
    for (size_t i : shards[s]) weight_map[impl_->tensors[i].name] = file;
  }
  json::object map;
  for (const auto& [name, file] : weight_map) map[name] = file;
  json::object index;
  index["metadata"] = json::object{{"total_size", total}};
  index["weight_map"] = std::move(map);
  YZ_ASSIGN_OR_RETURN(internal::AtomicFileWriter out,
                      internal::AtomicFileWriter::Create(
                          JoinPath(dir, fmt::format("{}.safetensors.index.json", prefix))));
  YZ_RETURN_IF_ERROR(out.Append(json::serialize(index)));
  return out.Commit();
}

}  // namespace yunzhi::engine
