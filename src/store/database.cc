#include "yunzhi/store/database.h"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>
#include <type_traits>

#include <fmt/format.h>

#include "store/sqlite_database.h"

namespace yunzhi::store {
namespace {

// Parses the leading integer of `text` the way SQLite converts TEXT to INTEGER: surrounding
// spaces allowed, anything unparsable is 0.
int64_t ParseInt(std::string_view text) {
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (!text.empty() && text.front() == '+') text.remove_prefix(1);
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc()) return value;
  return 0;
}

double ParseReal(const std::string& text) {
  // strtod needs a NUL-terminated string; std::string provides one.
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  return end == text.c_str() ? 0.0 : value;
}

int64_t RealToInt(double v) {
  // Out-of-range conversion is undefined behaviour; clamp instead.
  if (std::isnan(v)) return 0;
  if (v >= 9.2233720368547758e18) return INT64_MAX;
  if (v <= -9.2233720368547758e18) return INT64_MIN;
  return static_cast<int64_t>(v);
}

// Splits "scheme:rest"; returns an empty scheme for plain paths. A scheme is a letter followed by
// letters, digits, '+', '-' or '.', as in RFC 3986; a single letter is not taken as one.
std::string_view SchemeOf(std::string_view url) {
  size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon < 2) return {};
  auto is_alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!is_alpha(url[0])) return {};
  for (size_t i = 1; i < colon; ++i) {
    char c = url[i];
    if (!is_alpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.') return {};
  }
  return url.substr(0, colon);
}

}  // namespace

bool Row::IsNull(size_t i) const { return std::holds_alternative<std::nullptr_t>(at(i)); }

int64_t Row::Int(size_t i) const {
  return std::visit(
      [](const auto& v) -> int64_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) return v;
        if constexpr (std::is_same_v<T, double>) return RealToInt(v);
        if constexpr (std::is_same_v<T, std::string>) return ParseInt(v);
        if constexpr (std::is_same_v<T, Blob>) return ParseInt(v.bytes);
        return 0;
      },
      at(i));
}

double Row::Real(size_t i) const {
  return std::visit(
      [](const auto& v) -> double {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) return static_cast<double>(v);
        if constexpr (std::is_same_v<T, double>) return v;
        if constexpr (std::is_same_v<T, std::string>) return ParseReal(v);
        if constexpr (std::is_same_v<T, Blob>) return ParseReal(v.bytes);
        return 0.0;
      },
      at(i));
}

std::string Row::Text(size_t i) const {
  return std::visit(
      [](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) return std::to_string(v);
        // fmt's default for double is the shortest text that reads back to the same value.
        if constexpr (std::is_same_v<T, double>) return fmt::format("{}", v);
        if constexpr (std::is_same_v<T, std::string>) return v;
        if constexpr (std::is_same_v<T, Blob>) return v.bytes;
        return std::string();
      },
      at(i));
}

std::optional<int64_t> Row::OptInt(size_t i) const {
  if (IsNull(i)) return std::nullopt;
  return Int(i);
}

std::optional<std::string> Row::OptText(size_t i) const {
  if (IsNull(i)) return std::nullopt;
  return Text(i);
}

Result<std::optional<Row>> Executor::QueryOne(std::string_view sql, std::vector<Value> params) {
  YZ_ASSIGN_OR_RETURN(std::vector<Row> rows, Query(sql, std::move(params)));
  if (rows.empty()) return std::optional<Row>();
  return std::optional<Row>(std::move(rows.front()));
}

Result<std::unique_ptr<Database>> Database::Open(const DatabaseOptions& options) {
  if (options.max_connections < 1) {
    return InvalidArgumentError(
        fmt::format("max_connections must be at least 1 (got {})", options.max_connections));
  }
  if (options.busy_timeout.count() < 0) {
    return InvalidArgumentError("busy_timeout must not be negative");
  }
  const std::string& url = options.url;
  if (url.empty()) return InvalidArgumentError("database URL is empty");
  if (url == ":memory:" || url == "sqlite::memory:") {
    return internal::OpenSqlite(":memory:", options);
  }

  std::string_view scheme = SchemeOf(url);
  if (scheme.empty()) return internal::OpenSqlite(url, options);
  if (scheme == "sqlite") {
    std::string_view path = std::string_view(url).substr(scheme.size() + 1);
    if (path.starts_with("//")) {
      // URL form "sqlite:///abs/path": an empty authority followed by an absolute path. A host
      // ("sqlite://host/x") means nothing for an embedded database.
      path.remove_prefix(2);
      if (!path.starts_with('/')) {
        return InvalidArgumentError(fmt::format(
            "bad database URL '{}': use sqlite:/abs/path, sqlite:///abs/path or sqlite:rel/path",
            url));
      }
    }
    if (path.empty())
      return InvalidArgumentError(fmt::format("database URL '{}' has no path", url));
    return internal::OpenSqlite(std::string(path), options);
  }
  if (scheme == "postgres" || scheme == "postgresql") {
    return UnimplementedError(
        "the PostgreSQL store is not available in this build; use sqlite:PATH (the default)");
  }
  return InvalidArgumentError(fmt::format(
      "unknown database URL scheme '{}:' (expected sqlite:PATH, a file path, :memory: or "
      "postgres://...)",
      scheme));
}

}  // namespace yunzhi::store
