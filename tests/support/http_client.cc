#include "support/http_client.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

namespace yunzhi::testing {
namespace {

using Clock = std::chrono::steady_clock;

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

bool HasHeader(const HeaderList& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return true;
  }
  return false;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

Error BadResponse(std::string what) { return InternalError("invalid HTTP response: " + what); }

}  // namespace

std::optional<std::string> ClientResponse::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (EqualsIgnoreCase(key, name)) return value;
  }
  return std::nullopt;
}

HttpClient::HttpClient(uint16_t port, std::chrono::milliseconds timeout)
    : port_(port), timeout_(timeout) {}

HttpClient::~HttpClient() { Close(); }

Status HttpClient::Connect() {
  if (fd_ >= 0) return OkStatus();
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return UnavailableError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port_);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd);
    return UnavailableError("connect to 127.0.0.1:" + std::to_string(port_) + ": " +
                            std::strerror(err));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fd_ = fd;
  peer_closed_ = false;
  buffer_.clear();
  sse_buffer_.clear();
  SetTimeout(timeout_);
  return OkStatus();
}

void HttpClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
  sse_buffer_.clear();
}

void HttpClient::SetTimeout(std::chrono::milliseconds timeout) {
  timeout_ = timeout;
  if (fd_ < 0) return;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

Result<ClientResponse> HttpClient::Send(std::string_view method, std::string_view target,
                                        const HeaderList& headers, std::string_view body) {
  YZ_RETURN_IF_ERROR(Connect());
  std::string request;
  request.append(method).append(" ").append(target).append(" HTTP/1.1\r\n");
  if (!HasHeader(headers, "Host")) {
    request += "Host: 127.0.0.1:" + std::to_string(port_) + "\r\n";
  }
  for (const auto& [key, value] : headers) request += key + ": " + value + "\r\n";
  const bool wants_length =
      !body.empty() || method == "POST" || method == "PUT" || method == "PATCH";
  if (wants_length && !HasHeader(headers, "Content-Length") &&
      !HasHeader(headers, "Transfer-Encoding")) {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  request += "\r\n";
  request.append(body);
  YZ_RETURN_IF_ERROR(SendRaw(request));
  return ReadResponse();
}

Status HttpClient::SendRaw(std::string_view bytes) {
  if (fd_ < 0) return UnavailableError("not connected");
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return UnavailableError(std::string("send: ") + std::strerror(errno));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return OkStatus();
}

Status HttpClient::Fill() {
  if (fd_ < 0) return UnavailableError("not connected");
  char data[16384];
  while (true) {
    const ssize_t n = ::recv(fd_, data, sizeof data, 0);
    if (n > 0) {
      buffer_.append(data, static_cast<size_t>(n));
      return OkStatus();
    }
    if (n == 0) {
      peer_closed_ = true;
      return UnavailableError("connection closed by the server");
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return Error(Code::kDeadlineExceeded,
                   "no data from the server within " + std::to_string(timeout_.count()) + " ms");
    }
    if (errno == ECONNRESET) peer_closed_ = true;
    return UnavailableError(std::string("recv: ") + std::strerror(errno));
  }
}

Result<std::string> HttpClient::ReadUntil(std::string_view delimiter) {
  size_t searched = 0;
  while (true) {
    const size_t pos = buffer_.find(delimiter, searched);
    if (pos != std::string::npos) {
      std::string out = buffer_.substr(0, pos + delimiter.size());
      buffer_.erase(0, pos + delimiter.size());
      return out;
    }
    searched = buffer_.size() >= delimiter.size() ? buffer_.size() - delimiter.size() + 1 : 0;
    YZ_RETURN_IF_ERROR(Fill());
  }
}

Result<std::string> HttpClient::ReadExactly(size_t n) {
  while (buffer_.size() < n) YZ_RETURN_IF_ERROR(Fill());
  std::string out = buffer_.substr(0, n);
  buffer_.erase(0, n);
  return out;
}

Result<ClientResponse> HttpClient::ReadResponseHead() {
  YZ_ASSIGN_OR_RETURN(std::string head, ReadUntil("\r\n\r\n"));
  ClientResponse response;
  std::string_view rest(head);
  const size_t line_end = rest.find("\r\n");
  std::string_view status_line = rest.substr(0, line_end);
  rest.remove_prefix(line_end + 2);
  // "HTTP/1.1 200 OK"
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ') {
    return BadResponse("status line '" + std::string(status_line) + "'");
  }
  response.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
  if (response.status < 100) return BadResponse("status '" + std::string(status_line) + "'");
  response.reason = std::string(Trim(status_line.size() > 13 ? status_line.substr(13) : ""));
  while (!rest.empty()) {
    const size_t end = rest.find("\r\n");
    std::string_view line = rest.substr(0, end);
    rest.remove_prefix(end + 2);
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) return BadResponse("header '" + std::string(line) + "'");
    response.headers.emplace_back(std::string(line.substr(0, colon)),
                                  std::string(Trim(line.substr(colon + 1))));
  }
  auto te = response.Header("Transfer-Encoding");
  response.chunked = te && EqualsIgnoreCase(*te, "chunked");
  return response;
}

