// The audit log: an append-only, tamper-evident record of who did what to which tenant's data.
//
// Every entry carries the SHA-256 of the previous one (a hash chain), and its own hash covers a
// canonical, length-prefixed encoding of all its fields. A separate head row holds the last seq
// and hash, updated in the same transaction as each append. Verify() walks the chain and names
// the FIRST bad entry: an edited field (hash mismatch), a deleted entry (gap in seq), reordered
// or deleted entries (prev_hash mismatch), or a deleted tail (head ahead of the last entry).
//
// What it does not promise: someone who can write the database file AND recompute SHA-256 can
// rewrite the whole chain consistently, and deleting every entry together with the head row
// leaves a valid empty log. Anchor the head hash elsewhere (e.g. print `yunzhi audit verify`
// output to an external system) to detect that.
//
// Details are a JSON object as text: ids read or written, never document content.
//
// Thread safety: AuditLog is safe from many threads and processes: each append is one write
// transaction (Database::Transact) that reads the head, so appends are serialised.
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

// What a caller records. The log assigns seq, time and hashes.
struct AuditEvent {
  std::string tenant_id;  // empty: platform-wide
  std::string actor;      // key id ("key_..."), "cli:<user>" or "system"
  std::string action;     // "key.create", "tenant.delete", "document.upload", "search", ...
  std::string target;     // the id acted on (may be empty)
  std::string details_json = "{}";  // a JSON object as text; empty means "{}"
};

// One stored entry.
struct AuditEntry {
  int64_t seq = 0;  // 1, 2, 3 ...
  int64_t time_ms = 0;
  std::string tenant_id;
  std::string actor;
  std::string action;
  std::string target;
  std::string details_json;
  std::string prev_hash;  // 64 hex; the first entry's is 64 '0's
  std::string hash;       // 64 hex
};

struct AuditFilter {
  std::optional<int64_t> from_ms;  // time_ms >= from_ms
  std::optional<int64_t> to_ms;    // time_ms <= to_ms
  std::optional<std::string> tenant_id;
  std::optional<std::string> actor;
  std::optional<std::string> action;
  int64_t after_seq = 0;  // paging: only entries with seq > after_seq
  int64_t limit = 100;    // 1..10000
};

struct AuditVerification {
  bool intact = true;
  int64_t n_entries = 0;      // entries walked
  int64_t first_bad_seq = 0;  // 0 when intact
  std::string problem;        // why first_bad_seq is bad; empty when intact
  std::string last_hash;      // hash of the last entry walked (kGenesisHash when none): record
                              // it elsewhere to detect a later rewrite of the whole chain
};

class AuditLog {
 public:
  // The hash that precedes the first entry.
  static constexpr std::string_view kGenesisHash =
      "0000000000000000000000000000000000000000000000000000000000000000";

  // `db` and `clock` must outlive this object; the platform schema must be migrated.
  AuditLog(store::Database& db, const Clock& clock) : db_(db), clock_(clock) {}

  // Appends `event` in its own write transaction. Errors: kInvalidArgument for an empty actor or
  // action or details that are not a JSON object ("{...}"); store errors (kUnavailable ...).
  Status Append(const AuditEvent& event);
  // Appends inside the caller's transaction `tx` (from Database::Transact), so the entry commits
  // or rolls back together with the state change it records. Errors as above.
  Status Append(store::Executor& tx, const AuditEvent& event);

  // Entries matching `filter`, in seq order. Errors: kInvalidArgument for a limit outside
  // 1..10000 or a negative after_seq; store errors.
  Result<std::vector<AuditEntry>> Query(const AuditFilter& filter);

  // Walks the whole chain (in pages of 1000, constant memory) inside one write transaction, so
  // that head and entries are one consistent snapshot (appends wait meanwhile). A broken chain
  // is a value (intact == false), not an error; errors are the store's.
  Result<AuditVerification> Verify();

  // The entry's hash from its fields (seq, time, tenant, actor, action, target, details,
  // prev_hash): SHA-256 over each field as an 8-byte big-endian length and its bytes.
  static std::string ComputeHash(const AuditEntry& entry);

 private:
  store::Database& db_;
  const Clock& clock_;
};

}  // namespace yunzhi::platform
