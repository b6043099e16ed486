// Embeddings and reranking over HTTP: POST /v1/embeddings (OpenAI) and POST /v1/rerank (Jina /
// Cohere shape; aliases /rerank and /v2/rerank). Both parse and validate on the I/O thread, then
// defer the model work (which may load the model) to the request workers, as the chat routes do.
//
// /v1/embeddings choices (documented in docs/api):
//   * input: a string, an array of strings, an array of token ids, or an array of token-id
//     arrays; at most 2048 inputs; an empty array, an empty string or an empty token array is a
//     400 (param "input"). Token ids are the model's own; [CLS]/[SEP] are added when missing.
//   * An input longer than the model's context is a 400 (param "input"), as OpenAI answers;
//     nothing is truncated silently.
//   * encoding_format "float" (default) or "base64": the little-endian float32 bytes in base64,
//     which is what the openai npm client asks for by default and decodes.
//   * dimensions: at most the model's; fewer keeps the first `dimensions` values and scales them
//     to unit length again (Matryoshka truncation, meaningful for models trained for it).
//   * user is accepted and ignored.
// /v1/rerank: {model, query, documents: [string | {text}], top_n?, return_documents? (default
// true)} -> {id, model, results: [{index, relevance_score, document?: {text}}] best first,
// usage: {prompt_tokens, total_tokens}}. relevance_score is the sigmoid of the cross-encoder's
// logit (0..1, the order of the logits). Pairs longer than the context are cut (the longer
// side first), never refused.
// Usage and billing: each request reserves its maximum cost first (429 insufficient_quota when
// the balance cannot cover it) and, once answered, settles the real token count and records it
// (ctx.meter) as embedding_tokens / rerank_tokens with the charge (see `Metered`).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "yunzhi/api/app.h"
#include "yunzhi/api/http.h"
#include "yunzhi/base/log.h"
#include "yunzhi/base/thread_pool.h"
#include "yunzhi/platform/billing.h"
#include "yunzhi/platform/metering.h"
#include "yunzhi/serving/model_manager.h"

#include "api/openai_types.h"
#include "api/route_util.h"
#include "api/routes.h"

