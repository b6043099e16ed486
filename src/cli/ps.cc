#include "cli/ps.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <boost/json.hpp>
#include <fmt/format.h>

#include "cli/models.h"

namespace yunzhi::cli {
namespace {

namespace json = boost::json;

// One HTTP/1.0 GET (the server closes the connection after answering): status and body.
// Only plain http:// URLs of the form the server itself prints.
Result<std::pair<int, std::string>> HttpGet(const std::string& url, const std::string& path,
                                             const std::string& key) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) {
    return InvalidArgumentError(fmt::format("unsupported server URL '{}' (http:// only)", url));
  }
  std::string hostport = url.substr(kScheme.size());
  if (auto slash = hostport.find('/'); slash != std::string::npos) hostport.resize(slash);
  std::string host = hostport, port = "80";
  if (auto colon = hostport.rfind(':'); colon != std::string::npos) {
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addrs = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &addrs); rc != 0) {
    return UnavailableError(fmt::format("cannot resolve {}: {}", host, gai_strerror(rc)));
  }
  int fd = -1;
  for (addrinfo* a = addrs; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(addrs);
  if (fd < 0) return UnavailableError(fmt::format("cannot connect to {}", url));
  const std::string request = fmt::format(
      "GET {} HTTP/1.0\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n", path, hostport, key);
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return UnavailableError(fmt::format("cannot send to {}", url));
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  const size_t head_end = response.find("\r\n\r\n");
  if (!response.starts_with("HTTP/1.") || head_end == std::string::npos || response.size() < 12) {
    return UnavailableError(fmt::format("malformed answer from {}", url));
  }
  return std::pair<int, std::string>(std::atoi(response.c_str() + 9), response.substr(head_end + 4));
}

int64_t Int(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_int64() ? it->value().as_int64() : 0;
}

}  // namespace

int RunPs(const GlobalFlags& flags, const PsFlags& ps) {
  std::string url = ps.url;
  if (url.empty()) {
    auto loaded = LoadCliConfig(flags);
    if (!loaded) return PrintError(loaded.error());
    auto dir = store::DataDir::Open(loaded->config.data_dir);
    if (!dir) return PrintError(dir.error());
    auto running = store::ServerLock::RunningServerUrl(*dir);
    if (!running) return PrintError(running.error());
    url = *running;
  }
  std::string key = ps.api_key;
  if (key.empty()) {
    if (const char* env = std::getenv("YUNZHI_API_KEY")) key = env;
  }
  if (key.empty()) {
    return PrintError(InvalidArgumentError(
        "an API key with the read scope is needed: pass --api-key or set YUNZHI_API_KEY"));
  }
  auto answer = HttpGet(url, "/api/ps", key);
  if (!answer) return PrintError(answer.error());
  boost::system::error_code ec;
  json::value body = json::parse(answer->second, ec);
  if (answer->first != 200) {
    std::string message = answer->second;
    if (!ec && body.is_object() && body.as_object().contains("error")) {
      message = json::value_to<std::string>(body.at("error").at("message"));
    }
    return PrintError(UnavailableError(fmt::format("{} answered {}: {}", url, answer->first, message)));
  }
  if (ec || !body.is_object()) return PrintError(UnavailableError("malformed /api/ps answer"));
  if (ps.json) {
    std::printf("%s\n", json::serialize(body).c_str());
    return 0;
  }
  std::printf("%-32s %-9s %10s %8s %7s %8s %8s %9s %s\n", "NAME", "KIND", "SIZE", "CONTEXT", "ACTIVE",
              "RUNNING", "WAITING", "KV USED", "UNTIL");
  for (const auto& v : body.at("data").as_array()) {
    const auto& m = v.as_object();
    const auto& kv = m.at("kv_blocks").as_object();
    const int64_t total = Int(kv, "total");
    const std::string kv_used =
        total > 0 ? fmt::format("{:.0f}%", 100.0 * static_cast<double>(Int(kv, "used")) / static_cast<double>(total)) : "-";
    std::string until = "in use";
    if (m.at("expires_at").is_int64()) {
      until = FormatTime(m.at("expires_at").as_int64() * 1000);
    } else if (Int(m, "active_requests") == 0) {
      until = "forever";
    }
    const json::value* kind = m.if_contains("kind");
    std::printf("%-32s %-9s %10s %8lld %7lld %8lld %8lld %9s %s\n",
                json::value_to<std::string>(m.at("name")).c_str(),
                kind != nullptr && kind->is_string() ? kind->as_string().c_str() : "chat",
                FormatBytes(Int(m, "size_bytes")).c_str(),
                static_cast<long long>(Int(m, "context_length")),
                static_cast<long long>(Int(m, "active_requests")),
                static_cast<long long>(Int(m, "running")), static_cast<long long>(Int(m, "waiting")),
                kv_used.c_str(), until.c_str());
  }
  return 0;
}

}  // namespace yunzhi::cli
