// The model routes (/v1/models, /api/models) through the router with real keys, a real SQLite
// file, a real blob store and real model files; no sockets.
#include <chrono>
#include <filesystem>
#include <thread>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/api/app.h"
#include "yunzhi/base/clock.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/hub/registry.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/store/blob_store.h"
#include "yunzhi/store/data_dir.h"

#include "model_writer.h"
#include "support/process.h"

#include "api/route_call.h"

namespace yunzhi::api {
namespace {

namespace json = boost::json;
namespace fs = std::filesystem;
using platform::Scope;
using ::testing::HasSubstr;

using Reply = testing::RouteReply;

class ModelRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = store::DataDir::Open(fs::path(tmp_.path()) / "data");
    ASSERT_TRUE(dir);
    auto db = store::Database::Open({.url = dir->database_url()});
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    ASSERT_TRUE(platform::MigrateSchema(*db_));
    tenants_ = std::make_unique<platform::Tenants>(*db_, clock_);
    keys_ = std::make_unique<platform::ApiKeys>(*db_, *tenants_, clock_);
    limiter_ = std::make_unique<platform::RateLimiter>(clock_);
    auto system = tenants_->EnsureSystem();
    ASSERT_TRUE(system);
    auto acme = tenants_->Create("acme");
    ASSERT_TRUE(acme);
    admin_key_ = Key(system->id, {Scope::kAdmin});
    tenant_admin_key_ = Key(acme->id, {Scope::kAdmin});
    read_key_ = Key(acme->id, {Scope::kRead});
    auto blobs = store::BlobStore::Open(dir->blobs_path());
    ASSERT_TRUE(blobs);
    blobs_ = std::move(*blobs);
    auto reg = hub::Registry::Open(*db_, *blobs_, dir->models_path(), clock_);
    ASSERT_TRUE(reg) << reg.error().ToString();
    registry_ = std::move(*reg);

    ctx_.db = db_.get();
    ctx_.tenants = tenants_.get();
    ctx_.keys = keys_.get();
    ctx_.limiter = limiter_.get();
    ctx_.metrics = &metrics_;
    ctx_.registry = registry_.get();
    ctx_.draining = &draining_;
    RegisterRoutes(router_, ctx_);
  }

  std::string Key(const std::string& tenant_id, std::initializer_list<Scope> scopes) {
    return testing::NewKey(*keys_, tenant_id, scopes);
  }

  // Every answer of these routes is JSON.
  Reply Call(const std::string& method, const std::string& path, const std::string& key,
             const std::string& body = "") {
    Reply r = testing::CallRoute(router_, method, path, key, body);
    EXPECT_FALSE(r.body.is_null()) << r.raw;
    return r;
  }

  std::string WriteGguf(const std::string& file, uint64_t seed = 1) {
    tools::ModelSpec s;
    s.n_vocab = 300;
    s.n_embd = 64;
    s.n_ff = 128;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.n_layer = 2;
    s.n_ctx = 512;
    s.seed = seed;
    const std::string path = tmp_.path() + "/" + file;
    auto st = tools::WriteModel(s, {.gguf_path = path});
    EXPECT_TRUE(st) << st.error().ToString();
    return path;
  }

