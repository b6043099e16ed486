#include "yunzhi/base/log.h"

#include <atomic>
#include <cctype>
#include <iterator>
#include <memory>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "yunzhi/base/clock.h"

namespace yunzhi::log {
namespace {

// The destination and format of lines. Immutable once published; Init swaps in a new one, and a
// writer that loaded the old one finishes its line there.
struct Sink {
  std::shared_ptr<spdlog::logger> logger;
  bool json = false;
  const Clock* clock = nullptr;
};

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

thread_local std::string t_request_id;

std::shared_ptr<spdlog::logger> MakeLogger(std::shared_ptr<spdlog::sinks::sink> sink) {
  // Not registered in spdlog's global registry: we hold the only reference, so re-initialising
  // never collides with a name and the old logger dies with its last in-flight writer.
  auto logger = std::make_shared<spdlog::logger>("yunzhi", std::move(sink));
  logger->set_pattern("%v");  // the whole line is formatted here
  logger->set_level(spdlog::level::trace);
  logger->flush_on(spdlog::level::trace);  // a crash must not eat the lines leading up to it
  return logger;
}

std::atomic<std::shared_ptr<const Sink>>& SinkSlot() {
  // Function-local so that logging from other static initialisers works; leaked so that logging
  // from static destructors and detached threads during exit does too.
  static auto* slot = [] {
    auto sink = std::make_shared<Sink>();
    sink->logger = MakeLogger(std::make_shared<spdlog::sinks::stderr_sink_mt>());
    sink->clock = Clock::System();
    return new std::atomic<std::shared_ptr<const Sink>>(std::move(sink));
  }();
  return *slot;
}

std::string_view TextLevel(Level level) {
  switch (level) {
    case Level::kDebug: return "DEBUG";
    case Level::kInfo: return "INFO";
    case Level::kWarn: return "WARN";
    case Level::kError: return "ERROR";
    case Level::kOff: break;
  }
  return "OFF";
}

std::string_view JsonLevel(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
    case Level::kOff: break;
  }
  return "off";
}

spdlog::level::level_enum SpdLevel(Level level) {
  switch (level) {
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: break;
  }
  return spdlog::level::off;
}

void AppendControlEscape(std::string& out, unsigned char c) {
  switch (c) {
    case '\n': out += "\\n"; break;
    case '\r': out += "\\r"; break;
    case '\t': out += "\\t"; break;
    case '\b': out += "\\b"; break;
    case '\f': out += "\\f"; break;
    default: fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(c));
  }
}

bool IsControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

// --- text format ---

bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (unsigned char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || IsControl(c)) return true;
  }
  return false;
}

void AppendTextValue(std::string& out, std::string_view v) {
  if (!NeedsQuotes(v)) {
    out += v;
    return;
  }
  out.push_back('"');
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (IsControl(c)) {
      AppendControlEscape(out, c);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

// --- JSON format ---

// Length of the well-formed UTF-8 sequence starting at s[i] (whose byte is >= 0x80), or 0 when
// it is not one (stray continuation byte, overlong form, surrogate, above U+10FFFF, truncated).
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  auto byte = [&](size_t k) -> unsigned { return static_cast<unsigned char>(s[k]); };
  auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xbf) {
    return k < s.size() && byte(k) >= lo && byte(k) <= hi;
  };
  const unsigned b = byte(i);
  if (b >= 0xc2 && b <= 0xdf) return cont(i + 1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    const unsigned lo = b == 0xe0 ? 0xa0 : 0x80;  // no overlong forms
    const unsigned hi = b == 0xed ? 0x9f : 0xbf;  // no UTF-16 surrogates
    return cont(i + 1, lo, hi) && cont(i + 2) ? 3 : 0;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    const unsigned lo = b == 0xf0 ? 0x90 : 0x80;
    const unsigned hi = b == 0xf4 ? 0x8f : 0xbf;  // nothing above U+10FFFF
    return cont(i + 1, lo, hi) && cont(i + 2) && cont(i + 3) ? 4 : 0;
  }
  return 0;
}

void AppendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c == '"' || c == '\\') {
        out.push_back('\\');
        out.push_back(static_cast<char>(c));
      } else if (c < 0x20) {
        AppendControlEscape(out, c);
      } else {
        out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    // Log values carry client input; a JSON line with broken UTF-8 would be rejected whole by
    // log shippers, so one bad byte costs one replacement character instead.
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  out.push_back('"');
}

