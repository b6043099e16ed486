// The only translation unit that includes Boost.Beast/Asio (each such unit costs ~15 s to
// compile): keep networking here and the types it serves in http.h.
#include "yunzhi/api/http_server.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <fmt/format.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/log.h"

namespace yunzhi::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Completion token: errors come back as values (the first tuple element), never as exceptions,
// so that timeouts and disconnects, which are normal here, are plain control flow.
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

constexpr size_t kReadChunkBytes = 16 * 1024;
// After an error response that closes the connection, unread request bytes are drained for at
// most this long / this much: closing a socket with unread data makes the kernel send RST, which
// can destroy the error response in the client's receive buffer before it is read.
constexpr std::chrono::milliseconds kLingerTime{1000};
constexpr size_t kLingerMaxBytes = 1 << 20;

bool IsValidRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool HasControlChars(std::string_view text) {
  for (char c : text) {
    if (c == '\r' || c == '\n' || c == '\0') return true;
  }
  return false;
}

// Headers the server owns: a handler setting them would break the framing of the response.
bool IsServerOwnedHeader(std::string_view name) {
  static constexpr std::string_view kOwned[] = {"Content-Length", "Transfer-Encoding", "Connection",
                                                "Content-Type", "X-Request-Id"};
  HeaderLess less;
  for (std::string_view owned : kOwned) {
    if (!less(name, owned) && !less(owned, name)) return true;
  }
  return false;
}

// A malformed request, as opposed to a connection that ended or timed out.
bool IsMalformed(const beast::error_code& ec) {
  if (ec.category() != http::make_error_code(http::error::bad_method).category()) return false;
  return ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::header_limit && ec != http::error::body_limit;
}

std::string FormatEndpoint(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  if (address.is_v6()) return fmt::format("[{}]:{}", address.to_string(), endpoint.port());
  return fmt::format("{}:{}", address.to_string(), endpoint.port());
}

// The Date header (RFC 9110 IMF-fixdate), formatted by hand: strftime's names follow the locale.
std::string HttpDate() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} GMT", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

Error BodyTooLarge(const ServerOptions& options) {
  return Error(Code::kPayloadTooLarge,
               fmt::format("request body exceeds the limit of {} bytes", options.max_body_bytes));
}

std::string JoinMethods(const std::vector<std::string>& methods) {
  std::string out;
  for (const std::string& m : methods) {
    if (!out.empty()) out += ", ";
    out += m;
  }
  return out;
}

class Session;

// What the server knows about one request once it is answered: the log line and the metrics.
struct Exchange {
  std::string method = "-";            // as sent, for the log
  std::string method_label = "OTHER";  // bounded set, for the metrics
  std::string path;                    // decoded path, or the raw target when it did not parse
  std::string route = "unmatched";
  std::string request_id;
  int status = 0;          // 0: nothing was answered (timeout, disconnect before the head)
  uint64_t bytes_in = 0;   // request body bytes
  uint64_t bytes_out = 0;  // response body bytes (streamed ones included)
  Clock::time_point start = Clock::now();
};

// Everything shared by the sessions. Lifetime: outlives every session (Shutdown waits for them).
class Server {
 public:
  Server(ServerOptions options, const Router& router, metrics::Registry* registry);
  ~Server() { Shutdown(); }

  Status Start();
  void Shutdown();

  uint16_t port() const { return port_.load(); }
  size_t in_flight() const { return in_flight_.load(); }
  bool draining() const { return draining_.load(); }
  const ServerOptions& options() const { return options_; }
  const Router& router() const { return router_; }

  // Counts a request from its head until its response is written (RAII).
  class InFlight {
   public:
    explicit InFlight(Server* server) : server_(server) {
      server_->in_flight_.fetch_add(1);
      if (server_->in_flight_gauge_) server_->in_flight_gauge_->Add(1);
    }
    ~InFlight() {
      server_->in_flight_.fetch_sub(1);
      if (server_->in_flight_gauge_) server_->in_flight_gauge_->Add(-1);
    }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    Server* server_;
  };

  // The request log line and the metrics of one answered request.
  void Record(const Exchange& exchange, const std::string& remote);

