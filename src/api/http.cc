#include "yunzhi/api/http.h"

#include <algorithm>
#include <cstddef>

#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

namespace yunzhi::api {
namespace {

char AsciiLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Splits "/a/b/c" into {"a","b","c"}; "/" gives one empty segment. The views point into `path`,
// which lets a rest capture take the original text from its first segment to the end.
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> segments;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) {
      segments.push_back(path.substr(start));
      break;
    }
    segments.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return segments;
}

}  // namespace

// --- Headers and requests ---------------------------------------------------------------------

bool HeaderLess::operator()(std::string_view a, std::string_view b) const {
  return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                      [](char x, char y) { return AsciiLower(x) < AsciiLower(y); });
}

std::optional<std::string> HttpRequest::Header(std::string_view name) const {
  auto it = headers.find(name);
  if (it == headers.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> HttpRequest::QueryParam(std::string_view name) const {
  for (const auto& [key, value] : query) {
    if (key == name) return value;
  }
  return std::nullopt;
}

// --- ResponseStream ---------------------------------------------------------------------------

bool ResponseStream::Write(std::string chunk) {
  std::lock_guard lock(mutex_);
  if (closed_ || cancelled_.load()) return false;
  if (chunk.empty()) return true;
  chunks_.push_back(std::move(chunk));
  if (wakeup_) wakeup_();
  return true;
}

void ResponseStream::Close() {
  std::lock_guard lock(mutex_);
  if (closed_) return;
  closed_ = true;
  if (wakeup_) wakeup_();
}

void ResponseStream::SetWakeup(std::function<void()> wakeup) {
  std::lock_guard lock(mutex_);
  wakeup_ = std::move(wakeup);
}

std::vector<std::string> ResponseStream::Drain(bool* closed) {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out(std::make_move_iterator(chunks_.begin()),
                               std::make_move_iterator(chunks_.end()));
  chunks_.clear();
  *closed = closed_;
  return out;
}

void ResponseStream::Cancel() {
  {
    std::lock_guard lock(mutex_);
    cancelled_.store(true);
    chunks_.clear();
  }
  cancel_cv_.notify_all();
}

bool ResponseStream::WaitForCancel(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cancel_cv_.wait_for(lock, timeout, [this] { return cancelled_.load(); });
}

std::string SseEvent(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 8);
  out += "data: ";
  for (size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') ++i;
      out += "\ndata: ";
    } else {
      out += c;
    }
  }
  out += "\n\n";
  return out;
}

// --- HttpResponse -----------------------------------------------------------------------------

PendingResponse::PendingResponse() = default;
PendingResponse::~PendingResponse() = default;

bool PendingResponse::Complete(HttpResponse response) {
  std::shared_ptr<ResponseStream> orphan;
  {
    std::lock_guard lock(mutex_);
    if (completed_ || cancelled_.load()) {
      orphan = response.stream;
    } else {
      completed_ = true;
      response_ = std::make_unique<HttpResponse>(std::move(response));
      if (wakeup_) wakeup_();
      return true;
    }
  }
  if (orphan) orphan->Cancel();  // nobody will read it: its producer must stop
  return false;
}

void PendingResponse::SetWakeup(std::function<void()> wakeup) {
  std::lock_guard lock(mutex_);
  wakeup_ = std::move(wakeup);
}

std::unique_ptr<HttpResponse> PendingResponse::Take() {
  std::lock_guard lock(mutex_);
  return std::move(response_);
}

void PendingResponse::Cancel() {
  std::unique_ptr<HttpResponse> dropped;
  {
    std::lock_guard lock(mutex_);
    cancelled_.store(true);
    dropped = std::move(response_);
  }
  if (dropped && dropped->stream) dropped->stream->Cancel();
}

HttpResponse HttpResponse::Deferred(std::shared_ptr<PendingResponse> pending) {
  HttpResponse r;
  r.pending = std::move(pending);
  return r;
}

HttpResponse HttpResponse::Json(int status, std::string json_body) {
  HttpResponse response;
  response.status = status;
  response.content_type = "application/json";
  response.body = std::move(json_body);
  return response;
}

HttpResponse HttpResponse::Text(int status, std::string text, std::string content_type) {
  HttpResponse response;
  response.status = status;
  response.content_type = std::move(content_type);
  response.body = std::move(text);
  return response;
}

HttpResponse HttpResponse::FromError(const Error& error) {
  const Code code = error.code == Code::kOk ? Code::kInternal : error.code;
  boost::json::object inner;
  inner["message"] = error.message;
  inner["type"] = OpenAiErrorType(code);
  if (error.param.empty()) {
    inner["param"] = nullptr;
  } else {
    inner["param"] = error.param;
  }
  if (error.detail.empty()) {
    inner["code"] = nullptr;
  } else {
    inner["code"] = error.detail;
  }
  boost::json::object outer;
  outer["error"] = std::move(inner);
  return Json(HttpStatus(code), boost::json::serialize(outer));
}

