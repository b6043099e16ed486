#include "yunzhi/platform/metering.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/base/log.h"

namespace yunzhi::platform {
namespace json = boost::json;
namespace {

constexpr std::string_view kColumns =
    "request_id, kind, tenant_id, key_id, model, base_model, prompt_tokens, cached_prompt_tokens, "
    "completion_tokens, bytes, pages, ocr_pages, byte_hours, compute_ms, time_ms";

UsageRecord FromRow(const store::Row& row) {
  UsageRecord r;
  r.request_id = row.Text(0);
  r.kind = row.Text(1);
  r.tenant_id = row.Text(2);
  r.key_id = row.Text(3);
  r.model = row.Text(4);
  r.base_model = row.Text(5);
  r.q.prompt_tokens = row.Int(6);
  r.q.cached_prompt_tokens = row.Int(7);
  r.q.completion_tokens = row.Int(8);
  r.q.bytes = row.Int(9);
  r.q.pages = row.Int(10);
  r.q.ocr_pages = row.Int(11);
  r.q.byte_hours = row.Int(12);
  r.q.compute_ms = row.Int(13);
  r.time_ms = row.Int(14);
  return r;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return UnavailableError(fmt::format("cannot write the usage journal {}: {}", path, strerror(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

// The UTC day of a wall time, "YYYY-MM-DD" (civil-from-days, proleptic Gregorian).
std::string UtcDay(int64_t unix_ms) {
  int64_t days = unix_ms >= 0 ? unix_ms / 86'400'000 : (unix_ms - 86'399'999) / 86'400'000;
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const int64_t doe = days - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = yoe + era * 400;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  const int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const int64_t m = mp < 10 ? mp + 3 : mp - 9;
  if (m <= 2) ++y;
  return fmt::format("{:04d}-{:02d}-{:02d}", y, m, d);
}

void Add(UsageQuantities& a, const UsageQuantities& b) {
  a.prompt_tokens += b.prompt_tokens;
  a.cached_prompt_tokens += b.cached_prompt_tokens;
  a.completion_tokens += b.completion_tokens;
  a.bytes += b.bytes;
  a.pages += b.pages;
  a.ocr_pages += b.ocr_pages;
  a.byte_hours += b.byte_hours;
  a.compute_ms += b.compute_ms;
}

}  // namespace

bool IsUsageKind(std::string_view kind) {
  return kind == kUsageChatTokens || kind == kUsageEmbeddingTokens || kind == kUsageRerankTokens ||
         kind == kUsageDocumentIngest || kind == kUsageStorageSample || kind == kUsageModelLoad;
}

Status ValidateUsageRecord(const UsageRecord& r) {
  if (r.request_id.empty()) return InvalidArgumentError("a usage record needs a request id", "request_id");
  if (!IsUsageKind(r.kind)) {
    return InvalidArgumentError(fmt::format("unknown usage kind '{}'", r.kind), "kind");
  }
  if (r.tenant_id.empty()) return InvalidArgumentError("a usage record needs a tenant", "tenant_id");
  const auto& q = r.q;
  for (int64_t v : {q.prompt_tokens, q.cached_prompt_tokens, q.completion_tokens, q.bytes, q.pages,
                    q.ocr_pages, q.byte_hours, q.compute_ms}) {
    if (v < 0) return InvalidArgumentError("usage quantities cannot be negative");
  }
  if (q.cached_prompt_tokens > q.prompt_tokens) {
    return InvalidArgumentError("cached prompt tokens exceed prompt tokens", "cached_prompt_tokens");
  }
  return OkStatus();
}

std::string Meter::ToJsonLine(const UsageRecord& r) {
  json::object o{{"request_id", r.request_id},
                 {"kind", r.kind},
                 {"tenant_id", r.tenant_id},
                 {"key_id", r.key_id},
                 {"model", r.model},
                 {"base_model", r.base_model},
                 {"prompt_tokens", r.q.prompt_tokens},
                 {"cached_prompt_tokens", r.q.cached_prompt_tokens},
                 {"completion_tokens", r.q.completion_tokens},
                 {"bytes", r.q.bytes},
                 {"pages", r.q.pages},
                 {"ocr_pages", r.q.ocr_pages},
                 {"byte_hours", r.q.byte_hours},
                 {"compute_ms", r.q.compute_ms},
                 {"time_ms", r.time_ms}};
  return json::serialize(o);
}

Result<UsageRecord> Meter::FromJsonLine(std::string_view line) {
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec || !v.is_object()) return InvalidArgumentError("a usage journal line is not a JSON object");
  const json::object& o = v.as_object();
  UsageRecord r;
  auto str = [&](std::string_view k, std::string& out) -> bool {
    const json::value* f = o.if_contains(k);
    if (f == nullptr || !f->is_string()) return false;
    out = std::string(f->as_string());
    return true;
  };
  auto num = [&](std::string_view k, int64_t& out) -> bool {
    const json::value* f = o.if_contains(k);
    if (f == nullptr || !f->is_int64()) return false;
    out = f->as_int64();
    return true;
  };
  const bool ok = str("request_id", r.request_id) && str("kind", r.kind) &&
                  str("tenant_id", r.tenant_id) && str("key_id", r.key_id) && str("model", r.model) &&
                  str("base_model", r.base_model) && num("prompt_tokens", r.q.prompt_tokens) &&
                  num("cached_prompt_tokens", r.q.cached_prompt_tokens) &&
                  num("completion_tokens", r.q.completion_tokens) && num("bytes", r.q.bytes) &&
                  num("pages", r.q.pages) && num("ocr_pages", r.q.ocr_pages) &&
                  num("byte_hours", r.q.byte_hours) && num("compute_ms", r.q.compute_ms) &&
                  num("time_ms", r.time_ms);
  if (!ok) return InvalidArgumentError("a usage journal line lacks a field or has a wrong type");
  YZ_RETURN_IF_ERROR(ValidateUsageRecord(r));
  return r;
}

Result<std::unique_ptr<Meter>> Meter::Open(store::Database& db, std::string journal_path,
                                           const Clock& clock) {
  std::unique_ptr<Meter> m(new Meter(db, std::move(journal_path), clock));
  // Replay what a previous process journaled but may not have committed. A torn last line (the
  // crash came mid-write, before its fsync returned, so its Record never succeeded) is skipped.
  {
    std::ifstream in(m->journal_path_);
    std::string line;
    int64_t replayed = 0, skipped = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      auto r = FromJsonLine(line);
      if (!r) {
        ++skipped;
        continue;
      }
      YZ_RETURN_IF_ERROR(m->Insert(m->db_, *r));
      ++replayed;
    }
    if (replayed + skipped > 0) {
      log::Info("usage_journal_replayed", {{"records", replayed}, {"skipped", skipped},
                                           {"path", m->journal_path_}});
    }
  }
  m->fd_ = ::open(m->journal_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (m->fd_ < 0) {
    return UnavailableError(
        fmt::format("cannot open the usage journal {}: {}", m->journal_path_, strerror(errno)));
  }
  if (::ftruncate(m->fd_, 0) != 0 || ::fsync(m->fd_) != 0) {
    return UnavailableError(
        fmt::format("cannot reset the usage journal {}: {}", m->journal_path_, strerror(errno)));
  }
  return m;
}

Meter::~Meter() {
  if (fd_ >= 0) ::close(fd_);
}

Status Meter::Insert(store::Executor& db, const UsageRecord& r) {
  // ON CONFLICT DO NOTHING: a second insert of the same (request_id, kind) is the idempotent
  // case, and must not abort the batch's transaction.
  auto inserted = db.Execute(
      fmt::format("INSERT INTO usage_records ({}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                  "ON CONFLICT(request_id, kind) DO NOTHING",
                  kColumns),
      {r.request_id, r.kind, r.tenant_id, r.key_id, r.model, r.base_model, r.q.prompt_tokens,
       r.q.cached_prompt_tokens, r.q.completion_tokens, r.q.bytes, r.q.pages, r.q.ocr_pages,
       r.q.byte_hours, r.q.compute_ms, r.time_ms});
  if (!inserted && inserted.error().code != Code::kAlreadyExists) return inserted.error();
  return OkStatus();
}

Status Meter::Record(UsageRecord record) {
  if (record.time_ms == 0) record.time_ms = clock_.NowUnixMs();
  YZ_RETURN_IF_ERROR(ValidateUsageRecord(record));
  const std::string line = ToJsonLine(record) + "\n";
  std::unique_lock lock(mutex_);
  // One write(2) per line on an O_APPEND descriptor: lines never interleave.
  YZ_RETURN_IF_ERROR(WriteAll(fd_, line, journal_path_));
  const int64_t mine = ++appended_;
  batch_.push_back(std::move(record));
  while (flushed_ < mine) {
    if (flushing_) {
      flushed_cv_.wait(lock);
      continue;
    }
    // This thread flushes everything appended so far, for itself and the waiting others.
    flushing_ = true;
    const int64_t target = appended_;
    std::vector<UsageRecord> batch = std::move(batch_);
    batch_.clear();
    lock.unlock();
    Status result = OkStatus();
    if (::fsync(fd_) != 0) {
      result = UnavailableError(
          fmt::format("cannot sync the usage journal {}: {}", journal_path_, strerror(errno)));
    } else {
      if (const char* fault = std::getenv("YUNZHI_FAULT");
          fault != nullptr && std::string_view(fault) == "usage_after_journal") {
        ::_exit(137);  // tests: a crash between the journal and the database
      }
      Status inserted = db_.Transact([&](store::Executor& tx) -> Status {
        for (const auto& r : batch) YZ_RETURN_IF_ERROR(Insert(tx, r));
        return OkStatus();
      });
      if (!inserted) {
        // The lines stay in the journal and the next Open() replays them: the records are safe
        // but not yet visible.
        log::Warn("usage_insert_failed", {{"records", static_cast<int64_t>(batch.size())},
                                          {"error", inserted.error().message}});
      }
      lock.lock();
      dirty_ = dirty_ || !inserted;
      lock.unlock();
    }
    lock.lock();
    flushing_ = false;
    if (!result) {
      // Not durable: give the batch back so the next flusher retries the fsync.
      for (auto& r : batch) batch_.push_back(std::move(r));
      flushed_cv_.notify_all();
      return result;
    }
    flushed_ = std::max(flushed_, target);
    if (flushed_ == appended_ && !dirty_) {
      // Every line written is in the database and nobody waits: start the journal afresh.
      // (The counters keep counting: waiters compare them with their own line's number.)
      if (::ftruncate(fd_, 0) != 0) {
        log::Warn("usage_journal_truncate_failed", {{"error", std::string(strerror(errno))}});
      }
    }
    flushed_cv_.notify_all();
  }
  return OkStatus();
}

Result<std::vector<UsageRecord>> Meter::ListFrom(store::Executor& db, std::string_view tenant_id,
                                                 int64_t from_ms, int64_t to_ms) {
  std::string sql = fmt::format("SELECT {} FROM usage_records WHERE time_ms >= ? AND time_ms < ?", kColumns);
  std::vector<store::Value> params{from_ms, to_ms};
  if (!tenant_id.empty()) {
    sql += " AND tenant_id = ?";
    params.emplace_back(std::string(tenant_id));
  }
  sql += " ORDER BY time_ms, request_id, kind";
  YZ_ASSIGN_OR_RETURN(auto rows, db.Query(sql, std::move(params)));
  std::vector<UsageRecord> out;
  out.reserve(rows.size());
  for (const auto& row : rows) out.push_back(FromRow(row));
  return out;
}

Result<std::vector<UsageRecord>> Meter::List(std::string_view tenant_id, int64_t from_ms, int64_t to_ms) {
  return ListFrom(db_, tenant_id, from_ms, to_ms);
}

Result<std::vector<UsageGroup>> Meter::Aggregate(store::Executor& db, const UsageQuery& query) {
  if (query.group_by != "day" && query.group_by != "model" && query.group_by != "key") {
    return InvalidArgumentError(
        fmt::format("group_by must be day, model or key, not '{}'", query.group_by), "group_by");
  }
  YZ_ASSIGN_OR_RETURN(auto records, ListFrom(db, query.tenant_id, query.from_ms, query.to_ms));
  std::map<std::pair<std::string, std::string>, UsageGroup> groups;
  for (const auto& r : records) {
    std::string g = query.group_by == "day" ? UtcDay(r.time_ms)
                    : query.group_by == "model" ? r.model
                                                : r.key_id;
    UsageGroup& u = groups[{g, r.kind}];
    u.group = std::move(g);
    u.kind = r.kind;
    ++u.n_records;
    Add(u.q, r.q);
  }
  std::vector<UsageGroup> out;
  for (auto& [k, g] : groups) out.push_back(std::move(g));
  return out;
}

Status RecordStorageHour(Meter& meter, std::string_view tenant_id, int64_t stored_bytes,
                         int64_t unix_hour) {
  UsageRecord r;
  r.request_id = fmt::format("storage-{}-{}", tenant_id, unix_hour);
  r.kind = std::string(kUsageStorageSample);
  r.tenant_id = std::string(tenant_id);
  r.q.bytes = stored_bytes;
  r.q.byte_hours = stored_bytes;  // × 1 hour
  r.time_ms = unix_hour * 3'600'000;
  return meter.Record(std::move(r));
}

std::string Meter::GroupsCsv(const std::vector<UsageGroup>& groups, std::string_view group_by) {
  std::string out = fmt::format(
      "{},kind,records,prompt_tokens,cached_prompt_tokens,completion_tokens,bytes,pages,ocr_pages,"
      "byte_hours,compute_ms\r\n",
      group_by);
  for (const auto& g : groups) {
    // Model names and key ids may hold commas or quotes: quote per RFC 4180.
    std::string field = g.group;
    if (field.find_first_of(",\"\r\n") != std::string::npos) {
      std::string quoted = "\"";
      for (char c : field) {
        if (c == '"') quoted += '"';
        quoted += c;
      }
      field = quoted + "\"";
    }
    out += fmt::format("{},{},{},{},{},{},{},{},{},{},{}\r\n", field, g.kind, g.n_records,
                       g.q.prompt_tokens, g.q.cached_prompt_tokens, g.q.completion_tokens,
                       g.q.bytes, g.q.pages, g.q.ocr_pages, g.q.byte_hours, g.q.compute_ms);
  }
  return out;
}

}  // namespace yunzhi::platform
