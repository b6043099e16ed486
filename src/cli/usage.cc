#include "cli/usage.h"

#include <cstdio>

#include <fmt/format.h>

#include "yunzhi/base/clock.h"
#include "yunzhi/platform/billing.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/platform/tenants.h"

namespace yunzhi::cli {
namespace {

// Midnight UTC of "YYYY-MM-DD" (plus one day when `end`).
Result<int64_t> ParseDay(const std::string& text, bool end) {
  auto bad = [&] { return InvalidArgumentError(fmt::format("'{}' is not a date (YYYY-MM-DD)", text)); };
  if (text.size() != 10 || text[7] != '-') return bad();
  auto month = platform::Billing::MonthRange(text.substr(0, 7));
  if (!month) return bad();
  int day = 0;
  for (char c : text.substr(8)) {
    if (c < '0' || c > '9') return bad();
    day = day * 10 + (c - '0');
  }
  const int64_t start = month->first + (day - 1) * int64_t{86'400'000};
  if (day < 1 || start >= month->second) return bad();
  return end ? start + 86'400'000 : start;
}

}  // namespace

int RunUsage(const GlobalFlags& flags, const UsageFlags& usage) {
  auto loaded = LoadCliConfig(flags);
  if (!loaded) return PrintError(loaded.error());
  auto dir = store::DataDir::Open(loaded->config.data_dir);
  if (!dir) return PrintError(dir.error());
  auto st = OpenStore(loaded->config, *dir);
  if (!st) return PrintError(st.error());
  platform::UsageQuery q;
  q.group_by = usage.group_by;
  if (!usage.tenant.empty()) {
    platform::Tenants tenants(*st->db, *Clock::System());
    auto t = tenants.Find(usage.tenant);
    if (!t) return PrintError(t.error());
    q.tenant_id = t->id;
  }
  if (usage.from.empty()) {
    const std::string this_month = FormatTime(Clock::System()->NowUnixMs()).substr(0, 7);
    q.from_ms = platform::Billing::MonthRange(this_month).value().first;
  } else {
    auto from = ParseDay(usage.from, false);
    if (!from) return PrintError(from.error());
    q.from_ms = *from;
  }
  if (!usage.to.empty()) {
    auto to = ParseDay(usage.to, true);
    if (!to) return PrintError(to.error());
    q.to_ms = *to;
  }
  auto groups = platform::Meter::Aggregate(*st->db, q);
  if (!groups) return PrintError(groups.error());
  if (usage.csv) {
    std::fputs(platform::Meter::GroupsCsv(*groups, q.group_by).c_str(), stdout);
    return 0;
  }
  std::printf("%-32s  %-16s  %8s  %12s  %12s  %12s  %10s  %12s\n", q.group_by.c_str(), "KIND", "RECORDS",
              "PROMPT", "CACHED", "COMPLETION", "OCR PAGES", "COMPUTE MS");
  for (const auto& g : *groups) {
    std::printf("%-32s  %-16s  %8lld  %12lld  %12lld  %12lld  %10lld  %12lld\n", g.group.c_str(),
                g.kind.c_str(), static_cast<long long>(g.n_records),
                static_cast<long long>(g.q.prompt_tokens), static_cast<long long>(g.q.cached_prompt_tokens),
                static_cast<long long>(g.q.completion_tokens), static_cast<long long>(g.q.ocr_pages),
                static_cast<long long>(g.q.compute_ms));
  }
  return 0;
}

}  // namespace yunzhi::cli