  // Polls the job (bounded) until it has finished.
  json::object WaitForJob(const std::string& id) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    for (;;) {
      Reply r = Call("GET", "/api/models/imports/" + id, admin_key_);
      EXPECT_EQ(r.status, 200) << r.raw;
      if (r.status != 200) return {};
      json::object o = r.body.as_object();
      if (!o["finished_at"].is_null() || std::chrono::steady_clock::now() > deadline) return o;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  static void ExpectError(const Reply& r, int status, std::string_view type,
                          std::string_view code = {}) {
    EXPECT_EQ(r.status, status) << r.raw;
    ASSERT_TRUE(r.body.is_object()) << r.raw;
    const auto& e = r.body.as_object().at("error").as_object();
    EXPECT_EQ(e.at("type").as_string(), type) << r.raw;
    if (!code.empty()) {
      ASSERT_TRUE(e.at("code").is_string()) << r.raw;
      EXPECT_EQ(e.at("code").as_string(), code);
    }
  }

  testing::TempDir tmp_;
  FakeClock clock_;
  std::unique_ptr<store::Database> db_;
  std::unique_ptr<platform::Tenants> tenants_;
  std::unique_ptr<platform::ApiKeys> keys_;
  std::unique_ptr<platform::RateLimiter> limiter_;
  metrics::Registry metrics_;
  std::atomic<bool> draining_{false};
  std::unique_ptr<store::BlobStore> blobs_;
  std::unique_ptr<hub::Registry> registry_;
  AppContext ctx_;
  Router router_;
  std::string admin_key_, tenant_admin_key_, read_key_;
};

TEST_F(ModelRoutesTest, ListsModelsInTheOpenAiShape) {
  Reply empty = Call("GET", "/v1/models", read_key_);
  EXPECT_EQ(empty.status, 200);
  EXPECT_EQ(json::serialize(empty.body), R"({"object":"list","data":[]})");

  ASSERT_TRUE(registry_->Import(WriteGguf("a.gguf"), "qwen/tiny:q8"));
  ASSERT_TRUE(registry_->Import(WriteGguf("b.gguf", 2), "plain"));
  Reply r = Call("GET", "/v1/models", read_key_);
  ASSERT_EQ(r.status, 200) << r.raw;
  const auto& o = r.body.as_object();
  EXPECT_EQ(o.at("object").as_string(), "list");
  const auto& data = o.at("data").as_array();
  ASSERT_EQ(data.size(), 2u);
  const auto& m = data[1].as_object();  // sorted by name: "plain" < "qwen/tiny:q8"
  EXPECT_EQ(m.at("id").as_string(), "qwen/tiny:q8");
  EXPECT_EQ(m.at("object").as_string(), "model");
  EXPECT_EQ(m.at("created").as_int64(), clock_.NowUnixMs() / 1000);
  EXPECT_EQ(m.at("owned_by").as_string(), "qwen");
  EXPECT_EQ(data[0].as_object().at("owned_by").as_string(), "yunzhi");
  EXPECT_EQ(m.at("meta").as_object().at("architecture").as_string(), "llama");
  EXPECT_EQ(m.at("meta").as_object().at("context_length").as_int64(), 512);
}

TEST_F(ModelRoutesTest, GetsOneModelByNameWithSlashesOr404ModelNotFound) {
  ASSERT_TRUE(registry_->Import(WriteGguf("a.gguf"), "qwen/tiny:q8"));
  Reply r = Call("GET", "/v1/models/qwen/tiny:q8", read_key_);
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body.as_object().at("id").as_string(), "qwen/tiny:q8");
  EXPECT_EQ(r.body.as_object().at("object").as_string(), "model");

  Reply missing = Call("GET", "/v1/models/qwen/nope", read_key_);
  ExpectError(missing, 404, "not_found_error", "model_not_found");
  EXPECT_THAT(std::string(missing.body.at("error").at("message").as_string()),
              HasSubstr("model 'qwen/nope' does not exist"));
}

TEST_F(ModelRoutesTest, ManagementNeedsAPlatformAdmin) {
  const std::string path = WriteGguf("a.gguf");
  const std::string body = json::serialize(json::object{{"path", path}, {"name", "x"}});
  ExpectError(Call("POST", "/api/models", read_key_, body), 403, "permission_error");
  ExpectError(Call("POST", "/api/models", tenant_admin_key_, body), 403, "permission_error");
  ExpectError(Call("GET", "/api/models/imports/imp_x", tenant_admin_key_), 403, "permission_error");
  ASSERT_TRUE(registry_->Import(path, "x"));
  ExpectError(Call("DELETE", "/api/models/x", tenant_admin_key_), 403, "permission_error");
  ExpectError(Call("PATCH", "/api/models/x", read_key_, R"({"keep_alive":"5m"})"), 403,
              "permission_error");
  EXPECT_TRUE(registry_->Find("x"));  // untouched

  // Read keys see the detailed list, without server paths.
  Reply list = Call("GET", "/api/models", read_key_);
  ASSERT_EQ(list.status, 200) << list.raw;
  const auto& m = list.body.at("data").as_array().at(0).as_object();
  EXPECT_EQ(m.at("name").as_string(), "x");
  EXPECT_EQ(m.at("format").as_string(), "gguf");
  EXPECT_FALSE(m.contains("source_path"));
  Reply admin_list = Call("GET", "/api/models", admin_key_);
  EXPECT_EQ(admin_list.body.at("data").as_array().at(0).at("source_path").as_string(), path);
}

