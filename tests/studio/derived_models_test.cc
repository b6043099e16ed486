// Derived models: creation rules, chains general → industry → enterprise, what each tenant may
// see and call, and what a chain resolves to.
#include "yunzhi/studio/derived_models.h"

#include <filesystem>
#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "support/process.h"

// Designated initializers leave the other fields at their defaults, as intended.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace yunzhi::studio {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class StudioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::TenantStoresOptions so;
    so.root = fs::path(tmp_.path()) / "tenants";
    so.migrations.emplace_back("knowledge", knowledge::KnowledgeBase::Migrations());
    so.migrations.emplace_back("studio", Studio::Migrations());
    so.sqlite_connection_hooks.push_back(&knowledge::KnowledgeBase::RegisterSqliteFunctions);
    stores_ = std::move(*store::TenantStores::Open(std::move(so)));
    kb_ = std::make_unique<knowledge::KnowledgeBase>(*stores_, knowledge::KnowledgeOptions{});
    studio_ = std::make_unique<Studio>(
        *stores_, *kb_, [](std::string_view n) { return n == "qwen2.5-7b" || n == "llama-3"; },
        kSystem);
  }

  knowledge::Space Space(const std::string& tenant, const std::string& name, bool shared = false) {
    knowledge::SpaceSpec spec;
    spec.name = name;
    spec.shared = shared;
    auto s = kb_->CreateSpace(tenant, spec);
    EXPECT_TRUE(s) << s.error().ToString();
    return *s;
  }

  DerivedModel Create(const std::string& tenant, DerivedModelSpec spec) {
    auto m = studio_->Create(tenant, spec);
    EXPECT_TRUE(m) << m.error().ToString();
    return m ? *m : DerivedModel{};
  }

  const std::string kSystem = "ten_SYSTEM";
  const std::string kAcme = "ten_ACME";
  const std::string kBeta = "ten_BETA";
  testing::TempDir tmp_;
  std::unique_ptr<store::TenantStores> stores_;
  std::unique_ptr<knowledge::KnowledgeBase> kb_;
  std::unique_ptr<Studio> studio_;
};

TEST_F(StudioTest, ChainsCollectLayersFromGeneralToEnterprise) {
  knowledge::Space law = Space(kSystem, "law", /*shared=*/true);
  knowledge::Space internal = Space(kSystem, "operator-notes", /*shared=*/false);
  knowledge::Space handbook = Space(kAcme, "handbook");
  DerivedModelSpec industry;
  industry.name = "legal-general";
  industry.parent = "qwen2.5-7b";
  industry.instructions = "You are a legal assistant.";
  industry.spaces = {"law", "operator-notes"};
  industry.defaults.temperature = 0.2;
  industry.defaults.max_tokens = 500;
  industry.shared = true;
  Create(kSystem, industry);

  DerivedModelSpec enterprise;
  enterprise.name = "acme-legal";
  enterprise.parent = "legal-general";
  enterprise.instructions = "Answer for ACME employees.";
  enterprise.spaces = {"handbook"};
  enterprise.defaults.temperature = 0.5;
  knowledge::RetrievalSettings r;
  r.top_k = 3;
  enterprise.retrieval = r;
  DerivedModel m = Create(kAcme, enterprise);
  EXPECT_EQ(m.base_model, "qwen2.5-7b");

  auto resolved = studio_->Resolve(kAcme, "acme-legal");
  ASSERT_TRUE(resolved) << resolved.error().ToString();
  ASSERT_TRUE(resolved->has_value());
  const ResolvedModel& rm = **resolved;
  EXPECT_EQ(rm.base_model, "qwen2.5-7b");
  EXPECT_THAT(rm.chain, ElementsAre("acme-legal", "legal-general", "qwen2.5-7b"));
  EXPECT_THAT(rm.instructions,
              ElementsAre("You are a legal assistant.", "Answer for ACME employees."));
  // The shared system space is read; the operator's private one is not; the tenant's own is.
  std::set<std::string> spaces;
  for (const auto& s : rm.spaces) spaces.insert(s.tenant_id + "/" + s.space_id);
  EXPECT_EQ(spaces, (std::set<std::string>{kSystem + "/" + law.id, kAcme + "/" + handbook.id}));
  EXPECT_FALSE(spaces.contains(kSystem + "/" + internal.id));
  // Nearest layer wins per setting.
  EXPECT_EQ(rm.defaults.temperature, 0.5);
  EXPECT_EQ(rm.defaults.max_tokens, 500);
  EXPECT_EQ(rm.retrieval.top_k, 3);

  // The operator calling its own model reads its private space too.
  auto own = studio_->Resolve(kSystem, "legal-general");
  ASSERT_TRUE(own && own->has_value());
  EXPECT_EQ((*own)->spaces.size(), 2u);
}

