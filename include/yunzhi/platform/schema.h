// The platform module's tables (tenants, api_keys) and their migrations.
#pragma once

#include "yunzhi/base/status.h"
#include "yunzhi/store/database.h"

namespace yunzhi::platform {

// Brings the platform tables up to date. Errors: see store::Migrate.
Status MigrateSchema(store::Database& db);

}  // namespace yunzhi::platform
