// The HTTP server over real sockets on 127.0.0.1 (ephemeral ports), driven by the raw test
// client so that what is asserted is what goes over the wire.
#include "yunzhi/api/http_server.h"

#include <chrono>
#include <future>
#include <latch>
#include <memory>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/api/http.h"
#include "yunzhi/base/log.h"
#include "yunzhi/base/metrics.h"

#include "support/http_client.h"

namespace yunzhi::api {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using yunzhi::testing::ClientResponse;
using yunzhi::testing::HttpClient;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class HttpServerTest : public ::testing::Test {
 protected:
  HttpServerTest() {
    router_.Add("GET", "/hello", [](HttpRequest&) { return HttpResponse::Text(200, "hello"); });
    router_.Add("POST", "/echo", [](HttpRequest& r) { return HttpResponse::Text(200, r.body); });
    router_.Add("GET", "/whoami",
                [](HttpRequest& r) { return HttpResponse::Text(200, r.remote_addr); });
    router_.Add("GET", "/throw",
                [](HttpRequest&) -> HttpResponse { throw std::runtime_error("boom in handler"); });
  }

  // Starts the server on an ephemeral port; the options' port is ignored.
  void StartServer(ServerOptions options = {}) {
    options.port = 0;
    if (options.threads == 0) options.threads = 2;
    server_ = std::make_unique<HttpServer>(options, router_, &registry_);
    Status started = server_->Start();
    ASSERT_TRUE(started) << started.error().ToString();
    ASSERT_NE(server_->port(), 0);
  }

  uint16_t port() const { return server_->port(); }

  Router router_;
  metrics::Registry registry_;
  std::unique_ptr<HttpServer> server_;  // last: destroyed before the router and registry
};

TEST_F(HttpServerTest, RoutesRequestAndFillsTheRequest) {
  HttpRequest seen;
  router_.Add("GET", "/items/{id}/{rest...}", [&seen](HttpRequest& r) {
    seen = r;
    return HttpResponse::Json(200, R"({"ok":true})");
  });
  StartServer();
  HttpClient client(port());
  auto response = client.Send("GET", "/items/a%20b/x/y%2Fz?q=hello+world&empty&u=%E4%BD%A0",
                              {{"X-Custom", "v1"}, {"x-custom", "v2"}});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, R"({"ok":true})");
  EXPECT_EQ(response->Header("Content-Type"), "application/json");
  // "Tue, 25 Nov 2026 01:02:03 GMT"
  EXPECT_THAT(response->Header("Date").value_or(""),
              ::testing::MatchesRegex("[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} "
                                      "[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"));

  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.target, "/items/a%20b/x/y%2Fz?q=hello+world&empty&u=%E4%BD%A0");
  EXPECT_EQ(seen.path, "/items/a b/x/y/z");
  EXPECT_EQ(seen.path_params.at("id"), "a b");
  EXPECT_EQ(seen.path_params.at("rest"), "x/y/z");
  ASSERT_EQ(seen.query.size(), 3u);
  EXPECT_EQ(seen.QueryParam("q"), "hello world");
  EXPECT_EQ(seen.QueryParam("empty"), "");
  EXPECT_EQ(seen.QueryParam("u"), "\xe4\xbd\xa0");
  EXPECT_EQ(seen.Header("X-CUSTOM"), "v1");
  EXPECT_EQ(seen.headers.count("x-custom"), 2u);
  EXPECT_THAT(seen.remote_addr, StartsWith("127.0.0.1:"));
}

TEST_F(HttpServerTest, UnknownPathIs404WithOpenAiErrorBody) {
  StartServer();
  HttpClient client(port());
  auto response = client.Send("GET", "/nope");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 404);
  EXPECT_EQ(response->Header("Content-Type"), "application/json");
  EXPECT_EQ(response->body,
            R"({"error":{"message":"no route for GET /nope","type":"not_found_error",)"
            R"("param":null,"code":null}})");
}

TEST_F(HttpServerTest, WrongMethodIs405WithAllowHeader) {
  router_.Add("DELETE", "/hello", [](HttpRequest&) { return HttpResponse::Text(204, ""); });
  StartServer();
  HttpClient client(port());
  auto response = client.Send("PUT", "/hello");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 405);
  EXPECT_EQ(response->Header("Allow"), "DELETE, GET");
  EXPECT_THAT(response->body, HasSubstr(R"("type":"invalid_request_error")"));
}

