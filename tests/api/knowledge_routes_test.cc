// Knowledge spaces, documents, jobs, search and derived models through the router, with real
// keys, real per-tenant SQLite stores and blob stores (no sockets). The isolation matrix: tenant
// B tries every space, document, job, search and derived-model route of tenant A and always
// gets 404 — never data.
#include <chrono>
#include <filesystem>
#include <thread>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/api/app.h"
#include "yunzhi/base/clock.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/base/thread_pool.h"
#include "yunzhi/hub/registry.h"
#include "yunzhi/knowledge/knowledge_base.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/serving/model_manager.h"
#include "yunzhi/store/blob_store.h"
#include "yunzhi/store/data_dir.h"
#include "yunzhi/store/tenant_stores.h"
#include "yunzhi/studio/derived_models.h"

#include "api/route_call.h"
#include "support/process.h"

namespace yunzhi::api {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using platform::Scope;
using ::testing::HasSubstr;

using Reply = testing::RouteReply;

class KnowledgeRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = store::DataDir::Open(fs::path(tmp_.path()) / "data");
    ASSERT_TRUE(dir);
    db_ = std::move(*store::Database::Open({.url = dir->database_url()}));
    ASSERT_TRUE(platform::MigrateSchema(*db_));
    tenants_ = std::make_unique<platform::Tenants>(*db_, *Clock::System());
    keys_ = std::make_unique<platform::ApiKeys>(*db_, *tenants_, *Clock::System());
    limiter_ = std::make_unique<platform::RateLimiter>(*Clock::System());
    auto system = tenants_->EnsureSystem();
    ASSERT_TRUE(system);
    auto a = tenants_->Create("tenant-a");
    auto b = tenants_->Create("tenant-b");
    ASSERT_TRUE(a && b);
    tenant_a_ = a->id;
    key_a_ = Key(a->id, {Scope::kAdmin});
    key_b_ = Key(b->id, {Scope::kAdmin});
    read_a_ = Key(a->id, {Scope::kRead});
    blobs_ = std::move(*store::BlobStore::Open(dir->blobs_path()));
    registry_ = std::move(*hub::Registry::Open(*db_, *blobs_, dir->models_path()));

    store::TenantStoresOptions so;
    so.root = dir->path() / "tenants";
    so.migrations.emplace_back("knowledge", knowledge::KnowledgeBase::Migrations());
    so.migrations.emplace_back("studio", studio::Studio::Migrations());
    so.sqlite_connection_hooks.push_back(&knowledge::KnowledgeBase::RegisterSqliteFunctions);
    stores_ = std::move(*store::TenantStores::Open(std::move(so)));
    kb_ = std::make_unique<knowledge::KnowledgeBase>(*stores_, knowledge::KnowledgeOptions{});
    studio_ = std::make_unique<studio::Studio>(
        *stores_, *kb_, [](std::string_view n) { return n == "base-model"; }, system->id);
    // No model is imported: a chat that reaches the model manager gets model_not_found.
    models_ = std::make_unique<serving::ModelManager>(
        [](std::string_view name) -> Result<serving::ModelSource> {
          return Error(Code::kNotFound, "model '" + std::string(name) + "' does not exist", "model",
                       "model_not_found");
        },
        serving::ServingOptions{}, nullptr);

