// POST /v1/embeddings and /v1/rerank through the router (no sockets), with real keys, a real
// registry holding random encoder, reranker and chat models, and the real model manager:
// response shapes, float vs base64, dimensions, ordering, and the 400s of bad requests.
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model_writer.h"
#include "api/route_call.h"
#include "support/process.h"
#include "yunzhi/api/app.h"
#include "yunzhi/base/clock.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/base/thread_pool.h"
#include "yunzhi/hub/registry.h"
#include "yunzhi/platform/api_keys.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/platform/rate_limiter.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/platform/tenants.h"
#include "yunzhi/serving/model_manager.h"
#include "yunzhi/store/blob_store.h"
#include "yunzhi/store/data_dir.h"

namespace yunzhi::api {
namespace {
namespace json = boost::json;
namespace fs = std::filesystem;
using platform::Scope;
using platform::Scopes;
using ::testing::HasSubstr;

using Reply = testing::RouteReply;

class EmbeddingRoutesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto dir = store::DataDir::Open(fs::path(tmp_.path()) / "data");
    ASSERT_TRUE(dir);
    store::DatabaseOptions db_options;
    db_options.url = dir->database_url();
    db_ = std::move(*store::Database::Open(db_options));
    ASSERT_TRUE(platform::MigrateSchema(*db_));
    tenants_ = std::make_unique<platform::Tenants>(*db_, *Clock::System());
    keys_ = std::make_unique<platform::ApiKeys>(*db_, *tenants_, *Clock::System());
    limiter_ = std::make_unique<platform::RateLimiter>(*Clock::System());
    auto t = tenants_->Create("tenant-a");
    ASSERT_TRUE(t);
    platform::KeyOptions ko;
    ko.scopes = Scopes::Of({Scope::kInference, Scope::kRead});
    auto k = keys_->Create(t->id, ko);
    ASSERT_TRUE(k);
    key_ = k->secret;
    blobs_ = std::move(*store::BlobStore::Open(dir->blobs_path()));
    registry_ = std::move(*hub::Registry::Open(*db_, *blobs_, dir->models_path()));

    tools::EncoderSpec spec;
    spec.tokenizer = true;
    const std::string src = tmp_.path() + "/src";
    ASSERT_TRUE(tools::WriteEncoderModel(spec, {.gguf_path = src + "-embed.gguf"}));
    spec.classifier = true;
    ASSERT_TRUE(tools::WriteEncoderModel(spec, {.hf_dir = src + "-rerank"}));
    ASSERT_TRUE(tools::WriteModel(tools::ModelSpec{}, {.gguf_path = src + "-chat.gguf"}));
    ASSERT_TRUE(registry_->Import(src + "-embed.gguf", "bge"));
    ASSERT_TRUE(registry_->Import(src + "-rerank", "reranker"));
    ASSERT_TRUE(registry_->Import(src + "-chat.gguf", "chat"));

    serving::ServingOptions so;
    so.n_threads = 2;
    so.n_ctx = 128;
    models_ = std::make_unique<serving::ModelManager>(
        [this](std::string_view name) -> Result<serving::ModelSource> {
          YZ_ASSIGN_OR_RETURN(hub::ModelInfo info, registry_->Find(name));
          return serving::ModelSource{info.name, info.id, info.path, info.keep_alive_ms};
        },
        so, nullptr);
    ctx_.db = db_.get();
    ctx_.tenants = tenants_.get();
    ctx_.keys = keys_.get();
    ctx_.limiter = limiter_.get();
    ctx_.metrics = &metrics_;
    ctx_.registry = registry_.get();
    ctx_.models = models_.get();
    ctx_.workers = &workers_;
    ctx_.draining = &draining_;
    auto meter = platform::Meter::Open(*db_, tmp_.path() + "/usage.journal");
    ASSERT_TRUE(meter) << meter.error().ToString();
    meter_ = std::move(*meter);
    ctx_.meter = meter_.get();
    tenant_id_ = t->id;
    RegisterRoutes(router_, ctx_);
  }

