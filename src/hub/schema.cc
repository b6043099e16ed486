// The registry's tables (module "hub" in schema_migrations).
#include "yunzhi/hub/registry.h"
#include "yunzhi/store/migrations.h"

namespace yunzhi::hub {

Status MigrateSchema(store::Database& db) {
  static const std::vector<store::Migration> kMigrations = {
      {1,
       "models and their files",
       R"sql(
CREATE TABLE hub_models (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  format TEXT NOT NULL,
  digest TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  architecture TEXT NOT NULL,
  n_params INTEGER NOT NULL,
  weight_type TEXT NOT NULL,
  context_tokens INTEGER NOT NULL,
  has_chat_template INTEGER NOT NULL,
  source_path TEXT NOT NULL,
  keep_alive_ms INTEGER,
  created_at_ms INTEGER NOT NULL
);
CREATE TABLE hub_model_files (
  model_id TEXT NOT NULL REFERENCES hub_models(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  digest TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  PRIMARY KEY (model_id, name)
);
CREATE INDEX hub_model_files_by_digest ON hub_model_files(digest);
)sql",
       {}},
      {2,
       "model kind: chat, embedding or rerank",
       R"sql(
ALTER TABLE hub_models ADD COLUMN kind TEXT NOT NULL DEFAULT 'chat';
)sql",
       {}},
  };
  return store::Migrate(db, "hub", kMigrations);
}

}  // namespace yunzhi::hub
