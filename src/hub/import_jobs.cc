// Background imports: one worker thread per registry, started with the first job, running the
// queued imports one at a time (they are disk-bound; two at once would only compete).
#include <fmt/format.h>
#include <sys/stat.h>

#include "yunzhi/base/ids.h"
#include "yunzhi/base/log.h"

#include "hub/registry_impl.h"

namespace yunzhi::hub {
namespace {

// Finished jobs kept for GetImport; older ones are forgotten.
constexpr size_t kKeptFinishedJobs = 100;

}  // namespace

std::string_view JobStateName(ImportJob::State state) {
  switch (state) {
    case ImportJob::State::kQueued:
      return "queued";
    case ImportJob::State::kRunning:
      return "running";
    case ImportJob::State::kSucceeded:
      return "succeeded";
    case ImportJob::State::kFailed:
      return "failed";
  }
  return "unknown";
}

Result<ImportJob> Registry::Impl::StartImport(const std::filesystem::path& source, std::string name,
                                              bool replace) {
  // The cheap checks answer the caller directly.
  if (name.empty()) {
    YZ_ASSIGN_OR_RETURN(name, DefaultModelName(source));
  }
  YZ_RETURN_IF_ERROR(ValidateModelName(name));
  if (!source.is_absolute()) {
    return InvalidArgumentError(
        fmt::format("'{}' is not an absolute path on the server", source.string()), "path");
  }
  struct stat st {};
  if (::stat(source.c_str(), &st) != 0) {
    return Error(Code::kNotFound, fmt::format("model source {} does not exist", source.string()),
                 "path");
  }

  auto job = std::make_shared<Job>();
  job->info.id = NewId("imp", clock);
  job->info.source_path = source.string();
  job->info.name = name;
  job->info.replace = replace;
  job->info.created_at_ms = clock.NowUnixMs();
  std::lock_guard lock(jobs_mutex);
  if (stopping) return UnavailableError("the registry is shutting down");
  jobs.push_back(job);
  queue.push_back(job);
  if (!worker.joinable()) worker = std::thread([this] { WorkerLoop(); });
  jobs_cv.notify_one();
  return job->info;
}

void Registry::Impl::WorkerLoop() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(jobs_mutex);
      jobs_cv.wait(lock, [this] { return stopping || !queue.empty(); });
      if (stopping) return;
      job = queue.front();
      queue.pop_front();
      job->info.state = ImportJob::State::kRunning;
    }
    ImportOptions options;
    options.replace = job->info.replace;
    options.cancel = &job->cancel;
    options.progress = [this, job](uint64_t done, uint64_t total) {
      std::lock_guard lock(jobs_mutex);
      job->info.bytes_done = done;
      job->info.bytes_total = total;
    };
    Result<ModelInfo> result = [&]() -> Result<ModelInfo> {
      try {
        return Import(job->info.source_path, job->info.name, options);
      } catch (const std::exception& e) {
        return InternalError(fmt::format("import failed: {}", e.what()));
      }
    }();
    if (!result) {
      log::Warn("model_import_failed", {{"job", job->info.id},
                                        {"source", job->info.source_path},
                                        {"error", result.error().message}});
    }
    std::lock_guard lock(jobs_mutex);
    job->info.finished_at_ms = clock.NowUnixMs();
    if (result) {
      job->info.state = ImportJob::State::kSucceeded;
      job->info.model = std::move(*result);
    } else {
      job->info.state = ImportJob::State::kFailed;
      job->info.error = std::move(result).error();
    }
    // Forget the oldest finished jobs beyond the limit.
    size_t n_finished = 0;
    for (const auto& j : jobs) n_finished += j->info.finished_at_ms.has_value();
    for (auto it = jobs.begin(); n_finished > kKeptFinishedJobs && it != jobs.end();) {
      if ((*it)->info.finished_at_ms) {
        it = jobs.erase(it);
        --n_finished;
      } else {
        ++it;
      }
    }
  }
}

Result<ImportJob> Registry::Impl::GetImport(std::string_view id) const {
  std::lock_guard lock(jobs_mutex);
  for (const auto& j : jobs) {
    if (j->info.id == id) return j->info;
  }
  return Error(Code::kNotFound, fmt::format("import '{}' does not exist", id));
}

std::vector<ImportJob> Registry::Impl::ListImports() const {
  std::lock_guard lock(jobs_mutex);
  std::vector<ImportJob> out;
  for (const auto& j : jobs) out.push_back(j->info);
  return out;
}

void Registry::Impl::StopJobs() {
  {
    std::lock_guard lock(jobs_mutex);
    stopping = true;
    for (const auto& j : jobs) j->cancel = true;
    jobs_cv.notify_all();
  }
  if (worker.joinable()) worker.join();
}

}  // namespace yunzhi::hub
