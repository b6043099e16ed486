// HTTP request/response types and the router, free of any networking library.
//
// Route handlers are plain functions `HttpResponse(HttpRequest&)` that run on one of the server's
// I/O threads: they must not block for long (hand long work to a thread pool or the engine's
// scheduler and answer with a ResponseStream). A handler that throws gets a logged 500 with an
// OpenAI-style error body; the server keeps running.
#pragma once

#include <atomic>
#include <chrono>
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

  // First value of a header (name compared case-insensitively), if present.
  std::optional<std::string> Header(std::string_view name) const;
  // First value of a query parameter (name compared exactly), if present.
  std::optional<std::string> QueryParam(std::string_view name) const;
};

// A streamed response body (Server-Sent Events, chunked transfer). The producer (any thread)
// calls Write/Close; the server drains it into the socket. When the client disconnects the
// stream is cancelled: Write returns false and the producer should stop its work.
// The producer may start writing before the handler has returned the response: chunks queue
// until the server drains them. There is no back-pressure: a producer that can outrun a slow
// client should bound its own output.
// Thread safety: all methods are safe from any thread.
class ResponseStream {
 public:
  // Queues a chunk. Returns false (and drops the chunk) when the client is gone or the stream is
  // closed. An empty chunk is accepted and ignored (in chunked encoding it would end the body).
  bool Write(std::string chunk);
  // Ends the body. Further writes are dropped. Idempotent.
  void Close();
  // True once the client disconnected or the server gave up on it.
  bool cancelled() const { return cancelled_.load(); }
  // Blocks until the stream is cancelled or `timeout` has passed; returns cancelled(). For a
  // producer that idles (waiting for a model to load, or between SSE keep-alive comments) yet
  // must stop as soon as the client leaves.
  bool WaitForCancel(std::chrono::milliseconds timeout);

  // --- for the server ---
  // Called (from the producer's thread) whenever a chunk is queued or the stream is closed.
  // It runs with the stream's lock held, so it must be cheap and must not call back into the
  // stream; in exchange, once SetWakeup(nullptr) has returned, no wakeup is running or will run,
  // so whatever the old one referenced may be destroyed.
  void SetWakeup(std::function<void()> wakeup);
  // Takes the queued chunks; `closed` tells whether Close() has been called.
  std::vector<std::string> Drain(bool* closed);
  // Marks the stream cancelled (the client is gone or the server is shutting down) and drops
  // queued chunks. Idempotent.
  void Cancel();

 private:
  std::mutex mutex_;  // guards chunks_, closed_, wakeup_; cancelled_ changes under it too
  std::condition_variable cancel_cv_;  // signalled by Cancel
  std::deque<std::string> chunks_;
  bool closed_ = false;
  std::function<void()> wakeup_;
  std::atomic<bool> cancelled_{false};
};

// Formats one Server-Sent Events message: "data: <line>\n" per line of `data`, then "\n".
// Lines end at "\r\n", "\r" or "\n", as an SSE client splits them.
std::string SseEvent(std::string_view data);

struct HttpResponse;

// A response that is not known yet when the handler returns: the handler hands its work to
// another thread (model loading, the scheduler) and that thread completes the response later,
// with any status, headers or a stream. The I/O thread stays free meanwhile. If the client
// disconnects (or the server is forced to stop) first, the pending response is cancelled and a
// late Complete is dropped.
// Thread safety: all methods are safe from any thread.
class PendingResponse {
 public:
  PendingResponse();
  ~PendingResponse();
  // Sets the response; the first call wins and returns true, later ones are ignored (false).
  // A response with a stream: the stream's producer may already be writing to it.
  bool Complete(HttpResponse response);
  // True once the client is gone or the server gave up; the producer should stop its work.
  bool cancelled() const { return cancelled_.load(); }

  // --- for the server ---
  // As ResponseStream::SetWakeup: called when Complete ran (under the lock; keep it cheap).
  void SetWakeup(std::function<void()> wakeup);
  // The response, once completed (moved out; later calls return null).
  std::unique_ptr<HttpResponse> Take();
  // Marks it cancelled and drops a completed response (cancelling its stream). Idempotent.
  void Cancel();

 private:
  std::mutex mutex_;
  std::unique_ptr<HttpResponse> response_;
  bool completed_ = false;
  std::function<void()> wakeup_;
  std::atomic<bool> cancelled_{false};
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  // Extra headers (e.g. Retry-After). The server sets Content-Length, Transfer-Encoding,
  // Connection, Content-Type (from `content_type`) and X-Request-Id itself and drops those from
  // here, as it drops any header with CR, LF or NUL in it (logged).
  Headers headers;
  std::string body;
  // When set, `body` is ignored: headers go out at once and the body is streamed from here with
  // chunked transfer encoding (content_type "text/event-stream" for SSE).
  std::shared_ptr<ResponseStream> stream;
  // When set, everything above is ignored: the server waits (without blocking its thread) for
  // the pending response to be completed and sends that one instead.
  std::shared_ptr<PendingResponse> pending;

  // `json_body` must already be JSON; content type "application/json".
  static HttpResponse Json(int status, std::string json_body);
  static HttpResponse Text(int status, std::string text,
                           std::string content_type = "text/plain; charset=utf-8");
  // OpenAI-style error body with the status of `error.code`:
  //   {"error":{"message":...,"type":...,"param":null|"...","code":null|"..."}}
  // `type` is OpenAiErrorType(code), `param` is error.param and `code` is error.detail (null
  // when empty). An error with Code::kOk is a programmer error and is sent as a 500.
  static HttpResponse FromError(const Error& error);
  // A response to be completed later through `pending`.
  static HttpResponse Deferred(std::shared_ptr<PendingResponse> pending);
};

using Handler = std::function<HttpResponse(HttpRequest&)>;

// Maps (method, path pattern) to a handler. Patterns are literal segments and "{name}" captures,
// e.g. "/api/tenants/{id}/keys"; a last segment "{name...}" captures the rest of the path (one
// or more segments, joined by "/"), e.g. "/api/hub/{repo...}" for model names with slashes.
// Matching is by whole segment on the decoded path and exact (no trailing-slash folding). When
// several routes match, the one whose first differing segment is the more specific wins
// (literal, then capture, then rest capture): "/v1/models/default" beats "/v1/models/{id}".
// Thread safety: add all routes before the server starts; Find is then safe from any thread.
class Router {
 public:
  // Preconditions (checked; violations abort, they are programmer errors): `pattern` starts
  // with "/", captures are whole segments with non-empty names, a rest capture is last, and no
  // route with the same method and the same pattern shape exists yet.
  void Add(std::string method, std::string pattern, Handler handler);

  struct Match {
    const Handler* handler = nullptr;  // null: not matched
    std::string pattern;               // the route's pattern: the metrics label
    std::map<std::string, std::string> params;
    bool path_known = false;           // the path matched some route with another method (405)
    std::vector<std::string> allowed_methods;
  };
  // The best route for `method` and the decoded `path`. When no route of that method matches but
  // routes of other methods do, `path_known` is set and `allowed_methods` lists them (sorted):
  // the server answers 405 with an Allow header.
  Match Find(std::string_view method, std::string_view path) const;

 private:
  struct Segment {
    enum class Kind { kLiteral, kCapture, kRest };  // in order of decreasing precedence
    Kind kind;
    std::string text;  // the literal, or the capture's name
  };
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<Segment> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

}  // namespace yunzhi::api
