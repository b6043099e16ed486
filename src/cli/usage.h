// `yunzhi usage`: usage records summed by day, model or key, read straight from the data dir's
// store (works with or without a running server).
#pragma once

#include <string>

#include "cli/common.h"

namespace yunzhi::cli {

struct UsageFlags {
  std::string tenant;            // id or name; empty: every tenant
  std::string from;              // YYYY-MM-DD (UTC, inclusive); empty: the start of this month
  std::string to;                // YYYY-MM-DD (UTC, inclusive); empty: no end
  std::string group_by = "day";  // day | model | key
  bool csv = false;
};

int RunUsage(const GlobalFlags& flags, const UsageFlags& usage);

}  // namespace yunzhi::cli
