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

// Written by hand rather than through a JSON object: this runs on the request path of every
// billed request (parsing, at replay only, uses Boost.JSON).
std::string Meter::ToJsonLine(const UsageRecord& r, const UsageCharge* charge) {
  std::string out;
  out.reserve(384);
  auto field = [&](std::string_view key, std::string_view value) {
    out += out.empty() ? "{\"" : ",\"";
    out += key;
    out += "\":";
    out += json::serialize(json::string_view(value));
  };
  auto number = [&](std::string_view key, int64_t value) {
    fmt::format_to(std::back_inserter(out), ",\"{}\":{}", key, value);
  };
  field("request_id", r.request_id);
  field("kind", r.kind);
  field("tenant_id", r.tenant_id);
  field("key_id", r.key_id);
  field("model", r.model);
  field("base_model", r.base_model);
  number("prompt_tokens", r.q.prompt_tokens);
  number("cached_prompt_tokens", r.q.cached_prompt_tokens);
  number("completion_tokens", r.q.completion_tokens);
  number("bytes", r.q.bytes);
  number("pages", r.q.pages);
  number("ocr_pages", r.q.ocr_pages);
  number("byte_hours", r.q.byte_hours);
  number("compute_ms", r.q.compute_ms);
  number("time_ms", r.time_ms);
  if (charge != nullptr) {
    out += ",\"charge\":{\"tenant_id\":";
    out += json::serialize(json::string_view(charge->tenant_id));
    out += ",\"key_id\":";
    out += json::serialize(json::string_view(charge->key_id));
    fmt::format_to(std::back_inserter(out), ",\"amount_nanos\":{},\"from_trial_nanos\":{},\"period\":",
                   charge->amount_nanos, charge->from_trial_nanos);
    out += json::serialize(json::string_view(charge->period));
    out += '}';
  }
  out += '}';
  return out;
}

Result<UsageRecord> Meter::FromJsonLine(std::string_view line, std::optional<UsageCharge>* charge) {
  boost::system::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec || !v.is_object()) return InvalidArgumentError("a usage journal line is not a JSON object");
  const json::object& o = v.as_object();
  UsageRecord r;
  auto str = [](const json::object& obj, std::string_view k, std::string& out) -> bool {
    const json::value* f = obj.if_contains(k);
    if (f == nullptr || !f->is_string()) return false;
    out = std::string(f->as_string());
    return true;
  };
  auto num = [](const json::object& obj, std::string_view k, int64_t& out) -> bool {
    const json::value* f = obj.if_contains(k);
    if (f == nullptr || !f->is_int64()) return false;
    out = f->as_int64();
    return true;
  };
  const bool ok = str(o, "request_id", r.request_id) && str(o, "kind", r.kind) &&
                  str(o, "tenant_id", r.tenant_id) && str(o, "key_id", r.key_id) &&
                  str(o, "model", r.model) && str(o, "base_model", r.base_model) &&
                  num(o, "prompt_tokens", r.q.prompt_tokens) &&
                  num(o, "cached_prompt_tokens", r.q.cached_prompt_tokens) &&
                  num(o, "completion_tokens", r.q.completion_tokens) && num(o, "bytes", r.q.bytes) &&
                  num(o, "pages", r.q.pages) && num(o, "ocr_pages", r.q.ocr_pages) &&
                  num(o, "byte_hours", r.q.byte_hours) && num(o, "compute_ms", r.q.compute_ms) &&
                  num(o, "time_ms", r.time_ms);
  if (!ok) return InvalidArgumentError("a usage journal line lacks a field or has a wrong type");
  YZ_RETURN_IF_ERROR(ValidateUsageRecord(r));
  if (charge != nullptr) charge->reset();
  if (const json::value* c = o.if_contains("charge")) {
    UsageCharge ch;
    if (!c->is_object() || !str(c->as_object(), "tenant_id", ch.tenant_id) ||
        !str(c->as_object(), "key_id", ch.key_id) ||
        !num(c->as_object(), "amount_nanos", ch.amount_nanos) ||
        !num(c->as_object(), "from_trial_nanos", ch.from_trial_nanos) || ch.amount_nanos < 0 ||
        ch.from_trial_nanos < 0 || ch.from_trial_nanos > ch.amount_nanos ||
        (c->as_object().contains("period") && !str(c->as_object(), "period", ch.period))) {
      return InvalidArgumentError("a usage journal line has a malformed charge");
    }
    if (charge != nullptr) *charge = std::move(ch);
  }
  return r;
}