    ctx_.db = db_.get();
    ctx_.tenants = tenants_.get();
    ctx_.keys = keys_.get();
    ctx_.limiter = limiter_.get();
    ctx_.metrics = &metrics_;
    ctx_.registry = registry_.get();
    ctx_.models = models_.get();
    ctx_.workers = &workers_;
    ctx_.knowledge = kb_.get();
    ctx_.studio = studio_.get();
    ctx_.draining = &draining_;
    ctx_.audit_event = [this](const platform::Principal& p, std::string_view action,
                              std::string_view target, const std::string& details) {
      std::lock_guard lock(audit_mutex_);
      audit_.push_back(p.tenant_id + " " + std::string(action) + " " + std::string(target) + " " +
                       details);
    };
    RegisterRoutes(router_, ctx_);
  }

  std::string Key(const std::string& tenant_id, std::initializer_list<Scope> scopes) {
    return testing::NewKey(*keys_, tenant_id, scopes);
  }

  Reply Call(const std::string& method, const std::string& path, const std::string& key,
             const std::string& body = "", std::string content_type = "application/json") {
    return testing::CallRoute(router_, method, path, key, body, content_type, std::chrono::seconds(30));
  }

  std::string Str(const Reply& r, std::string_view field) {
    return std::string(r.body.as_object().at(field).as_string());
  }

  testing::TempDir tmp_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<platform::Tenants> tenants_;
  std::unique_ptr<platform::ApiKeys> keys_;
  std::unique_ptr<platform::RateLimiter> limiter_;
  metrics::Registry metrics_;
  std::atomic<bool> draining_{false};
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<hub::Registry> registry_;
  std::unique_ptr<store::TenantStores> stores_;
  std::unique_ptr<knowledge::KnowledgeBase> kb_;
  std::unique_ptr<studio::Studio> studio_;
  std::unique_ptr<serving::ModelManager> models_;
  ThreadPool workers_{2, "test-workers"};
  AppContext ctx_;
  Router router_;
  std::mutex audit_mutex_;
  std::vector<std::string> audit_;
  std::string tenant_a_, key_a_, key_b_, read_a_;
};

TEST_F(KnowledgeRoutesTest, SpacesUploadsJobsAndSearchWork) {
  Reply created = Call("POST", "/api/spaces", key_a_,
                       R"({"name":"handbook","description":"HR","chunk_size":200})");
  ASSERT_EQ(created.status, 201) << created.raw;
  const std::string space = Str(created, "id");
  EXPECT_EQ(created.body.at("chunk_size").as_int64(), 200);
  EXPECT_EQ(Call("POST", "/api/spaces", key_a_, R"({"name":"handbook"})").status, 409);
  EXPECT_EQ(Call("POST", "/api/spaces", key_a_, R"({"name":"x","shared":true})").status, 403);
  EXPECT_EQ(Call("POST", "/api/spaces", read_a_, R"({"name":"y"})").status, 403);

  // Multipart: two files and a plain field (ignored).
  const std::string boundary = "----yunzhi7MA4YWxkTrZu0gW";
  std::string form;
  auto part = [&](const std::string& name, const std::string& filename, const std::string& data) {
    form += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"";
    if (!filename.empty()) form += "; filename=\"" + filename + "\"";
    form += "\r\nContent-Type: text/plain\r\n\r\n" + data + "\r\n";
  };
  part("file", "leave.txt", "Employees get 15 days of paid annual leave after one year.");
  part("file", "C:\\Users\\me\\travel.md", "# Travel\n\nHotel allowance in Shanghai is 880 yuan.");
  part("note", "", "not a file");
  form += "--" + boundary + "--\r\n";
  Reply upload = Call("POST", "/api/spaces/" + space + "/documents", key_a_, form,
                      "multipart/form-data; boundary=" + boundary);
  ASSERT_EQ(upload.status, 202) << upload.raw;
  const std::string job = Str(upload, "id");
  ASSERT_EQ(upload.body.at("files").as_array().size(), 2u);
  EXPECT_EQ(upload.body.at("files").as_array()[1].at("name").as_string(), "travel.md");
  // A raw body named by ?name=.
  Reply raw = Call("POST", "/api/spaces/handbook/documents?name=broken.pdf", key_a_,
                   "%PDF-1.7 garbage", "application/pdf");
  ASSERT_EQ(raw.status, 202) << raw.raw;
  kb_->WaitIdle();
  Reply j = Call("GET", "/api/jobs/" + job, read_a_);
  ASSERT_EQ(j.status, 200) << j.raw;
  EXPECT_EQ(Str(j, "status"), "succeeded");
  EXPECT_EQ(j.body.at("progress").as_double(), 1.0);
  Reply bad = Call("GET", "/api/jobs/" + Str(raw, "id"), read_a_);
  EXPECT_EQ(Str(bad, "status"), "failed");
  EXPECT_FALSE(bad.body.at("files").as_array()[0].at("error").is_null());

  Reply docs = Call("GET", "/api/spaces/handbook/documents", read_a_);
  ASSERT_EQ(docs.status, 200);
  EXPECT_EQ(docs.body.at("data").as_array().size(), 3u);
  Reply hits = Call("POST", "/api/spaces/" + space + "/search", read_a_,
                    R"({"query":"How much is the hotel allowance in Shanghai?","top_k":1})");
  ASSERT_EQ(hits.status, 200) << hits.raw;
  ASSERT_EQ(hits.body.at("data").as_array().size(), 1u);
  const auto& hit = hits.body.at("data").as_array()[0].as_object();
  EXPECT_EQ(hit.at("document").as_string(), "travel.md");
  EXPECT_THAT(std::string(hit.at("text").as_string()), HasSubstr("880 yuan"));
  EXPECT_EQ(hit.at("section_path").as_array()[0].as_string(), "Travel");
  EXPECT_EQ(Call("POST", "/api/spaces/" + space + "/search", read_a_, R"({"query":""})").status, 400);
  EXPECT_EQ(Call("POST", "/api/spaces/" + space + "/search", read_a_,
                 R"({"query":"x","mode":"psychic"})").status,
            400);
  // The audit hook saw the upload and the search, with document ids, not content.
  std::lock_guard lock(audit_mutex_);
  bool saw_search = false;
  for (const auto& line : audit_) {
    EXPECT_EQ(line.find("880 yuan"), std::string::npos) << line;
    saw_search = saw_search || line.find(" search ") != std::string::npos;
  }
  EXPECT_TRUE(saw_search);
}

