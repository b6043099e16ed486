#include "sse_client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace yunzhi::bench {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// The data of one SSE event (its "data:" lines joined by '\n').
std::string EventData(std::string_view event) {
  std::string data;
  bool first = true;
  while (!event.empty()) {
    const size_t nl = event.find('\n');
    std::string_view line = event.substr(0, nl);
    event.remove_prefix(nl == std::string_view::npos ? event.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.starts_with("data:")) continue;
    line.remove_prefix(5);
    if (line.starts_with(" ")) line.remove_prefix(1);
    if (!first) data += '\n';
    data.append(line);
    first = false;
  }
  return data;
}

}  // namespace

SseClient::SseClient(std::string host, uint16_t port, std::chrono::milliseconds timeout)
    : host_(std::move(host)), port_(port), timeout_(timeout) {}

SseClient::~SseClient() { Close(); }

void SseClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buffer_.clear();
  pos_ = 0;
}

bool SseClient::Connect(std::string* error) {
  if (fd_ >= 0) return true;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(port_);
  if (int rc = ::getaddrinfo(host_.c_str(), port.c_str(), &hints, &found); rc != 0) {
    *error = "resolve " + host_ + ": " + ::gai_strerror(rc);
    return false;
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd < 0) {
    *error = "connect to " + host_ + ":" + port + ": " + std::strerror(errno);
    return false;
  }
  // Small writes (the request) and small reads (one token per event) must not wait for Nagle.
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  fd_ = fd;
  return true;
}

bool SseClient::Fill(std::string* error) {
  if (pos_ > 0 && pos_ == buffer_.size()) {
    buffer_.clear();
    pos_ = 0;
  }
  pollfd p{.fd = fd_, .events = POLLIN, .revents = 0};
  const int rc = ::poll(&p, 1, static_cast<int>(timeout_.count()));
  if (rc == 0) {
    *error = "read timed out after " + std::to_string(timeout_.count()) + " ms";
    return false;
  }
  if (rc < 0) {
    *error = std::string("poll: ") + std::strerror(errno);
    return false;
  }
  char chunk[16384];
  const ssize_t n = ::recv(fd_, chunk, sizeof(chunk), 0);
  if (n == 0) {
    *error = "server closed the connection";
    return false;
  }
  if (n < 0) {
    *error = std::string("recv: ") + std::strerror(errno);
    return false;
  }
  buffer_.append(chunk, static_cast<size_t>(n));
  return true;
}

bool SseClient::ReadLine(std::string* line, std::string* error) {
  while (true) {
    const size_t end = buffer_.find("\r\n", pos_);
    if (end != std::string::npos) {
      line->assign(buffer_, pos_, end - pos_);
      pos_ = end + 2;
      return true;
    }
    if (!Fill(error)) return false;
  }
}

bool SseClient::ReadExactly(size_t n, std::string* out, std::string* error) {
  while (buffer_.size() - pos_ < n) {
    if (!Fill(error)) return false;
  }
  out->assign(buffer_, pos_, n);
  pos_ += n;
  return true;
}

PostResult SseClient::PostStream(std::string_view target, std::string_view bearer,
                                 std::string_view json_body, const EventFn& on_event,
                                 SteadyTime* sent) {
  PostResult result;
  std::string request;
  request.reserve(json_body.size() + 256);
  request.append("POST ").append(target).append(" HTTP/1.1\r\nHost: ").append(host_);
  request.append("\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n");
  if (!bearer.empty()) request.append("Authorization: Bearer ").append(bearer).append("\r\n");
  request.append("Content-Length: ").append(std::to_string(json_body.size())).append("\r\n\r\n");
  request.append(json_body);

  std::string status_line;
  // A reused connection may have been closed by the server while idle: then retry once on a
  // fresh one. A fresh connection that fails is a real error.
  for (int attempt = 0;; ++attempt) {
    const bool reused = fd_ >= 0;
    if (!Connect(&result.error)) return result;
    bool written = true;
    for (size_t off = 0; off < request.size();) {
      const ssize_t n = ::send(fd_, request.data() + off, request.size() - off, MSG_NOSIGNAL);
      if (n <= 0) {
        result.error = std::string("send: ") + std::strerror(errno);
        written = false;
        break;
      }
      off += static_cast<size_t>(n);
    }
    if (sent != nullptr) *sent = std::chrono::steady_clock::now();
    if (written && ReadLine(&status_line, &result.error)) break;
    Close();
    if (!reused || attempt > 0) return result;
    result.error.clear();
  }

  // Status line: "HTTP/1.1 200 OK".
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) {
    result.error = "bad status line: " + status_line;
    Close();
    return result;
  }
  result.status = std::atoi(status_line.c_str() + 9);

  bool chunked = false, close_after = false, event_stream = false;
  int64_t content_length = -1;
  for (std::string line;;) {
    if (!ReadLine(&line, &result.error)) {
      Close();
      return result;
    }
    if (line.empty()) break;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string name = Lower(Trim(std::string_view(line).substr(0, colon)));
    const std::string value(Trim(std::string_view(line).substr(colon + 1)));
    if (name == "transfer-encoding") chunked = Lower(value).find("chunked") != std::string::npos;
    if (name == "content-length") content_length = std::atoll(value.c_str());
    if (name == "connection") close_after = Lower(value).find("close") != std::string::npos;
    if (name == "content-type") event_stream = Lower(value).starts_with("text/event-stream");
    if (name == "retry-after") result.retry_after = value;
  }

  const bool stream = result.status == 200 && chunked && event_stream;
  std::string sse;  // de-chunked event-stream bytes not yet handed out as events
  bool stopped = false;
  if (chunked) {
    for (std::string line, data;;) {
      if (!ReadLine(&line, &result.error)) {
        Close();
        return result;
      }
      const size_t size = std::strtoull(line.c_str(), nullptr, 16);  // ignores extensions
      if (size == 0) {  // last chunk: skip the trailer up to its blank line
        do {
          if (!ReadLine(&line, &result.error)) {
            Close();
            return result;
          }
        } while (!line.empty());
        break;
      }
      if (!ReadExactly(size + 2, &data, &result.error)) {
        Close();
        return result;
      }
      data.resize(size);  // drops the CRLF after the chunk
      if (!stream) {
        result.body += data;
        continue;
      }
      const SteadyTime arrived = std::chrono::steady_clock::now();
      sse += data;
      for (size_t end; !stopped && (end = sse.find("\n\n")) != std::string::npos;) {
        const std::string event = EventData(std::string_view(sse).substr(0, end + 1));
        sse.erase(0, end + 2);
        if (!on_event(event, arrived)) stopped = true;
      }
      if (stopped) break;
    }
  } else if (content_length >= 0) {
    if (!ReadExactly(static_cast<size_t>(content_length), &result.body, &result.error)) {
      Close();
      return result;
    }
  } else {  // framed by the end of the connection
    std::string ignored;
    while (Fill(&ignored)) {
    }
    result.body.assign(buffer_, pos_, std::string::npos);
    close_after = true;
  }
  if (close_after || stopped) Close();
  result.ok = true;
  return result;
}

}  // namespace yunzhi::bench