// Whether an unquoted field value is a JSON literal (true/false/number). Values produced by the
// Field constructors are "true", "false", integers, or fmt's shortest double form, which is a
// JSON number unless it is "nan"/"inf"/"-inf".
bool IsJsonLiteral(std::string_view v) {
  if (v == "true" || v == "false") return true;
  size_t i = v.empty() || v[0] != '-' ? 0 : 1;
  return i < v.size() && v[i] >= '0' && v[i] <= '9';
}

std::string FormatText(const Sink& sink, Level level, std::string_view event,
                       std::initializer_list<Field> fields) {
  std::string line = FormatRfc3339Ms(sink.clock->NowUnixMs());
  line.push_back(' ');
  line += TextLevel(level);
  line.push_back(' ');
  AppendTextValue(line, event);
  if (!t_request_id.empty()) {
    line += " request_id=";
    AppendTextValue(line, t_request_id);
  }
  for (const Field& f : fields) {
    line.push_back(' ');
    line += f.key;
    line.push_back('=');
    AppendTextValue(line, f.value);
  }
  return line;
}

std::string FormatJson(const Sink& sink, Level level, std::string_view event,
                       std::initializer_list<Field> fields) {
  std::string line = "{\"ts\":\"";
  line += FormatRfc3339Ms(sink.clock->NowUnixMs());
  line += "\",\"level\":\"";
  line += JsonLevel(level);
  line += "\",\"event\":";
  AppendJsonString(line, event);
  if (!t_request_id.empty()) {
    line += ",\"request_id\":";
    AppendJsonString(line, t_request_id);
  }
  for (const Field& f : fields) {
    line.push_back(',');
    AppendJsonString(line, f.key);
    line.push_back(':');
    if (!f.quoted && IsJsonLiteral(f.value)) {
      line += f.value;
    } else {
      AppendJsonString(line, f.value);
    }
  }
  line.push_back('}');
  return line;
}

}  // namespace

Result<Level> ParseLevel(std::string_view text) {
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "debug") return Level::kDebug;
  if (lower == "info") return Level::kInfo;
  if (lower == "warn") return Level::kWarn;
  if (lower == "error") return Level::kError;
  if (lower == "off") return Level::kOff;
  return InvalidArgumentError(
      fmt::format("unknown log level \"{}\" (expected debug, info, warn, error or off)", text));
}

Status Init(const Options& options) {
  std::shared_ptr<spdlog::sinks::sink> destination;
  try {
    if (options.file.empty()) {
      destination = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
      destination = std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file,
                                                                        /*truncate=*/false);
    }
  } catch (const std::exception& e) {
    return yunzhi::Error(Code::kUnavailable,
                         fmt::format("cannot open log file {}: {}", options.file, e.what()));
  }
  auto sink = std::make_shared<Sink>();
  sink->logger = MakeLogger(std::move(destination));
  sink->json = options.json;
  sink->clock = options.clock != nullptr ? options.clock : Clock::System();
  SinkSlot().store(std::move(sink), std::memory_order_release);
  g_level.store(static_cast<int>(options.level), std::memory_order_relaxed);
  return OkStatus();
}

bool Enabled(Level level) {
  return level != Level::kOff &&
         static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void Write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (!Enabled(level)) return;
  const std::shared_ptr<const Sink> sink = SinkSlot().load(std::memory_order_acquire);
  const std::string line = sink->json ? FormatJson(*sink, level, event, fields)
                                      : FormatText(*sink, level, event, fields);
  // spdlog serialises writers on the sink's mutex and reports its own I/O errors to stderr.
  sink->logger->log(SpdLevel(level), spdlog::string_view_t(line.data(), line.size()));
}

std::string Field::ToString(double v) { return fmt::format("{}", v); }

ScopedRequestId::ScopedRequestId(std::string id)
    : previous_(std::exchange(t_request_id, std::move(id))) {}

ScopedRequestId::~ScopedRequestId() { t_request_id = std::move(previous_); }

const std::string& CurrentRequestId() { return t_request_id; }

}  // namespace yunzhi::log
