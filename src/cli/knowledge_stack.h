// The knowledge side of a data dir, shared by `yunzhi serve` and the `yunzhi kb` commands: the
// per-tenant stores (<data_dir>/tenants), the knowledge base with its ingest workers, and the
// studio of derived models, wired to the model manager for embeddings and reranking.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "yunzhi/base/status.h"
#include "yunzhi/knowledge/knowledge_base.h"
#include "yunzhi/store/data_dir.h"
#include "yunzhi/store/tenant_stores.h"
#include "yunzhi/studio/derived_models.h"

namespace yunzhi::serving {
class ModelManager;
}  // namespace yunzhi::serving

namespace yunzhi::cli {

struct KnowledgeStack {
  std::unique_ptr<store::TenantStores> stores;
  std::unique_ptr<knowledge::KnowledgeBase> knowledge;
  std::unique_ptr<studio::Studio> studio;
};

struct KnowledgeStackOptions {
  serving::ModelManager* models = nullptr;  // embeddings and reranking; null: lexical only
  knowledge::CipherProvider ciphers;        // null: stored unsealed
  std::function<void(const knowledge::IngestReport&)> on_document_done;
  studio::BaseModelExists base_exists;
  std::string system_tenant_id;
  int ingest_threads = 1;
};

// Opens the stores, starts the knowledge base and resumes documents a killed process left
// unfinished.
Result<KnowledgeStack> OpenKnowledgeStack(const store::DataDir& dir, KnowledgeStackOptions options);

}  // namespace yunzhi::cli