TEST_F(KnowledgeRoutesTest, TenantBNeverReachesTenantAData) {
  Reply created = Call("POST", "/api/spaces", key_a_, R"({"name":"secret-space"})");
  ASSERT_EQ(created.status, 201) << created.raw;
  const std::string space = Str(created, "id");
  Reply upload = Call("POST", "/api/spaces/" + space + "/documents?name=plan.txt", key_a_,
                      "The merger with Globex closes on March 3.", "text/plain");
  ASSERT_EQ(upload.status, 202) << upload.raw;
  kb_->WaitIdle();
  const std::string job = Str(upload, "id");
  const std::string doc = std::string(upload.body.at("files").as_array()[0].at("document_id").as_string());
  Reply model = Call("POST", "/api/models", key_a_,
                     R"({"name":"a-bot","parent":"base-model","instructions":"Be brief.","spaces":["secret-space"]})");
  ASSERT_EQ(model.status, 201) << model.raw;

  // A sees its own things.
  EXPECT_EQ(Call("GET", "/api/spaces/" + space, key_a_).status, 200);
  EXPECT_EQ(Call("GET", "/api/models/a-bot", key_a_).status, 200);
  EXPECT_EQ(Call("GET", "/v1/models/a-bot", key_a_).status, 200);

  const std::string d = "/api/spaces/" + space + "/documents/" + doc;
  const std::vector<std::tuple<std::string, std::string, std::string>> probes = {
      {"GET", "/api/spaces/" + space, ""},
      {"GET", "/api/spaces/secret-space", ""},
      {"DELETE", "/api/spaces/" + space, ""},
      {"GET", "/api/spaces/" + space + "/documents", ""},
      {"POST", "/api/spaces/" + space + "/documents?name=x.txt", "injected"},
      {"GET", d, ""},
      {"GET", d + "/content", ""},
      {"DELETE", d, ""},
      {"GET", "/api/jobs/" + job, ""},
      {"POST", "/api/spaces/" + space + "/search", R"({"query":"merger Globex"})"},
      {"GET", "/api/models/a-bot", ""},
      {"GET", "/v1/models/a-bot", ""},
      {"DELETE", "/api/models/a-bot", ""},
      {"POST", "/v1/chat/completions", R"({"model":"a-bot","messages":[{"role":"user","content":"When does the merger close?"}]})"},
      {"POST", "/api/models", R"({"name":"b-bot","parent":"a-bot"})"},
      {"POST", "/api/models", R"({"name":"b-bot","parent":"base-model","spaces":[")" + space + R"("]})"},
  };
  for (const auto& [method, path, body] : probes) {
    Reply r = Call(method, path, key_b_, body,
                   path.find("/documents?") != std::string::npos ? "text/plain" : "application/json");
    EXPECT_EQ(r.status, 404) << method << " " << path << " -> " << r.raw;
    EXPECT_EQ(r.raw.find("Globex"), std::string::npos) << r.raw;
    EXPECT_EQ(r.raw.find("March 3"), std::string::npos) << r.raw;
  }
  // Lists show B nothing of A's.
  Reply spaces = Call("GET", "/api/spaces", key_b_);
  EXPECT_TRUE(spaces.body.at("data").as_array().empty());
  Reply v1 = Call("GET", "/v1/models", key_b_);
  EXPECT_EQ(v1.raw.find("a-bot"), std::string::npos);
  Reply api_models = Call("GET", "/api/models", key_b_);
  EXPECT_EQ(api_models.raw.find("a-bot"), std::string::npos);
  // And A's data is intact after B's attempts.
  EXPECT_EQ(Call("GET", d, key_a_).status, 200);
  Reply hits = Call("POST", "/api/spaces/" + space + "/search", key_a_, R"({"query":"merger Globex"})");
  EXPECT_EQ(hits.body.at("data").as_array().size(), 1u);
}