 private:
  asio::awaitable<void> AcceptLoop();
  static std::vector<std::unique_ptr<asio::io_context>> MakeContexts(int threads) {
    const unsigned n = threads > 0 ? static_cast<unsigned>(threads)
                                   : std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::unique_ptr<asio::io_context>> out;
    for (unsigned i = 0; i < n; ++i) out.push_back(std::make_unique<asio::io_context>(1));
    return out;
  }
  // The executor for the next accepted connection (round-robin over the contexts).
  asio::any_io_executor NextContextExecutor() {
    return contexts_[next_context_++ % contexts_.size()]->get_executor();
  }
  void Forget(uint64_t session_id);

  const ServerOptions options_;
  const Router& router_;
  metrics::Family<metrics::Counter>* requests_total_ = nullptr;
  metrics::Family<metrics::Histogram>* request_duration_ = nullptr;
  metrics::Gauge* in_flight_gauge_ = nullptr;

  // One single-threaded io_context per I/O thread: a connection lives on one context for its
  // whole life, so its handlers never hop threads (a cross-thread wake-up per event cost 40% of
  // single-connection throughput with one shared multi-threaded context) and need no strand.
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  size_t next_context_ = 0;  // round-robin for accepted connections; used on accept_strand_
  asio::strand<asio::io_context::executor_type> accept_strand_;
  std::optional<tcp::acceptor> acceptor_;  // used on accept_strand_ only, once running
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;

  std::atomic<uint16_t> port_{0};
  std::atomic<size_t> in_flight_{0};
  std::atomic<bool> draining_{false};

  enum class State { kNew, kRunning, kStopped };
  std::mutex lifecycle_mutex_;  // guards state_; held through Start and Shutdown
  State state_ = State::kNew;

  std::mutex sessions_mutex_;            // guards sessions_, next_session_id_, accept_done_
  std::condition_variable sessions_cv_;  // signalled when a session ends or accepting stops
  std::map<uint64_t, std::shared_ptr<Session>> sessions_;
  uint64_t next_session_id_ = 0;
  bool accept_done_ = false;
};

// One connection. Everything below runs on the connection's strand (the executor of its socket),
// so the members need no locks; the only ways in from outside are posts to that strand.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server* server, tcp::socket socket)
      : server_(server), stream_(std::move(socket)), wake_timer_(stream_.get_executor()) {
    beast::error_code ec;
    const tcp::endpoint remote = stream_.socket().remote_endpoint(ec);
    remote_ = ec ? "unknown" : FormatEndpoint(remote);
  }

  asio::any_io_executor executor() { return stream_.get_executor(); }

  // The connection's life: requests in order until close, timeout, error or shutdown.
  static asio::awaitable<void> Run(std::shared_ptr<Session> self) { co_await self->Loop(); }

  // Shutdown step 1: a connection waiting for its next request goes at once. A busy one finishes
  // its current exchange and then sees draining() and closes.
  void CloseIfIdle() {
    if (!idle_) return;
    beast::error_code ec;
    stream_.socket().cancel(ec);
  }

  // Shutdown step 2 (grace period over): close the socket and cancel the stream, whatever the
  // state. Pending operations complete with errors and the coroutine ends.
  void ForceClose() {
    forced_ = true;
    if (body_stream_) body_stream_->Cancel();
    if (pending_) pending_->Cancel();
    stream_.close();
    Wake();
  }

 private:
  asio::awaitable<void> Loop();
  // Reads, dispatches and answers one request. Returns whether the connection stays open.
  asio::awaitable<bool> Serve();
  // Answers with a server-generated error and closes the connection. `status` overrides the
  // status of `error.code` (for 431, which has no code of its own).
  asio::awaitable<void> FailAndClose(Exchange& exchange, const Error& error, unsigned version,
                                     int status = 0);
  asio::awaitable<bool> WriteResponse(Exchange& exchange, HttpResponse& response, unsigned version,
                                      bool keep_alive);
  asio::awaitable<bool> WriteStream(Exchange& exchange, HttpResponse& response, unsigned version,
                                    bool keep_alive);
  // Waits for a deferred response and replaces `response` with it. False when the client went
  // away or the server was forced down first (the pending response is then cancelled).
  asio::awaitable<bool> AwaitPending(HttpResponse& response);
  // Starts / stops watching the socket for the client going away (while nothing is read).
  void StartWatching();
  asio::awaitable<void> StopWatching();
  static asio::awaitable<void> WatchForDisconnect(std::shared_ptr<Session> self);
  asio::awaitable<void> WaitForWake();
  asio::awaitable<void> LingeringClose();
  void Wake() {
    woken_ = true;
    wake_timer_.cancel();
  }
  // Sets the common headers of every response.
  template <typename Message>
  void SetHeaders(Message& message, const Exchange& exchange, const HttpResponse& response);

  Server* const server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  // Woken (cancelled) by Wake(); the coroutine waits on it while a stream has nothing to send.
  asio::steady_timer wake_timer_;
  std::string remote_;
  Clock::time_point head_deadline_;
  bool idle_ = true;            // waiting for a request's first byte (or lingering before close)
  bool woken_ = false;          // Wake() ran since the flag was last cleared
  bool forced_ = false;         // ForceClose() ran
  bool watching_ = false;       // WatchForDisconnect is running
  bool stop_watching_ = false;  // we cancelled the watcher: its error is not a disconnect
  bool client_gone_ = false;    // the watcher saw EOF or an error
  std::shared_ptr<ResponseStream> body_stream_;  // the stream being sent, if any
  std::shared_ptr<PendingResponse> pending_;     // the deferred response waited for, if any
};

