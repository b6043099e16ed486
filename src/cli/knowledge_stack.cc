#include "cli/knowledge_stack.h"

#include "yunzhi/serving/model_manager.h"

namespace yunzhi::cli {

Result<KnowledgeStack> OpenKnowledgeStack(const store::DataDir& dir, KnowledgeStackOptions options) {
  store::TenantStoresOptions so;
  so.root = dir.path() / "tenants";
  so.migrations.emplace_back("knowledge", knowledge::KnowledgeBase::Migrations());
  so.migrations.emplace_back("studio", studio::Studio::Migrations());
  so.sqlite_connection_hooks.push_back(&knowledge::KnowledgeBase::RegisterSqliteFunctions);
  KnowledgeStack stack;
  YZ_ASSIGN_OR_RETURN(stack.stores, store::TenantStores::Open(std::move(so)));

  knowledge::KnowledgeOptions ko;
  ko.ingest_threads = options.ingest_threads;
  ko.ciphers = std::move(options.ciphers);
  ko.on_document_done = std::move(options.on_document_done);
  if (serving::ModelManager* mm = options.models) {
    ko.embedder = [mm](std::string_view model, std::span<const std::string> texts)
        -> Result<knowledge::Embeddings> {
      // A chunk longer than the model's context is embedded by its head (as most RAG stacks do).
      serving::EmbedOptions options;
      options.truncate = true;
      YZ_ASSIGN_OR_RETURN(auto r, mm->Embed(model, texts, options));
      return knowledge::Embeddings(std::move(r.vectors), r.prompt_tokens);
    };
    ko.reranker = [mm](std::string_view model, std::string_view query,
                       std::span<const std::string> docs) -> Result<std::vector<float>> {
      YZ_ASSIGN_OR_RETURN(auto r, mm->Rerank(model, query, docs));
      return std::move(r.scores);
    };
  }
  stack.knowledge = std::make_unique<knowledge::KnowledgeBase>(*stack.stores, std::move(ko));
  stack.studio = std::make_unique<studio::Studio>(*stack.stores, *stack.knowledge,
                                                  std::move(options.base_exists),
                                                  options.system_tenant_id);
  YZ_RETURN_IF_ERROR(stack.knowledge->Recover());
  return stack;
}

}  // namespace yunzhi::cli
