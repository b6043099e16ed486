// The local model registry: which models this installation has, where their bytes are, and what
// they are (kind, architecture, parameters, weight type, context, chat template).
//
// Kinds: "chat" (decoders: engine::Model), "embedding" (BERT encoders: engine::EncoderModel) and
// "rerank" (BERT cross-encoders with a classification head). Import tells them apart by the
// files (engine::IsEncoderModelPath) and validates each with its own loader.
//
// A model is imported from a GGUF file or a Hugging Face safetensors directory already on this
// machine. Every file is stored once in the content-addressed blob store (store/blob_store.h),
// named by its SHA-256. When the source is on the same file system as the data dir, the blob is a
// hard link to the source (no second copy of the bytes); across file systems it is a streamed
// copy. A GGUF model is loaded straight from its blob; a safetensors model gets a directory
// <models_dir>/<id>/ whose entries are hard links to its blobs under their original file names,
// so `engine::Model::Load` reads it as it reads the source directory.
//
// Names: `[namespace/]name[:tag]` (see ValidateModelName); the name is the model's OpenAI model
// id. Every model also has an immutable id "mdl_<ULID>"; lookups take either.
//
// The records live in the metadata database (tables hub_models and hub_model_files, migrations
// under the module name "hub"), so a `yunzhi import` in another process is seen at once by a
// running server. A blob is removed with the last model that references it.
//
// Caveat of hard links: the blob *is* the source file. Editing the source in place afterwards
// (rather than replacing it with a new file) changes the stored model; BlobStore::Verify detects
// it.
//
// Thread safety: all methods of Registry are safe to call from many threads at once, and several
// processes may use registries on the same data dir.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/status.h"
#include "yunzhi/store/blob_store.h"
#include "yunzhi/store/database.h"