asio::awaitable<void> Session::Loop() {
  const ServerOptions& options = server_->options();
  // The first request's head must be complete within header_timeout of the accept.
  Clock::time_point deadline = Clock::now() + options.header_timeout;
  bool first = true;
  while (!server_->draining() && !forced_) {
    if (buffer_.size() == 0) {
      idle_ = true;
      if (first) {
        stream_.expires_at(deadline);
      } else {
        stream_.expires_after(options.idle_timeout);
      }
      auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(kReadChunkBytes), kNoThrow);
      idle_ = false;
      if (ec) break;  // EOF, idle timeout, reset, or closed by Shutdown: nothing to answer
      buffer_.commit(n);
    }
    if (!first) deadline = Clock::now() + options.header_timeout;
    first = false;
    head_deadline_ = deadline;
    if (!co_await Serve()) break;
  }
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.close();
}

asio::awaitable<bool> Session::Serve() {
  const ServerOptions& options = server_->options();
  Exchange exchange;
  http::request_parser<http::string_body> parser;
  parser.header_limit(options.max_header_bytes);
  parser.body_limit(options.max_body_bytes);

  stream_.expires_at(head_deadline_);
  auto [head_ec, head_n] = co_await http::async_read_header(stream_, buffer_, parser, kNoThrow);
  // Whatever of the start line was parsed names the request in the log.
  const auto& head = parser.get();
  if (!head.method_string().empty()) exchange.method = std::string(head.method_string());
  if (head.method() != http::verb::unknown) exchange.method_label = exchange.method;
  exchange.path = std::string(head.target());
  if (auto id = head.find("X-Request-Id"); id != head.end() && IsValidRequestId(id->value())) {
    exchange.request_id = std::string(id->value());
  } else {
    exchange.request_id = "req_" + crypto::RandomAlnum(24);
  }
  const unsigned version = head.version() == 10 ? 10 : 11;

  if (head_ec) {
    // Beast reports a declared Content-Length above body_limit while reading the head: answered
    // before any of the body is read.
    if (head_ec == http::error::body_limit) {
      co_await FailAndClose(exchange, BodyTooLarge(options), version);
    } else if (head_ec == http::error::header_limit) {
      co_await FailAndClose(
          exchange,
          Error(Code::kInvalidArgument, fmt::format("request headers exceed the limit of {} bytes",
                                                    options.max_header_bytes)),
          version, /*status=*/431);
    } else if (IsMalformed(head_ec)) {
      co_await FailAndClose(
          exchange, InvalidArgumentError("malformed HTTP request: " + head_ec.message()), version);
    } else {
      log::Debug("http_connection_dropped", {{"remote", remote_}, {"error", head_ec.message()}});
    }
    co_return false;
  }

  Server::InFlight in_flight(server_);
  exchange.start = Clock::now();
  auto url = boost::urls::parse_origin_form(head.target());
  if (!url) {
    co_await FailAndClose(exchange, InvalidArgumentError("malformed request target"), version);
    co_return false;
  }
  exchange.path = url->path();

  if (!parser.is_done()) {
    if (auto expect = head.find(http::field::expect);
        expect != head.end() && beast::iequals(expect->value(), "100-continue")) {
      http::response<http::empty_body> go_on{http::status::continue_, version};
      stream_.expires_after(options.write_timeout);
      auto [ec, n] = co_await http::async_write(stream_, go_on, kNoThrow);
      if (ec) co_return false;
    }
    stream_.expires_after(options.body_timeout);
    auto [body_ec, body_n] = co_await http::async_read(stream_, buffer_, parser, kNoThrow);
    if (body_ec == http::error::body_limit) {
      co_await FailAndClose(exchange, BodyTooLarge(options), version);
      co_return false;
    }
    if (body_ec && IsMalformed(body_ec)) {
      co_await FailAndClose(
          exchange, InvalidArgumentError("malformed HTTP request: " + body_ec.message()), version);
      co_return false;
    }
    if (body_ec) {
      log::Debug("http_connection_dropped", {{"remote", remote_}, {"error", body_ec.message()}});
      co_return false;
    }
  }

  auto& message = parser.get();
  const bool client_keep_alive = message.keep_alive();
  HttpRequest request;
  request.method = exchange.method;
  request.target = std::string(message.target());
  request.path = exchange.path;
  for (auto param : url->params(boost::urls::encoding_opts(/*space_as_plus=*/true))) {
    request.query.emplace_back(std::string(param.key), std::string(param.value));
  }
  for (const auto& field : message) {
    request.headers.emplace(std::string(field.name_string()), std::string(field.value()));
  }
  request.body = std::move(message.body());
  exchange.bytes_in = request.body.size();
  request.request_id = exchange.request_id;
  request.remote_addr = remote_;

  HttpResponse response;
  Router::Match match = server_->router().Find(request.method, request.path);
  {
    // The one catch-all per request: whatever a handler throws becomes a logged 500.
    log::ScopedRequestId scoped_id(request.request_id);
    if (match.handler != nullptr) {
      exchange.route = match.pattern;
      request.path_params = std::move(match.params);
      try {
        response = (*match.handler)(request);
      } catch (const std::exception& e) {
        log::Error("http_handler_threw", {{"route", exchange.route}, {"error", e.what()}});
        response = HttpResponse::FromError(InternalError("internal server error"));
      } catch (...) {
        log::Error("http_handler_threw",
                   {{"route", exchange.route}, {"error", "non-standard exception"}});
        response = HttpResponse::FromError(InternalError("internal server error"));
      }
    } else if (match.path_known) {
      response = HttpResponse::FromError(
          Error(Code::kMethodNotAllowed,
                fmt::format("method {} is not allowed for {}", request.method, request.path)));
      response.headers.emplace("Allow", JoinMethods(match.allowed_methods));
    } else {
      response = HttpResponse::FromError(
          NotFoundError(fmt::format("no route for {} {}", request.method, request.path)));
    }
  }
  if (response.pending) {
    if (!co_await AwaitPending(response)) {
      // The client left (or the server is being forced down) before the answer was ready.
      exchange.status = 499;
      server_->Record(exchange, remote_);
      co_return false;
    }
    if (response.pending) {
      log::Error("http_nested_pending", {{"route", exchange.route}});
      response = HttpResponse::FromError(InternalError("internal server error"));
    }
  }
  if (response.status < 100 || response.status > 999) {
    log::Error("http_bad_status", {{"route", exchange.route}, {"status", response.status}});
    if (response.stream) response.stream->Cancel();  // its producer must not wait for a reader
    response = HttpResponse::FromError(InternalError("internal server error"));
  }

  const bool keep_alive = client_keep_alive && !server_->draining() && !forced_;
  bool open;
  if (response.stream) {
    open = co_await WriteStream(exchange, response, version, keep_alive);
  } else {
    open = co_await WriteResponse(exchange, response, version, keep_alive);
  }
  server_->Record(exchange, remote_);
  const bool stays_open = open && keep_alive;
  co_return stays_open;
}

