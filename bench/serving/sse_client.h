// A minimal HTTP/1.1 client for the serving benchmark: one keep-alive connection to a loopback
// server, a JSON POST, and a streamed (chunked, Server-Sent Events) answer delivered event by
// event with the time each event arrived.
//
// Written for measurement, not generality: no TLS, no redirects, no proxies; the only bodies it
// understands are chunked or Content-Length framed. It is deliberately separate from the tests'
// client (tests/support) so that `scripts/build.sh bench` (no tests) builds it.
//
// Thread safety: one client per thread (it is one connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace yunzhi::bench {

using SteadyTime = std::chrono::steady_clock::time_point;

// What a POST answered. For a 200 event stream, the events went to the callback and `body` is
// empty; otherwise `body` is the whole (de-chunked) body, e.g. an OpenAI error object.
struct PostResult {
  bool ok = false;          // transport and framing succeeded (whatever the status)
  std::string error;        // when !ok: what failed (connect, timeout, closed, bad framing)
  int status = 0;           // HTTP status
  std::string retry_after;  // the Retry-After header, if any
  std::string body;
};

class SseClient {
 public:
  SseClient(std::string host, uint16_t port, std::chrono::milliseconds timeout);
  ~SseClient();  // closes the connection
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  // Called once per event with its "data:" payload and the time its last byte was read.
  // Return false to stop reading (the connection is then closed).
  using EventFn = std::function<bool(std::string_view data, SteadyTime arrived)>;

  // POSTs `json_body` to `target` with "Authorization: Bearer <bearer>" (when not empty),
  // connecting first if needed (a connection the server closed is reopened once). When the
  // answer is a chunked text/event-stream with status 200, every event goes to `on_event`;
  // `sent` receives the time the request's last byte was written.
  PostResult PostStream(std::string_view target, std::string_view bearer,
                        std::string_view json_body, const EventFn& on_event, SteadyTime* sent);

 private:
  bool Connect(std::string* error);
  void Close();
  // Reads more bytes into buffer_; false on timeout, EOF or error (reason in *error).
  bool Fill(std::string* error);
  bool ReadLine(std::string* line, std::string* error);  // up to CRLF, which is dropped
  bool ReadExactly(size_t n, std::string* out, std::string* error);

  std::string host_;
  uint16_t port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::string buffer_;  // received, not yet consumed
  size_t pos_ = 0;      // first unconsumed byte of buffer_
};

}  // namespace yunzhi::bench
