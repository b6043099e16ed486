// A fresh in-memory store with the platform schema, for platform tests.
#pragma once

#include <memory>

#include <gtest/gtest.h>

#include "yunzhi/base/clock.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/store/database.h"

namespace yunzhi::platform::testing {

inline std::unique_ptr<store::Database> NewDatabase() {
  store::DatabaseOptions options;
  options.url = ":memory:";
  auto db = store::Database::Open(options);
  EXPECT_TRUE(db.has_value()) << db.error().ToString();
  auto migrated = MigrateSchema(**db);
  EXPECT_TRUE(migrated.has_value()) << migrated.error().ToString();
  return std::move(*db);
}

}  // namespace yunzhi::platform::testing
