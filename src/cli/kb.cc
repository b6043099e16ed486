#include "cli/kb.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "yunzhi/base/log.h"
#include "yunzhi/hub/registry.h"
#include "yunzhi/knowledge/eval.h"
#include "yunzhi/platform/keyring.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/serving/model_manager.h"
#include "yunzhi/store/blob_store.h"
#include "cli/audit.h"
#include "cli/knowledge_stack.h"

namespace yunzhi::cli {
namespace {

namespace fs = std::filesystem;

// The data dir's stores, a model manager for embedding models, and the knowledge stack.
struct Session {
  Store store;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<hub::Registry> registry;
  std::unique_ptr<serving::ModelManager> models;
  std::unique_ptr<platform::Keyring> keyring;
  KnowledgeStack kb;
  std::string tenant_id;
  std::string system_tenant_id;
};

Result<std::unique_ptr<Session>> Open(const GlobalFlags& flags, const std::string& tenant,
                                      std::optional<store::DataDir> override_dir = {}) {
  YZ_ASSIGN_OR_RETURN(auto loaded, LoadCliConfig(flags));
  log::Options log_options = loaded.config.LogOptions();
  if (flags.log_level.empty()) log_options.level = std::max(log_options.level, log::Level::kWarn);
  YZ_RETURN_IF_ERROR(log::Init(log_options));
  std::optional<store::DataDir> dir = std::move(override_dir);
  if (!dir) {
    YZ_ASSIGN_OR_RETURN(auto opened, store::DataDir::Open(loaded.config.data_dir));
    dir = std::move(opened);
  }
  auto s = std::make_unique<Session>();
  YZ_ASSIGN_OR_RETURN(s->store, OpenStore(loaded.config, *dir));
  YZ_ASSIGN_OR_RETURN(s->blobs, store::BlobStore::Open(dir->blobs_path()));
  YZ_ASSIGN_OR_RETURN(s->registry, hub::Registry::Open(*s->store.db, *s->blobs, dir->models_path()));
  platform::Tenants tenants(*s->store.db, *Clock::System());
  YZ_ASSIGN_OR_RETURN(auto system, tenants.EnsureSystem());
  s->system_tenant_id = system.id;
  if (tenant.empty()) {
    s->tenant_id = system.id;
  } else {
    YZ_ASSIGN_OR_RETURN(auto t, tenants.Find(tenant));
    s->tenant_id = t.id;
  }
  hub::Registry* registry = s->registry.get();
  serving::ServingOptions so;
  so.n_threads = loaded.config.serving.threads;
  so.default_keep_alive_ms = -1;
  s->models = std::make_unique<serving::ModelManager>(
      [registry](std::string_view name) -> Result<serving::ModelSource> {
        YZ_ASSIGN_OR_RETURN(hub::ModelInfo info, registry->Find(name));
        return serving::ModelSource{info.name, info.id, info.path, info.keep_alive_ms};
      },
      so, nullptr);
  // Documents are sealed with the tenant's key, as the server seals them.
  YZ_ASSIGN_OR_RETURN(s->keyring, platform::Keyring::Open(*s->store.db,
                                                          KeyringOptionsFor(loaded.config, *dir)));
  KnowledgeStackOptions ko;
  ko.models = s->models.get();
  ko.ciphers = [kr = s->keyring.get()](std::string_view tenant_id) { return kr->ForTenant(tenant_id); };
  ko.system_tenant_id = system.id;
  ko.base_exists = [registry](std::string_view name) { return registry->Find(name).has_value(); };
  ko.ingest_threads = std::max<int>(1, static_cast<int>(std::thread::hardware_concurrency()));
  YZ_ASSIGN_OR_RETURN(s->kb, OpenKnowledgeStack(*dir, std::move(ko)));
  return s;
}

// Files named on the command line; directories recursively, in name order.
Result<std::vector<fs::path>> Expand(const std::vector<std::string>& args) {
  std::vector<fs::path> out;
  for (const auto& a : args) {
    std::error_code ec;
    fs::path p(a);
    if (fs::is_directory(p, ec)) {
      std::vector<fs::path> found;
      for (auto it = fs::recursive_directory_iterator(p, ec); !ec && it != fs::end(it);
           it.increment(ec)) {
        if (it->is_regular_file()) found.push_back(it->path());
      }
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else if (fs::is_regular_file(p, ec)) {
      out.push_back(p);
    } else {
      return NotFoundError(fmt::format("{}: no such file or directory", a));
    }
  }
  return out;
}

Result<std::string> ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return UnavailableError(fmt::format("cannot read {}", p.string()));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Waits for a job, drawing a progress bar on stderr.
knowledge::Job WaitForJob(Session& s, const std::string& job_id) {
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  const auto start = std::chrono::steady_clock::now();
  knowledge::Job job;
  for (;;) {
    auto j = s.kb.knowledge->GetJob(s.tenant_id, job_id);
    if (!j) break;
    job = *j;
    const bool finished = job.done == job.total;
    const int width = 30;
    const int filled = job.total == 0 ? width : static_cast<int>(width * job.done / job.total);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (tty || finished) {
      std::fprintf(stderr, "%singesting [%s%s] %lld/%lld documents, %lld failed, %.1f s%s",
                   tty ? "\r" : "", std::string(filled, '#').c_str(),
                   std::string(width - filled, '.').c_str(), static_cast<long long>(job.done),
                   static_cast<long long>(job.total), static_cast<long long>(job.failed), secs,
                   finished || !tty ? "\n" : "");
      std::fflush(stderr);
    }
    if (finished) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return job;
}

}  // namespace

int RunKbCreate(const GlobalFlags& flags, const KbFlags& kb) {
  auto s = Open(flags, kb.tenant);
  if (!s) return PrintError(s.error());
  knowledge::SpaceSpec spec;
  spec.name = kb.space;
  spec.description = kb.description;
  spec.embedding_model = kb.embedding_model;
  if (kb.chunk_size > 0) spec.chunking.max_tokens = kb.chunk_size;
  if (kb.chunk_overlap >= 0) spec.chunking.overlap_tokens = kb.chunk_overlap;
  auto space = (*s)->kb.knowledge->CreateSpace((*s)->tenant_id, spec);
  if (!space) return PrintError(space.error());
  std::printf("%s\n", space->id.c_str());
  return 0;
}

int RunKbList(const GlobalFlags& flags, const KbFlags& kb) {
  auto s = Open(flags, kb.tenant);
  if (!s) return PrintError(s.error());
  if (kb.space.empty()) {
    auto spaces = (*s)->kb.knowledge->ListSpaces((*s)->tenant_id);
    if (!spaces) return PrintError(spaces.error());
    std::printf("%-28s %-24s %9s %9s %12s  %s\n", "ID", "NAME", "DOCUMENTS", "CHUNKS", "BYTES",
                "EMBEDDING MODEL");
    for (const auto& sp : *spaces) {
      std::printf("%-28s %-24s %9lld %9lld %12lld  %s\n", sp.id.c_str(), sp.name.c_str(),
                  static_cast<long long>(sp.documents), static_cast<long long>(sp.chunks),
                  static_cast<long long>(sp.bytes),
                  sp.embedding_model.empty() ? "-" : sp.embedding_model.c_str());
    }
    return 0;
  }
  auto docs = (*s)->kb.knowledge->ListDocuments((*s)->tenant_id, kb.space);
  if (!docs) return PrintError(docs.error());
  std::printf("%-30s %-10s %6s %6s %10s  %s\n", "ID", "STATUS", "PAGES", "CHUNKS", "BYTES", "NAME");
  for (const auto& d : *docs) {
    std::printf("%-30s %-10s %6lld %6lld %10lld  %s%s\n", d.id.c_str(),
                std::string(knowledge::DocumentStatusName(d.status)).c_str(),
                static_cast<long long>(d.pages), static_cast<long long>(d.chunks),
                static_cast<long long>(d.size_bytes), d.name.c_str(),
                d.error.empty() ? "" : ("  (" + d.error + ")").c_str());
  }
  return 0;
}

int RunKbAdd(const GlobalFlags& flags, const KbFlags& kb) {
  auto files = Expand(kb.files);
  if (!files) return PrintError(files.error());
  if (files->empty()) return PrintError(InvalidArgumentError("no files to add"));
  auto s = Open(flags, kb.tenant);
  if (!s) return PrintError(s.error());
  // Batches bound the memory an upload holds at once.
  constexpr int64_t kBatchBytes = int64_t{64} << 20;
  std::vector<knowledge::Upload> batch;
  int64_t batch_bytes = 0;
  int64_t total = 0, failed = 0, duplicates = 0;
  auto flush = [&]() -> Status {
    if (batch.empty()) return OkStatus();
    YZ_ASSIGN_OR_RETURN(auto job, (*s)->kb.knowledge->AddDocuments((*s)->tenant_id, kb.space,
                                                                    std::move(batch)));
    batch.clear();
    batch_bytes = 0;
    knowledge::Job done = WaitForJob(**s, job.id);
    for (const auto& f : done.files) {
      ++total;
      if (f.duplicate) ++duplicates;
      if (f.status == "failed") {
        ++failed;
        std::fprintf(stderr, "  failed: %s: %s\n", f.name.c_str(), f.error.c_str());
      }
    }
    return OkStatus();
  };
  for (const fs::path& p : *files) {
    auto bytes = ReadFile(p);
    if (!bytes) {
      std::fprintf(stderr, "  failed: %s: %s\n", p.string().c_str(), bytes.error().message.c_str());
      ++failed;
      ++total;
      continue;
    }
    batch_bytes += static_cast<int64_t>(bytes->size());
    batch.push_back({p.filename().string(), std::move(*bytes)});
    if (batch_bytes >= kBatchBytes) {
      if (auto st = flush(); !st) return PrintError(st.error());
    }
  }
  if (auto st = flush(); !st) return PrintError(st.error());
  std::printf("%lld files: %lld ingested, %lld duplicates, %lld failed\n",
              static_cast<long long>(total), static_cast<long long>(total - failed - duplicates),
              static_cast<long long>(duplicates), static_cast<long long>(failed));
  return failed > 0 ? 1 : 0;
}

int RunKbSearch(const GlobalFlags& flags, const KbFlags& kb) {
  auto s = Open(flags, kb.tenant);
  if (!s) return PrintError(s.error());
  auto space = (*s)->kb.knowledge->GetSpace((*s)->tenant_id, kb.space);
  if (!space) return PrintError(space.error());
  knowledge::RetrievalSettings settings;
  settings.top_k = kb.top_k;
  if (!kb.mode.empty()) {
    auto m = knowledge::ParseRetrievalMode(kb.mode);
    if (!m) return PrintError(m.error());
    settings.mode = *m;
  }
  const knowledge::SpaceRef ref{(*s)->tenant_id, space->id};
  auto hits = (*s)->kb.knowledge->Search({&ref, 1}, kb.query, settings);
  if (!hits) return PrintError(hits.error());
  for (size_t i = 0; i < hits->size(); ++i) {
    const auto& h = (*hits)[i];
    std::string text = h.text.substr(0, 300);
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::printf("%zu. %.4f  %s%s\n   %s\n", i + 1, h.score, h.document_name.c_str(),
                h.page > 0 ? fmt::format(" (page {})", h.page).c_str() : "", text.c_str());
  }
  return 0;
}

int RunKbRemove(const GlobalFlags& flags, const KbFlags& kb) {
  auto s = Open(flags, kb.tenant);
  if (!s) return PrintError(s.error());
  Status st = kb.document.empty()
                  ? (*s)->kb.knowledge->DeleteSpace((*s)->tenant_id, kb.space)
                  : (*s)->kb.knowledge->DeleteDocument((*s)->tenant_id, kb.document);
  if (!st) return PrintError(st.error());
  return 0;
}

int RunKbEval(const GlobalFlags& flags, const KbEvalFlags& eval) {
  Result<knowledge::BeirDataset> data =
      !eval.squad.empty() ? knowledge::LoadSquadAsBeir(eval.squad)
                          : knowledge::LoadBeir(eval.corpus, eval.queries, eval.qrels);
  if (!data) return PrintError(data.error());
  // A scratch data dir: the evaluation never touches the real one.
  char tmpl[] = "/tmp/yunzhi-kb-eval-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return PrintError(UnavailableError("cannot create a scratch dir"));
  const fs::path scratch(tmpl);
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{scratch};
  GlobalFlags scratch_flags = flags;
  scratch_flags.data_dir = scratch.string();
  auto dir = store::DataDir::Open(scratch);
  if (!dir) return PrintError(dir.error());
  auto s = Open(scratch_flags, "", *dir);
  if (!s) return PrintError(s.error());
  knowledge::SpaceSpec spec;
  spec.name = "eval";
  spec.embedding_model = eval.embedding_model;
  spec.chunking.max_tokens = eval.chunk_size;
  spec.chunking.overlap_tokens = std::min(eval.chunk_size / 8, 64);
  auto space = (*s)->kb.knowledge->CreateSpace((*s)->tenant_id, spec);
  if (!space) return PrintError(space.error());

  const auto t0 = std::chrono::steady_clock::now();
  std::vector<knowledge::Upload> uploads;
  for (const auto& d : data->corpus) {
    // The title as a Markdown heading: it becomes the chunks' section path, which the index
    // weighs above the body (as BEIR evaluations weigh titles).
    std::string text = d.title.empty() ? d.text : "# " + d.title + "\n\n" + d.text;
    // The document name carries the corpus id back to the run.
    uploads.push_back({d.id + ".md", std::move(text)});
  }
  auto job = (*s)->kb.knowledge->AddDocuments((*s)->tenant_id, space->id, std::move(uploads));
  if (!job) return PrintError(job.error());
  knowledge::Job done = WaitForJob(**s, job->id);
  const double index_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  knowledge::RetrievalSettings settings;
  settings.top_k = 100;
  settings.candidates = 200;
  if (!eval.mode.empty()) {
    auto m = knowledge::ParseRetrievalMode(eval.mode);
    if (!m) return PrintError(m.error());
    settings.mode = *m;
  }
  const knowledge::SpaceRef ref{(*s)->tenant_id, space->id};
  std::map<std::string, std::vector<std::string>> run;
  std::vector<double> latencies;
  for (const auto& q : data->queries) {
    const auto start = std::chrono::steady_clock::now();
    auto hits = (*s)->kb.knowledge->Search({&ref, 1}, q.text, settings);
    latencies.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    if (!hits) {
      if (hits.error().code == Code::kInvalidArgument) continue;  // e.g. a query with no terms
      return PrintError(hits.error());
    }
    // Chunks to documents: a document ranks where its best chunk does.
    auto& ranked = run[q.id];
    for (const auto& h : *hits) {
      std::string id = h.document_name.substr(0, h.document_name.size() - 3);
      if (std::find(ranked.begin(), ranked.end(), id) == ranked.end()) ranked.push_back(id);
    }
  }
  auto m = knowledge::Evaluate(*data, run, latencies);
  std::printf("documents  %zu (%lld failed), indexed in %.1f s\n", data->corpus.size(),
              static_cast<long long>(done.failed), index_s);
  std::printf("queries    %zu\n", m.n_queries);
  std::printf("nDCG@10    %.4f\nrecall@10  %.4f\nrecall@100 %.4f\nMRR@10     %.4f\n", m.ndcg_at_10,
              m.recall_at_10, m.recall_at_100, m.mrr_at_10);
  std::printf("latency    p50 %.2f ms, p99 %.2f ms\n", m.latency_p50_ms, m.latency_p99_ms);
  return 0;
}

int RunModelCreate(const GlobalFlags& flags, const ModelCreateFlags& mc) {
  auto s = Open(flags, mc.tenant);
  if (!s) return PrintError(s.error());
  studio::DerivedModelSpec spec;
  spec.name = mc.name;
  spec.parent = mc.parent;
  spec.description = mc.description;
  spec.instructions = mc.instructions;
  if (!mc.instructions_file.empty()) {
    auto text = ReadFile(mc.instructions_file);
    if (!text) return PrintError(text.error());
    spec.instructions = *text;
  }
  spec.spaces = mc.spaces;
  if (mc.top_k > 0) {
    knowledge::RetrievalSettings r;
    r.top_k = mc.top_k;
    spec.retrieval = r;
  }
  auto m = (*s)->kb.studio->Create((*s)->tenant_id, spec);
  if (!m) return PrintError(m.error());
  std::printf("%s (base %s)\n", m->name.c_str(), m->base_model.c_str());
  return 0;
}

}  // namespace yunzhi::cli