// --- Router -----------------------------------------------------------------------------------

void Router::Add(std::string method, std::string pattern, Handler handler) {
  YZ_CHECK(!method.empty());
  YZ_CHECK(!pattern.empty() && pattern.front() == '/');
  YZ_CHECK(handler != nullptr);
  Route route;
  for (std::string_view text : SplitPath(pattern)) {
    Segment segment{Segment::Kind::kLiteral, std::string(text)};
    if (text.size() >= 2 && text.front() == '{' && text.back() == '}') {
      std::string_view name = text.substr(1, text.size() - 2);
      segment.kind = Segment::Kind::kCapture;
      if (name.size() >= 3 && name.substr(name.size() - 3) == "...") {
        segment.kind = Segment::Kind::kRest;
        name.remove_suffix(3);
      }
      YZ_CHECK(!name.empty());
      segment.text = std::string(name);
    } else {
      // Braces anywhere else are a typo in a capture, never a literal we want to match.
      YZ_CHECK(text.find('{') == std::string_view::npos);
      YZ_CHECK(text.find('}') == std::string_view::npos);
    }
    YZ_CHECK(route.segments.empty() || route.segments.back().kind != Segment::Kind::kRest);
    route.segments.push_back(std::move(segment));
  }
  // Two routes of one method with the same shape would match the same paths: ambiguous.
  for (const Route& other : routes_) {
    if (other.method != method || other.segments.size() != route.segments.size()) continue;
    bool same_shape = true;
    for (size_t i = 0; i < route.segments.size() && same_shape; ++i) {
      const Segment& a = route.segments[i];
      const Segment& b = other.segments[i];
      same_shape = a.kind == b.kind && (a.kind != Segment::Kind::kLiteral || a.text == b.text);
    }
    YZ_CHECK(!same_shape);
  }
  route.method = std::move(method);
  route.pattern = std::move(pattern);
  route.handler = std::move(handler);
  routes_.push_back(std::move(route));
}

Router::Match Router::Find(std::string_view method, std::string_view path) const {
  const std::vector<std::string_view> parts = SplitPath(path);

  // Fills `params` when `route` matches the path.
  auto matches = [&parts](const Route& route, std::map<std::string, std::string>* params) {
    for (size_t i = 0; i < route.segments.size(); ++i) {
      const Segment& segment = route.segments[i];
      if (i >= parts.size()) return false;
      switch (segment.kind) {
        case Segment::Kind::kLiteral:
          if (parts[i] != segment.text) return false;
          break;
        case Segment::Kind::kCapture:
          if (parts[i].empty()) return false;
          if (params) (*params)[segment.text] = std::string(parts[i]);
          break;
        case Segment::Kind::kRest: {
          // From this segment to the end of the path, slashes included.
          const std::string_view last = parts.back();
          std::string_view rest(parts[i].data(),
                                static_cast<size_t>(last.data() + last.size() - parts[i].data()));
          if (rest.empty()) return false;
          if (params) (*params)[segment.text] = std::string(rest);
          return true;
        }
      }
    }
    return parts.size() == route.segments.size();
  };
  // True when `a` is more specific than `b`: at the first segment where their kinds differ, `a`
  // has the stronger kind.
  auto more_specific = [](const Route& a, const Route& b) {
    const size_t n = std::min(a.segments.size(), b.segments.size());
    for (size_t i = 0; i < n; ++i) {
      if (a.segments[i].kind != b.segments[i].kind) return a.segments[i].kind < b.segments[i].kind;
    }
    return a.segments.size() > b.segments.size();
  };

  Match match;
  const Route* best = nullptr;
  for (const Route& route : routes_) {
    if (route.method != method) {
      if (matches(route, nullptr)) match.allowed_methods.push_back(route.method);
      continue;
    }
    if ((best == nullptr || more_specific(route, *best)) && matches(route, nullptr)) best = &route;
  }
  if (best != nullptr) {
    matches(*best, &match.params);
    match.handler = &best->handler;
    match.pattern = best->pattern;
    match.allowed_methods.clear();
    return match;
  }
  std::sort(match.allowed_methods.begin(), match.allowed_methods.end());
  match.allowed_methods.erase(
      std::unique(match.allowed_methods.begin(), match.allowed_methods.end()),
      match.allowed_methods.end());
  match.path_known = !match.allowed_methods.empty();
  return match;
}

}  // namespace yunzhi::api
