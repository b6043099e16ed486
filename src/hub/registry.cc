#include "yunzhi/hub/registry.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <sys/stat.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/ids.h"
#include "yunzhi/base/log.h"
#include "yunzhi/engine/model.h"
#include "yunzhi/engine/tensor_type.h"

#include "hub/file_import.h"
#include "hub/registry_impl.h"
#include "yunzhi/engine/encoder.h"

namespace yunzhi::hub {
namespace fs = std::filesystem;

namespace {

// Progress is reported at least this often (ImportOptions::progress promises 64 MiB).
constexpr uint64_t kProgressIntervalBytes = uint64_t{16} << 20;

constexpr std::string_view kModelColumns =
    "id, name, format, digest, size_bytes, architecture, n_params, weight_type, context_tokens, "
    "has_chat_template, source_path, created_at_ms, keep_alive_ms, kind";

Error ModelNotFound(std::string_view name_or_id) {
  return Error(Code::kNotFound, fmt::format("model '{}' does not exist", name_or_id), "",
               "model_not_found");
}

ModelInfo FromRow(const store::Row& r) {
  ModelInfo m;
  m.id = r.Text(0);
  m.name = r.Text(1);
  m.format = r.Text(2) == "safetensors" ? ModelFormat::kSafetensors : ModelFormat::kGguf;
  m.digest = r.Text(3);
  m.size_bytes = r.Int(4);
  m.architecture = r.Text(5);
  m.n_params = r.Int(6);
  m.weight_type = r.Text(7);
  m.context_tokens = r.Int(8);
  m.has_chat_template = r.Int(9) != 0;
  m.source_path = r.Text(10);
  m.created_at_ms = r.Int(11);
  m.keep_alive_ms = r.OptInt(12);
  m.kind = r.Text(13);
  return m;
}

// Loads the model at `path` with the loader its files call for (a decoder or a BERT encoder),
// which validates it, and fills what the record says about it into `m` when not null.
Status Describe(const std::string& path, ModelInfo* m) {
  if (engine::IsEncoderModelPath(path)) {
    auto loaded = engine::EncoderModel::Load(path, {.n_threads = 1});
    if (!loaded) return loaded.error();
    if (m == nullptr) return OkStatus();
    const engine::EncoderConfig& c = (*loaded)->config();
    m->kind = c.has_classifier ? "rerank" : "embedding";
    m->architecture = "bert";
    m->n_params = c.n_params;
    m->weight_type = std::string(engine::TypeName(c.weight_type));
    m->context_tokens = c.n_ctx_train;
    m->has_chat_template = false;
    return OkStatus();
  }
  auto loaded = engine::Model::Load(path);
  if (!loaded) return loaded.error();
  if (m == nullptr) return OkStatus();
  const engine::ModelConfig& c = (*loaded)->config();
  m->kind = "chat";
  m->architecture = std::string(engine::ArchitectureName(c.architecture));
  m->n_params = c.n_params;
  m->weight_type = engine::WeightTypeLabel(c);
  m->context_tokens = c.n_ctx_train;
  m->has_chat_template = !(*loaded)->chat_template().empty();
  return OkStatus();
}

// The top-level files of a Hugging Face directory that belong to the model (see Import).
bool WantedHfFile(std::string_view name) {
  if (name.empty() || name.front() == '.') return false;
  for (std::string_view ext : {".safetensors", ".json", ".jinja", ".model", ".txt", ".md"}) {
    if (name.size() > ext.size() && name.ends_with(ext)) return true;
  }
  std::string upper;
  for (char c : name.substr(0, 7)) {
    upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return upper.starts_with("LICENSE") || upper.starts_with("NOTICE");
}

struct SourceFile {
  std::string name;
  fs::path path;
  uint64_t size_bytes = 0;
};

// What an import will store: one GGUF file, or the wanted files of a directory.
Result<std::vector<SourceFile>> ListSource(const fs::path& source, ModelFormat* format) {
  std::error_code ec;
  auto status = fs::status(source, ec);
  if (ec || !fs::exists(status)) {
    return NotFoundError(fmt::format("model source {} does not exist", source.string()));
  }
  std::vector<SourceFile> files;
  if (fs::is_regular_file(status)) {
    *format = ModelFormat::kGguf;
    files.push_back({source.filename().string(), source, fs::file_size(source, ec)});
    if (ec)
      return UnavailableError(fmt::format("cannot stat {}: {}", source.string(), ec.message()));
    return files;
  }
  if (!fs::is_directory(status)) {
    return InvalidArgumentError(
        fmt::format("{} is neither a GGUF file nor a Hugging Face model directory",
                    source.string()),
        "path");
  }
  if (!fs::is_regular_file(source / "config.json", ec)) {
    return InvalidArgumentError(
        fmt::format("{} is a directory without config.json: not a Hugging Face model directory",
                    source.string()),
        "path");
  }
  *format = ModelFormat::kSafetensors;
  for (fs::directory_iterator it(source, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code ec2;
    if (!WantedHfFile(name) || !it->is_regular_file(ec2)) continue;  // follows symlinks
    uint64_t size = fs::file_size(it->path(), ec2);
    if (ec2) {
      return UnavailableError(
          fmt::format("cannot stat {}: {}", it->path().string(), ec2.message()));
    }
    files.push_back({name, it->path(), size});
  }
  if (ec) return UnavailableError(fmt::format("cannot list {}: {}", source.string(), ec.message()));
  std::sort(files.begin(), files.end(),
            [](const SourceFile& a, const SourceFile& b) { return a.name < b.name; });
  return files;
}

std::string ManifestDigest(const std::vector<ModelFile>& files) {
  std::string manifest;
  for (const auto& f : files) manifest += fmt::format("{} {}\n", f.name, f.digest);
  return crypto::Sha256Hex(manifest);
}

// Sends progress at most every kProgressIntervalBytes, and on demand.
class ProgressReporter {
 public:
  ProgressReporter(const ImportOptions& options, uint64_t total)
      : options_(options), total_(total) {}
  Status Add(uint64_t n) {
    if (options_.cancel != nullptr && options_.cancel->load()) {
      return Error(Code::kCancelled, "import cancelled");
    }
    done_ += n;
    if (done_ - reported_ >= kProgressIntervalBytes) Report();
    return OkStatus();
  }
  void Report() {
    reported_ = done_;
    if (options_.progress) options_.progress(done_, total_);
  }

 private:
  const ImportOptions& options_;
  const uint64_t total_;
  uint64_t done_ = 0;
  uint64_t reported_ = 0;
};

// Undoes a failed import: what it created and nobody else uses.
class ImportRollback {
 public:
  explicit ImportRollback(Registry::Impl& impl) : impl_(impl) {}
  ~ImportRollback() {
    if (committed_) return;
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
    impl_.CollectBlobs(created_blobs_);
  }
  void BlobCreated(const std::string& digest) { created_blobs_.push_back(digest); }
  void DirCreated(fs::path dir) { dir_ = std::move(dir); }
  void Commit() { committed_ = true; }

 private:
  Registry::Impl& impl_;
  std::vector<std::string> created_blobs_;
  fs::path dir_;
  bool committed_ = false;
};

// Builds <models_dir>/<id>/ from the blobs: in a temp directory first, renamed into place, so
// that the final name never holds a partial tree.
Status BuildModelDir(const store::BlobStore& blobs, const std::vector<ModelFile>& files,
                     const fs::path& dir) {
  const fs::path tmp = dir.parent_path() / (".tmp-" + dir.filename().string());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directory(tmp, ec);
  if (ec) return UnavailableError(fmt::format("cannot create {}: {}", tmp.string(), ec.message()));
  for (const auto& f : files) {
    if (auto s = internal::LinkBlob(blobs, f.digest, tmp / f.name); !s) {
      fs::remove_all(tmp, ec);
      return s;
    }
  }
  fs::rename(tmp, dir, ec);
  if (ec) {
    std::error_code ec2;
    fs::remove_all(tmp, ec2);
    return UnavailableError(
        fmt::format("cannot move {} to {}: {}", tmp.string(), dir.string(), ec.message()));
  }
  return OkStatus();
}

}  // namespace

std::string_view FormatName(ModelFormat format) {
  return format == ModelFormat::kSafetensors ? "safetensors" : "gguf";
}

// ---------------------------------------------------------------------------------------------

Result<ModelInfo> Registry::Impl::Import(const fs::path& source, std::string_view name_in,
                                         const ImportOptions& options) {
  std::string name(name_in);
  if (name.empty()) {
    YZ_ASSIGN_OR_RETURN(name, DefaultModelName(source));
  }
  YZ_RETURN_IF_ERROR(ValidateModelName(name));
  ModelFormat format = ModelFormat::kGguf;
  YZ_ASSIGN_OR_RETURN(std::vector<SourceFile> sources, ListSource(source, &format));
  if (!options.replace) {
    // Early, to spare hashing; checked again when the record is written.
    YZ_ASSIGN_OR_RETURN(auto existing,
                        db.QueryOne("SELECT id FROM hub_models WHERE name = ?", {name}));
    if (existing) {
      return AlreadyExistsError(
          fmt::format("model '{}' already exists; replace it explicitly (--replace)", name));
    }
  }
  // Reject a broken model before storing any of it. Loading maps the file and checks every
  // tensor's header: cheap next to hashing.
  YZ_RETURN_IF_ERROR(Describe(source.string(), nullptr));

  uint64_t total = 0;
  for (const auto& f : sources) total += f.size_bytes;
  ProgressReporter progress(options, total);
  progress.Report();
  ImportRollback rollback(*this);
  ModelInfo m;
  m.name = name;
  m.format = format;
  m.source_path = fs::absolute(source).lexically_normal().string();
  bool all_linked = true;
  for (const auto& f : sources) {
    YZ_ASSIGN_OR_RETURN(
        internal::StoredFile stored,
        internal::StoreFile(blobs, f.path, [&](uint64_t n) { return progress.Add(n); }));
    if (stored.created) rollback.BlobCreated(stored.blob.digest);
    all_linked = all_linked && (stored.linked || !stored.created);
    m.files.push_back({f.name, stored.blob.digest, static_cast<int64_t>(stored.blob.size_bytes)});
    m.size_bytes += static_cast<int64_t>(stored.blob.size_bytes);
  }
  progress.Report();

  m.id = NewId("mdl", clock);
  m.created_at_ms = clock.NowUnixMs();
  if (format == ModelFormat::kGguf) {
    m.digest = m.files.front().digest;
    m.path = blobs.PathOf(m.digest).string();
  } else {
    m.digest = ManifestDigest(m.files);
    const fs::path dir = ModelDir(m.id);
    YZ_RETURN_IF_ERROR(BuildModelDir(blobs, m.files, dir));
    rollback.DirCreated(dir);
    m.path = dir.string();
  }
  // Load what is stored, not the source: this is what the server will load.
  YZ_RETURN_IF_ERROR(Describe(m.path, &m));

  ModelInfo replaced;
  YZ_RETURN_IF_ERROR(db.Transact([&](store::Executor& ex) -> Status {
    YZ_ASSIGN_OR_RETURN(auto old, ex.QueryOne(fmt::format("SELECT {} FROM hub_models WHERE "
                                                          "name = ?",
                                                          kModelColumns),
                                              {m.name}));
    if (old) {
      if (!options.replace) {
        return AlreadyExistsError(
            fmt::format("model '{}' already exists; replace it explicitly (--replace)", m.name));
      }
      replaced = FromRow(*old);
      YZ_ASSIGN_OR_RETURN(auto rows,
                          ex.Query("SELECT name, digest, size_bytes FROM hub_model_files "
                                   "WHERE model_id = ?",
                                   {replaced.id}));
      for (const auto& r : rows) replaced.files.push_back({r.Text(0), r.Text(1), r.Int(2)});
      YZ_RETURN_IF_ERROR(
          ex.Execute("DELETE FROM hub_model_files WHERE model_id = ?", {replaced.id}));
      YZ_RETURN_IF_ERROR(ex.Execute("DELETE FROM hub_models WHERE id = ?", {replaced.id}));
    }
    YZ_RETURN_IF_ERROR(ex.Execute(
        "INSERT INTO hub_models (id, name, format, digest, size_bytes, architecture, n_params, "
        "weight_type, context_tokens, has_chat_template, source_path, created_at_ms, "
        "keep_alive_ms, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
        {m.id, m.name, std::string(FormatName(m.format)), m.digest, m.size_bytes, m.architecture,
         m.n_params, m.weight_type, m.context_tokens, int64_t{m.has_chat_template ? 1 : 0},
         m.source_path, m.created_at_ms, m.kind}));
    for (const auto& f : m.files) {
      YZ_RETURN_IF_ERROR(ex.Execute(
          "INSERT INTO hub_model_files (model_id, name, digest, size_bytes) VALUES (?, ?, ?, ?)",
          {m.id, f.name, f.digest, f.size_bytes}));
    }
    return OkStatus();
  }));
  rollback.Commit();

  // A concurrent Remove of another model may have collected a blob we found already stored just
  // before our record referenced it (CollectBlobs explains why this check suffices). Rare:
  // store it again from the source.
  for (size_t i = 0; i < m.files.size(); ++i) {
    if (blobs.Contains(m.files[i].digest)) continue;
    auto again = internal::StoreFile(blobs, sources[i].path, nullptr);
    if (!again || again->blob.digest != m.files[i].digest) {
      log::Warn("hub_blob_lost", {{"model", m.name}, {"digest", m.files[i].digest}});
    }
  }

  if (!replaced.id.empty()) {
    std::error_code ec;
    fs::remove_all(ModelDir(replaced.id), ec);
    std::vector<std::string> digests;
    for (const auto& f : replaced.files) digests.push_back(f.digest);
    CollectBlobs(digests);
  }
  log::Info("model_imported", {{"model", m.name},
                               {"id", m.id},
                               {"format", FormatName(m.format)},
                               {"size_bytes", m.size_bytes},
                               {"linked", all_linked},
                               {"replaced", !replaced.id.empty()}});
  return m;
}

void Registry::Impl::CollectBlobs(const std::vector<std::string>& digests) {
  for (const auto& digest : digests) {
    // In one write transaction: an import that references this blob commits either before
    // (we see its reference and keep the blob) or after (it then finds the blob gone and
    // stores it again).
    auto s = db.Transact([&](store::Executor& ex) -> Status {
      YZ_ASSIGN_OR_RETURN(
          auto row, ex.QueryOne("SELECT COUNT(*) FROM hub_model_files WHERE digest = ?", {digest}));
      if (row && row->Int(0) > 0) return OkStatus();
      return blobs.Remove(digest);
    });
    if (!s) log::Warn("hub_blob_not_removed", {{"digest", digest}, {"error", s.error().message}});
  }
}

Result<ModelInfo> Registry::Impl::Find(std::string_view name_or_id) {
  YZ_ASSIGN_OR_RETURN(auto row, db.QueryOne(fmt::format("SELECT {} FROM hub_models WHERE name = "
                                                        "? OR id = ?",
                                                        kModelColumns),
                                            {std::string(name_or_id), std::string(name_or_id)}));
  if (!row) return ModelNotFound(name_or_id);
  ModelInfo m = FromRow(*row);
  YZ_ASSIGN_OR_RETURN(auto files, db.Query("SELECT name, digest, size_bytes FROM hub_model_files "
                                           "WHERE model_id = ? ORDER BY name",
                                           {m.id}));
  for (const auto& r : files) m.files.push_back({r.Text(0), r.Text(1), r.Int(2)});
  if (m.format == ModelFormat::kGguf && !m.files.empty() &&
      store::BlobStore::IsValidDigest(m.files.front().digest)) {
    m.path = blobs.PathOf(m.files.front().digest).string();
  } else {
    m.path = ModelDir(m.id).string();
  }
  return m;
}

Result<std::vector<ModelInfo>> Registry::Impl::List() {
  YZ_ASSIGN_OR_RETURN(
      auto rows, db.Query(fmt::format("SELECT {} FROM hub_models ORDER BY name", kModelColumns)));
  YZ_ASSIGN_OR_RETURN(auto files, db.Query("SELECT model_id, name, digest, size_bytes FROM "
                                           "hub_model_files ORDER BY model_id, name"));
  std::map<std::string, std::vector<ModelFile>> by_model;
  for (const auto& r : files) by_model[r.Text(0)].push_back({r.Text(1), r.Text(2), r.Int(3)});
  std::vector<ModelInfo> out;
  out.reserve(rows.size());
  for (const auto& r : rows) {
    ModelInfo m = FromRow(r);
    m.files = std::move(by_model[m.id]);
    if (m.format == ModelFormat::kGguf && !m.files.empty() &&
        store::BlobStore::IsValidDigest(m.files.front().digest)) {
      m.path = blobs.PathOf(m.files.front().digest).string();
    } else {
      m.path = ModelDir(m.id).string();
    }
    out.push_back(std::move(m));
  }
  return out;
}

Result<ModelInfo> Registry::Impl::Remove(std::string_view name_or_id) {
  ModelInfo removed;
  YZ_RETURN_IF_ERROR(db.Transact([&](store::Executor& ex) -> Status {
    YZ_ASSIGN_OR_RETURN(auto row, ex.QueryOne(fmt::format("SELECT {} FROM hub_models WHERE "
                                                          "name = ? OR id = ?",
                                                          kModelColumns),
                                              {std::string(name_or_id), std::string(name_or_id)}));
    if (!row) return ModelNotFound(name_or_id);
    removed = FromRow(*row);
    YZ_ASSIGN_OR_RETURN(auto files, ex.Query("SELECT name, digest, size_bytes FROM "
                                             "hub_model_files WHERE model_id = ? ORDER BY name",
                                             {removed.id}));
    for (const auto& r : files) removed.files.push_back({r.Text(0), r.Text(1), r.Int(2)});
    YZ_RETURN_IF_ERROR(ex.Execute("DELETE FROM hub_model_files WHERE model_id = ?", {removed.id}));
    YZ_RETURN_IF_ERROR(ex.Execute("DELETE FROM hub_models WHERE id = ?", {removed.id}));
    return OkStatus();
  }));
  std::error_code ec;
  fs::remove_all(ModelDir(removed.id), ec);
  std::vector<std::string> digests;
  for (const auto& f : removed.files) digests.push_back(f.digest);
  CollectBlobs(digests);
  log::Info("model_removed", {{"model", removed.name}, {"id", removed.id}});
  return removed;
}

Result<ModelInfo> Registry::Impl::SetKeepAlive(std::string_view name_or_id,
                                               std::optional<int64_t> ms) {
  store::Value v = ms ? store::Value(*ms) : store::Value(nullptr);
  YZ_ASSIGN_OR_RETURN(int64_t n, db.Execute("UPDATE hub_models SET keep_alive_ms = ? WHERE name = "
                                            "? OR id = ?",
                                            {v, std::string(name_or_id), std::string(name_or_id)}));
  if (n == 0) return ModelNotFound(name_or_id);
  return Find(name_or_id);
}

// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<Registry>> Registry::Open(store::Database& db, store::BlobStore& blobs,
                                                 fs::path models_dir, const Clock& clock) {
  YZ_RETURN_IF_ERROR(MigrateSchema(db));
  std::error_code ec;
  fs::create_directories(models_dir, ec);
  if (ec) {
    return UnavailableError(
        fmt::format("cannot create models directory {}: {}", models_dir.string(), ec.message()));
  }
  // Leftovers of a process that died while building a model directory. Only old ones: another
  // process may be building one right now (it takes milliseconds).
  const auto cutoff = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (fs::directory_iterator it(models_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code ec2;
    if (it->path().filename().string().starts_with(".tmp-") && it->last_write_time(ec2) < cutoff &&
        !ec2) {
      fs::remove_all(it->path(), ec2);
    }
  }
  return std::unique_ptr<Registry>(
      new Registry(std::make_unique<Impl>(db, blobs, std::move(models_dir), clock)));
}

Registry::Registry(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Registry::~Registry() { impl_->StopJobs(); }

Result<ModelInfo> Registry::Import(const fs::path& source, std::string_view name,
                                   const ImportOptions& options) {
  return impl_->Import(source, name, options);
}
Result<std::vector<ModelInfo>> Registry::List() { return impl_->List(); }
Result<ModelInfo> Registry::Find(std::string_view name_or_id) { return impl_->Find(name_or_id); }
Result<ModelInfo> Registry::Remove(std::string_view name_or_id) {
  return impl_->Remove(name_or_id);
}
Result<ModelInfo> Registry::SetKeepAlive(std::string_view name_or_id,
                                         std::optional<int64_t> keep_alive_ms) {
  return impl_->SetKeepAlive(name_or_id, keep_alive_ms);
}
Result<ImportJob> Registry::StartImport(const fs::path& source, std::string name, bool replace) {
  return impl_->StartImport(source, std::move(name), replace);
}
Result<ImportJob> Registry::GetImport(std::string_view id) const { return impl_->GetImport(id); }
std::vector<ImportJob> Registry::ListImports() const { return impl_->ListImports(); }
const fs::path& Registry::models_dir() const { return impl_->models_dir; }

}  // namespace yunzhi::hub
