// The HTTP/1.1 server: accepts connections, parses requests, dispatches them through a Router
// and writes the responses, streamed ones included.
//
// One server owns a pool of I/O threads. Each connection is a coroutine on its own strand:
// keep-alive, pipelined requests served in order, per-phase timeouts (so a slow or stalled client
// costs a socket, never a thread), bounded headers and bodies. Handlers run on the I/O threads
// (see yunzhi/api/http.h for what they may do). Every response carries X-Request-Id; every
// request is logged ("http_request") and, when a registry is given, counted in
//   yunzhi_http_requests_total{route,method,status}
//   yunzhi_http_request_duration_seconds{route}      (until the last byte, streams included)
//   yunzhi_http_requests_in_flight
// where `route` is the matched pattern or "unmatched".
//
// Thread safety: Start, Shutdown and the destructor must not race with each other (Shutdown may
// be called from several threads; the later calls wait for the first). port(), in_flight() and
// draining() are safe from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <cstdint>
#include <memory>
#include <string>

#include "yunzhi/api/http.h"
#include "yunzhi/base/metrics.h"
#include "yunzhi/base/status.h"

namespace yunzhi::api {

struct ServerOptions {
  // Address to listen on: an IP literal or a host name resolved once at Start.
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0: an ephemeral port, see HttpServer::port()
  int threads = 0;       // I/O threads; 0: std::thread::hardware_concurrency()
  // Largest accepted request body. A larger declared Content-Length gets 413 before any of the
  // body is read; a chunked body that grows past it gets 413 when it does.
  uint64_t max_body_bytes = 32ull << 20;
  // Largest accepted request line plus headers; larger gets 431.
  uint32_t max_header_bytes = 16u << 10;
  // The whole request head must arrive within this, counted from the connection's accept or, on
  // a keep-alive connection, from the request's first byte: a client trickling its headers
  // (slowloris) is cut off.
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds body_timeout{60'000};   // the whole body, after the head
  std::chrono::milliseconds idle_timeout{75'000};   // keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{60'000};  // each write (a response, one stream chunk)
  // How long Shutdown lets in-flight requests and open streams finish before cancelling them.
  std::chrono::milliseconds shutdown_grace{30'000};
  // Called (on the thread running Shutdown) when the grace period is over and requests or
  // streams remain: the owner ends their work so that they finish cleanly (e.g. a generation
  // stream writes its last event); they then get up to `final_grace` more before their
  // connections are cut. May be empty.
  std::function<void()> on_grace_expired;
  std::chrono::milliseconds final_grace{2'000};
};

class HttpServer {
 public:
  // `router` and `registry` must outlive the server; `registry` may be null (no metrics). The
  // router must not change once Start has been called.
  HttpServer(ServerOptions options, const Router& router, metrics::Registry* registry);
  // Shuts down (see Shutdown) if running.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the I/O threads; the server accepts connections when this returns.
  // Errors: kUnavailable "cannot listen on <host>:<port>: <reason>" (address in use, permission,
  // unresolvable host), kFailedPrecondition when called twice or after Shutdown.
  Status Start();

  // The bound port (the actual one when options.port was 0); 0 before a successful Start.
  uint16_t port() const;

  // Graceful stop: stops accepting (new connections are refused), closes idle keep-alive
  // connections, lets in-flight requests and open streams finish for up to shutdown_grace
  // (responses finished meanwhile carry "Connection: close"), then closes what is left and
  // cancels its streams. Returns when every connection is gone and all I/O threads have
  // stopped. Idempotent; a no-op if Start never succeeded.
  // Precondition: not called from a handler or any other code on an I/O thread (it would wait for
  // itself; checked). A handler that never returns blocks Shutdown forever: handlers cannot be
  // interrupted, only their streams can be cancelled.
  void Shutdown();

  // Requests whose head has been read and whose response has not been fully written.
  size_t in_flight() const;

  // True once Shutdown has begun: e.g. a readiness probe answers 503 from then on.
  bool draining() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace yunzhi::api
