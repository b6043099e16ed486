// The networking-free half of the api module: router, request helpers, response builders,
// ResponseStream and SSE framing.
#include <string>
#include <thread>
#include <vector>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/api/http.h"

namespace yunzhi::api {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

// A handler that answers with its own name, to tell which route was taken.
Handler Named(std::string name) {
  return [name](HttpRequest&) { return HttpResponse::Text(200, name); };
}

std::string Call(const Router::Match& m) {
  HttpRequest request;
  return (*m.handler)(request).body;
}

TEST(Router, MatchesLiteralRoute) {
  Router router;
  router.Add("GET", "/v1/models", Named("list"));
  Router::Match m = router.Find("GET", "/v1/models");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(Call(m), "list");
  EXPECT_EQ(m.pattern, "/v1/models");
  EXPECT_THAT(m.params, IsEmpty());
}

TEST(Router, RootPathMatchesOnlyRoot) {
  Router router;
  router.Add("GET", "/", Named("root"));
  EXPECT_NE(router.Find("GET", "/").handler, nullptr);
  EXPECT_EQ(router.Find("GET", "/x").handler, nullptr);
}

TEST(Router, CapturesNamedSegments) {
  Router router;
  router.Add("DELETE", "/api/tenants/{tenant}/keys/{key}", Named("del"));
  Router::Match m = router.Find("DELETE", "/api/tenants/acme/keys/k_123");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(m.pattern, "/api/tenants/{tenant}/keys/{key}");
  EXPECT_THAT(m.params, UnorderedElementsAre(Pair("tenant", "acme"), Pair("key", "k_123")));
}

TEST(Router, CaptureDoesNotMatchEmptySegmentOrTrailingSlash) {
  Router router;
  router.Add("GET", "/v1/models/{id}", Named("get"));
  router.Add("GET", "/v1/models", Named("list"));
  EXPECT_EQ(router.Find("GET", "/v1/models/").handler, nullptr);
  EXPECT_EQ(router.Find("GET", "/v1/models//x").handler, nullptr);
  EXPECT_EQ(router.Find("GET", "/v1/models/a/b").handler, nullptr);
  EXPECT_EQ(router.Find("GET", "/v1").handler, nullptr);
}

TEST(Router, LiteralSegmentWinsOverCaptureWhateverTheOrderOfAdding) {
  Router router;
  router.Add("GET", "/v1/models/{id}", Named("capture"));
  router.Add("GET", "/v1/models/default", Named("literal"));
  EXPECT_EQ(Call(router.Find("GET", "/v1/models/default")), "literal");
  EXPECT_EQ(Call(router.Find("GET", "/v1/models/other")), "capture");

  Router reversed;
  reversed.Add("GET", "/v1/models/default", Named("literal"));
  reversed.Add("GET", "/v1/models/{id}", Named("capture"));
  EXPECT_EQ(Call(reversed.Find("GET", "/v1/models/default")), "literal");
}

TEST(Router, EarlierLiteralSegmentDecidesPrecedence) {
  Router router;
  router.Add("GET", "/a/{x}/c", Named("capture-first"));
  router.Add("GET", "/a/b/{y}", Named("literal-first"));
  EXPECT_EQ(Call(router.Find("GET", "/a/b/c")), "literal-first");
  EXPECT_EQ(Call(router.Find("GET", "/a/z/c")), "capture-first");
}

TEST(Router, RestCaptureTakesRemainingSegments) {
  Router router;
  router.Add("GET", "/api/hub/{repo...}", Named("rest"));
  router.Add("GET", "/api/hub/{ns}/info", Named("info"));
  Router::Match m = router.Find("GET", "/api/hub/qwen/Qwen3-0.6B/files/a.gguf");
  ASSERT_NE(m.handler, nullptr);
  EXPECT_EQ(Call(m), "rest");
  EXPECT_THAT(m.params, ElementsAre(Pair("repo", "qwen/Qwen3-0.6B/files/a.gguf")));
  EXPECT_EQ(Call(router.Find("GET", "/api/hub/qwen/info")), "info");
  EXPECT_EQ(router.Find("GET", "/api/hub").handler, nullptr);
  EXPECT_EQ(router.Find("GET", "/api/hub/").handler, nullptr);
}

TEST(Router, MethodsAreDistinctAndCaseSensitive) {
  Router router;
  router.Add("GET", "/x", Named("get"));
  router.Add("POST", "/x", Named("post"));
  EXPECT_EQ(Call(router.Find("GET", "/x")), "get");
  EXPECT_EQ(Call(router.Find("POST", "/x")), "post");
  EXPECT_EQ(router.Find("get", "/x").handler, nullptr);
}

TEST(Router, WrongMethodReportsAllowedMethodsSorted) {
  Router router;
  router.Add("POST", "/v1/chat/completions", Named("chat"));
  router.Add("GET", "/v1/models/{id}", Named("get"));
  router.Add("DELETE", "/v1/models/{id}", Named("delete"));
  router.Add("DELETE", "/v1/models/special", Named("delete-special"));
  Router::Match m = router.Find("PUT", "/v1/models/special");
  EXPECT_EQ(m.handler, nullptr);
  EXPECT_TRUE(m.path_known);
  EXPECT_THAT(m.allowed_methods, ElementsAre("DELETE", "GET"));

  Router::Match chat = router.Find("GET", "/v1/chat/completions");
  EXPECT_TRUE(chat.path_known);
  EXPECT_THAT(chat.allowed_methods, ElementsAre("POST"));
}

TEST(Router, UnknownPathIsNotKnown) {
  Router router;
  router.Add("GET", "/v1/models", Named("list"));
  Router::Match m = router.Find("GET", "/v2/models");
  EXPECT_EQ(m.handler, nullptr);
  EXPECT_FALSE(m.path_known);
  EXPECT_THAT(m.allowed_methods, IsEmpty());
}

TEST(RouterDeathTest, RejectsAmbiguousAndMalformedPatterns) {
  EXPECT_DEATH(
      {
        Router router;
        router.Add("GET", "/a/{x}", Named("1"));
        router.Add("GET", "/a/{y}", Named("2"));
      },
      "YZ_CHECK");
  EXPECT_DEATH(Router().Add("GET", "no-slash", Named("x")), "YZ_CHECK");
  EXPECT_DEATH(Router().Add("GET", "/a/{}", Named("x")), "YZ_CHECK");
  EXPECT_DEATH(Router().Add("GET", "/a/x{id}", Named("x")), "YZ_CHECK");
  EXPECT_DEATH(Router().Add("GET", "/a/{rest...}/b", Named("x")), "YZ_CHECK");
}

TEST(Headers, NamesCompareCaseInsensitively) {
  HttpRequest request;
  request.headers.emplace("Content-Type", "application/json");
  request.headers.emplace("x-multi", "one");
  request.headers.emplace("X-Multi", "two");
  EXPECT_EQ(request.Header("content-type"), "application/json");
  EXPECT_EQ(request.Header("CONTENT-TYPE"), "application/json");
  EXPECT_EQ(request.Header("X-MULTI"), "one");  // first value, in insertion order
  EXPECT_EQ(request.headers.count("x-multi"), 2u);
  EXPECT_EQ(request.Header("Authorization"), std::nullopt);
  EXPECT_TRUE(HeaderLess()("a", "B"));
  EXPECT_FALSE(HeaderLess()("B", "a"));
  EXPECT_TRUE(HeaderLess()("abc", "ABCD"));
}

TEST(Request, QueryParamReturnsFirstValueExactName) {
  HttpRequest request;
  request.query = {{"limit", "10"}, {"after", "x"}, {"limit", "20"}};
  EXPECT_EQ(request.QueryParam("limit"), "10");
  EXPECT_EQ(request.QueryParam("after"), "x");
  EXPECT_EQ(request.QueryParam("LIMIT"), std::nullopt);
}

TEST(Response, JsonAndText) {
  HttpResponse json = HttpResponse::Json(201, R"({"ok":true})");
  EXPECT_EQ(json.status, 201);
  EXPECT_EQ(json.content_type, "application/json");
  EXPECT_EQ(json.body, R"({"ok":true})");
  HttpResponse text = HttpResponse::Text(200, "hi");
  EXPECT_EQ(text.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(HttpResponse::Text(200, "x", "text/html").content_type, "text/html");
}

TEST(Response, FromErrorHasOpenAiShapeWithNulls) {
  HttpResponse r = HttpResponse::FromError(NotFoundError("model 'x' does not exist"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, R"({"error":{"message":"model 'x' does not exist","type":"not_found_error",)"
                    R"("param":null,"code":null}})");
}

TEST(Response, FromErrorEscapesAndCarriesParamAndDetail) {
  Error error(Code::kUnauthenticated, "bad \"key\"\n\\ \x01", "headers.authorization",
              "invalid_api_key");
  HttpResponse r = HttpResponse::FromError(error);
  EXPECT_EQ(r.status, 401);
  boost::json::value v = boost::json::parse(r.body);  // throws if the escaping is wrong
  const auto& e = v.at("error");
  EXPECT_EQ(e.at("message").as_string(), "bad \"key\"\n\\ \x01");
  EXPECT_EQ(e.at("type").as_string(), "authentication_error");
  EXPECT_EQ(e.at("param").as_string(), "headers.authorization");
  EXPECT_EQ(e.at("code").as_string(), "invalid_api_key");
}

TEST(Response, FromErrorMapsStatusPerCode) {
  EXPECT_EQ(HttpResponse::FromError(Error(Code::kPayloadTooLarge, "big")).status, 413);
  EXPECT_EQ(HttpResponse::FromError(Error(Code::kQuotaExceeded, "q")).status, 429);
  EXPECT_EQ(HttpResponse::FromError(Error(Code::kUnavailable, "u")).status, 503);
  // kOk is not an error: sent as a 500 rather than a "successful" error body.
  HttpResponse ok = HttpResponse::FromError(Error(Code::kOk, "?"));
  EXPECT_EQ(ok.status, 500);
  EXPECT_NE(ok.body.find("server_error"), std::string::npos);
}

TEST(Sse, OneDataLinePerInputLine) {
  EXPECT_EQ(SseEvent("hello"), "data: hello\n\n");
  EXPECT_EQ(SseEvent(""), "data: \n\n");
  EXPECT_EQ(SseEvent("a\nb"), "data: a\ndata: b\n\n");
  EXPECT_EQ(SseEvent("a\r\nb\rc"), "data: a\ndata: b\ndata: c\n\n");
  EXPECT_EQ(SseEvent("[DONE]"), "data: [DONE]\n\n");
}

TEST(ResponseStream, DrainReturnsChunksInOrderThenClosed) {
  ResponseStream stream;
  int wakeups = 0;
  stream.SetWakeup([&] { ++wakeups; });
  EXPECT_TRUE(stream.Write("a"));
  EXPECT_TRUE(stream.Write(""));  // ignored: would end a chunked body
  EXPECT_TRUE(stream.Write("b"));
  bool closed = true;
  EXPECT_THAT(stream.Drain(&closed), ElementsAre("a", "b"));
  EXPECT_FALSE(closed);
  stream.Close();
  stream.Close();  // idempotent: no second wakeup
  EXPECT_FALSE(stream.Write("late"));
  EXPECT_THAT(stream.Drain(&closed), IsEmpty());
  EXPECT_TRUE(closed);
  EXPECT_EQ(wakeups, 3);
}

TEST(ResponseStream, ChunksWrittenBeforeWakeupIsSetAreKept) {
  ResponseStream stream;
  EXPECT_TRUE(stream.Write("early"));
  stream.SetWakeup([] {});
  bool closed = false;
  EXPECT_THAT(stream.Drain(&closed), ElementsAre("early"));
}

TEST(ResponseStream, CancelRejectsWritesAndDropsQueuedChunks) {
  ResponseStream stream;
  EXPECT_TRUE(stream.Write("queued"));
  EXPECT_FALSE(stream.cancelled());
  stream.Cancel();
  EXPECT_TRUE(stream.cancelled());
  EXPECT_FALSE(stream.Write("x"));
  bool closed = true;
  EXPECT_THAT(stream.Drain(&closed), IsEmpty());
  EXPECT_FALSE(closed);
}

TEST(ResponseStream, ConcurrentProducerLosesNothing) {
  ResponseStream stream;
  std::atomic<int> wakeups{0};
  stream.SetWakeup([&] { wakeups.fetch_add(1); });
  std::thread producer([&] {
    for (int i = 0; i < 1000; ++i) ASSERT_TRUE(stream.Write(std::to_string(i)));
    stream.Close();
  });
  std::vector<std::string> received;
  bool closed = false;
  while (!closed) {
    for (auto& chunk : stream.Drain(&closed)) received.push_back(std::move(chunk));
  }
  producer.join();
  for (auto& chunk : stream.Drain(&closed)) received.push_back(std::move(chunk));
  ASSERT_EQ(received.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(received[i], std::to_string(i));
  EXPECT_EQ(wakeups.load(), 1001);
}

}  // namespace
}  // namespace yunzhi::api
