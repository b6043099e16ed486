#include "yunzhi/store/tenant_stores.h"

#include <sys/stat.h>

#include <cerrno>
#include <map>
#include <mutex>
#include <system_error>

#include <fmt/format.h>

#include "yunzhi/base/posix.h"

namespace yunzhi::store {

namespace fs = std::filesystem;

struct TenantStores::State {
  TenantStoresOptions options;
  std::mutex mutex;
  struct Open {
    std::shared_ptr<store::Database> db;
    std::shared_ptr<BlobStore> blobs;
  };
  std::map<std::string, Open, std::less<>> open;
  // Serialises first opens of one tenant (migrations) without holding `mutex` while opening.
  std::mutex open_mutex;
};

TenantStores::TenantStores(TenantStoresOptions options) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
}
TenantStores::~TenantStores() = default;

namespace {
Status MakeDir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return UnavailableError(fmt::format("cannot create directory {}: {}", dir.string(), OsReason(errno)));
  }
  return OkStatus();
}
}  // namespace

Result<std::unique_ptr<TenantStores>> TenantStores::Open(TenantStoresOptions options) {
  if (options.root.empty()) return InvalidArgumentError("tenant stores need a root directory");
  std::error_code ec;
  options.root = fs::absolute(options.root, ec);
  if (ec) return UnavailableError(fmt::format("bad tenants directory: {}", ec.message()));
  fs::create_directories(options.root.parent_path(), ec);
  YZ_RETURN_IF_ERROR(MakeDir(options.root));
  return std::unique_ptr<TenantStores>(new TenantStores(std::move(options)));
}

bool TenantStores::IsValidTenantId(std::string_view id) {
  if (id.size() < 5 || id.size() > 64 || id.substr(0, 4) != "ten_") return false;
  for (char c : id.substr(4)) {
    const bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!ok) return false;
  }
  return true;
}

fs::path TenantStores::DirOf(std::string_view tenant_id) const {
  return state_->options.root / std::string(tenant_id);
}

Result<std::shared_ptr<Database>> TenantStores::DatabaseOf(std::string_view tenant_id) {
  if (!IsValidTenantId(tenant_id)) {
    return InvalidArgumentError(fmt::format("'{}' is not a tenant id", tenant_id));
  }
  {
    std::lock_guard lock(state_->mutex);
    auto it = state_->open.find(tenant_id);
    if (it != state_->open.end() && it->second.db) return it->second.db;
  }
  std::lock_guard open_lock(state_->open_mutex);
  {
    std::lock_guard lock(state_->mutex);
    auto it = state_->open.find(tenant_id);
    if (it != state_->open.end() && it->second.db) return it->second.db;
  }
  const fs::path dir = DirOf(tenant_id);
  YZ_RETURN_IF_ERROR(MakeDir(dir));
  DatabaseOptions o;
  o.url = "sqlite:" + (dir / "tenant.db").string();
  o.busy_timeout = state_->options.busy_timeout;
  o.max_connections = state_->options.max_connections_per_tenant;
  o.sqlite_connection_hooks = state_->options.sqlite_connection_hooks;
  YZ_ASSIGN_OR_RETURN(auto db, Database::Open(o));
  for (const auto& [module, migrations] : state_->options.migrations) {
    YZ_RETURN_IF_ERROR(Migrate(*db, module, migrations));
  }
  std::shared_ptr<store::Database> shared = std::move(db);
  std::lock_guard lock(state_->mutex);
  state_->open[std::string(tenant_id)].db = shared;
  return shared;
}

Result<std::shared_ptr<BlobStore>> TenantStores::Blobs(std::string_view tenant_id) {
  if (!IsValidTenantId(tenant_id)) {
    return InvalidArgumentError(fmt::format("'{}' is not a tenant id", tenant_id));
  }
  std::lock_guard open_lock(state_->open_mutex);
  {
    std::lock_guard lock(state_->mutex);
    auto it = state_->open.find(tenant_id);
    if (it != state_->open.end() && it->second.blobs) return it->second.blobs;
  }
  const fs::path dir = DirOf(tenant_id);
  YZ_RETURN_IF_ERROR(MakeDir(dir));
  YZ_ASSIGN_OR_RETURN(auto blobs, BlobStore::Open(dir / "blobs"));
  std::shared_ptr<BlobStore> shared = std::move(blobs);
  std::lock_guard lock(state_->mutex);
  state_->open[std::string(tenant_id)].blobs = shared;
  return shared;
}

std::vector<std::string> TenantStores::ExistingTenants() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(state_->options.root, ec)) {
    std::string name = entry.path().filename().string();
    if (IsValidTenantId(name) && fs::exists(entry.path() / "tenant.db")) out.push_back(name);
  }
  return out;
}

Status TenantStores::Purge(std::string_view tenant_id) {
  if (!IsValidTenantId(tenant_id)) {
    return InvalidArgumentError(fmt::format("'{}' is not a tenant id", tenant_id));
  }
  std::lock_guard open_lock(state_->open_mutex);
  {
    std::lock_guard lock(state_->mutex);
    state_->open.erase(std::string(tenant_id));
  }
  std::error_code ec;
  fs::remove_all(DirOf(tenant_id), ec);
  if (ec) {
    return UnavailableError(
        fmt::format("cannot remove {}: {}", DirOf(tenant_id).string(), ec.message()));
  }
  return OkStatus();
}

}  // namespace yunzhi::store