namespace yunzhi::api {
namespace {

using platform::Principal;
using platform::Scope;

constexpr size_t kMaxInputs = 2048;

struct EmbeddingRequest {
  std::string model;
  std::vector<std::string> texts;               // either texts ...
  std::vector<std::vector<int32_t>> token_ids;  // ... or token ids
  bool base64 = false;
  std::optional<int64_t> dimensions;
};

struct RerankRequest {
  std::string model;
  std::string query;
  std::vector<std::string> documents;
  std::optional<int64_t> top_n;
  bool return_documents = true;
};

Result<std::vector<int32_t>> TokenArray(const json::array& a, std::string_view what) {
  std::vector<int32_t> ids;
  ids.reserve(a.size());
  for (const auto& v : a) {
    if (!v.is_int64() || v.as_int64() < 0 || v.as_int64() > INT32_MAX) {
      return InvalidArgumentError(
          fmt::format("{} must hold non-negative integer token ids", what), "input");
    }
    ids.push_back(static_cast<int32_t>(v.as_int64()));
  }
  if (ids.empty()) return InvalidArgumentError(fmt::format("{} is empty", what), "input");
  return ids;
}

Result<std::string> RequiredString(const json::object& o, std::string_view field) {
  YZ_ASSIGN_OR_RETURN(std::optional<std::string> v, OptString(o, field));
  if (!v || v->empty()) {
    return InvalidArgumentError(fmt::format("'{}' is required", field), std::string(field));
  }
  return *v;
}

Result<EmbeddingRequest> ParseEmbeddingRequest(const json::object& body) {
  EmbeddingRequest r;
  YZ_ASSIGN_OR_RETURN(r.model, RequiredString(body, "model"));
  const json::value* input = body.if_contains("input");
  if (input == nullptr || input->is_null()) {
    return InvalidArgumentError("'input' is required", "input");
  }
  if (input->is_string()) {
    r.texts.emplace_back(input->as_string());
  } else if (input->is_array()) {
    const json::array& a = input->as_array();
    if (a.empty()) return InvalidArgumentError("'input' must not be an empty array", "input");
    if (a[0].is_string()) {
      for (size_t i = 0; i < a.size(); ++i) {
        if (!a[i].is_string()) {
          return InvalidArgumentError("'input' must not mix strings and other values", "input");
        }
        r.texts.emplace_back(a[i].as_string());
      }
    } else if (a[0].is_array()) {
      for (size_t i = 0; i < a.size(); ++i) {
        if (!a[i].is_array()) {
          return InvalidArgumentError("'input' must not mix token arrays and other values",
                                      "input");
        }
        YZ_ASSIGN_OR_RETURN(auto ids, TokenArray(a[i].as_array(), fmt::format("input[{}]", i)));
        r.token_ids.push_back(std::move(ids));
      }
    } else {
      YZ_ASSIGN_OR_RETURN(auto ids, TokenArray(a, "input"));
      r.token_ids.push_back(std::move(ids));
    }
  } else {
    return InvalidArgumentError(
        "'input' must be a string, an array of strings or an array of token ids", "input");
  }
  const size_t n = std::max(r.texts.size(), r.token_ids.size());
  if (n > kMaxInputs) {
    return InvalidArgumentError(
        fmt::format("'input' has {} items; at most {} are allowed", n, kMaxInputs), "input");
  }
  for (size_t i = 0; i < r.texts.size(); ++i) {
    if (r.texts[i].empty()) {
      return InvalidArgumentError(
          r.texts.size() == 1 && input->is_string()
              ? std::string("'input' must not be an empty string")
              : fmt::format("input[{}] must not be an empty string", i),
          "input");
    }
  }
  YZ_ASSIGN_OR_RETURN(std::optional<std::string> format, OptString(body, "encoding_format"));
  if (format && *format != "float" && *format != "base64") {
    return InvalidArgumentError(
        fmt::format("encoding_format must be \"float\" or \"base64\", not \"{}\"", *format),
        "encoding_format");
  }
  r.base64 = format && *format == "base64";
  YZ_ASSIGN_OR_RETURN(r.dimensions, OptInt(body, "dimensions"));
  if (r.dimensions && *r.dimensions <= 0) {
    return InvalidArgumentError("dimensions must be a positive integer", "dimensions");
  }
  YZ_ASSIGN_OR_RETURN(std::optional<std::string> user, OptString(body, "user"));
  (void)user;
  return r;
}

Result<RerankRequest> ParseRerankRequest(const json::object& body) {
  RerankRequest r;
  YZ_ASSIGN_OR_RETURN(r.model, RequiredString(body, "model"));
  YZ_ASSIGN_OR_RETURN(r.query, RequiredString(body, "query"));
  const json::value* docs = body.if_contains("documents");
  if (docs == nullptr || !docs->is_array()) {
    return InvalidArgumentError("'documents' must be an array", "documents");
  }
  const json::array& a = docs->as_array();
  if (a.empty()) return InvalidArgumentError("'documents' must not be empty", "documents");
  if (a.size() > kMaxInputs) {
    return InvalidArgumentError(
        fmt::format("'documents' has {} items; at most {} are allowed", a.size(), kMaxInputs),
        "documents");
  }
  for (size_t i = 0; i < a.size(); ++i) {
    const json::value& d = a[i];
    const json::value* text = &d;
    if (d.is_object()) text = d.as_object().if_contains("text");
    if (text == nullptr || !text->is_string()) {
      return InvalidArgumentError(
          fmt::format("documents[{}] must be a string or an object with a string 'text'", i),
          "documents");
    }
    r.documents.emplace_back(text->as_string());
  }
  YZ_ASSIGN_OR_RETURN(r.top_n, OptInt(body, "top_n"));
  if (r.top_n && *r.top_n <= 0) {
    return InvalidArgumentError("top_n must be a positive integer", "top_n");
  }
  if (const json::value* rd = body.if_contains("return_documents"); rd && !rd->is_null()) {
    if (!rd->is_bool()) {
      return InvalidArgumentError("return_documents must be a boolean", "return_documents");
    }
    r.return_documents = rd->as_bool();
  }
  return r;
}

std::string Base64(const void* data, size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = static_cast<const unsigned char*>(data);
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    const uint32_t b = (uint32_t{p[i]} << 16) | (i + 1 < n ? uint32_t{p[i + 1]} << 8 : 0) |
                       (i + 2 < n ? uint32_t{p[i + 2]} : 0);
    out.push_back(kAlphabet[(b >> 18) & 63]);
    out.push_back(kAlphabet[(b >> 12) & 63]);
    out.push_back(i + 1 < n ? kAlphabet[(b >> 6) & 63] : '=');
    out.push_back(i + 2 < n ? kAlphabet[b & 63] : '=');
  }
  return out;
}

// The float32 values as little-endian bytes, in base64.
std::string FloatsBase64(const std::vector<float>& v) {
  std::string bytes(v.size() * 4, '\0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &v[i], 4);
    for (int b = 0; b < 4; ++b) bytes[i * 4 + b] = static_cast<char>((u >> (8 * b)) & 0xFF);
  }
  return Base64(bytes.data(), bytes.size());
}

// Billing of one embedding or rerank request: the most it can cost is reserved before the model
// runs (every input byte counted as a token, plus two per text for the special tokens: no
// tokenizer makes more), and the real count is settled and journaled with its usage record
// (kind embedding_tokens / rerank_tokens) once answered. A failed record is logged, never fails
// the answered request.
class Metered {
 public:
  Metered(const AppContext& ctx, const Principal& p, std::string_view kind, std::string model)
      : ctx_(ctx), principal_(p), kind_(kind), model_(std::move(model)) {}

