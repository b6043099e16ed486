// HTTP request/response types and the router, free of any networking library.
//
// Route handlers are plain functions `HttpResponse(HttpRequest&)` that run on one of the server's
// I/O threads: they must not block for long (hand long work to a thread pool or the engine's
// scheduler and answer with a ResponseStream). A handler that throws gets a logged 500 with an
// OpenAI-style error body; the server keeps running.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::api {

// Header names compare case-insensitively (RFC 9110); values keep their bytes.
struct HeaderLess {
  bool operator()(std::string_view a, std::string_view b) const;
  using is_transparent = void;
};
using Headers = std::multimap<std::string, std::string, HeaderLess>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as received: path and query
  std::string path;    // percent-decoded path without the query
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  Headers headers;
  std::string body;
  std::string request_id;   // from X-Request-Id when the client sent a sane one, else generated
  std::string remote_addr;  // "127.0.0.1:53422"
  std::map<std::string, std::string> path_params;  // "{id}" segments of the matched route

  // First value of a header, if present.
  std::optional<std::string> Header(std::string_view name) const;
  // First value of a query parameter, if present.
  std::optional<std::string> QueryParam(std::string_view name) const;
};

// A streamed response body (Server-Sent Events, chunked transfer). The producer (any thread)
// calls Write/Close; the server drains it into the socket. When the client disconnects the
// stream is cancelled: Write returns false and the producer should stop its work.
// Thread safety: all methods are safe from any thread.
class ResponseStream {
 public:
  // Queues a chunk. Returns false (and drops the chunk) when the client is gone or the stream is
  // closed.
  bool Write(std::string chunk);
  // Ends the body. Further writes are dropped. Idempotent.
  void Close();
  // True once the client disconnected or the server gave up on it.
  bool cancelled() const { return cancelled_.load(); }

  // --- for the server ---
  // Called (from the producer's thread) whenever a chunk is queued or the stream is closed.
  void SetWakeup(std::function<void()> wakeup);
  // Takes the queued chunks; `closed` tells whether Close() has been called.
  std::vector<std::string> Drain(bool* closed);
  void Cancel();

 private:
  std::mutex mutex_;  // guards chunks_, closed_, wakeup_
  std::deque<std::string> chunks_;
  bool closed_ = false;
  std::function<void()> wakeup_;
  std::atomic<bool> cancelled_{false};
};

// Formats one Server-Sent Events message: "data: <line>\n" per line of `data`, then "\n".
std::string SseEvent(std::string_view data);

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  Headers headers;  // extra headers (e.g. Retry-After)
  std::string body;
  // When set, `body` is ignored: headers go out at once and the body is streamed from here with
  // chunked transfer encoding (content_type "text/event-stream" for SSE).
  std::shared_ptr<ResponseStream> stream;

  static HttpResponse Json(int status, std::string json_body);
  static HttpResponse Text(int status, std::string text, std::string content_type = "text/plain; charset=utf-8");
  // OpenAI-style error body: {"error":{"message","type","param","code"}} with the status of
  // `error.code`.
  static HttpResponse FromError(const Error& error);
};

using Handler = std::function<HttpResponse(HttpRequest&)>;

// Maps (method, path pattern) to a handler. Patterns are literal segments and "{name}" captures,
// e.g. "/api/tenants/{id}/keys". Literal segments win over captures.
// Thread safety: add all routes before the server starts; Match is then safe from any thread.
class Router {
 public:
  void Add(std::string method, std::string pattern, Handler handler);

  struct Match {
    const Handler* handler = nullptr;  // null: not matched
    std::string pattern;               // the route's pattern: the metrics label
    std::map<std::string, std::string> params;
    bool path_known = false;           // the path matched some route with another method (405)
    std::vector<std::string> allowed_methods;
  };
  Match Find(std::string_view method, std::string_view path) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

}  // namespace yunzhi::api
