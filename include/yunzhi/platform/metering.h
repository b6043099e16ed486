// Metering: durable, exactly-once usage records, the input of billing.
//
// Every billable event (a chat completion, an embedding call, a document ingested, a storage
// sample, a model load) becomes one UsageRecord, identified by (request_id, kind): recording the
// same pair twice stores it once. Record() first appends the record as one JSON line to a local
// journal (<data_dir>/usage.journal) and fsyncs it, then inserts it into the `usage_records`
// table, then forgets the journal once every line in it is in the database. Open() replays a
// journal left behind by a crash, so a process killed between the journal and the database write
// neither loses nor duplicates a record.
//
// Fault injection (tests only): when the environment variable YUNZHI_FAULT equals
// "usage_after_journal", Record() ends the process with _exit(137) right after the journal fsync,
// before the database insert. The variable is read only on that code path.
//
// Errors: kInvalidArgument for a record with an unknown kind, no request id, no tenant or a
// negative quantity; kUnavailable when the journal cannot be written or the database is busy.
// Thread safety: a Meter is safe to use from many threads. Concurrent Records share one fsync
// (group commit); the journal is emptied whenever every line in it is in the database.
// Several processes must not share one journal (only the server records usage).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/status.h"
#include "yunzhi/store/database.h"

namespace yunzhi::platform {

// The kinds of usage records.
inline constexpr std::string_view kUsageChatTokens = "chat_tokens";
inline constexpr std::string_view kUsageEmbeddingTokens = "embedding_tokens";
inline constexpr std::string_view kUsageRerankTokens = "rerank_tokens";
inline constexpr std::string_view kUsageDocumentIngest = "document_ingest";
inline constexpr std::string_view kUsageStorageSample = "storage_sample";
inline constexpr std::string_view kUsageModelLoad = "model_load";

bool IsUsageKind(std::string_view kind);

struct UsageQuantities {
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // part of prompt_tokens served from the prefix cache
  int64_t completion_tokens = 0;
  int64_t bytes = 0;       // document_ingest: bytes ingested
  int64_t pages = 0;       // document_ingest: pages parsed
  int64_t ocr_pages = 0;   // document_ingest: pages that went through OCR
  int64_t byte_hours = 0;  // storage_sample: bytes stored × hours
  int64_t compute_ms = 0;  // model_load: time spent loading
  bool operator==(const UsageQuantities&) const = default;
};

struct UsageRecord {
  std::string request_id;  // "chatcmpl-..." (the response id) or another unique id
  std::string kind;        // one of the kUsage* kinds
  std::string tenant_id;
  std::string key_id;      // empty when no key was involved (background work)
  std::string model;       // as called (may be a derived model)
  std::string base_model;  // the model that actually ran (empty: same as model)
  UsageQuantities q;
  int64_t time_ms = 0;  // wall time of the event; 0: Record() fills in the clock's now
  bool operator==(const UsageRecord&) const = default;
};

// One line of a usage report.
struct UsageGroup {
  std::string group;  // the day ("2026-11-25"), model, or key id, per UsageQuery::group_by
  std::string kind;
  int64_t n_records = 0;
  UsageQuantities q;  // sums
};

struct UsageQuery {
  std::string tenant_id;      // empty: all tenants
  int64_t from_ms = 0;        // inclusive
  int64_t to_ms = INT64_MAX;  // exclusive
  std::string group_by = "day";  // "day" (UTC) | "model" | "key"
};

class Meter {
 public:
  // Opens the meter: `journal_path` is usually <data_dir>/usage.journal. Replays a journal left
  // by a previous process (idempotently) and then truncates it. The platform schema must be
  // migrated; `db` and `clock` must outlive the Meter. Errors: kUnavailable (journal unreadable,
  // database), kInvalidArgument never (a corrupt journal line is logged and skipped).
  static Result<std::unique_ptr<Meter>> Open(store::Database& db, std::string journal_path,
                                             const Clock& clock = *Clock::System());
  ~Meter();

  // Durably records `record` (see the file comment). Recording an existing (request_id, kind)
  // succeeds and changes nothing.
  Status Record(UsageRecord record);

  // Records in [from_ms, to_ms) of one tenant (empty: all), oldest first.
  Result<std::vector<UsageRecord>> List(std::string_view tenant_id, int64_t from_ms,
                                        int64_t to_ms);

  // Sums by group and kind. Errors: kInvalidArgument for an unknown group_by.
  static Result<std::vector<UsageGroup>> Aggregate(store::Executor& db, const UsageQuery& query);
  // Reads records straight from the database (the CLI does this without a Meter).
  static Result<std::vector<UsageRecord>> ListFrom(store::Executor& db, std::string_view tenant_id,
                                                   int64_t from_ms, int64_t to_ms);
  // The report as CSV: "group,kind,records,prompt_tokens,cached_prompt_tokens,...".
  static std::string GroupsCsv(const std::vector<UsageGroup>& groups, std::string_view group_by);

  // Record as one JSON line (without newline) and back; exposed for tests and tools.
  static std::string ToJsonLine(const UsageRecord& r);
  static Result<UsageRecord> FromJsonLine(std::string_view line);

 private:
  Meter(store::Database& db, std::string journal_path, const Clock& clock)
      : db_(db), journal_path_(std::move(journal_path)), clock_(clock) {}
  Status Insert(store::Executor& db, const UsageRecord& r);

  store::Database& db_;
  const std::string journal_path_;
  const Clock& clock_;
  // Group commit: concurrent Records append their lines; then one of them (the flusher) fsyncs
  // the journal and inserts every waiting record in one transaction for all of them.
  std::mutex mutex_;  // guards everything below and truncation of the journal
  std::condition_variable flushed_cv_;
  int fd_ = -1;              // the journal, open for append
  int64_t appended_ = 0;     // lines written by this Meter (never reset)
  int64_t flushed_ = 0;      // of those, how many were synced and inserted (or failed to be)
  bool flushing_ = false;    // a thread is flushing for the others
  bool dirty_ = false;       // an insert failed: keep the journal until the next Open replays it
  std::vector<UsageRecord> batch_;  // appended, not yet taken by a flusher
};

// Records one hour of a tenant's storage: a storage_sample of `stored_bytes` byte-hours with the
// request id "storage-<tenant>-<unix_hour>", so sampling the same hour twice (a restart) stores
// it once. Errors: those of Record.
Status RecordStorageHour(Meter& meter, std::string_view tenant_id, int64_t stored_bytes,
                         int64_t unix_hour);

// Validates a record's fields. Errors: kInvalidArgument naming the field.
Status ValidateUsageRecord(const UsageRecord& r);

}  // namespace yunzhi::platform