  // Errors: Reserve's (429 insufficient_quota / rate_limit_exceeded).
  Status Reserve(int64_t max_tokens) {
    if (ctx_.billing == nullptr) return OkStatus();
    YZ_ASSIGN_OR_RETURN(prices_, ctx_.billing->PricesFor(model_));
    YZ_ASSIGN_OR_RETURN(platform::Money cost, platform::Billing::RecordCost(*prices_, Usage(max_tokens)));
    YZ_ASSIGN_OR_RETURN(hold_, ctx_.billing->Reserve(principal_.tenant_id, principal_.key_id, cost, max_tokens));
    return OkStatus();
  }

  // The request failed: give the reservation back.
  void Release() {
    if (ctx_.billing != nullptr && hold_) (void)ctx_.billing->Settle(*hold_, platform::Money());
    hold_.reset();
  }

  void Record(const std::string& request_id, int64_t tokens) {
    platform::UsageRecord r = Usage(tokens);
    r.request_id = request_id;
    std::optional<platform::UsageCharge> charge;
    if (ctx_.billing != nullptr && prices_) {
      auto cost = platform::Billing::RecordCost(*prices_, r);
      const platform::Hold hold =
          hold_.value_or(platform::Hold{principal_.tenant_id, principal_.key_id, platform::Money(), false});
      auto settled = ctx_.billing->Settle(hold, cost.value_or(hold.amount));
      if (settled) charge = std::move(*settled);
      hold_.reset();
    }
    if (ctx_.meter != nullptr) {
      if (auto s = ctx_.meter->Submit(std::move(r), std::move(charge)); !s) {
        log::Error("usage_record_failed", {{"error", s.error().message}});
      }
    } else if (charge) {
      if (auto s = ctx_.billing->Commit(*charge); !s) log::Error("billing_commit_failed", {{"error", s.error().message}});
    }
  }

 private:
  platform::UsageRecord Usage(int64_t tokens) const {
    platform::UsageRecord r;
    r.kind = std::string(kind_);
    r.tenant_id = principal_.tenant_id;
    r.key_id = principal_.key_id;
    r.model = model_;
    r.q.prompt_tokens = tokens;
    return r;
  }

