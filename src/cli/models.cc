#include "cli/models.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/base/log.h"
#include "yunzhi/hub/registry.h"
#include "yunzhi/store/blob_store.h"

namespace yunzhi::cli {
namespace {

namespace json = boost::json;

struct Session {
  Store store;
  std::unique_ptr<store::BlobStore> blobs;
  std::unique_ptr<hub::Registry> registry;
};

Result<Session> Open(const GlobalFlags& flags) {
  YZ_ASSIGN_OR_RETURN(auto loaded, LoadCliConfig(flags));
  // The commands print their own results; the registry's info lines would only repeat them.
  log::Options log_options = loaded.config.LogOptions();
  if (flags.log_level.empty()) log_options.level = std::max(log_options.level, log::Level::kWarn);
  YZ_RETURN_IF_ERROR(log::Init(log_options));
  YZ_ASSIGN_OR_RETURN(auto dir, store::DataDir::Open(loaded.config.data_dir));
  Session s;
  YZ_ASSIGN_OR_RETURN(s.store, OpenStore(loaded.config, dir));
  YZ_ASSIGN_OR_RETURN(s.blobs, store::BlobStore::Open(dir.blobs_path()));
  YZ_ASSIGN_OR_RETURN(s.registry, hub::Registry::Open(*s.store.db, *s.blobs, dir.models_path()));
  return s;
}

std::string Scaled(double v, const char* unit) {
  return v < 10 ? fmt::format("{:.1f}{}", v, unit) : fmt::format("{:.0f}{}", v, unit);
}

std::string KeepAlive(const std::optional<int64_t>& ms) {
  if (!ms) return "default";
  if (*ms < 0) return "forever";
  return fmt::format("{} s", static_cast<double>(*ms) / 1000.0);
}

// Progress on stderr: a line at most every half second (rewritten in place on a terminal), and
// the final one.
class ProgressPrinter {
 public:
  ProgressPrinter()
      : tty_(::isatty(STDERR_FILENO) == 1), start_(Clock::now()), last_print_(start_) {}
  void Update(uint64_t done, uint64_t total) {
    const auto now = Clock::now();
    const bool last = done == total;
    if (!last && now - last_print_ < std::chrono::milliseconds(500)) return;
    if (last && printed_last_) return;
    printed_last_ = last;
    last_print_ = now;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    const double mb_per_s = seconds > 0 ? static_cast<double>(done) / 1e6 / seconds : 0.0;
    const double percent = total > 0 ? 100.0 * static_cast<double>(done) / total : 100.0;
    std::fprintf(stderr, "%simporting: %5.1f%%  %s of %s  %.0f MB/s%s", tty_ ? "\r" : "", percent,
                 FormatBytes(static_cast<int64_t>(done)).c_str(),
                 FormatBytes(static_cast<int64_t>(total)).c_str(), mb_per_s,
                 tty_ && !last ? "" : "\n");
    std::fflush(stderr);
  }