TEST_F(ModelRoutesTest, ImportJobRunsInTheBackgroundToCompletion) {
  const std::string path = WriteGguf("a.gguf");
  Reply started = Call("POST", "/api/models", admin_key_,
                       json::serialize(json::object{{"path", path}, {"name", "acme/tiny"}}));
  ASSERT_EQ(started.status, 202) << started.raw;
  const auto& job = started.body.as_object();
  const std::string id(job.at("id").as_string());
  EXPECT_EQ(job.at("object").as_string(), "hub.import");
  EXPECT_THAT(std::string(job.at("status").as_string()),
              ::testing::AnyOf("queued", "running", "succeeded"));
  EXPECT_EQ(started.headers.find("Location")->second, "/api/models/imports/" + id);

  json::object done = WaitForJob(id);
  ASSERT_EQ(done["status"].as_string(), "succeeded") << json::serialize(done);
  EXPECT_EQ(done["bytes_done"].to_number<uint64_t>(), fs::file_size(path));
  EXPECT_EQ(done["progress"].as_double(), 1.0);
  EXPECT_EQ(done["model"].at("name").as_string(), "acme/tiny");
  Reply got = Call("GET", "/v1/models/acme/tiny", read_key_);
  EXPECT_EQ(got.status, 200);

  // A failing import reports its error in the job.
  Reply dup = Call("POST", "/api/models", admin_key_,
                   json::serialize(json::object{{"path", path}, {"name", "acme/tiny"}}));
  ASSERT_EQ(dup.status, 202);
  json::object failed = WaitForJob(std::string(dup.body.at("id").as_string()));
  EXPECT_EQ(failed["status"].as_string(), "failed");
  EXPECT_EQ(failed["error"].at("type").as_string(), "conflict_error");

  // Cheap checks fail the request itself.
  ExpectError(Call("POST", "/api/models", admin_key_, R"({"name":"x"})"), 400,
              "invalid_request_error");
  ExpectError(Call("POST", "/api/models", admin_key_, R"({"path":"/nope/x.gguf"})"), 404,
              "not_found_error");
  ExpectError(Call("POST", "/api/models", admin_key_,
                   json::serialize(json::object{{"path", path}, {"name", "Bad Name"}})),
              400, "invalid_request_error");
  ExpectError(Call("POST", "/api/models", admin_key_,
                   json::serialize(json::object{{"path", path}, {"replace", "yes"}})),
              400, "invalid_request_error");
  ExpectError(Call("GET", "/api/models/imports/imp_nope", admin_key_), 404, "not_found_error");
}

TEST_F(ModelRoutesTest, PatchSetsKeepAliveAndDeleteRemoves) {
  ASSERT_TRUE(registry_->Import(WriteGguf("a.gguf"), "ns/m"));
  Reply r = Call("PATCH", "/api/models/ns/m", admin_key_, R"({"keep_alive":"5m"})");
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body.at("keep_alive_ms").as_int64(), 300000);
  EXPECT_EQ(registry_->Find("ns/m")->keep_alive_ms, 300000);
  r = Call("PATCH", "/api/models/ns/m", admin_key_, R"({"keep_alive":90})");
  EXPECT_EQ(r.body.at("keep_alive_ms").as_int64(), 90000);
  r = Call("PATCH", "/api/models/ns/m", admin_key_, R"({"keep_alive":-1})");
  EXPECT_EQ(r.body.at("keep_alive_ms").as_int64(), -1);
  r = Call("PATCH", "/api/models/ns/m", admin_key_, R"({"keep_alive":null})");
  EXPECT_TRUE(r.body.at("keep_alive_ms").is_null());
  ExpectError(Call("PATCH", "/api/models/ns/m", admin_key_, R"({"keep_alive":"soon"})"), 400,
              "invalid_request_error");
  ExpectError(Call("PATCH", "/api/models/ns/nope", admin_key_, R"({"keep_alive":"1h"})"), 404,
              "not_found_error", "model_not_found");

  Reply del = Call("DELETE", "/api/models/ns/m", admin_key_);
  ASSERT_EQ(del.status, 200) << del.raw;
  EXPECT_EQ(del.body.at("deleted").as_bool(), true);
  EXPECT_EQ(del.body.at("id").as_string(), "ns/m");
  ExpectError(Call("GET", "/v1/models/ns/m", read_key_), 404, "not_found_error", "model_not_found");
  ExpectError(Call("DELETE", "/api/models/ns/m", admin_key_), 404, "not_found_error",
              "model_not_found");
}

TEST(KeepAliveDurations, ParsesOllamaStyleDurations) {
  EXPECT_EQ(*hub::ParseKeepAliveMs("5m"), 300000);
  EXPECT_EQ(*hub::ParseKeepAliveMs("1h30m"), 5400000);
  EXPECT_EQ(*hub::ParseKeepAliveMs("1.5h"), 5400000);
  EXPECT_EQ(*hub::ParseKeepAliveMs("300ms"), 300);
  EXPECT_EQ(*hub::ParseKeepAliveMs("10s"), 10000);
  EXPECT_EQ(*hub::ParseKeepAliveMs("300"), 300000);
  EXPECT_EQ(*hub::ParseKeepAliveMs("0"), 0);
  EXPECT_EQ(*hub::ParseKeepAliveMs("-1"), -1);
  EXPECT_EQ(*hub::ParseKeepAliveMs("-5m"), -1);
  for (const char* bad : {"", "m", "5x", "5m3", "--1", "1e9h9", "five"}) {
    auto r = hub::ParseKeepAliveMs(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().param, "keep_alive");
  }
}

}  // namespace
}  // namespace yunzhi::api
