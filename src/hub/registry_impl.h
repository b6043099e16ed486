// The registry's state, shared by registry.cc (records, import, removal) and import_jobs.cc
// (the background import queue). Private to src/hub/.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "yunzhi/hub/registry.h"

namespace yunzhi::hub {

struct Registry::Impl {
  Impl(store::Database& d, store::BlobStore& b, std::filesystem::path dir, const Clock& c)
      : db(d), blobs(b), models_dir(std::move(dir)), clock(c) {}

  store::Database& db;
  store::BlobStore& blobs;
  const std::filesystem::path models_dir;
  const Clock& clock;

  // --- registry.cc ---
  Result<ModelInfo> Import(const std::filesystem::path& source, std::string_view name,
                           const ImportOptions& options);
  Result<ModelInfo> Find(std::string_view name_or_id);
  Result<std::vector<ModelInfo>> List();
  Result<ModelInfo> Remove(std::string_view name_or_id);
  Result<ModelInfo> SetKeepAlive(std::string_view name_or_id, std::optional<int64_t> ms);
  // Removes each blob of `digests` that no model references (checked and removed inside one
  // write transaction each, so an import that commits a reference concurrently either sees the
  // blob gone and re-stores it, or keeps it).
  void CollectBlobs(const std::vector<std::string>& digests);
  std::filesystem::path ModelDir(const std::string& id) const { return models_dir / id; }

  // --- import_jobs.cc ---
  struct Job {
    ImportJob info;  // guarded by jobs_mutex
    std::atomic<bool> cancel{false};
  };
  Result<ImportJob> StartImport(const std::filesystem::path& source, std::string name,
                                bool replace);
  Result<ImportJob> GetImport(std::string_view id) const;
  std::vector<ImportJob> ListImports() const;
  void StopJobs();  // cancels the running job, drops queued ones, joins the worker
  void WorkerLoop();

  mutable std::mutex jobs_mutex;  // guards jobs, queue, stopping, worker (start)
  std::condition_variable jobs_cv;
  std::deque<std::shared_ptr<Job>> jobs;   // all kept jobs, oldest first
  std::deque<std::shared_ptr<Job>> queue;  // waiting to run
  bool stopping = false;
  std::thread worker;  // started with the first job
};

}  // namespace yunzhi::hub
