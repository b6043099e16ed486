#include "yunzhi/platform/schema.h"

#include "yunzhi/store/migrations.h"

namespace yunzhi::platform {

Status MigrateSchema(store::Database& db) {
  static const std::vector<store::Migration> kMigrations = {
      {1,
       "tenants and api keys",
       R"sql(
CREATE TABLE tenants (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  system INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  name TEXT NOT NULL DEFAULT '',
  prefix TEXT NOT NULL,
  secret_hash TEXT NOT NULL UNIQUE,
  scopes TEXT NOT NULL,
  requests_per_minute INTEGER,
  created_at_ms INTEGER NOT NULL,
  last_used_at_ms INTEGER,
  revoked_at_ms INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys(tenant_id);
CREATE INDEX api_keys_by_prefix ON api_keys(prefix);
)sql",
       {}},
      {2,
       "audit log (hash chain) and its head",
       R"sql(
CREATE TABLE audit_log (
  seq INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
  tenant_id TEXT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  details TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log(tenant_id, seq);
CREATE INDEX audit_log_by_time ON audit_log(time_ms);
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL
);
)sql",
       {}},
      {3,
       "keyring: master key check value and wrapped tenant data keys",
       R"sql(
CREATE TABLE keyring_meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  check_value BLOB NOT NULL,
  next_key_version INTEGER NOT NULL,
  rotated_at_ms INTEGER NOT NULL
);
CREATE TABLE tenant_keys (
  tenant_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  wrapped BLOB NOT NULL,
  created_at_ms INTEGER NOT NULL
);
)sql",
       {}},
      {4,
       "metering and billing: usage records, price book, accounts, plans",
       R"sql(
CREATE TABLE usage_records (
  request_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  tenant_id TEXT NOT NULL,
  key_id TEXT NOT NULL DEFAULT '',
  model TEXT NOT NULL DEFAULT '',
  base_model TEXT NOT NULL DEFAULT '',
  prompt_tokens INTEGER NOT NULL DEFAULT 0,
  cached_prompt_tokens INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  bytes INTEGER NOT NULL DEFAULT 0,
  pages INTEGER NOT NULL DEFAULT 0,
  ocr_pages INTEGER NOT NULL DEFAULT 0,
  byte_hours INTEGER NOT NULL DEFAULT 0,
  compute_ms INTEGER NOT NULL DEFAULT 0,
  time_ms INTEGER NOT NULL,
  PRIMARY KEY (request_id, kind)
);
CREATE INDEX usage_records_by_tenant_time ON usage_records(tenant_id, time_ms);
CREATE INDEX usage_records_by_time ON usage_records(time_ms);
CREATE TABLE billing_prices (
  pattern TEXT PRIMARY KEY,
  input_nanos INTEGER NOT NULL,
  cached_input_nanos INTEGER NOT NULL,
  output_nanos INTEGER NOT NULL,
  embedding_nanos INTEGER NOT NULL,
  rerank_nanos INTEGER NOT NULL,
  storage_gb_month_nanos INTEGER NOT NULL,
  ocr_1k_pages_nanos INTEGER NOT NULL,
  compute_hour_nanos INTEGER NOT NULL,
  throughput_1k_tpm_month_nanos INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
);
CREATE TABLE billing_accounts (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  is_key INTEGER NOT NULL,
  mode TEXT NOT NULL,
  limit_nanos INTEGER,
  used_nanos INTEGER NOT NULL DEFAULT 0,
  reserved_nanos INTEGER NOT NULL DEFAULT 0,
  trial_nanos INTEGER NOT NULL DEFAULT 0,
  trial_used_nanos INTEGER NOT NULL DEFAULT 0,
  trial_expires_ms INTEGER,
  tokens_per_minute INTEGER,
  storage_quota_bytes INTEGER,
  created_at_ms INTEGER NOT NULL
);
CREATE INDEX billing_accounts_by_tenant ON billing_accounts(tenant_id);
CREATE TABLE billing_plans (
  id TEXT PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  model TEXT NOT NULL DEFAULT '',
  capacity INTEGER NOT NULL,
  discount_bp INTEGER NOT NULL,
  start_ms INTEGER NOT NULL,
  end_ms INTEGER NOT NULL,
  created_at_ms INTEGER NOT NULL
);
CREATE INDEX billing_plans_by_tenant ON billing_plans(tenant_id);
)sql",
       {}},
      {5,
       "versioned prices, monthly spend of post-paid accounts",
       R"sql(
CREATE TABLE billing_price_versions (
  pattern TEXT NOT NULL,
  valid_from_ms INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  input_nanos INTEGER NOT NULL,
  cached_input_nanos INTEGER NOT NULL,
  output_nanos INTEGER NOT NULL,
  embedding_nanos INTEGER NOT NULL,
  rerank_nanos INTEGER NOT NULL,
  storage_gb_month_nanos INTEGER NOT NULL,
  ocr_1k_pages_nanos INTEGER NOT NULL,
  compute_hour_nanos INTEGER NOT NULL,
  throughput_1k_tpm_month_nanos INTEGER NOT NULL,
  PRIMARY KEY (pattern, valid_from_ms)
);
INSERT INTO billing_price_versions
  SELECT pattern, 0, 0, input_nanos, cached_input_nanos, output_nanos, embedding_nanos,
         rerank_nanos, storage_gb_month_nanos, ocr_1k_pages_nanos, compute_hour_nanos,
         throughput_1k_tpm_month_nanos FROM billing_prices;
ALTER TABLE billing_accounts ADD COLUMN period TEXT NOT NULL DEFAULT '';
ALTER TABLE billing_accounts ADD COLUMN period_used_nanos INTEGER NOT NULL DEFAULT 0;
)sql",
       {}},
  };
  return store::Migrate(db, "platform", kMigrations);
}

}  // namespace yunzhi::platform