  const AppContext& ctx_;
  const Principal& principal_;
  std::string_view kind_;
  std::string model_;
  std::optional<platform::Prices> prices_;
  std::optional<platform::Hold> hold_;
};

// At most this many tokens from these texts (see Metered).
int64_t MaxTokens(const std::vector<std::string>& texts) {
  int64_t n = 0;
  for (const auto& t : texts) n += static_cast<int64_t>(t.size()) + 2;
  return n;
}

HttpResponse ErrorOf(const Error& error) {
  HttpResponse r = HttpResponse::FromError(error);
  if (error.code == Code::kResourceExhausted) r.headers.emplace("Retry-After", "1");
  return r;
}

void RunEmbeddings(const AppContext& ctx, const std::shared_ptr<PendingResponse>& pending,
                   const Principal& principal, const EmbeddingRequest& req) {
  if (pending->cancelled()) return;
  Metered metered(ctx, principal, platform::kUsageEmbeddingTokens, req.model);
  int64_t max_tokens = MaxTokens(req.texts);
  for (const auto& ids : req.token_ids) max_tokens += static_cast<int64_t>(ids.size());
  if (auto s = metered.Reserve(max_tokens); !s) {
    pending->Complete(ErrorOf(s.error()));
    return;
  }
  // Normalise unless the vectors are cut afterwards (then they are normalised after the cut).
  serving::EmbedOptions options;
  Result<serving::EmbedResult> result =
      req.texts.empty() ? ctx.models->EmbedTokens(req.model, req.token_ids, options)
                        : ctx.models->Embed(req.model, req.texts, options);
  if (!result) {
    metered.Release();
    pending->Complete(ErrorOf(result.error()));
    return;
  }
  json::array data;
  for (size_t i = 0; i < result->vectors.size(); ++i) {
    std::vector<float>& v = result->vectors[i];
    if (req.dimensions) {
      if (*req.dimensions > static_cast<int64_t>(v.size())) {
        metered.Release();
        pending->Complete(ErrorOf(InvalidArgumentError(
            fmt::format("dimensions {} is more than the model's {}", *req.dimensions, v.size()),
            "dimensions")));
        return;
      }
      if (*req.dimensions < static_cast<int64_t>(v.size())) {
        v.resize(static_cast<size_t>(*req.dimensions));
        double norm = 0.0;
        for (float f : v) norm += static_cast<double>(f) * f;
        const float inv = static_cast<float>(1.0 / std::max(std::sqrt(norm), 1e-12));
        for (float& f : v) f *= inv;
      }
    }
    json::object item{{"object", "embedding"}, {"index", static_cast<int64_t>(i)}};
    if (req.base64) {
      item["embedding"] = FloatsBase64(v);
    } else {
      json::array values;
      values.reserve(v.size());
      for (float f : v) values.push_back(static_cast<double>(f));
      item["embedding"] = std::move(values);
    }
    data.push_back(std::move(item));
  }
  // Journaled before the answer leaves (a write(2); see platform/metering.h).
  metered.Record(NewResponseId("emb"), result->prompt_tokens);
  pending->Complete(JsonResponse(
      200, json::object{{"object", "list"},
                        {"data", std::move(data)},
                        {"model", req.model},
                        {"usage", json::object{{"prompt_tokens", result->prompt_tokens},
                                               {"total_tokens", result->prompt_tokens}}}}));
}

void RunRerank(const AppContext& ctx, const std::shared_ptr<PendingResponse>& pending,
               const Principal& principal, const RerankRequest& req) {
  if (pending->cancelled()) return;
  Metered metered(ctx, principal, platform::kUsageRerankTokens, req.model);
  // Each document is scored with the query beside it.
  const int64_t query_tokens = static_cast<int64_t>(req.query.size()) + 3;
  if (auto s = metered.Reserve(MaxTokens(req.documents) +
                               query_tokens * static_cast<int64_t>(req.documents.size()));
      !s) {
    pending->Complete(ErrorOf(s.error()));
    return;
  }
  auto result = ctx.models->Rerank(req.model, req.query, req.documents);
  if (!result) {
    metered.Release();
    pending->Complete(ErrorOf(result.error()));
    return;
  }
  std::vector<size_t> order(req.documents.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return result->scores[a] > result->scores[b]; });
  if (req.top_n && static_cast<size_t>(*req.top_n) < order.size()) {
    order.resize(static_cast<size_t>(*req.top_n));
  }
  json::array results;
  for (size_t i : order) {
    const double logit = result->scores[i];
    json::object item{{"index", static_cast<int64_t>(i)},
                      {"relevance_score", 1.0 / (1.0 + std::exp(-logit))}};
    if (req.return_documents) item["document"] = json::object{{"text", req.documents[i]}};
    results.push_back(std::move(item));
  }
  const std::string id = NewResponseId("rerank");
  const int64_t tokens = result->prompt_tokens;
  metered.Record(id, tokens);
  pending->Complete(JsonResponse(
      200, json::object{{"id", id},
                        {"object", "list"},
                        {"model", req.model},
                        {"results", std::move(results)},
                        {"usage", json::object{{"prompt_tokens", tokens},
                                               {"total_tokens", tokens}}}}));
}

}  // namespace

void RegisterEmbeddingRoutes(Router& r, const AppContext& ctx) {
  r.Add("POST", "/v1/embeddings",
        Authed(ctx, Scope::kInference, [ctx](HttpRequest& req, const Principal& p) {
          auto body = JsonBody(req);
          if (!body) return HttpResponse::FromError(body.error());
          auto parsed = ParseEmbeddingRequest(*body);
          if (!parsed) return HttpResponse::FromError(parsed.error());
          auto shared = std::make_shared<EmbeddingRequest>(std::move(*parsed));
          return DeferToWorker(ctx, "embedding", [ctx, shared, p](std::shared_ptr<PendingResponse> pending) {
            RunEmbeddings(ctx, pending, p, *shared);
          });
        }));
  for (const char* path : {"/v1/rerank", "/rerank", "/v2/rerank"}) {
    r.Add("POST", path, Authed(ctx, Scope::kInference, [ctx](HttpRequest& req, const Principal& p) {
            auto body = JsonBody(req);
            if (!body) return HttpResponse::FromError(body.error());
            auto parsed = ParseRerankRequest(*body);
            if (!parsed) return HttpResponse::FromError(parsed.error());
            auto shared = std::make_shared<RerankRequest>(std::move(*parsed));
            return DeferToWorker(ctx, "embedding", [ctx, shared, p](std::shared_ptr<PendingResponse> pending) {
              RunRerank(ctx, pending, p, *shared);
            });
          }));
  }
}

}  // namespace yunzhi::api