TEST_F(KnowledgeRoutesTest, DerivedModelsAreManagedThroughTheModelRoutes) {
  ASSERT_EQ(Call("POST", "/api/spaces", key_a_, R"({"name":"kb"})").status, 201);
  EXPECT_EQ(Call("POST", "/api/models", key_a_, R"({"name":"m","parent":"nope"})").status, 404);
  EXPECT_EQ(Call("POST", "/api/models", key_a_, R"({"name":"m","parent":"base-model","spaces":"kb"})").status, 400);
  EXPECT_EQ(Call("POST", "/api/models", key_a_, R"({"name":"m","parent":"base-model","retrieval":{"top_k":0}})").status, 400);
  EXPECT_EQ(Call("POST", "/api/models", key_a_, R"({"name":"m","parent":"base-model","shared":true})").status, 403);
  Reply ok = Call("POST", "/api/models", key_a_,
                  R"({"name":"industry","parent":"base-model","instructions":"Layer 1","spaces":["kb"],"defaults":{"temperature":0.3,"max_tokens":64}})");
  ASSERT_EQ(ok.status, 201) << ok.raw;
  EXPECT_EQ(Str(ok, "base_model"), "base-model");
  Reply child = Call("POST", "/api/models", key_a_, R"({"name":"enterprise","parent":"industry"})");
  ASSERT_EQ(child.status, 201) << child.raw;
  EXPECT_EQ(Str(child, "base_model"), "base-model");
  Reply listed = Call("GET", "/v1/models", key_a_);
  EXPECT_NE(listed.raw.find("\"enterprise\""), std::string::npos);
  // The space is in use, the parent has a child.
  EXPECT_EQ(Call("DELETE", "/api/spaces/kb", key_a_).status, 409);
  EXPECT_EQ(Call("DELETE", "/api/models/industry", key_a_).status, 409);
  EXPECT_EQ(Call("DELETE", "/api/models/enterprise", key_a_).status, 200);
  EXPECT_EQ(Call("DELETE", "/api/models/industry", key_a_).status, 200);
  EXPECT_EQ(Call("DELETE", "/api/spaces/kb", key_a_).status, 200);
}

}  // namespace
}  // namespace yunzhi::api
