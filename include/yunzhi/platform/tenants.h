// Tenants (organisations): the unit of isolation, metering and billing.
//
// One tenant is the *system* tenant, created at first start: the platform operator. Its admin
// keys administer the whole platform (create and delete tenants, manage any tenant's keys);
// admin keys of other tenants administer only their own tenant.
//
// Thread safety: Tenants is safe from many threads (all state is in the database).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/status.h"
#include "yunzhi/store/database.h"

namespace yunzhi::platform {

struct Tenant {
  std::string id;    // "ten_01J..."
  std::string name;  // unique, [a-z0-9][a-z0-9_-]{0,62}
  bool system = false;
  int64_t created_at_ms = 0;
};

inline constexpr std::string_view kSystemTenantName = "system";

class Tenants {
 public:
  // `db` and `clock` must outlive this object; the platform schema must be migrated.
  Tenants(store::Database& db, const Clock& clock) : db_(db), clock_(clock) {}

  // Creates a tenant. Errors: kInvalidArgument for a bad name, kAlreadyExists for a taken one.
  Result<Tenant> Create(std::string_view name);
  // Returns the system tenant, creating it on first call.
  Result<Tenant> EnsureSystem();
  // Looks a tenant up by id ("ten_...") or by name. Errors: kNotFound.
  Result<Tenant> Find(std::string_view id_or_name);
  // All tenants, oldest first.
  Result<std::vector<Tenant>> List();
  // Deletes a tenant and (by cascade) its keys. Errors: kNotFound; kFailedPrecondition for the
  // system tenant.
  Status Delete(std::string_view id_or_name);

  // Validates a tenant name (also used by the API to report the `param`).
  static Status ValidateName(std::string_view name);

 private:
  store::Database& db_;
  const Clock& clock_;
};

}  // namespace yunzhi::platform