  Reply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return testing::CallRoute(router_, method, path, key_, body);
  }
  Reply Embed(const std::string& body) { return Call("POST", "/v1/embeddings", body); }

  static std::vector<float> Floats(const json::value& embedding) {
    std::vector<float> v;
    for (const auto& x : embedding.as_array()) v.push_back(static_cast<float>(x.to_number<double>()));
    return v;
  }
  static std::vector<float> FromBase64(std::string_view text) {
    std::string bytes;
    uint32_t acc = 0;
    int bits = 0;
    for (char c : text) {
      if (c == '=') break;
      const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
      acc = (acc << 6) | static_cast<uint32_t>(std::strchr(alphabet, c) - alphabet);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        bytes.push_back(static_cast<char>((acc >> bits) & 0xFF));
      }
    }
    std::vector<float> v(bytes.size() / 4);
    for (size_t i = 0; i < v.size(); ++i) {
      uint32_t u = 0;
      for (int b = 0; b < 4; ++b) u |= uint32_t{static_cast<uint8_t>(bytes[i * 4 + b])} << (8 * b);
      std::memcpy(&v[i], &u, 4);
    }
    return v;
  }
  static double Norm(const std::vector<float>& v) {
    double n = 0;
    for (float f : v) n += static_cast<double>(f) * f;
    return std::sqrt(n);
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
  std::unique_ptr<serving::ModelManager> models_;
  std::unique_ptr<platform::Meter> meter_;
  std::string tenant_id_;
  ThreadPool workers_{2, "test-workers"};
  AppContext ctx_;
  Router router_;
  std::string key_;
};

TEST_F(EmbeddingRoutesTest, EmbeddingsInOpenAiShapeAsFloatsAndBase64) {
  auto r = Embed(R"({"model": "bge", "input": ["hello world", "the cat", "hello world"], "user": "u1"})");
  ASSERT_EQ(r.status, 200) << json::serialize(r.body);
  const json::object& o = r.body.as_object();
  EXPECT_EQ(o.at("object"), "list");
  EXPECT_EQ(o.at("model"), "bge");
  const json::array& data = o.at("data").as_array();
  ASSERT_EQ(data.size(), 3u);
  std::vector<std::vector<float>> vs;
  for (size_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(data[i].at("object"), "embedding");
    EXPECT_EQ(data[i].at("index").as_int64(), static_cast<int64_t>(i));
    vs.push_back(Floats(data[i].at("embedding")));
    EXPECT_EQ(vs.back().size(), 64u);
    EXPECT_NEAR(Norm(vs.back()), 1.0, 1e-5);
  }
  EXPECT_EQ(vs[0], vs[2]);
  EXPECT_NE(vs[0], vs[1]);
  // [CLS] hello world [SEP] + [CLS] the cat [SEP], twice the first.
  EXPECT_EQ(o.at("usage").at("prompt_tokens").as_int64(), 12);
  EXPECT_EQ(o.at("usage").at("total_tokens").as_int64(), 12);

  auto b = Embed(R"({"model": "bge", "input": "hello world", "encoding_format": "base64"})");
  ASSERT_EQ(b.status, 200) << json::serialize(b.body);
  const auto decoded = FromBase64(b.body.at("data").at(0).at("embedding").as_string());
  EXPECT_EQ(decoded, vs[0]);

  // Token ids: a single array and an array of arrays; [CLS]/[SEP] are added.
  auto ids = Embed(R"({"model": "bge", "input": [[104, 105], [106]]})");
  ASSERT_EQ(ids.status, 200) << json::serialize(ids.body);
  EXPECT_EQ(ids.body.at("data").as_array().size(), 2u);
  EXPECT_EQ(ids.body.at("usage").at("prompt_tokens").as_int64(), 4 + 3);
  auto single = Embed(R"({"model": "bge", "input": [104, 105]})");
  ASSERT_EQ(single.status, 200);
  EXPECT_EQ(Floats(single.body.at("data").at(0).at("embedding")),
            Floats(ids.body.at("data").at(0).at("embedding")));
}

TEST_F(EmbeddingRoutesTest, DimensionsTruncateAndRenormalise) {
  auto r = Embed(R"({"model": "bge", "input": "hello", "dimensions": 16})");
  ASSERT_EQ(r.status, 200) << json::serialize(r.body);
  auto v = Floats(r.body.at("data").at(0).at("embedding"));
  ASSERT_EQ(v.size(), 16u);
  EXPECT_NEAR(Norm(v), 1.0, 1e-5);
  auto full = Embed(R"({"model": "bge", "input": "hello", "dimensions": 64})");
  ASSERT_EQ(full.status, 200);
  auto f = Floats(full.body.at("data").at(0).at("embedding"));
  ASSERT_EQ(f.size(), 64u);
  // The first 16 values, rescaled: same direction.
  double dot = 0;
  for (size_t i = 0; i < 16; ++i) dot += static_cast<double>(v[i]) * f[i];
  double n16 = 0;
  for (size_t i = 0; i < 16; ++i) n16 += static_cast<double>(f[i]) * f[i];
  EXPECT_NEAR(dot, std::sqrt(n16), 1e-5);
  auto too_many = Embed(R"({"model": "bge", "input": "hello", "dimensions": 65})");
  EXPECT_EQ(too_many.status, 400);
  EXPECT_EQ(too_many.body.at("error").at("param"), "dimensions");
}

