// Derived models: a parent model plus layers — instructions, knowledge spaces to retrieve from,
// retrieval settings and generation defaults. The parent is a base model (weights in the hub)
// or another derived model, so chains form: general → industry → enterprise. Derived models
// never copy weights; calling one runs its base model with the collected layers.
//
// Ownership and visibility: a derived model belongs to the tenant that created it and lives in
// that tenant's own store (store/tenant_stores.h). Other tenants cannot see it, except models of
// the system tenant created with `shared` (the operator's industry models), which every tenant
// may call and derive from. Names are unique per tenant and never shadow a base model.
//
// Resolution walks the chain from the called model to the base weights. Instructions are
// collected outermost layer first (general → industry → enterprise); the spaces of every layer
// are searched (a layer owned by another tenant — a shared system model — contributes only the
// spaces marked shared); retrieval settings and generation defaults come from the nearest layer
// that sets them.
//
// Thread safety: every method is safe from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/status.h"
#include "yunzhi/knowledge/knowledge_base.h"
#include "yunzhi/store/migrations.h"
#include "yunzhi/store/tenant_stores.h"

namespace yunzhi::studio {

struct GenerationDefaults {
  std::optional<double> temperature;
  std::optional<double> top_p;
  std::optional<int64_t> max_tokens;
  bool operator==(const GenerationDefaults&) const = default;
};

struct DerivedModelSpec {
  std::string name;         // [A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}
  std::string parent;       // a base model or a derived model visible to the tenant
  std::string description;
  std::string instructions;  // this layer's system instructions
  std::vector<std::string> spaces;  // names or ids of the owner's knowledge spaces
  std::optional<knowledge::RetrievalSettings> retrieval;  // nullopt: inherit (or the default)
  GenerationDefaults defaults;
  bool shared = false;  // only the system tenant may share (checked by the API)
};

struct DerivedModel {
  std::string id;  // "dm_<ULID>"
  std::string tenant_id;
  std::string name;
  std::string parent;
  std::string base_model;  // where the chain ends (as resolved at creation)
  std::string description;
  std::string instructions;
  std::vector<std::string> space_ids;
  std::optional<knowledge::RetrievalSettings> retrieval;
  GenerationDefaults defaults;
  bool shared = false;
  int64_t created_at_ms = 0;
};

struct ResolvedModel {
  std::string base_model;
  std::vector<std::string> chain;         // model names, called model first, base last
  std::vector<std::string> instructions;  // outermost (closest to the base) first
  std::vector<knowledge::SpaceRef> spaces;
  knowledge::RetrievalSettings retrieval;
  GenerationDefaults defaults;
  std::string owner_tenant_id;  // who owns the called model
};

// Whether `name` is a base model in the hub.
using BaseModelExists = std::function<bool(std::string_view name)>;

class Studio {
 public:
  static constexpr int kMaxChainDepth = 8;
  // The per-tenant schema (module "studio"): pass to store::TenantStoresOptions.
  static std::vector<store::Migration> Migrations();

  // Every reference must outlive this object. `system_tenant_id`: the platform operator's tenant.
  Studio(store::TenantStores& stores, knowledge::KnowledgeBase& knowledge,
         BaseModelExists base_exists, std::string system_tenant_id,
         const Clock& clock = *Clock::System());

  // Errors: kInvalidArgument (bad name, empty parent, too deep a chain, bad retrieval settings),
  // kAlreadyExists (the tenant has a derived model of that name, or a base model has it),
  // kNotFound (the parent or a space does not exist for this tenant: "model 'x' does not exist" /
  // "space 'y' does not exist").
  Result<DerivedModel> Create(std::string_view tenant_id, const DerivedModelSpec& spec);
  // Own models, then the shared models of the system tenant (for other tenants).
  Result<std::vector<DerivedModel>> List(std::string_view tenant_id);
  // A model the tenant may call (own, or shared by the system tenant). Errors: kNotFound.
  Result<DerivedModel> Get(std::string_view tenant_id, std::string_view name);
  // Removes an own model. Errors: kNotFound; kFailedPrecondition while another model of the
  // tenant derives from it.
  Status Delete(std::string_view tenant_id, std::string_view name);

  // The chain behind `name` for a call by `tenant_id`; nullopt when `name` is not a derived
  // model the tenant may call (it may still be a base model). Errors: kNotFound when a layer's
  // parent disappeared; kInvalidArgument for a chain deeper than kMaxChainDepth.
  Result<std::optional<ResolvedModel>> Resolve(std::string_view tenant_id, std::string_view name);

  // Whether the tenant owns a derived model that names `space_id` (to refuse deleting it).
  Result<std::vector<std::string>> ModelsUsingSpace(std::string_view tenant_id,
                                                    std::string_view space_id);

 private:
  Result<std::optional<DerivedModel>> FindVisible(std::string_view tenant_id, std::string_view name);

  store::TenantStores& stores_;
  knowledge::KnowledgeBase& knowledge_;
  BaseModelExists base_exists_;
  std::string system_tenant_id_;
  const Clock& clock_;
};

}  // namespace yunzhi::studio