template <typename Message>
void Session::SetHeaders(Message& message, const Exchange& exchange, const HttpResponse& response) {
  message.result(static_cast<unsigned>(response.status));
  if (response.status == 499) message.reason("Client Closed Request");
  message.set(http::field::server, "yunzhi");
  message.set(http::field::date, HttpDate());
  message.set(http::field::content_type, response.content_type);
  message.set("X-Request-Id", exchange.request_id);
  for (const auto& [name, value] : response.headers) {
    if (IsServerOwnedHeader(name) || HasControlChars(name) || HasControlChars(value) ||
        name.empty()) {
      log::Warn("http_header_dropped", {{"route", exchange.route}, {"header", name}});
      continue;
    }
    message.insert(name, value);
  }
}

asio::awaitable<bool> Session::WriteResponse(Exchange& exchange, HttpResponse& response,
                                             unsigned version, bool keep_alive) {
  http::response<http::string_body> message;
  message.version(version);
  SetHeaders(message, exchange, response);
  const int status = response.status;
  // These statuses never have a body (Beast refuses to frame one).
  if (status / 100 == 1 || status == 204 || status == 304) response.body.clear();
  message.body() = std::move(response.body);
  message.keep_alive(keep_alive);
  message.prepare_payload();
  exchange.status = status;
  exchange.bytes_out = message.body().size();
  stream_.expires_after(server_->options().write_timeout);
  auto [ec, n] = co_await http::async_write(stream_, message, kNoThrow);
  co_return !ec;
}