 private:
  using Clock = std::chrono::steady_clock;
  const bool tty_;
  const Clock::time_point start_;
  Clock::time_point last_print_;  // the first line comes half a second in, or at the end
  bool printed_last_ = false;
};

json::object ToJson(const hub::ModelInfo& m) {
  json::array files;
  for (const auto& f : m.files) {
    files.push_back(
        json::object{{"name", f.name}, {"digest", f.digest}, {"size_bytes", f.size_bytes}});
  }
  json::object o{{"id", m.id},
                 {"name", m.name},
                 {"format", std::string(hub::FormatName(m.format))},
                 {"kind", m.kind},
                 {"architecture", m.architecture},
                 {"n_params", m.n_params},
                 {"weight_type", m.weight_type},
                 {"context_tokens", m.context_tokens},
                 {"has_chat_template", m.has_chat_template},
                 {"size_bytes", m.size_bytes},
                 {"digest", m.digest},
                 {"created_at", m.created_at_ms / 1000},
                 {"source_path", m.source_path},
                 {"path", m.path},
                 {"files", std::move(files)}};
  if (m.keep_alive_ms) {
    o["keep_alive_ms"] = *m.keep_alive_ms;
  } else {
    o["keep_alive_ms"] = nullptr;
  }
  return o;
}

}  // namespace

std::string FormatParams(int64_t n) {
  const double v = static_cast<double>(n);
  if (n >= 1'000'000'000) return Scaled(v / 1e9, "B");
  if (n >= 1'000'000) return Scaled(v / 1e6, "M");
  if (n >= 1'000) return Scaled(v / 1e3, "K");
  return std::to_string(n);
}

std::string FormatBytes(int64_t n) {
  const double v = static_cast<double>(n);
  if (n >= 1'000'000'000) return Scaled(v / 1e9, " GB");
  if (n >= 1'000'000) return Scaled(v / 1e6, " MB");
  if (n >= 1'000) return Scaled(v / 1e3, " KB");
  return fmt::format("{} B", n);
}

int RunImport(const GlobalFlags& flags, const ImportFlags& import) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  ProgressPrinter printer;
  hub::ImportOptions options;
  options.replace = import.replace;
  options.progress = [&printer](uint64_t done, uint64_t total) { printer.Update(done, total); };
  auto m = s->registry->Import(import.path, import.name, options);
  if (!m) return PrintError(m.error());
  std::printf("imported %s (%s): %s, %s, %s params, %s, context %lld, %s%s\n", m->name.c_str(),
              m->id.c_str(), m->kind.c_str(), m->architecture.c_str(), FormatParams(m->n_params).c_str(),
              m->weight_type.c_str(), static_cast<long long>(m->context_tokens),
              FormatBytes(m->size_bytes).c_str(), m->has_chat_template ? ", chat template" : "");
  return 0;
}

int RunList(const GlobalFlags& flags) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto models = s->registry->List();
  if (!models) return PrintError(models.error());
  size_t name_width = 4;
  for (const auto& m : *models) name_width = std::max(name_width, m.name.size());
  const std::string row = fmt::format(
      "{{:<{}}}  {{:<30}}  {{:<8}}  {{:>6}}  {{:<5}}  {{:>6}}  "
      "{{:>8}}  {{:<19}}  {{}}\n",
      name_width);
  std::fputs(fmt::format(fmt::runtime(row), "NAME", "ID", "ARCH", "PARAMS", "TYPE", "CTX", "SIZE",
                         "CREATED (UTC)", "KIND")
                 .c_str(),
             stdout);
  for (const auto& m : *models) {
    std::fputs(fmt::format(fmt::runtime(row), m.name, m.id, m.architecture,
                           FormatParams(m.n_params), m.weight_type, m.context_tokens,
                           FormatBytes(m.size_bytes), FormatTime(m.created_at_ms), m.kind)
                   .c_str(),
               stdout);
  }
  return 0;
}

int RunShow(const GlobalFlags& flags, const std::string& name, bool as_json) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto m = s->registry->Find(name);
  if (!m) return PrintError(m.error());
  if (as_json) {
    std::printf("%s\n", json::serialize(ToJson(*m)).c_str());
    return 0;
  }
  std::printf(
      "name           %s\nid             %s\nkind           %s\nformat         %s\n"
      "architecture   %s\n"
      "parameters     %s (%lld)\nweight type    %s\ncontext        %lld tokens\n"
      "chat template  %s\nsize           %s (%lld bytes)\ndigest         sha256:%s\n"
      "keep alive     %s\ncreated        %s UTC\nsource         %s\npath           %s\nfiles\n",
      m->name.c_str(), m->id.c_str(), m->kind.c_str(),
      std::string(hub::FormatName(m->format)).c_str(),
      m->architecture.c_str(), FormatParams(m->n_params).c_str(),
      static_cast<long long>(m->n_params), m->weight_type.c_str(),
      static_cast<long long>(m->context_tokens), m->has_chat_template ? "yes" : "no",
      FormatBytes(m->size_bytes).c_str(), static_cast<long long>(m->size_bytes), m->digest.c_str(),
      KeepAlive(m->keep_alive_ms).c_str(), FormatTime(m->created_at_ms).c_str(),
      m->source_path.c_str(), m->path.c_str());
  for (const auto& f : m->files) {
    std::printf("  %-40s  %10s  sha256:%s\n", f.name.c_str(), FormatBytes(f.size_bytes).c_str(),
                f.digest.c_str());
  }
  return 0;
}

int RunRemove(const GlobalFlags& flags, const std::string& name) {
  auto s = Open(flags);
  if (!s) return PrintError(s.error());
  auto m = s->registry->Remove(name);
  if (!m) return PrintError(m.error());
  std::printf("removed %s (%s)\n", m->name.c_str(), m->id.c_str());
  return 0;
}

}  // namespace yunzhi::cli