TEST_F(StudioTest, VisibilityAcrossTenants) {
  Create(kAcme, {.name = "acme-bot", .parent = "llama-3", .instructions = "ACME only"});
  Create(kSystem, {.name = "private-op", .parent = "llama-3"});
  Create(kSystem, {.name = "public-op", .parent = "llama-3", .shared = true});
  // Another tenant sees neither ACME's model nor the operator's private one.
  EXPECT_EQ(studio_->Get(kBeta, "acme-bot").error().code, Code::kNotFound);
  EXPECT_EQ(studio_->Get(kBeta, "private-op").error().code, Code::kNotFound);
  EXPECT_TRUE(studio_->Get(kBeta, "public-op"));
  auto none = studio_->Resolve(kBeta, "acme-bot");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(studio_->Create(kBeta, {.name = "x", .parent = "acme-bot"}).error().code,
            Code::kNotFound);
  EXPECT_EQ(studio_->Delete(kBeta, "acme-bot").error().code, Code::kNotFound);
  // Nor may a model name another tenant's space.
  knowledge::Space acme_space = Space(kAcme, "acme-space");
  auto refused = studio_->Create(kBeta, {.name = "y", .parent = "llama-3", .spaces = {acme_space.id}});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::kNotFound);
  auto list = studio_->List(kBeta);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "public-op");
  // Deriving from the shared model works for anyone.
  DerivedModel beta = Create(kBeta, {.name = "beta-bot", .parent = "public-op"});
  EXPECT_EQ(beta.base_model, "llama-3");
}

TEST_F(StudioTest, CreationRules) {
  EXPECT_EQ(studio_->Create(kAcme, {.name = "a", .parent = "no-such-model"}).error().code,
            Code::kNotFound);
  EXPECT_EQ(studio_->Create(kAcme, {.name = "bad name", .parent = "llama-3"}).error().code,
            Code::kInvalidArgument);
  EXPECT_EQ(studio_->Create(kAcme, {.name = "llama-3", .parent = "qwen2.5-7b"}).error().code,
            Code::kAlreadyExists);
  EXPECT_EQ(studio_->Create(kAcme, {.name = "a", .parent = ""}).error().code,
            Code::kInvalidArgument);
  EXPECT_EQ(studio_->Create(kAcme, {.name = "a", .parent = "llama-3", .spaces = {"missing"}})
                .error()
                .code,
            Code::kNotFound);
  DerivedModelSpec hot{.name = "hot", .parent = "llama-3"};
  hot.defaults.temperature = 5;
  EXPECT_EQ(studio_->Create(kAcme, hot).error().code, Code::kInvalidArgument);
  Create(kAcme, {.name = "level0", .parent = "llama-3"});
  EXPECT_EQ(studio_->Create(kAcme, {.name = "level0", .parent = "llama-3"}).error().code,
            Code::kAlreadyExists);
  // Chains are bounded.
  std::string parent = "level0";
  for (int i = 1; i < Studio::kMaxChainDepth; ++i) {
    const std::string name = "level" + std::to_string(i);
    Create(kAcme, {.name = name, .parent = parent});
    parent = name;
  }
  auto too_deep = studio_->Create(kAcme, {.name = "deeper", .parent = parent});
  ASSERT_FALSE(too_deep);
  EXPECT_THAT(too_deep.error().message, HasSubstr("deep"));
  // A parent cannot be deleted under its child.
  auto refused = studio_->Delete(kAcme, "level0");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Code::kFailedPrecondition);
  EXPECT_TRUE(studio_->Delete(kAcme, parent));
}

TEST_F(StudioTest, SpacesInUseAreReported) {
  knowledge::Space s = Space(kAcme, "kb");
  Create(kAcme, {.name = "bot", .parent = "llama-3", .spaces = {"kb"}});
  auto users = studio_->ModelsUsingSpace(kAcme, s.id);
  ASSERT_TRUE(users);
  EXPECT_THAT(*users, ElementsAre("bot"));
}

}  // namespace
}  // namespace yunzhi::studio