asio::awaitable<bool> Session::WriteStream(Exchange& exchange, HttpResponse& response,
                                           unsigned version, bool keep_alive) {
  const ServerOptions& options = server_->options();
  std::shared_ptr<ResponseStream> body = response.stream;
  // HTTP/1.0 has no chunked encoding: the body ends when the connection does.
  const bool chunked = version >= 11;
  if (!chunked) keep_alive = false;

  http::response<http::empty_body> message;
  message.version(version);
  SetHeaders(message, exchange, response);
  message.set(http::field::cache_control, "no-cache");
  if (response.content_type.starts_with("text/event-stream")) {
    // Tells nginx-style proxies not to buffer: events must reach the client as they happen.
    message.set("X-Accel-Buffering", "no");
  }
  if (chunked) message.chunked(true);
  message.keep_alive(keep_alive);
  exchange.status = response.status;

  http::response_serializer<http::empty_body> serializer(message);
  stream_.expires_after(options.write_timeout);
  auto [head_ec, head_n] = co_await http::async_write_header(stream_, serializer, kNoThrow);
  if (head_ec) {
    body->Cancel();
    co_return false;
  }

  // From here on the producer wakes this coroutine through the strand; the flag makes a wakeup
  // that arrives while we are writing count as well.
  body_stream_ = body;
  std::weak_ptr<Session> weak = weak_from_this();
  body->SetWakeup([weak, executor = executor()] {
    asio::post(executor, [weak] {
      if (auto self = weak.lock()) self->Wake();
    });
  });
  // However this coroutine ends (an exception included), the producer must stop posting to an
  // executor that may soon be destroyed.
  struct ClearWakeup {
    ResponseStream* stream;
    ~ClearWakeup() { stream->SetWakeup(nullptr); }
  } clear_wakeup{body.get()};
  // Watch the socket for the client going away while we wait for the producer.
  StartWatching();

  bool ok = true;
  while (true) {
    woken_ = false;
    if (client_gone_ || forced_) {
      ok = false;
      break;
    }
    bool closed = false;
    std::vector<std::string> chunks = body->Drain(&closed);
    if (!chunks.empty()) {
      std::string data;
      for (const std::string& chunk : chunks) data += chunk;
      stream_.expires_after(options.write_timeout);
      beast::error_code ec;
      if (chunked) {
        std::tie(ec, std::ignore) =
            co_await asio::async_write(stream_, http::make_chunk(asio::buffer(data)), kNoThrow);
      } else {
        std::tie(ec, std::ignore) =
            co_await asio::async_write(stream_, asio::buffer(data), kNoThrow);
      }
      if (ec) {
        ok = false;
        break;
      }
      exchange.bytes_out += data.size();
    }
    if (closed) {
      if (chunked) {
        stream_.expires_after(options.write_timeout);
        auto [ec, n] = co_await asio::async_write(stream_, http::make_chunk_last(), kNoThrow);
        ok = !ec;
      }
      break;
    }
    if (!woken_) co_await WaitForWake();
  }

  body->SetWakeup(nullptr);  // after this no wakeup runs: the producer may outlive the session
  if (!ok || forced_ || client_gone_) body->Cancel();
  body_stream_.reset();
  co_await StopWatching();
  co_return ok && !client_gone_;
}

