#include "cli/common.h"

#include <cstdio>
#include <ctime>

#include <fmt/format.h>

#include "yunzhi/base/clock.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/platform/tenants.h"

namespace yunzhi::cli {

Result<LoadedConfig> LoadCliConfig(const GlobalFlags& flags,
                                   std::vector<std::pair<std::string, std::string>> overrides) {
  ConfigSources sources;
  sources.file = flags.config_file;
  sources.env = ConfigSources::FromProcessEnvironment();
  if (!flags.data_dir.empty()) overrides.emplace_back("data_dir", flags.data_dir);
  if (!flags.log_level.empty()) overrides.emplace_back("log.level", flags.log_level);
  sources.overrides = std::move(overrides);
  return LoadConfig(sources);
}

Result<Store> OpenStore(const Config& config, const store::DataDir& dir) {
  Store out;
  store::DatabaseOptions options;
  options.url = config.store.url.empty() ? dir.database_url() : config.store.url;
  options.busy_timeout = std::chrono::milliseconds(config.store.busy_timeout_ms);
  YZ_ASSIGN_OR_RETURN(out.db, store::Database::Open(options));
  YZ_RETURN_IF_ERROR(platform::MigrateSchema(*out.db));
  platform::Tenants tenants(*out.db, *Clock::System());
  YZ_RETURN_IF_ERROR(tenants.EnsureSystem());
  return out;
}

int PrintError(const Error& error) {
  std::fprintf(stderr, "error: %s\n", error.message.c_str());
  return error.code == Code::kInvalidArgument ? 2 : 1;
}

std::string FormatTime(std::optional<int64_t> unix_ms) {
  if (!unix_ms) return "-";
  std::time_t t = static_cast<std::time_t>(*unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

}  // namespace yunzhi::cli