Result<std::optional<std::string>> HttpClient::ReadChunk() {
  YZ_ASSIGN_OR_RETURN(std::string size_line, ReadUntil("\r\n"));
  size_t size = 0;
  size_t i = 0;
  for (; i < size_line.size(); ++i) {
    const char c = size_line[i];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      break;
    }
    size = size * 16 + static_cast<size_t>(digit);
  }
  if (i == 0) return BadResponse("chunk size line '" + size_line + "'");
  if (size == 0) {
    // Trailer fields, then the blank line.
    while (true) {
      YZ_ASSIGN_OR_RETURN(std::string line, ReadUntil("\r\n"));
      if (line == "\r\n") break;
    }
    return std::optional<std::string>();
  }
  YZ_ASSIGN_OR_RETURN(std::string data, ReadExactly(size + 2));
  if (!data.ends_with("\r\n")) return BadResponse("chunk not followed by CRLF");
  data.resize(size);
  return std::optional<std::string>(std::move(data));
}

Result<std::optional<std::string>> HttpClient::ReadSseEvent() {
  while (true) {
    // Events end with a blank line; the server frames them with "\n".
    const size_t end = sse_buffer_.find("\n\n");
    if (end != std::string::npos) {
      std::string_view event(sse_buffer_.data(), end + 1);
      std::string data;
      bool first = true;
      while (!event.empty()) {
        const size_t nl = event.find('\n');
        std::string_view line = event.substr(0, nl);
        event.remove_prefix(nl + 1);
        if (line.starts_with("data:")) {
          line.remove_prefix(5);
          if (line.starts_with(" ")) line.remove_prefix(1);
          if (!first) data += '\n';
          data.append(line);
          first = false;
        }
      }
      sse_buffer_.erase(0, end + 2);
      return std::optional<std::string>(std::move(data));
    }
    YZ_ASSIGN_OR_RETURN(std::optional<std::string> chunk, ReadChunk());
    if (!chunk) {
      if (!sse_buffer_.empty()) return BadResponse("event stream ended inside an event");
      return std::optional<std::string>();
    }
    sse_buffer_ += *chunk;
  }
}

Result<ClientResponse> HttpClient::ReadResponse() {
  ClientResponse response;
  do {  // 1xx: an interim response; the real one follows
    YZ_ASSIGN_OR_RETURN(response, ReadResponseHead());
  } while (response.status < 200);
  if (response.status == 204 || response.status == 304) return response;
  if (response.chunked) {
    while (true) {
      YZ_ASSIGN_OR_RETURN(std::optional<std::string> chunk, ReadChunk());
      if (!chunk) break;
      response.body += *chunk;
    }
    return response;
  }
  if (auto length = response.Header("Content-Length")) {
    char* end = nullptr;
    const unsigned long long n = std::strtoull(length->c_str(), &end, 10);
    if (end == length->c_str() || *end != '\0') return BadResponse("Content-Length " + *length);
    YZ_ASSIGN_OR_RETURN(response.body, ReadExactly(static_cast<size_t>(n)));
    return response;
  }
  // No framing: the body runs to the end of the connection.
  while (true) {
    Status status = Fill();
    if (!status) {
      if (peer_closed_) break;
      return status.error();
    }
  }
  response.body = std::move(buffer_);
  buffer_.clear();
  return response;
}

bool HttpClient::WaitForClose(std::chrono::milliseconds timeout) {
  if (peer_closed_) return true;
  if (fd_ < 0) return false;
  const Clock::time_point deadline = Clock::now() + timeout;
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return false;
    char data[16384];
    const ssize_t n = ::recv(fd_, data, sizeof data, MSG_DONTWAIT);
    if (n > 0) {
      buffer_.append(data, static_cast<size_t>(n));
      continue;
    }
    if (n == 0 || errno == ECONNRESET) {
      peer_closed_ = true;
      return true;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
  }
}

}  // namespace yunzhi::testing