void Session::StartWatching() {
  watching_ = true;
  stop_watching_ = false;
  client_gone_ = false;
  asio::co_spawn(executor(), WatchForDisconnect(shared_from_this()), [](std::exception_ptr e) {
    if (e) log::Error("http_stream_watcher_failed", {});
  });
}

asio::awaitable<void> Session::StopWatching() {
  if (!watching_) co_return;
  stop_watching_ = true;
  beast::error_code ec;
  stream_.socket().cancel(ec);
  while (watching_) co_await WaitForWake();
}

asio::awaitable<bool> Session::AwaitPending(HttpResponse& response) {
  std::shared_ptr<PendingResponse> pending = std::move(response.pending);
  pending_ = pending;
  std::weak_ptr<Session> weak = weak_from_this();
  pending->SetWakeup([weak, executor = executor()] {
    asio::post(executor, [weak] {
      if (auto self = weak.lock()) self->Wake();
    });
  });
  struct ClearWakeup {
    PendingResponse* pending;
    ~ClearWakeup() { pending->SetWakeup(nullptr); }
  } clear_wakeup{pending.get()};
  StartWatching();
  std::unique_ptr<HttpResponse> done;
  while (true) {
    woken_ = false;
    if (client_gone_ || forced_) break;
    done = pending->Take();
    if (done) break;
    if (!woken_) co_await WaitForWake();
  }
  pending->SetWakeup(nullptr);
  co_await StopWatching();
  pending_.reset();
  if (!done || client_gone_ || forced_) {
    pending->Cancel();
    if (done && done->stream) done->stream->Cancel();
    co_return false;
  }
  response = std::move(*done);
  co_return true;
}

asio::awaitable<void> Session::WatchForDisconnect(std::shared_ptr<Session> self) {
  while (true) {
    // No deadline on this read: the client owes us nothing while we stream. (Reset it each
    // time: a write's expires_after between two of our reads also sets the idle read timer.)
    self->stream_.expires_never();
    auto [ec, n] =
        co_await self->stream_.async_read_some(self->buffer_.prepare(kReadChunkBytes), kNoThrow);
    if (ec) {
      if (!self->stop_watching_) self->client_gone_ = true;
      break;
    }
    // The client's next request (sent early, or right after the last chunk): keep the bytes
    // for it. Stop when the stream is over (a read that completed before our cancel must not
    // be followed by another, which would wait for bytes the client will not send until it gets
    // the next response), or once a whole head's worth is buffered (a disconnect is then noticed
    // when a write fails).
    self->buffer_.commit(n);
    if (self->stop_watching_) break;
    if (self->buffer_.size() > self->server_->options().max_header_bytes) break;
  }
  self->watching_ = false;
  // Tell the producer at once, not when it next writes.
  if (self->client_gone_ && self->body_stream_) self->body_stream_->Cancel();
  if (self->client_gone_ && self->pending_) self->pending_->Cancel();
  self->Wake();
}

asio::awaitable<void> Session::WaitForWake() {
  wake_timer_.expires_at(Clock::time_point::max());
  co_await wake_timer_.async_wait(kNoThrow);  // cancelled by Wake(): not an error
  woken_ = false;
}

asio::awaitable<void> Session::FailAndClose(Exchange& exchange, const Error& error,
                                            unsigned version, int status) {
  HttpResponse response = HttpResponse::FromError(error);
  if (status != 0) response.status = status;
  co_await WriteResponse(exchange, response, version, /*keep_alive=*/false);
  server_->Record(exchange, remote_);
  co_await LingeringClose();
}

asio::awaitable<void> Session::LingeringClose() {
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  idle_ = true;  // Shutdown may cut this short
  stream_.expires_after(kLingerTime);
  std::array<char, 4096> scratch;
  size_t discarded = 0;
  while (discarded < kLingerMaxBytes && !forced_) {
    auto [read_ec, n] = co_await stream_.async_read_some(asio::buffer(scratch), kNoThrow);
    if (read_ec) break;
    discarded += n;
  }
  stream_.close();
}

// --- Server -----------------------------------------------------------------------------------