TEST_F(EmbeddingRoutesTest, BadEmbeddingRequestsAre400WithTheParam) {
  std::string many = "[";
  for (int i = 0; i < 2049; ++i) many += std::string(i ? "," : "") + "\"a\"";
  many += "]";
  std::string long_text;
  for (int i = 0; i < 100; ++i) long_text += "cat ";
  struct Case {
    std::string body;
    int status;
    std::string param;
  };
  const Case kCases[] = {
      {R"({"input": "x"})", 400, "model"},
      {R"({"model": "bge"})", 400, "input"},
      {R"({"model": "bge", "input": []})", 400, "input"},
      {R"({"model": "bge", "input": ""})", 400, "input"},
      {R"({"model": "bge", "input": ["a", ""]})", 400, "input"},
      {R"({"model": "bge", "input": ["a", 5]})", 400, "input"},
      {R"({"model": "bge", "input": [[]]})", 400, "input"},
      {R"({"model": "bge", "input": [-1]})", 400, "input"},
      {R"({"model": "bge", "input": [99999]})", 400, "input"},
      {R"({"model": "bge", "input": 7})", 400, "input"},
      {R"({"model": "bge", "input": )" + many + "}", 400, "input"},
      {R"({"model": "bge", "input": ")" + long_text + R"("})", 400, "input"},
      {R"({"model": "bge", "input": "a", "encoding_format": "int8"})", 400, "encoding_format"},
      {R"({"model": "bge", "input": "a", "dimensions": 0})", 400, "dimensions"},
      {R"({"model": "chat", "input": "a"})", 400, "model"},
      {R"({"model": "reranker", "input": "a"})", 400, "model"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.body.substr(0, 120));
    auto r = Embed(c.body);
    EXPECT_EQ(r.status, c.status) << json::serialize(r.body);
    ASSERT_TRUE(r.body.is_object());
    const json::value& param = r.body.at("error").at("param");
    EXPECT_EQ(param.is_string() ? std::string(param.as_string()) : "", c.param);
  }
  auto chat = Embed(R"({"model": "chat", "input": "a"})");
  EXPECT_THAT(std::string(chat.body.at("error").at("message").as_string()),
              HasSubstr("is a chat model, not an embedding model"));
  auto missing = Embed(R"({"model": "nope", "input": "a"})");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body.at("error").at("code"), "model_not_found");
}

TEST_F(EmbeddingRoutesTest, RerankSortsByRelevanceWithTopNAndDocuments) {
  const std::string docs =
      R"(["paris is the capital of france", {"text": "the cat"}, "hello world", "a dog"])";
  auto r = Call("POST", "/v1/rerank",
                R"({"model": "reranker", "query": "what is the capital of france?", "documents": )" +
                    docs + "}");
  ASSERT_EQ(r.status, 200) << json::serialize(r.body);
  const json::object& o = r.body.as_object();
  EXPECT_THAT(std::string(o.at("id").as_string()), HasSubstr("rerank-"));
  EXPECT_EQ(o.at("model"), "reranker");
  const json::array& results = o.at("results").as_array();
  ASSERT_EQ(results.size(), 4u);
  std::vector<bool> seen(4, false);
  double last = 2.0;
  for (const auto& x : results) {
    const double s = x.at("relevance_score").to_number<double>();
    EXPECT_GT(s, 0.0);
    EXPECT_LT(s, 1.0);
    EXPECT_LE(s, last);
    last = s;
    const int64_t i = x.at("index").as_int64();
    seen[static_cast<size_t>(i)] = true;
    EXPECT_TRUE(x.at("document").at("text").is_string());
  }
  EXPECT_EQ(seen, std::vector<bool>(4, true));
  const std::vector<std::string> texts = {"paris is the capital of france", "the cat",
                                         "hello world", "a dog"};
  EXPECT_EQ(std::string(results[0].at("document").at("text").as_string()),
            texts[static_cast<size_t>(results[0].at("index").as_int64())]);
  EXPECT_GT(o.at("usage").at("total_tokens").as_int64(), 4 * 10);

  for (const char* path : {"/rerank", "/v2/rerank"}) {
    auto top = Call("POST", path,
                    R"({"model": "reranker", "query": "what is the capital of france?", "documents": )" +
                        docs + R"(, "top_n": 2, "return_documents": false})");
    ASSERT_EQ(top.status, 200) << json::serialize(top.body);
    const json::array& t = top.body.at("results").as_array();
    ASSERT_EQ(t.size(), 2u);
    EXPECT_EQ(t[0].at("index"), results[0].at("index"));
    EXPECT_EQ(t[1].at("index"), results[1].at("index"));
    EXPECT_FALSE(t[0].as_object().contains("document"));
  }
}

