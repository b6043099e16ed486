// A small blocking HTTP/1.1 client over raw POSIX sockets on 127.0.0.1, for tests of the server.
//
// Deliberately independent of Beast: it frames requests by hand, so tests can also send what a
// well-behaved client would not (partial heads, garbage, pipelined requests) and observe exactly
// what the server does on the wire (status, headers, chunks, when it closes the connection).
//
// Every read waits at most `timeout` (a socket receive timeout), so a server that fails to
// answer fails the test with kDeadlineExceeded instead of hanging it.
// Thread safety: one client per thread (it is a single connection).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::testing {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ClientResponse {
  int status = 0;
  std::string reason;
  HeaderList headers;  // in the order received
  std::string body;    // de-chunked
  bool chunked = false;

  // First value of a header, name compared case-insensitively.
  std::optional<std::string> Header(std::string_view name) const;
};

class HttpClient {
 public:
  explicit HttpClient(uint16_t port,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  ~HttpClient();  // closes the connection
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Opens the connection (once; a no-op when open). Errors: kUnavailable
  // "connect to 127.0.0.1:<port>: Connection refused" (or another reason).
  Status Connect();
  bool connected() const { return fd_ >= 0; }
  // The socket, for what the methods do not cover (shutdown(2), socket options). -1 if closed.
  int fd() const { return fd_; }
  // Closes our end (the next Send reconnects).
  void Close();
  // Receive timeout of every later read.
  void SetTimeout(std::chrono::milliseconds timeout);

  // Sends a request on the persistent connection (connecting first if needed) and reads the
  // whole response. Adds "Host" and, when there is a body or the method is POST/PUT/PATCH,
  // "Content-Length", unless `headers` has them (or Transfer-Encoding).
  // Errors: those of Connect, SendRaw and ReadResponse.
  Result<ClientResponse> Send(std::string_view method, std::string_view target,
                              const HeaderList& headers = {}, std::string_view body = {});

  // Writes bytes as they are. Errors: kUnavailable when the connection is closed or broken.
  Status SendRaw(std::string_view bytes);

  // Reads one complete response (1xx interim responses are skipped); the body is framed by
  // Content-Length, chunked encoding, or the end of the connection.
  // Errors: kDeadlineExceeded on a read timeout, kUnavailable when the server closes the
  // connection before the response is complete, kInternal when the response is not valid HTTP.
  Result<ClientResponse> ReadResponse();
  // Reads the status line and headers only, 1xx interim responses included (so a test can see
  // "100 Continue"); read the body with ReadChunk or ReadSseEvent.
  Result<ClientResponse> ReadResponseHead();
  // The next chunk of a chunked body; nullopt once the last chunk (and trailer) has been read.
  Result<std::optional<std::string>> ReadChunk();
  // The next Server-Sent Event of a chunked event-stream body: its "data:" lines joined by "\n";
  // nullopt at the end of the body.
  Result<std::optional<std::string>> ReadSseEvent();

  // Waits until the server closes the connection (EOF or reset). Returns true when it did within
  // `timeout`, false on timeout. Bytes that arrive meanwhile are kept for later reads.
  bool WaitForClose(std::chrono::milliseconds timeout);
  // True once a read has seen EOF or a reset from the server.
  bool peer_closed() const { return peer_closed_; }

 private:
  // Reads more bytes into buffer_. Errors: kDeadlineExceeded, kUnavailable (EOF / reset).
  Status Fill();
  // Reads until buffer_ holds `delimiter`; returns and consumes everything up to and including
  // it.
  Result<std::string> ReadUntil(std::string_view delimiter);
  Result<std::string> ReadExactly(size_t n);

  uint16_t port_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  bool peer_closed_ = false;
  std::string buffer_;      // received, not yet consumed
  std::string sse_buffer_;  // de-chunked event-stream bytes not yet returned as events
};

}  // namespace yunzhi::testing