Server::Server(ServerOptions options, const Router& router, metrics::Registry* registry)
    : options_(std::move(options)),
      router_(router),
      contexts_(MakeContexts(options_.threads)),
      accept_strand_(asio::make_strand(*contexts_.front())) {
  if (registry != nullptr) {
    requests_total_ = registry->AddCounter("yunzhi_http_requests_total",
                                           "HTTP requests answered, by route pattern, method and "
                                           "status.",
                                           {"route", "method", "status"});
    request_duration_ = registry->AddHistogram(
        "yunzhi_http_request_duration_seconds",
        "Time from a request's head to its response's last byte, by route pattern.", {"route"});
    in_flight_gauge_ = &registry
                            ->AddGauge("yunzhi_http_requests_in_flight",
                                       "HTTP requests being handled or streamed.")
                            ->WithLabels({});
  }
}

Status Server::Start() {
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (state_ != State::kNew) {
    return FailedPreconditionError("the HTTP server can be started only once");
  }
  auto fail = [this](const std::string& reason) {
    acceptor_.reset();
    return UnavailableError(
        fmt::format("cannot listen on {}:{}: {}", options_.host, options_.port, reason));
  };

  beast::error_code ec;
  tcp::endpoint endpoint;
  const auto address = asio::ip::make_address(options_.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, options_.port);
  } else {
    tcp::resolver resolver(*contexts_.front());
    auto results =
        resolver.resolve(options_.host, std::to_string(options_.port), tcp::resolver::passive, ec);
    if (ec) return fail(ec.message());
    if (results.empty()) return fail("host has no address");
    endpoint = results.begin()->endpoint();
  }

  acceptor_.emplace(accept_strand_);
  if (acceptor_->open(endpoint.protocol(), ec); ec) return fail(ec.message());
  // Lets a restarted server bind while old connections linger in TIME_WAIT; on Linux it does not
  // let two servers listen on one port, so a taken port still fails below.
  if (acceptor_->set_option(asio::socket_base::reuse_address(true), ec); ec) {
    return fail(ec.message());
  }
  if (acceptor_->bind(endpoint, ec); ec) return fail(ec.message());
  if (acceptor_->listen(asio::socket_base::max_listen_connections, ec); ec) {
    return fail(ec.message());
  }
  port_ = acceptor_->local_endpoint(ec).port();

  state_ = State::kRunning;
  for (auto& context : contexts_) work_.emplace_back(context->get_executor());
  // Not `detached`: a failure of the accept loop must be seen, and Shutdown waits for its end.
  asio::co_spawn(accept_strand_, AcceptLoop(), [this](std::exception_ptr e) {
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::Error("http_accept_loop_failed", {{"error", ex.what()}});
      } catch (...) {
        log::Error("http_accept_loop_failed", {});
      }
    }
    std::lock_guard lock(sessions_mutex_);
    accept_done_ = true;
    sessions_cv_.notify_all();
  });
  const int n_threads = static_cast<int>(contexts_.size());
  for (auto& context : contexts_) {
    threads_.emplace_back([ctx = context.get()] { ctx->run(); });
  }
  log::Info("http_listening",
            {{"address", FormatEndpoint(tcp::endpoint(endpoint.address(), port_.load()))},
             {"threads", n_threads}});
  return OkStatus();
}

asio::awaitable<void> Server::AcceptLoop() {
  asio::steady_timer backoff(accept_strand_);
  while (true) {
    auto [ec, socket] =
        co_await acceptor_->async_accept(NextContextExecutor(), kNoThrow);
    if (!acceptor_->is_open() || ec == asio::error::operation_aborted) break;
    if (ec) {
      log::Warn("http_accept_failed", {{"error", ec.message()}});
      // Out of descriptors or memory: retrying at once would spin; let connections close first.
      if (ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
          ec == asio::error::no_memory) {
        backoff.expires_after(std::chrono::milliseconds(50));
        co_await backoff.async_wait(kNoThrow);
      }
      continue;
    }
    beast::error_code opt_ec;
    socket.set_option(tcp::no_delay(true), opt_ec);  // SSE tokens must not wait for Nagle
    auto session = std::make_shared<Session>(this, std::move(socket));
    uint64_t id;
    {
      std::lock_guard lock(sessions_mutex_);
      id = next_session_id_++;
      sessions_.emplace(id, session);
    }
    auto executor = session->executor();
    asio::co_spawn(executor, Session::Run(std::move(session)), [this, id](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          log::Error("http_session_failed", {{"error", ex.what()}});
        } catch (...) {
          log::Error("http_session_failed", {});
        }
      }
      Forget(id);
    });
  }
}

