#include "yunzhi/platform/audit.h"

#include <fmt/format.h>

#include "yunzhi/base/crypto.h"

namespace yunzhi::platform {
namespace {

constexpr std::string_view kColumns =
    "seq, time_ms, tenant_id, actor, action, target, details, prev_hash, hash";
constexpr int64_t kVerifyPage = 1000;

AuditEntry FromRow(const store::Row& r) {
  return AuditEntry{r.Int(0),  r.Int(1),  r.Text(2), r.Text(3), r.Text(4),
                    r.Text(5), r.Text(6), r.Text(7), r.Text(8)};
}

void AppendField(std::string& out, std::string_view field) {
  const uint64_t n = field.size();
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
  out.append(field);
}

bool IsJsonObjectText(std::string_view s) {
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s.size() >= 2 && s.front() == '{' && s.back() == '}';
}

}  // namespace

std::string AuditLog::ComputeHash(const AuditEntry& e) {
  std::string buf = "yunzhi-audit-v1";
  AppendField(buf, std::to_string(e.seq));
  AppendField(buf, std::to_string(e.time_ms));
  AppendField(buf, e.tenant_id);
  AppendField(buf, e.actor);
  AppendField(buf, e.action);
  AppendField(buf, e.target);
  AppendField(buf, e.details_json);
  AppendField(buf, e.prev_hash);
  return crypto::Sha256Hex(buf);
}

Status AuditLog::Append(const AuditEvent& event) {
  return db_.Transact([&](store::Executor& tx) { return Append(tx, event); });
}

Status AuditLog::Append(store::Executor& tx, const AuditEvent& event) {
  if (event.actor.empty()) return InvalidArgumentError("audit event needs an actor", "actor");
  if (event.action.empty()) return InvalidArgumentError("audit event needs an action", "action");
  std::string details = event.details_json.empty() ? "{}" : event.details_json;
  if (!IsJsonObjectText(details)) {
    return InvalidArgumentError("audit event details must be a JSON object", "details");
  }
  YZ_ASSIGN_OR_RETURN(auto head, tx.QueryOne("SELECT seq, hash FROM audit_head WHERE id = 1"));
  AuditEntry e;
  e.seq = head ? head->Int(0) + 1 : 1;
  e.prev_hash = head ? head->Text(1) : std::string(kGenesisHash);
  e.time_ms = clock_.NowUnixMs();
  e.tenant_id = event.tenant_id;
  e.actor = event.actor;
  e.action = event.action;
  e.target = event.target;
  e.details_json = std::move(details);
  e.hash = ComputeHash(e);
  YZ_RETURN_IF_ERROR(tx.Execute(
      fmt::format("INSERT INTO audit_log ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", kColumns),
      {e.seq, e.time_ms, e.tenant_id, e.actor, e.action, e.target, e.details_json, e.prev_hash,
       e.hash}));
  YZ_RETURN_IF_ERROR(tx.Execute(
      "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
      "ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
      {e.seq, e.hash}));
  return OkStatus();
}

Result<std::vector<AuditEntry>> AuditLog::Query(const AuditFilter& f) {
  if (f.limit < 1 || f.limit > 10000) {
    return InvalidArgumentError("limit must be between 1 and 10000", "limit");
  }
  if (f.after_seq < 0) return InvalidArgumentError("after must not be negative", "after");
  std::string sql = fmt::format("SELECT {} FROM audit_log WHERE seq > ?", kColumns);
  std::vector<store::Value> params{f.after_seq};
  if (f.from_ms) {
    sql += " AND time_ms >= ?";
    params.emplace_back(*f.from_ms);
  }
  if (f.to_ms) {
    sql += " AND time_ms <= ?";
    params.emplace_back(*f.to_ms);
  }
  if (f.tenant_id) {
    sql += " AND tenant_id = ?";
    params.emplace_back(*f.tenant_id);
  }
  if (f.actor) {
    sql += " AND actor = ?";
    params.emplace_back(*f.actor);
  }
  if (f.action) {
    sql += " AND action = ?";
    params.emplace_back(*f.action);
  }
  sql += " ORDER BY seq LIMIT ?";
  params.emplace_back(f.limit);
  YZ_ASSIGN_OR_RETURN(auto rows, db_.Query(sql, std::move(params)));
  std::vector<AuditEntry> out;
  out.reserve(rows.size());
  for (const auto& r : rows) out.push_back(FromRow(r));
  return out;
}

Result<AuditVerification> AuditLog::Verify() {
  AuditVerification v;
  // Read the head and the entries in one transaction so a concurrent append cannot make the
  // head look ahead of the entries we saw (a false "deleted tail").
  auto walked = db_.Transact([&](store::Executor& tx) -> Status {
    YZ_ASSIGN_OR_RETURN(auto head, tx.QueryOne("SELECT seq, hash FROM audit_head WHERE id = 1"));
    int64_t expected_seq = 1;
    std::string expected_prev(kGenesisHash);
    auto fail = [&](int64_t seq, std::string why) {
      v.intact = false;
      v.first_bad_seq = seq;
      v.problem = std::move(why);
    };
    int64_t last_seen = 0;
    for (;;) {
      // Ordered by rowid-independent seq; a page starts after the last seq seen, so an entry
      // whose seq was changed is still visited exactly once.
      YZ_ASSIGN_OR_RETURN(
          auto rows, tx.Query(fmt::format("SELECT {} FROM audit_log WHERE seq > ? ORDER BY seq "
                                          "LIMIT ?",
                                          kColumns),
                              {last_seen, kVerifyPage}));
      for (const auto& r : rows) {
        AuditEntry e = FromRow(r);
        last_seen = e.seq;
        ++v.n_entries;
        if (e.seq != expected_seq) {
          fail(expected_seq,
               e.seq > expected_seq
                   ? fmt::format("entry {} is missing (deleted): the next entry is {}",
                                 expected_seq, e.seq)
                   : fmt::format("entry {} appears out of order", e.seq));
          return OkStatus();
        }
        if (e.prev_hash != expected_prev) {
          fail(e.seq, fmt::format("entry {} does not link to entry {} (prev_hash mismatch): "
                                  "entries were reordered, deleted or inserted",
                                  e.seq, e.seq - 1));
          return OkStatus();
        }
        if (ComputeHash(e) != e.hash) {
          fail(e.seq, fmt::format("entry {} was edited (hash mismatch)", e.seq));
          return OkStatus();
        }
        expected_prev = e.hash;
        ++expected_seq;
      }
      if (static_cast<int64_t>(rows.size()) < kVerifyPage) break;
    }
    const int64_t last_seq = expected_seq - 1;
    v.last_hash = expected_prev;
    if (!head) {
      if (last_seq > 0) fail(last_seq, "the audit head row is missing (deleted)");
      return OkStatus();
    }
    if (head->Int(0) != last_seq) {
      if (head->Int(0) > last_seq) {
        fail(last_seq + 1, fmt::format("entries {} to {} are missing (tail deleted)", last_seq + 1,
                                       head->Int(0)));
      } else {
        fail(head->Int(0) + 1,
             fmt::format("the audit head says {} entries but {} exist", head->Int(0), last_seq));
      }
      return OkStatus();
    }
    if (head->Text(1) != expected_prev) {
      fail(last_seq, fmt::format("entry {} does not match the audit head hash", last_seq));
    }
    return OkStatus();
  });
  if (!walked) return walked.error();
  return v;
}

}  // namespace yunzhi::platform