Result<std::unique_ptr<Meter>> Meter::Open(store::Database& db, std::string journal_path,
                                           const Clock& clock, MeterOptions options) {
  std::unique_ptr<Meter> m(new Meter(db, std::move(journal_path), clock, std::move(options)));
  // Replay what a previous process journaled but may not have committed, in one transaction. A
  // torn last line (the crash came mid-write, so its Submit never returned) is skipped.
  {
    std::ifstream in(m->journal_path_);
    std::string line;
    std::vector<Pending> lines;
    int64_t skipped = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      Pending p;
      auto r = FromJsonLine(line, &p.charge);
      if (!r) {
        ++skipped;
        continue;
      }
      p.record = std::move(*r);
      lines.push_back(std::move(p));
    }
    if (!lines.empty()) {
      YZ_RETURN_IF_ERROR(m->db_.Transact([&](store::Executor& tx) { return m->InsertAll(tx, lines); }));
    }
    if (!lines.empty() || skipped > 0) {
      log::Info("usage_journal_replayed", {{"records", static_cast<int64_t>(lines.size())},
                                           {"skipped", skipped},
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
  m->writer_ = std::thread([raw = m.get()] { raw->WriterLoop(); });
  return m;
}

Meter::~Meter() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  if (fd_ >= 0) ::close(fd_);
}

Status Meter::InsertAll(store::Executor& tx, const std::vector<Pending>& batch) {
  // Charges of the records that are new, summed per account and month: one update per account
  // and batch instead of one per request. Months in order, as ApplyCharge expects.
  std::map<std::tuple<std::string, std::string, std::string>, UsageCharge> charges;
  for (const auto& p : batch) {
    const UsageRecord& r = p.record;
    // ON CONFLICT DO NOTHING: a second insert of the same (request_id, kind) is the idempotent
    // case, must not abort the batch's transaction, and must not charge twice.
    auto inserted = tx.Execute(
        fmt::format("INSERT INTO usage_records ({}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT(request_id, kind) DO NOTHING",
                    kColumns),
        {r.request_id, r.kind, r.tenant_id, r.key_id, r.model, r.base_model, r.q.prompt_tokens,
         r.q.cached_prompt_tokens, r.q.completion_tokens, r.q.bytes, r.q.pages, r.q.ocr_pages,
         r.q.byte_hours, r.q.compute_ms, r.time_ms});
    if (!inserted) {
      if (inserted.error().code == Code::kAlreadyExists) continue;
      return inserted.error();
    }
    if (*inserted != 1 || !p.charge || !options_.apply_charge) continue;
    const UsageCharge& c = *p.charge;
    UsageCharge& sum = charges[{c.period, c.tenant_id, c.key_id}];
    if (sum.tenant_id.empty()) {
      sum = c;
    } else {
      sum.amount_nanos += c.amount_nanos;
      sum.from_trial_nanos += c.from_trial_nanos;
    }
  }
  for (const auto& [k, c] : charges) {
    if (c.amount_nanos > 0) YZ_RETURN_IF_ERROR(options_.apply_charge(tx, c));
  }
  return OkStatus();
}

Result<int64_t> Meter::Append(UsageRecord record, std::optional<UsageCharge> charge) {
  if (record.time_ms == 0) record.time_ms = clock_.NowUnixMs();
  YZ_RETURN_IF_ERROR(ValidateUsageRecord(record));
  const std::string line = ToJsonLine(record, charge ? &*charge : nullptr) + "\n";
  std::lock_guard lock(mutex_);
  // One write(2) per line on an O_APPEND descriptor: lines never interleave, and a line written
  // is in the kernel's page cache, which outlives this process.
  YZ_RETURN_IF_ERROR(WriteAll(fd_, line, journal_path_));
  queue_.push_back({std::move(record), std::move(charge)});
  const int64_t mine = ++appended_;
  if (queue_.size() == 1 || queue_.size() == options_.max_batch) work_cv_.notify_one();
  return mine;
}

Status Meter::Submit(UsageRecord record, std::optional<UsageCharge> charge) {
  auto line = Append(std::move(record), std::move(charge));
  if (!line) return line.error();
  return OkStatus();
}

Status Meter::WaitFor(int64_t line) {
  std::unique_lock lock(mutex_);
  ++sync_waiters_;
  work_cv_.notify_one();  // a lingering writer goes now
  flushed_cv_.wait(lock, [&] { return flushed_ >= line; });
  --sync_waiters_;
  if (failed_upto_ >= line) {
    return UnavailableError("the usage record is journaled but the database insert failed; it "
                            "will be replayed at the next start");
  }
  return OkStatus();
}

Status Meter::Record(UsageRecord record, std::optional<UsageCharge> charge) {
  YZ_ASSIGN_OR_RETURN(int64_t line, Append(std::move(record), std::move(charge)));
  return WaitFor(line);
}

Status Meter::Flush() {
  int64_t line = 0;
  {
    std::lock_guard lock(mutex_);
    line = appended_;
  }
  return WaitFor(line);
}

void Meter::WriterLoop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, and everything is committed
    if (options_.linger_ms > 0) {
      // Gather more of the requests running right now into this batch.
      work_cv_.wait_for(lock, std::chrono::milliseconds(options_.linger_ms), [&] {
        return stop_ || sync_waiters_ > 0 || queue_.size() >= options_.max_batch;
      });
    }
    std::vector<Pending> batch = std::move(queue_);
    queue_.clear();
    const int64_t target = appended_;
    lock.unlock();
    // One sync for the whole batch: from here the lines survive a power loss too.
    if (::fdatasync(fd_) != 0) {
      log::Error("usage_journal_sync_failed", {{"path", journal_path_}, {"error", std::string(strerror(errno))}});
    }
    if (const char* fault = std::getenv("YUNZHI_FAULT");
        fault != nullptr && std::string_view(fault) == "usage_after_journal" &&
        std::any_of(batch.begin(), batch.end(), [](const Pending& p) {
          return p.record.kind != kUsageStorageSample;
        })) {
      // Tests: a crash between the journal and the database, at the first batch holding a
      // request's record (not the storage samples the server writes at start on its own).
      ::_exit(137);
    }
    Status inserted = db_.Transact([&](store::Executor& tx) { return InsertAll(tx, batch); });
    if (!inserted) {
      // The lines stay in the journal and the next Open() replays them: the records are safe
      // but not yet visible.
      log::Warn("usage_insert_failed", {{"records", static_cast<int64_t>(batch.size())},
                                        {"error", inserted.error().message}});
    }
    lock.lock();
    if (!inserted) {
      dirty_ = true;
      failed_upto_ = target;
    }
    flushed_ = target;
    if (flushed_ == appended_ && !dirty_) {
      // Every line written is in the database: start the journal afresh. (The counters keep
      // counting: waiters compare them with their own line's number.)
      if (::ftruncate(fd_, 0) != 0) {
        log::Warn("usage_journal_truncate_failed", {{"error", std::string(strerror(errno))}});
      }
    }
    flushed_cv_.notify_all();
  }
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
