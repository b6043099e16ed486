// Metering: durable, exactly-once usage records, the input of billing.
//
// Every billable event (a chat completion, an embedding call, a document ingested, a storage
// sample, a model load) becomes one UsageRecord, identified by (request_id, kind): recording the
// same pair twice stores it once. A record may carry the UsageCharge that billing settled for it
// (platform/billing.h); the charge is applied to the accounts in the same database transaction
// that inserts the record, and only if the record is new, so money and usage never disagree.
//
// The request path never waits for a disk: Submit() appends the record (and its charge) as one
// JSON line to a local journal (<data_dir>/usage.journal) with one write(2) and returns -- from
// then on the line survives the process being killed. A writer thread takes everything submitted
// so far, fdatasyncs the journal once (survives a power loss), inserts the whole batch in one
// transaction and empties the journal once every line in it is in the database. The writer
// lingers a few milliseconds to gather a batch (MeterOptions), so under load one fsync and one
// transaction serve hundreds of requests. Record() is Submit() and waiting for that commit. Open() replays a journal left behind by a crash, so a
// process killed anywhere between the journal and the database neither loses nor duplicates a
// record or a charge.
//
// Fault injection (tests only): when the environment variable YUNZHI_FAULT equals
// "usage_after_journal", the writer ends the process with _exit(137) right after the journal
// sync, before the database insert. The variable is read once per batch, by the writer.
//
// Errors: kInvalidArgument for a record with an unknown kind, no request id, no tenant or a
// negative quantity; kUnavailable when the journal cannot be written. A failed database insert
// is logged and the journal kept for the next Open() to replay (Record() then reports it).
// Thread safety: a Meter is safe to use from many threads. Several processes must not share
// one journal (only the server records usage).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
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

// What billing settled for one record (Billing::Settle): `amount_nanos` taken from the tenant's
// account, `from_trial_nanos` of it from the trial credit, and the same amount from the key's
// account when the key has one.
struct UsageCharge {
  std::string tenant_id;
  std::string key_id;
  int64_t amount_nanos = 0;
  int64_t from_trial_nanos = 0;
  std::string period;  // "YYYY-MM" (UTC) the charge counts in: post-paid limits are monthly
  bool operator==(const UsageCharge&) const = default;
};

// Applies a charge inside the transaction that inserts its record (billing provides it).
using ChargeApplier = std::function<Status(store::Executor& tx, const UsageCharge& charge)>;

struct MeterOptions {
  ChargeApplier apply_charge;  // null: charges are kept in the journal and records only
  // The writer gathers submitted records for up to this long (or until max_batch are waiting)
  // before it syncs and commits them, unless a Record()/Flush() caller is waiting: one commit
  // for many requests. It bounds how much a power loss (not a crash) can take: the last
  // linger_ms of submitted records.
  int linger_ms = 5;
  size_t max_batch = 4096;
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
  // by a previous process (idempotently, charges included) and then truncates it; starts the
  // writer thread. The platform schema must be migrated; `db` and `clock` must outlive the Meter.
  // Errors: kUnavailable (journal unreadable, database), never kInvalidArgument (a corrupt
  // journal line is logged and skipped).
  static Result<std::unique_ptr<Meter>> Open(store::Database& db, std::string journal_path,
                                             const Clock& clock = *Clock::System(),
                                             MeterOptions options = {});
  // Commits everything submitted, then stops the writer.
  ~Meter();

  // Journals `record` (and `charge`) and hands it to the writer; returns once the line is written
  // (see the file comment). Recording an existing (request_id, kind) changes nothing and does not
  // charge again.
  Status Submit(UsageRecord record, std::optional<UsageCharge> charge = std::nullopt);
  // Submit() and wait until the record is in the database. Errors: Submit's, or kUnavailable
  // when the insert failed (the record stays journaled for the next Open()).
  Status Record(UsageRecord record, std::optional<UsageCharge> charge = std::nullopt);
  // Waits until everything submitted so far is in the database (or failed to be: kUnavailable).
  Status Flush();

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

  // A journal line (without newline) and back; exposed for tests and tools.
  static std::string ToJsonLine(const UsageRecord& r, const UsageCharge* charge = nullptr);
  static Result<UsageRecord> FromJsonLine(std::string_view line,
                                          std::optional<UsageCharge>* charge = nullptr);

 private:
  struct Pending {
    UsageRecord record;
    std::optional<UsageCharge> charge;
  };
  Meter(store::Database& db, std::string journal_path, const Clock& clock, MeterOptions options)
      : db_(db), journal_path_(std::move(journal_path)), clock_(clock), options_(std::move(options)) {}
  // Inserts the records and applies the charges of those that are new.
  Status InsertAll(store::Executor& tx, const std::vector<Pending>& batch);
  Result<int64_t> Append(UsageRecord record, std::optional<UsageCharge> charge);  // line number
  Status WaitFor(int64_t line);
  void WriterLoop();

  store::Database& db_;
  const std::string journal_path_;
  const Clock& clock_;
  const MeterOptions options_;
  std::mutex mutex_;  // guards everything below and truncation of the journal
  std::condition_variable work_cv_;     // the writer waits for lines
  std::condition_variable flushed_cv_;  // Record/Flush wait for the writer
  int fd_ = -1;              // the journal, open for append
  int64_t appended_ = 0;     // lines written by this Meter (never reset)
  int64_t flushed_ = 0;      // of those, how many the writer has committed (or failed to)
  int64_t failed_upto_ = 0;  // the last line of the last batch whose insert failed
  bool dirty_ = false;       // an insert failed: keep the journal until the next Open replays it
  bool stop_ = false;
  int sync_waiters_ = 0;        // Record/Flush callers waiting: the writer does not linger
  std::vector<Pending> queue_;  // appended, not yet taken by the writer
  std::thread writer_;
};

// Records one hour of a tenant's storage: a storage_sample of `stored_bytes` byte-hours with the
// request id "storage-<tenant>-<unix_hour>", so sampling the same hour twice (a restart) stores
// it once. Errors: those of Record.
Status RecordStorageHour(Meter& meter, std::string_view tenant_id, int64_t stored_bytes,
                         int64_t unix_hour);

// Validates a record's fields. Errors: kInvalidArgument naming the field.
Status ValidateUsageRecord(const UsageRecord& r);

}  // namespace yunzhi::platform