TEST_F(HttpServerTest, KeepAliveServesTwoRequestsOnOneConnection) {
  StartServer();
  HttpClient client(port());
  auto first = client.Send("GET", "/whoami");
  ASSERT_TRUE(first) << first.error().ToString();
  auto second = client.Send("GET", "/whoami");
  ASSERT_TRUE(second) << second.error().ToString();
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(second->status, 200);
  // The same client address and port: the same TCP connection.
  EXPECT_EQ(first->body, second->body);
  EXPECT_FALSE(client.peer_closed());
}

TEST_F(HttpServerTest, PipelinedRequestsAreAnsweredInOrder) {
  StartServer();
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  ASSERT_TRUE(
      client.SendRaw("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst"
                     "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nsecond"
                     "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  for (const char* expected : {"first", "second", "hello"}) {
    auto response = client.ReadResponse();
    ASSERT_TRUE(response) << response.error().ToString();
    EXPECT_EQ(response->body, expected);
  }
}

TEST_F(HttpServerTest, ConnectionCloseIsHonoured) {
  StartServer();
  HttpClient client(port());
  auto response = client.Send("GET", "/hello", {{"Connection", "close"}});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->Header("Connection"), "close");
  EXPECT_TRUE(client.WaitForClose(2s));
}

TEST_F(HttpServerTest, Http10RequestGetsAnswerAndClose) {
  StartServer();
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  ASSERT_TRUE(client.SendRaw("GET /hello HTTP/1.0\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->body, "hello");
  EXPECT_TRUE(client.WaitForClose(2s));
}

TEST_F(HttpServerTest, EveryResponseCarriesARequestId) {
  std::string id_in_handler;
  std::string id_in_log_scope;
  router_.Add("GET", "/id", [&](HttpRequest& r) {
    id_in_handler = r.request_id;
    id_in_log_scope = log::CurrentRequestId();
    return HttpResponse::Text(200, "");
  });
  StartServer();
  HttpClient client(port());

  auto given = client.Send("GET", "/id", {{"X-Request-Id", "client-ID_1.2"}});
  ASSERT_TRUE(given) << given.error().ToString();
  EXPECT_EQ(given->Header("X-Request-Id"), "client-ID_1.2");
  EXPECT_EQ(id_in_handler, "client-ID_1.2");
  EXPECT_EQ(id_in_log_scope, "client-ID_1.2");

  // Not 1..128 of [A-Za-z0-9._-]: replaced by a generated one.
  const std::vector<std::string> bad_ids = {"has space", std::string(129, 'a'), "semi;colon"};
  for (const std::string& bad : bad_ids) {
    auto replaced = client.Send("GET", "/id", {{"X-Request-Id", bad}});
    ASSERT_TRUE(replaced) << replaced.error().ToString();
    auto id = replaced->Header("X-Request-Id");
    ASSERT_TRUE(id.has_value());
    EXPECT_THAT(*id, StartsWith("req_"));
    EXPECT_EQ(*id, id_in_handler);
  }

  auto not_found = client.Send("GET", "/missing");
  ASSERT_TRUE(not_found) << not_found.error().ToString();
  EXPECT_THAT(not_found->Header("X-Request-Id").value_or(""), StartsWith("req_"));
}

TEST_F(HttpServerTest, DeclaredBodyAboveLimitIs413WithoutReadingTheBody) {
  bool handler_ran = false;
  router_.Add("POST", "/upload", [&](HttpRequest&) {
    handler_ran = true;
    return HttpResponse::Text(200, "");
  });
  ServerOptions options;
  options.max_body_bytes = 1024;
  StartServer(options);
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  // 100 MB announced, none sent: the answer must come without waiting for the body.
  ASSERT_TRUE(
      client.SendRaw("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 413);
  EXPECT_EQ(response->Header("Connection"), "close");
  EXPECT_THAT(response->body, HasSubstr(R"("type":"invalid_request_error")"));
  EXPECT_THAT(response->body, HasSubstr("1024 bytes"));
  EXPECT_TRUE(client.WaitForClose(2s));
  EXPECT_FALSE(handler_ran);
}

TEST_F(HttpServerTest, ChunkedBodyGrowingAboveLimitIs413) {
  ServerOptions options;
  options.max_body_bytes = 16;
  StartServer(options);
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  ASSERT_TRUE(
      client.SendRaw("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 413);
  EXPECT_TRUE(client.WaitForClose(2s));
}

TEST_F(HttpServerTest, BodyAtTheLimitIsAccepted) {
  ServerOptions options;
  options.max_body_bytes = 16;
  StartServer(options);
  HttpClient client(port());
  auto response = client.Send("POST", "/echo", {}, "0123456789abcdef");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "0123456789abcdef");
}

TEST_F(HttpServerTest, ExpectContinueGetsInterimResponseBeforeTheBody) {
  StartServer();
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  ASSERT_TRUE(client.SendRaw(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  auto interim = client.ReadResponseHead();
  ASSERT_TRUE(interim) << interim.error().ToString();
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(client.SendRaw("data"));
  auto response = client.ReadResponse();
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "data");
}

TEST_F(HttpServerTest, HeaderAboveLimitIs431AndClose) {
  ServerOptions options;
  options.max_header_bytes = 1024;
  StartServer(options);
  HttpClient client(port());
  auto response = client.Send("GET", "/hello", {{"X-Big", std::string(4096, 'a')}});
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 431);
  EXPECT_THAT(response->body, HasSubstr("request headers exceed"));
  EXPECT_TRUE(client.WaitForClose(2s));
}

TEST_F(HttpServerTest, MalformedRequestIs400AndClose) {
  StartServer();
  for (const char* garbage :
       {"THIS IS NOT HTTP\r\n\r\n", "GET /hello HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
        "GET /hello HTTP/1.1\r\nContent-Length: abc\r\n\r\n", "GET /bad%zz HTTP/1.1\r\n\r\n"}) {
    SCOPED_TRACE(garbage);
    HttpClient client(port());
    ASSERT_TRUE(client.Connect());
    ASSERT_TRUE(client.SendRaw(garbage));
    auto response = client.ReadResponse();
    ASSERT_TRUE(response) << response.error().ToString();
    EXPECT_EQ(response->status, 400);
    EXPECT_THAT(response->body, HasSubstr(R"("type":"invalid_request_error")"));
    EXPECT_TRUE(client.WaitForClose(2s));
  }
}

TEST_F(HttpServerTest, SlowlorisHeaderIsCutOffAtHeaderTimeout) {
  ServerOptions options;
  options.header_timeout = 200ms;
  StartServer(options);
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  const Clock::time_point start = Clock::now();
  ASSERT_TRUE(client.SendRaw("GET /hello HTTP/1.1\r\nHost: x\r\n"));
  // Keep trickling header bytes: that must not extend the deadline.
  bool closed = false;
  while (!closed && Clock::now() - start < 3s) {
    closed = client.WaitForClose(50ms);
    if (!closed) (void)client.SendRaw("X-Slow: 1\r\n");
  }
  const auto elapsed = Clock::now() - start;
  EXPECT_TRUE(closed);
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 1500ms);
}

TEST_F(HttpServerTest, SilentNewConnectionIsClosedAfterHeaderTimeout) {
  ServerOptions options;
  options.header_timeout = 200ms;
  options.idle_timeout = 60s;  // a new connection is not "idle keep-alive"
  StartServer(options);
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  const Clock::time_point start = Clock::now();
  EXPECT_TRUE(client.WaitForClose(3s));
  EXPECT_GE(Clock::now() - start, 150ms);
}

TEST_F(HttpServerTest, StalledBodyIsCutOffAtBodyTimeout) {
  bool handler_ran = false;
  router_.Add("POST", "/upload", [&](HttpRequest&) {
    handler_ran = true;
    return HttpResponse::Text(200, "");
  });
  ServerOptions options;
  options.body_timeout = 200ms;
  StartServer(options);
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  ASSERT_TRUE(
      client.SendRaw("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345"));
  const Clock::time_point start = Clock::now();
  EXPECT_TRUE(client.WaitForClose(3s));
  EXPECT_GE(Clock::now() - start, 150ms);
  EXPECT_FALSE(handler_ran);
}

TEST_F(HttpServerTest, IdleKeepAliveConnectionIsClosedAfterIdleTimeout) {
  ServerOptions options;
  options.idle_timeout = 200ms;
  StartServer(options);
  HttpClient client(port());
  ASSERT_TRUE(client.Send("GET", "/hello"));
  const Clock::time_point start = Clock::now();
  EXPECT_TRUE(client.WaitForClose(3s));
  EXPECT_GE(Clock::now() - start, 150ms);
}

TEST_F(HttpServerTest, HandlerThatThrowsGets500AndServerKeepsServing) {
  StartServer();
  HttpClient client(port());
  auto failed = client.Send("GET", "/throw");
  ASSERT_TRUE(failed) << failed.error().ToString();
  EXPECT_EQ(failed->status, 500);
  EXPECT_EQ(failed->body, R"({"error":{"message":"internal server error","type":"server_error",)"
                          R"("param":null,"code":null}})");
  // The exception text is logged, not sent to the client.
  EXPECT_THAT(failed->body, ::testing::Not(HasSubstr("boom")));
  auto next = client.Send("GET", "/hello");
  ASSERT_TRUE(next) << next.error().ToString();
  EXPECT_EQ(next->status, 200);
  EXPECT_EQ(next->body, "hello");
}

TEST_F(HttpServerTest, HandlerHeadersAreSentButFramingHeadersAreServerOwned) {
  router_.Add("GET", "/headers", [](HttpRequest&) {
    HttpResponse r = HttpResponse::Text(429, "slow down");
    r.headers.emplace("Retry-After", "7");
    r.headers.emplace("Content-Length", "999");         // would corrupt the framing: dropped
    r.headers.emplace("X-Evil", "a\r\nInjected: yes");  // header injection: dropped
    return r;
  });
  StartServer();
  HttpClient client(port());
  auto response = client.Send("GET", "/headers");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 429);
  EXPECT_EQ(response->Header("Retry-After"), "7");
  EXPECT_EQ(response->Header("Content-Length"), "9");
  EXPECT_EQ(response->Header("Injected"), std::nullopt);
  EXPECT_EQ(response->body, "slow down");
  ASSERT_TRUE(client.Send("GET", "/hello"));  // framing intact: the connection still works
}

// An SSE stream whose producer is another thread, stepped by the test, so each event is shown
// to reach the client while the stream is still open (not buffered until the end).
TEST_F(HttpServerTest, StreamsEventsProducedOnAnotherThread) {
  std::counting_semaphore<> step(0);
  std::thread producer;
  router_.Add("GET", "/stream", [&](HttpRequest&) {
    auto stream = std::make_shared<ResponseStream>();
    producer = std::thread([stream, &step] {
      for (int i = 0; i < 3; ++i) {
        step.acquire();
        stream->Write(SseEvent("event " + std::to_string(i)));
      }
      step.acquire();
      stream->Write(SseEvent("[DONE]"));
      stream->Close();
    });
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.stream = stream;
    return response;
  });
  StartServer();
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  ASSERT_TRUE(client.SendRaw("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  // Headers arrive before any event is produced.
  auto head = client.ReadResponseHead();
  ASSERT_TRUE(head) << head.error().ToString();
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->chunked);
  EXPECT_EQ(head->Header("Content-Type"), "text/event-stream");
  EXPECT_EQ(head->Header("Cache-Control"), "no-cache");
  EXPECT_EQ(head->Header("X-Accel-Buffering"), "no");
  EXPECT_TRUE(head->Header("X-Request-Id").has_value());
  for (int i = 0; i < 3; ++i) {
    step.release();
    auto event = client.ReadSseEvent();
    ASSERT_TRUE(event) << event.error().ToString();
    ASSERT_TRUE(event->has_value());
    EXPECT_EQ(**event, "event " + std::to_string(i));
  }
  step.release();
  auto done = client.ReadSseEvent();
  ASSERT_TRUE(done) << done.error().ToString();
  EXPECT_EQ(done->value_or(""), "[DONE]");
  auto end = client.ReadSseEvent();
  ASSERT_TRUE(end) << end.error().ToString();
  EXPECT_FALSE(end->has_value());
  producer.join();
  // The connection is reusable after the stream ends.
  auto next = client.Send("GET", "/hello");
  ASSERT_TRUE(next) << next.error().ToString();
  EXPECT_EQ(next->body, "hello");
}

TEST_F(HttpServerTest, RequestPipelinedDuringAStreamIsServedAfterIt) {
  std::binary_semaphore finish(0);
  std::thread producer;
  router_.Add("GET", "/stream", [&](HttpRequest&) {
    auto stream = std::make_shared<ResponseStream>();
    producer = std::thread([stream, &finish] {
      stream->Write(SseEvent("one"));
      finish.acquire();
      stream->Write(SseEvent("two"));
      stream->Close();
    });
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.stream = stream;
    return response;
  });
  StartServer();
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  ASSERT_TRUE(client.SendRaw("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(client.ReadResponseHead());
  auto one = client.ReadSseEvent();
  ASSERT_TRUE(one) << one.error().ToString();
  // The next request arrives while the stream is open: the server reads it (watching for a
  // disconnect), must not mistake it for one, and must answer it after the stream.
  ASSERT_TRUE(client.SendRaw("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  finish.release();
  auto two = client.ReadSseEvent();
  ASSERT_TRUE(two) << two.error().ToString();
  EXPECT_EQ(two->value_or(""), "two");
  auto end = client.ReadSseEvent();
  ASSERT_TRUE(end) << end.error().ToString();
  EXPECT_FALSE(end->has_value());
  auto next = client.ReadResponse();
  ASSERT_TRUE(next) << next.error().ToString();
  EXPECT_EQ(next->body, "hello");
  producer.join();
}

TEST_F(HttpServerTest, StreamClosedByHandlerBeforeReturningIsSentWhole) {
  router_.Add("GET", "/ready", [](HttpRequest&) {
    auto stream = std::make_shared<ResponseStream>();
    stream->Write("a");
    stream->Write("b");
    stream->Close();
    HttpResponse response;
    response.content_type = "application/x-ndjson";
    response.stream = stream;
    return response;
  });
  StartServer();
  HttpClient client(port());
  auto response = client.Send("GET", "/ready");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_TRUE(response->chunked);
  EXPECT_EQ(response->body, "ab");
  EXPECT_EQ(response->Header("X-Accel-Buffering"), std::nullopt);  // only for event streams
}

TEST_F(HttpServerTest, ClientDisconnectCancelsTheStream) {
  std::promise<bool> cancelled_seen;
  std::thread producer;
  router_.Add("GET", "/stream", [&](HttpRequest&) {
    auto stream = std::make_shared<ResponseStream>();
    producer = std::thread([stream, &cancelled_seen] {
      stream->Write(SseEvent("first"));
      // Never closes: only the client leaving can end this stream.
      cancelled_seen.set_value(stream->WaitForCancel(10s));
      EXPECT_FALSE(stream->Write(SseEvent("after cancel")));
    });
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.stream = stream;
    return response;
  });
  StartServer();
  {
    HttpClient client(port());
    ASSERT_TRUE(client.Connect());
    ASSERT_TRUE(client.SendRaw("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_TRUE(client.ReadResponseHead());
    auto first = client.ReadSseEvent();
    ASSERT_TRUE(first) << first.error().ToString();
    EXPECT_EQ(first->value_or(""), "first");
    client.Close();
  }
  const Clock::time_point start = Clock::now();
  std::future<bool> seen = cancelled_seen.get_future();
  EXPECT_TRUE(seen.get());
  EXPECT_LT(Clock::now() - start, 5s);
  producer.join();
}

TEST_F(HttpServerTest, GracefulShutdownFinishesInFlightRequestAndRefusesNewConnections) {
  std::latch entered(1);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  router_.Add("GET", "/block", [&](HttpRequest&) {
    entered.count_down();
    released.wait();
    return HttpResponse::Text(200, "finished");
  });
  ServerOptions options;
  options.threads = 2;  // one I/O thread is held by the blocked handler
  StartServer(options);

  HttpClient idle(port());  // a keep-alive connection with nothing in flight
  ASSERT_TRUE(idle.Send("GET", "/hello"));

  HttpClient busy(port());
  ASSERT_TRUE(busy.Connect());
  ASSERT_TRUE(busy.SendRaw("GET /block HTTP/1.1\r\nHost: x\r\n\r\n"));
  entered.wait();

  std::thread shutdown([this] { server_->Shutdown(); });
  // Shutdown closes the acceptor first and then the idle connections: once the idle one is
  // closed, new connections must be refused, while the blocked request is still running.
  EXPECT_TRUE(idle.WaitForClose(5s));
  EXPECT_TRUE(server_->draining());
  HttpClient late(port());
  Status connected = late.Connect();
  ASSERT_FALSE(connected);
  EXPECT_EQ(connected.error().code, Code::kUnavailable);
  EXPECT_THAT(connected.error().message, HasSubstr("Connection refused"));
  EXPECT_EQ(server_->in_flight(), 1u);

  release.set_value();
  auto response = busy.ReadResponse();
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
  EXPECT_EQ(response->body, "finished");
  EXPECT_EQ(response->Header("Connection"), "close");
  EXPECT_TRUE(busy.WaitForClose(5s));
  shutdown.join();
  EXPECT_EQ(server_->in_flight(), 0u);
  server_->Shutdown();  // idempotent
}

TEST_F(HttpServerTest, ShutdownCancelsStreamsLeftAfterGrace) {
  std::promise<bool> cancelled_seen;
  std::thread producer;
  router_.Add("GET", "/forever", [&](HttpRequest&) {
    auto stream = std::make_shared<ResponseStream>();
    producer = std::thread([stream, &cancelled_seen] {
      stream->Write(SseEvent("tick"));
      cancelled_seen.set_value(stream->WaitForCancel(10s));
    });
    HttpResponse response;
    response.content_type = "text/event-stream";
    response.stream = stream;
    return response;
  });
  ServerOptions options;
  options.shutdown_grace = 200ms;
  StartServer(options);
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  ASSERT_TRUE(client.SendRaw("GET /forever HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(client.ReadResponseHead());
  ASSERT_TRUE(client.ReadSseEvent());

  const Clock::time_point start = Clock::now();
  server_->Shutdown();
  const auto elapsed = Clock::now() - start;
  EXPECT_GE(elapsed, 150ms);  // the stream was given its grace period
  EXPECT_LT(elapsed, 3s);
  EXPECT_TRUE(cancelled_seen.get_future().get());
  EXPECT_TRUE(client.WaitForClose(2s));
  producer.join();
}

TEST_F(HttpServerTest, ShutdownWithoutTrafficIsQuickAndIdempotent) {
  StartServer();
  const Clock::time_point start = Clock::now();
  server_->Shutdown();
  server_->Shutdown();
  EXPECT_LT(Clock::now() - start, 1s);
  EXPECT_FALSE(server_->Start());  // not restartable
}

TEST_F(HttpServerTest, CountsRequestsInMetrics) {
  StartServer();
  HttpClient client(port());
  ASSERT_TRUE(client.Send("GET", "/hello"));
  ASSERT_TRUE(client.Send("GET", "/hello"));
  ASSERT_TRUE(client.Send("GET", "/nope"));
  ASSERT_TRUE(client.Send("PATCH", "/hello"));
  ASSERT_TRUE(client.Send("BREW", "/hello"));  // unknown verb: "OTHER", not a new label value
  // A response reaches the client just before the server records it: stop the server so that
  // every request is accounted for.
  server_->Shutdown();
  const std::string text = registry_.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("yunzhi_http_requests_total{route=\"/hello\",method=\"GET\","
                              "status=\"200\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("yunzhi_http_requests_total{route=\"unmatched\",method=\"GET\","
                              "status=\"404\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("yunzhi_http_requests_total{route=\"unmatched\",method=\"PATCH\","
                              "status=\"405\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("method=\"OTHER\""));
  EXPECT_THAT(text, HasSubstr("yunzhi_http_request_duration_seconds_count{route=\"/hello\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("yunzhi_http_requests_in_flight 0\n"));
}

TEST_F(HttpServerTest, BindFailureOnTakenPortIsUnavailable) {
  StartServer();
  ServerOptions options;
  options.port = port();
  options.threads = 1;
  HttpServer second(options, router_, nullptr);
  Status started = second.Start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, Code::kUnavailable);
  EXPECT_EQ(started.error().message,
            "cannot listen on 127.0.0.1:" + std::to_string(port()) + ": Address already in use");
  // The first server is unaffected.
  HttpClient client(port());
  auto response = client.Send("GET", "/hello");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 200);
}

TEST_F(HttpServerTest, UnresolvableHostIsUnavailable) {
  ServerOptions options;
  options.host = "no-such-host.invalid";
  options.port = 0;
  HttpServer server(options, router_, nullptr);
  Status started = server.Start();
  ASSERT_FALSE(started);
  EXPECT_EQ(started.error().code, Code::kUnavailable);
  EXPECT_THAT(started.error().message, StartsWith("cannot listen on no-such-host.invalid:0: "));
}

// ---- Deferred responses: the handler returns at once; another thread answers later.

TEST_F(HttpServerTest, DeferredResponseCompletedLaterIsSentWithItsStatusAndHeaders) {
  std::thread worker;
  router_.Add("GET", "/later", [&](HttpRequest&) {
    auto pending = std::make_shared<PendingResponse>();
    worker = std::thread([pending] {
      std::this_thread::sleep_for(50ms);
      HttpResponse r = HttpResponse::Json(429, R"({"late":true})");
      r.headers.emplace("Retry-After", "3");
      EXPECT_TRUE(pending->Complete(std::move(r)));
      EXPECT_FALSE(pending->Complete(HttpResponse::Text(200, "second")));  // first one wins
    });
    return HttpResponse::Deferred(pending);
  });
  StartServer();
  HttpClient client(port());
  ASSERT_TRUE(client.Connect());
  // While the first request waits, the I/O threads still answer others.
  HttpClient other(port());
  ASSERT_TRUE(client.SendRaw("GET /later HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto quick = other.Send("GET", "/hello");
  ASSERT_TRUE(quick) << quick.error().ToString();
  auto response = client.ReadResponse();
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_EQ(response->status, 429);
  EXPECT_EQ(response->body, R"({"late":true})");
  EXPECT_EQ(response->Header("Retry-After"), "3");
  worker.join();
  // Keep-alive still works after a deferred answer.
  auto next = client.Send("GET", "/hello");
  ASSERT_TRUE(next) << next.error().ToString();
  EXPECT_EQ(next->body, "hello");
}

TEST_F(HttpServerTest, DeferredResponseMayBeAStream) {
  std::thread worker;
  router_.Add("GET", "/later-stream", [&](HttpRequest&) {
    auto pending = std::make_shared<PendingResponse>();
    worker = std::thread([pending] {
      auto stream = std::make_shared<ResponseStream>();
      HttpResponse r;
      r.content_type = "text/event-stream";
      r.stream = stream;
      stream->Write(SseEvent("x"));
      ASSERT_TRUE(pending->Complete(std::move(r)));
      stream->Write(SseEvent("[DONE]"));
      stream->Close();
    });
    return HttpResponse::Deferred(pending);
  });
  StartServer();
  HttpClient client(port());
  auto response = client.Send("GET", "/later-stream");
  ASSERT_TRUE(response) << response.error().ToString();
  EXPECT_TRUE(response->chunked);
  EXPECT_EQ(response->body, "data: x\n\ndata: [DONE]\n\n");
  worker.join();
}

TEST_F(HttpServerTest, ClientLeavingCancelsADeferredResponse) {
  auto pending = std::make_shared<PendingResponse>();
  router_.Add("GET", "/never", [&](HttpRequest&) { return HttpResponse::Deferred(pending); });
  StartServer();
  {
    HttpClient client(port());
    ASSERT_TRUE(client.Connect());
    ASSERT_TRUE(client.SendRaw("GET /never HTTP/1.1\r\nHost: x\r\n\r\n"));
    const auto deadline = Clock::now() + 5s;
    while (pending.use_count() < 2 && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
    client.Close();
  }
  const auto deadline = Clock::now() + 5s;
  while (!pending->cancelled() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(pending->cancelled());
  // A late answer is dropped, and a stream in it is cancelled so its producer stops.
  auto stream = std::make_shared<ResponseStream>();
  HttpResponse late;
  late.stream = stream;
  EXPECT_FALSE(pending->Complete(std::move(late)));
  EXPECT_TRUE(stream->cancelled());
}

}  // namespace
}  // namespace yunzhi::api