namespace yunzhi::hub {

enum class ModelFormat { kGguf, kSafetensors };

// "gguf" / "safetensors".
std::string_view FormatName(ModelFormat format);

// One stored file of a model.
struct ModelFile {
  std::string name;  // file name inside the model ("model.safetensors"); the source's name for GGUF
  std::string digest;  // SHA-256, 64 lowercase hex characters: the blob
  int64_t size_bytes = 0;
};

struct ModelInfo {
  std::string id;    // "mdl_<ULID>", immutable
  std::string name;  // "qwen/qwen2.5-0.5b:q4_0": the OpenAI model id
  ModelFormat format = ModelFormat::kGguf;
  // GGUF: the file's SHA-256. Safetensors: SHA-256 of the manifest, the lines
  // "<file name> <file digest>\n" sorted by file name. Equal digests mean equal models.
  std::string digest;
  int64_t size_bytes = 0;      // all files
  std::string kind = "chat";   // "chat", "embedding" or "rerank" (see the file comment)
  std::string architecture;    // "llama", "qwen2", ... (engine::ArchitectureName); "bert"
  int64_t n_params = 0;        // weight elements
  std::string weight_type;     // type of most weight bytes, e.g. "Q4_0" (engine::TypeName)
  int64_t context_tokens = 0;  // context the model was trained for (n_ctx_train)
  bool has_chat_template = false;
  std::string source_path;    // where it was imported from (information only)
  int64_t created_at_ms = 0;  // Unix ms
  // How long the serving layer keeps the model loaded after its last request (Ollama's
  // keep_alive): unset = the server's default; 0 = unload at once; negative = never unload.
  std::optional<int64_t> keep_alive_ms;
  std::vector<ModelFile> files;  // sorted by name
  // What engine::Model::Load takes: the GGUF blob, or the <models_dir>/<id> directory.
  std::string path;
};

// Progress of a long import: bytes hashed (and copied) so far of all the model's files.
using ImportProgressFn = std::function<void(uint64_t bytes_done, uint64_t bytes_total)>;

struct ImportOptions {
  // Replace a model of the same name (its blobs go unless another model uses them). Default:
  // an existing name is an error.
  bool replace = false;
  // Called from the importing thread: once with bytes_done = 0, then at least every 64 MiB, and
  // once with bytes_done = bytes_total when all bytes are stored (the stored model is then
  // loaded once more and recorded). Must not call back into the registry.
  ImportProgressFn progress = {};
  // When set and true, the import stops at its next chunk with kCancelled, leaving nothing.
  const std::atomic<bool>* cancel = nullptr;
};

// Checks `name` against `[namespace/]name[:tag]`: each of namespace, name and tag is 1 to 64 of
// lowercase letters, digits, '.', '_' and '-', starting with a letter or digit.
// Errors: kInvalidArgument explaining the rule, with param "name".
Status ValidateModelName(std::string_view name);

// The name an import gets when none is given: the file (without ".gguf") or directory name,
// lowercased, with every run of other characters turned into one '-', trimmed to 64 characters.
// Errors: kInvalidArgument when nothing usable is left (the caller must pass a name).
Result<std::string> DefaultModelName(const std::filesystem::path& source);

// Parses a keep-alive duration as Ollama takes it: Go-style "300ms", "10s", "5m", "1h30m",
// "1.5h"; a bare number is seconds ("300", "-1"); any negative value means "never unload" and
// comes back as -1. Errors: kInvalidArgument naming the text, with param "keep_alive".
Result<int64_t> ParseKeepAliveMs(std::string_view text);

// Applies the registry's migrations (module "hub"). Registry::Open calls it; exposed for tools
// that migrate every module up front.
Status MigrateSchema(store::Database& db);

// What an asynchronous import (StartImport) is doing.
struct ImportJob {
  enum class State { kQueued, kRunning, kSucceeded, kFailed };
  std::string id;  // "imp_<ULID>"
  std::string source_path;
  std::string name;  // the model's name (derived from the source when none was given)
  bool replace = false;
  State state = State::kQueued;
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
  int64_t created_at_ms = 0;
  std::optional<int64_t> finished_at_ms;
  std::optional<Error> error;      // when kFailed
  std::optional<ModelInfo> model;  // when kSucceeded
};

// "queued", "running", "succeeded", "failed".
std::string_view JobStateName(ImportJob::State state);

class Registry {
 public:
  // Opens the registry: migrates the schema, creates `models_dir` if missing. `db`, `blobs` and
  // `clock` must outlive the registry. Errors: those of the migration; kUnavailable when
  // `models_dir` cannot be created.
  static Result<std::unique_ptr<Registry>> Open(store::Database& db, store::BlobStore& blobs,
                                                std::filesystem::path models_dir,
                                                const Clock& clock = *Clock::System());
  // Cancels running background imports and waits for their thread to end.
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Imports the GGUF file or Hugging Face directory at `source` as `name` (empty: DefaultModelName)
  // and returns its record. Blocks while hashing (minutes for tens of GB). The model is validated
  // by loading it (engine::Model::Load, or engine::EncoderModel::Load for a BERT encoder, which
  // also decides its kind) before anything is stored, and once more from its stored
  // form before the record is written. A safetensors directory contributes its top-level files
  // named *.safetensors, *.json, *.jinja, *.model, *.txt, *.md and LICENSE*/NOTICE*; anything
  // else (other weight formats, hidden files, sub-directories) is left out.
  // Errors: kInvalidArgument for a bad name, a source that is neither a file nor a directory
  // with config.json, and the engine's errors for malformed models (kInvalidArgument,
  // kNotFound for a missing tensor or file, kUnimplemented for an unsupported architecture or
  // weight type); kNotFound when `source` does not exist; kAlreadyExists when the name is taken
  // and !options.replace; kCancelled; kUnavailable for I/O errors. After an error nothing of the
  // import is left (no record; no blob unless another model uses it).
  Result<ModelInfo> Import(const std::filesystem::path& source, std::string_view name,
                           const ImportOptions& options = {});

  // All models, by name.
  Result<std::vector<ModelInfo>> List();
  // The model with this name or id. Errors: kNotFound "model 'x' does not exist" with detail
  // "model_not_found".
  Result<ModelInfo> Find(std::string_view name_or_id);
  // Removes the model (name or id): its record, its directory, and each of its blobs that no
  // other model references. Returns the removed record. Errors: kNotFound as for Find.
  Result<ModelInfo> Remove(std::string_view name_or_id);
  // Sets (or with nullopt clears) the model's keep_alive_ms. Returns the updated record.
  // Errors: kNotFound as for Find.
  Result<ModelInfo> SetKeepAlive(std::string_view name_or_id, std::optional<int64_t> keep_alive_ms);

  // Queues an import on the registry's background thread (one import at a time, in order) and
  // returns the job at once. Cheap checks (the name, the source exists) run here: their errors
  // come back directly (as for Import); later errors land in the job.
  Result<ImportJob> StartImport(const std::filesystem::path& source, std::string name,
                                bool replace);
  // A job of this process by id (the last 100 finished ones are kept). Errors: kNotFound.
  Result<ImportJob> GetImport(std::string_view id) const;
  // This process's queued, running and kept finished jobs, oldest first.
  std::vector<ImportJob> ListImports() const;

  const std::filesystem::path& models_dir() const;

  struct Impl;

 private:
  explicit Registry(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace yunzhi::hub