TEST_F(EmbeddingRoutesTest, BadRerankRequestsAre400) {
  struct Case {
    std::string body;
    std::string param;
  };
  const Case kCases[] = {
      {R"({"query": "q", "documents": ["a"]})", "model"},
      {R"({"model": "reranker", "documents": ["a"]})", "query"},
      {R"({"model": "reranker", "query": "q"})", "documents"},
      {R"({"model": "reranker", "query": "q", "documents": []})", "documents"},
      {R"({"model": "reranker", "query": "q", "documents": [5]})", "documents"},
      {R"({"model": "reranker", "query": "q", "documents": [{"txt": "a"}]})", "documents"},
      {R"({"model": "reranker", "query": "q", "documents": ["a"], "top_n": 0})", "top_n"},
      {R"({"model": "reranker", "query": "q", "documents": ["a"], "return_documents": 1})",
       "return_documents"},
      {R"({"model": "bge", "query": "q", "documents": ["a"]})", "model"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.body);
    auto r = Call("POST", "/v1/rerank", c.body);
    EXPECT_EQ(r.status, 400) << json::serialize(r.body);
    ASSERT_TRUE(r.body.is_object());
    EXPECT_EQ(r.body.at("error").at("param"), json::value(c.param));
  }
}

TEST_F(EmbeddingRoutesTest, AnsweredRequestsAreMeteredWithTheirTokens) {
  auto e = Embed(R"({"model": "bge", "input": ["hello world", "the cat"]})");
  ASSERT_EQ(e.status, 200);
  auto r = Call("POST", "/v1/rerank", R"({"model": "reranker", "query": "cat", "documents": ["a dog"]})");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(Embed(R"({"model": "bge", "input": ""})").status, 400);  // not metered
  // Usage is recorded right after the answer (on the worker): poll for it.
  auto records = meter_->List(tenant_id_, 0, INT64_MAX);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (records && records->size() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    records = meter_->List(tenant_id_, 0, INT64_MAX);
  }
  ASSERT_TRUE(records) << records.error().ToString();
  ASSERT_EQ(records->size(), 2u);
  std::map<std::string, int64_t> tokens;
  for (const auto& rec : *records) {
    tokens[rec.kind] = rec.q.prompt_tokens;
    EXPECT_FALSE(rec.key_id.empty());
  }
  EXPECT_EQ(tokens["embedding_tokens"], e.body.at("usage").at("prompt_tokens").as_int64());
  EXPECT_EQ(tokens["rerank_tokens"], r.body.at("usage").at("total_tokens").as_int64());
  EXPECT_EQ(tokens["rerank_tokens"], 6);  // [CLS] cat [SEP] a dog [SEP]
}

TEST_F(EmbeddingRoutesTest, ModelListsAndPsShowTheKind) {
  auto models = Call("GET", "/v1/models");
  ASSERT_EQ(models.status, 200) << json::serialize(models.body);
  std::map<std::string, std::string> kinds;
  for (const auto& m : models.body.at("data").as_array()) {
    kinds[std::string(m.at("id").as_string())] = std::string(m.at("meta").at("kind").as_string());
  }
  EXPECT_EQ(kinds, (std::map<std::string, std::string>{
                       {"bge", "embedding"}, {"chat", "chat"}, {"reranker", "rerank"}}));
  ASSERT_EQ(Embed(R"({"model": "bge", "input": "hello"})").status, 200);
  auto ps = Call("GET", "/api/ps");
  ASSERT_EQ(ps.status, 200);
  const json::array& loaded = ps.body.at("data").as_array();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].at("name"), "bge");
  EXPECT_EQ(loaded[0].at("kind"), "embedding");
  EXPECT_EQ(loaded[0].at("architecture"), "bert");
}

}  // namespace
}  // namespace yunzhi::api