void Server::Forget(uint64_t session_id) {
  std::shared_ptr<Session> session;  // destroyed outside the lock
  std::lock_guard lock(sessions_mutex_);
  auto it = sessions_.find(session_id);
  if (it != sessions_.end()) {
    session = std::move(it->second);
    sessions_.erase(it);
  }
  sessions_cv_.notify_all();
}

void Server::Shutdown() {
  // From an I/O thread this would wait for itself.
  for (const auto& context : contexts_) {
    YZ_CHECK(!context->get_executor().running_in_this_thread());
  }
  std::lock_guard lifecycle(lifecycle_mutex_);
  if (state_ != State::kRunning) {
    state_ = State::kStopped;
    return;
  }
  const auto grace_deadline = Clock::now() + options_.shutdown_grace;
  draining_ = true;
  log::Info("http_draining", {{"in_flight", in_flight_.load()}});

  // 1. Stop accepting. Waiting for it makes "refused from here on" hold once this step is done.
  std::promise<void> closed;
  asio::post(accept_strand_, [this, &closed] {
    beast::error_code ec;
    acceptor_->close(ec);
    closed.set_value();
  });
  closed.get_future().wait();

  // 2. Close idle connections; busy ones close after their current response.
  auto snapshot = [this] {
    std::lock_guard lock(sessions_mutex_);
    std::vector<std::shared_ptr<Session>> out;
    for (const auto& [id, session] : sessions_) out.push_back(session);
    return out;
  };
  for (auto& session : snapshot()) {
    asio::post(session->executor(), [session] { session->CloseIfIdle(); });
  }

  // 3. Wait for in-flight requests and streams, then cut off what is left.
  std::unique_lock lock(sessions_mutex_);
  auto all_done = [this] { return sessions_.empty() && accept_done_; };
  bool done = sessions_cv_.wait_until(lock, grace_deadline, all_done);
  if (!done) {
    log::Warn("http_shutdown_grace_expired", {{"connections", sessions_.size()}});
    if (options_.on_grace_expired) {
      lock.unlock();
      options_.on_grace_expired();
      lock.lock();
      done = sessions_cv_.wait_until(lock, Clock::now() + options_.final_grace, all_done);
    }
  }
  if (!done) {
    lock.unlock();
    for (auto& session : snapshot()) {
      asio::post(session->executor(), [session] { session->ForceClose(); });
    }
    lock.lock();
    sessions_cv_.wait(lock, all_done);
  }
  lock.unlock();

  // 4. Nothing is left to do: stop the I/O threads.
  work_.clear();
  for (auto& context : contexts_) context->stop();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  acceptor_.reset();
  state_ = State::kStopped;
  log::Info("http_stopped", {});
}

void Server::Record(const Exchange& exchange, const std::string& remote) {
  if (exchange.status == 0) return;
  const double seconds = std::chrono::duration<double>(Clock::now() - exchange.start).count();
  if (requests_total_ != nullptr) {
    requests_total_
        ->WithLabels({exchange.route, exchange.method_label, std::to_string(exchange.status)})
        .Increment();
    request_duration_->WithLabels({exchange.route}).Observe(seconds);
  }
  log::ScopedRequestId scoped_id(exchange.request_id);
  log::Info("http_request", {{"method", exchange.method},
                             {"path", exchange.path},
                             {"route", exchange.route},
                             {"status", exchange.status},
                             {"duration_ms", std::round(seconds * 1e6) / 1e3},  // microsecond steps
                             {"bytes_in", exchange.bytes_in},
                             {"bytes_out", exchange.bytes_out},
                             {"remote", remote}});
}

}  // namespace

// --- HttpServer -------------------------------------------------------------------------------

struct HttpServer::Impl : Server {
  using Server::Server;
};

HttpServer::HttpServer(ServerOptions options, const Router& router, metrics::Registry* registry)
    : impl_(std::make_unique<Impl>(std::move(options), router, registry)) {}

HttpServer::~HttpServer() = default;  // ~Server shuts down

Status HttpServer::Start() { return impl_->Start(); }
uint16_t HttpServer::port() const { return impl_->port(); }
void HttpServer::Shutdown() { impl_->Shutdown(); }
size_t HttpServer::in_flight() const { return impl_->in_flight(); }
bool HttpServer::draining() const { return impl_->draining(); }

}  // namespace yunzhi::api
