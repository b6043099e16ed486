#include "yunzhi/base/config.h"

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

extern char** environ;  // POSIX: the process environment

namespace yunzhi {
namespace {

// ---------------------------------------------------------------------------------------------
// The settings table.

enum class Kind { kString, kInt, kEnum };

// A setting's value in its canonical form: integers for kInt, strings for kString and kEnum.
using Value = std::variant<int64_t, std::string>;

constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();
// Timeouts are capped at one day: longer is certainly a mistake, and the cap keeps every
// conversion to nanoseconds far from overflow.
constexpr int64_t kMaxTimeoutMs = 86'400'000;

struct Setting {
  std::string_view key;
  Kind kind;
  std::string_view help;
  int64_t min = 0;                                 // kInt
  int64_t max = 0;                                 // kInt
  std::span<const std::string_view> choices = {};  // kEnum: the canonical (lowercase) names
  bool allow_empty = true;                         // kString
  void (*set)(Config&, const Value&);              // precondition: the value passed Validate
  Value (*get)(const Config&);
};

constexpr std::string_view kLevelNames[] = {"debug", "info", "warn", "error", "off"};
constexpr std::string_view kFormatNames[] = {"text", "json"};

std::string_view LevelName(log::Level level) {
  return kLevelNames[static_cast<int>(level)];
}
std::string_view FormatName(LogFormat format) {
  return kFormatNames[static_cast<int>(format)];
}
template <typename E, size_t N>
E EnumFromName(const std::string_view (&names)[N], const Value& v) {
  const auto& s = std::get<std::string>(v);
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<E>(i);
  }
  return static_cast<E>(0);  // unreachable: validated against the same names
}

// Accessor pairs for one field; the lambdas are captureless so they convert to pointers.
#define YZ_STRING_FIELD(field)                                                           \
  .set = [](Config& c, const Value& v) { c.field = std::get<std::string>(v); },          \
  .get = [](const Config& c) -> Value { return c.field; }
#define YZ_INT_FIELD(field)                                                              \
  .set = [](Config& c, const Value& v) {                                                 \
    c.field = static_cast<decltype(c.field)>(std::get<int64_t>(v));                      \
  },                                                                                     \
  .get = [](const Config& c) -> Value { return static_cast<int64_t>(c.field); }

const Setting kSettings[] = {
    {.key = "data_dir",
     .kind = Kind::kString,
     .help = "Directory holding the metadata database (SQLite) and the blob store.",
     .allow_empty = false,
     YZ_STRING_FIELD(data_dir)},
    {.key = "server.host",
     .kind = Kind::kString,
     .help = "Address to listen on; `0.0.0.0` listens on all interfaces.",
     .allow_empty = false,
     YZ_STRING_FIELD(server.host)},
    {.key = "server.port",
     .kind = Kind::kInt,
     .help = "TCP port to listen on; 0 picks a free port.",
     .min = 0,
     .max = 65535,
     YZ_INT_FIELD(server.port)},
    {.key = "server.threads",
     .kind = Kind::kInt,
     .help = "Threads serving HTTP; 0 means one per CPU core.",
     .min = 0,
     .max = 1024,
     YZ_INT_FIELD(server.threads)},
    {.key = "server.max_body_bytes",
     .kind = Kind::kInt,
     .help = "Largest request body accepted, uploads included; larger bodies get 413.",
     .min = 1,
     .max = kNoMax,
     YZ_INT_FIELD(server.max_body_bytes)},
    {.key = "server.header_timeout_ms",
     .kind = Kind::kInt,
     .help = "Time allowed to receive a request's line and headers.",
     .min = 1,
     .max = kMaxTimeoutMs,
     YZ_INT_FIELD(server.header_timeout_ms)},
    {.key = "server.body_timeout_ms",
     .kind = Kind::kInt,
     .help = "Time allowed to receive a request's body.",
     .min = 1,
     .max = kMaxTimeoutMs,
     YZ_INT_FIELD(server.body_timeout_ms)},
    {.key = "server.idle_timeout_ms",
     .kind = Kind::kInt,
     .help = "How long a keep-alive connection may wait for its next request.",
     .min = 1,
     .max = kMaxTimeoutMs,
     YZ_INT_FIELD(server.idle_timeout_ms)},
    {.key = "server.write_timeout_ms",
     .kind = Kind::kInt,
     .help = "Longest one write to a client may take before the connection is dropped.",
     .min = 1,
     .max = kMaxTimeoutMs,
     YZ_INT_FIELD(server.write_timeout_ms)},
    {.key = "server.shutdown_grace_ms",
     .kind = Kind::kInt,
     .help = "On shutdown, how long requests in flight may run before connections are closed.",
     .min = 1,
     .max = kMaxTimeoutMs,
     YZ_INT_FIELD(server.shutdown_grace_ms)},
    {.key = "store.url",
     .kind = Kind::kString,
     .help = "Metadata store URL; empty means SQLite at `<data_dir>/yunzhi.db`; "
             "`postgres://user:password@host/db` for PostgreSQL.",
     YZ_STRING_FIELD(store.url)},
    {.key = "store.busy_timeout_ms",
     .kind = Kind::kInt,
     .help = "How long a store call waits for a lock held by another connection.",
     .min = 1,
     .max = kMaxTimeoutMs,
     YZ_INT_FIELD(store.busy_timeout_ms)},
    {.key = "log.level",
     .kind = Kind::kEnum,
     .help = "Least severe level written.",
     .choices = kLevelNames,
     .set =
         [](Config& c, const Value& v) {
           c.log.level = EnumFromName<log::Level>(kLevelNames, v);
         },
     .get = [](const Config& c) -> Value { return std::string(LevelName(c.log.level)); }},
    {.key = "log.format",
     .kind = Kind::kEnum,
     .help = "`text`: one readable line per event; `json`: one JSON object per line.",
     .choices = kFormatNames,
     .set =
         [](Config& c, const Value& v) {
           c.log.format = EnumFromName<LogFormat>(kFormatNames, v);
         },
     .get = [](const Config& c) -> Value { return std::string(FormatName(c.log.format)); }},
    {.key = "log.file",
     .kind = Kind::kString,
     .help = "File to append log lines to; empty means standard error.",
     YZ_STRING_FIELD(log.file)},
    {.key = "limits.default_requests_per_minute",
     .kind = Kind::kInt,
     .help = "Requests per minute for an API key that has no limit of its own; 0 means unlimited.",
     .min = 0,
     .max = kNoMax,
     YZ_INT_FIELD(limits.default_requests_per_minute)},
    {.key = "security.master_key_file",
     .kind = Kind::kString,
     .help = "File holding the master encryption key (64 hex characters, mode 0600), created at "
             "first start; empty means `<data_dir>/master.key`. `YUNZHI_MASTER_KEY` (64 hex "
             "characters) wins when set. Back it up apart from the data dir.",
     YZ_STRING_FIELD(security.master_key_file)},
    {.key = "billing.currency",
     .kind = Kind::kString,
     .help = "Currency code of prices, balances and statements (ISO 4217, e.g. `CNY`, `USD`).",
     .allow_empty = false,
     YZ_STRING_FIELD(billing.currency)},
    {.key = "billing.trial_credit",
     .kind = Kind::kString,
     .help = "Trial credit granted to each new tenant, an exact decimal amount such as "
             "`\"100.00\"`; spent before any balance. `\"0\"` grants none.",
     .allow_empty = false,
     YZ_STRING_FIELD(billing.trial_credit)},
    {.key = "billing.trial_days",
     .kind = Kind::kInt,
     .help = "Days the trial credit lasts after the tenant's first billable use.",
     .min = 0,
     .max = 3650,
     YZ_INT_FIELD(billing.trial_days)},
    {.key = "billing.enabled",
     .kind = Kind::kInt,
     .help = "1: meter usage and check balances, limits and quotas before inference; 0: neither "
             "(no usage records, no billing routes).",
     .min = 0,
     .max = 1,
     YZ_INT_FIELD(billing.enabled)},
    {.key = "serving.threads",
     .kind = Kind::kInt,
     .help = "Compute threads of each loaded model; 0 means one per CPU core.",
     .min = 0,
     .max = 1024,
     YZ_INT_FIELD(serving.threads)},
    {.key = "serving.context_tokens",
     .kind = Kind::kInt,
     .help = "Longest sequence (prompt + output) per request; 0 means the model's trained "
             "context, at most 4096.",
     .min = 0,
     .max = kNoMax,
     YZ_INT_FIELD(serving.context_tokens)},
    {.key = "serving.kv_cache_tokens",
     .kind = Kind::kInt,
     .help = "Size of each model's KV cache pool in tokens, shared by its running requests and "
             "the prefix cache; 0 means four contexts' worth.",
     .min = 0,
     .max = kNoMax,
     YZ_INT_FIELD(serving.kv_cache_tokens)},
    {.key = "serving.memory_budget_mb",
     .kind = Kind::kInt,
     .help = "Memory for the weights and KV caches of all loaded models; idle models are "
             "unloaded to make room. 0 means 80% of the machine's memory.",
     .min = 0,
     .max = kNoMax,
     YZ_INT_FIELD(serving.memory_budget_mb)},
    {.key = "serving.keep_alive_s",
     .kind = Kind::kInt,
     .help = "How long an idle model stays loaded (a request's `keep_alive` or the model's own "
             "setting wins); -1 keeps models loaded.",
     .min = -1,
     .max = kNoMax,
     YZ_INT_FIELD(serving.keep_alive_s)},
    {.key = "serving.max_running",
     .kind = Kind::kInt,
     .help = "Requests of one model generating together (continuous batching).",
     .min = 1,
     .max = 4096,
     YZ_INT_FIELD(serving.max_running)},
    {.key = "serving.max_waiting",
     .kind = Kind::kInt,
     .help = "Requests of one model waiting for a batch slot; more get 429 with Retry-After.",
     .min = 1,
     .max = 1000000,
     YZ_INT_FIELD(serving.max_waiting)},
    {.key = "serving.max_step_tokens",
     .kind = Kind::kInt,
     .help = "Tokens per batched forward pass; long prompts are processed in chunks of what is "
             "left after the decoding requests.",
     .min = 2,
     .max = 1 << 20,
     YZ_INT_FIELD(serving.max_step_tokens)},
    {.key = "serving.prefix_caching",
     .kind = Kind::kInt,
     .help = "1: reuse the KV cache of shared prompt prefixes across requests; 0: off.",
     .min = 0,
     .max = 1,
     YZ_INT_FIELD(serving.prefix_caching)},
    {.key = "serving.request_threads",
     .kind = Kind::kInt,
     .help = "Worker threads that prepare generation requests (model loading, chat templates, "
             "tokenizing) off the HTTP threads.",
     .min = 1,
     .max = 1024,
     YZ_INT_FIELD(serving.request_threads)},
};

#undef YZ_STRING_FIELD
#undef YZ_INT_FIELD

const Setting* FindSetting(std::string_view key) {
  for (const Setting& s : kSettings) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

// Whether `prefix` is a section ("server" for "server.port").
bool IsSection(std::string_view prefix) {
  for (const Setting& s : kSettings) {
    if (s.key.size() > prefix.size() && s.key.starts_with(prefix) && s.key[prefix.size()] == '.') {
      return true;
    }
  }
  return false;
}

std::string EnvName(std::string_view key) {
  std::string name = "YUNZHI_";
  for (char c : key) {
    name.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return name;
}

// ---------------------------------------------------------------------------------------------
// Validation and text parsing, shared by every source. Messages leave out the key; callers
// prefix them with where the value came from.

// `s` as a TOML basic string (also what users see in error messages).
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out += fmt::format("\\u{:04X}", static_cast<unsigned>(c));
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

std::string ChoiceList(const Setting& s) {
  std::string out;
  for (size_t i = 0; i < s.choices.size(); ++i) {
    if (i > 0) out += ", ";
    out += Quote(s.choices[i]);
  }
  return out;
}

std::string RangeText(const Setting& s) {
  if (s.max == kNoMax) return fmt::format("at least {}", s.min);
  return fmt::format("between {} and {}", s.min, s.max);
}

// Checks a value of the right C++ type against the setting's rules; canonicalises enum names.
// Returns the message ("must be ...") on failure.
std::optional<std::string> Validate(const Setting& s, Value& v) {
  switch (s.kind) {
    case Kind::kInt: {
      const int64_t n = std::get<int64_t>(v);
      if (n < s.min || n > s.max) return fmt::format("must be {}, got {}", RangeText(s), n);
      return std::nullopt;
    }
    case Kind::kString:
      if (!s.allow_empty && std::get<std::string>(v).empty()) return "must not be empty";
      return std::nullopt;
    case Kind::kEnum: {
      std::string& text = std::get<std::string>(v);
      std::string lower = text;
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      for (std::string_view choice : s.choices) {
        if (choice == lower) {
          text = std::move(lower);
          return std::nullopt;
        }
      }
      return fmt::format("must be one of {}, got {}", ChoiceList(s), Quote(text));
    }
  }
  return std::nullopt;
}

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses text from the environment or a flag; returns the value or the message.
Result<Value> ParseText(const Setting& s, std::string_view text) {
  Value v;
  if (s.kind == Kind::kInt) {
    const std::string_view t = TrimSpace(text);
    int64_t n = 0;
    const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
    if (t.empty() || end != t.data() + t.size()) {
      return InvalidArgumentError(fmt::format("must be an integer, got {}", Quote(text)));
    }
    if (ec == std::errc::result_out_of_range) {
      return InvalidArgumentError(fmt::format("must be {}, got {}", RangeText(s), t));
    }
    v = n;
  } else {
    v = std::string(text);
  }
  if (auto message = Validate(s, v)) return InvalidArgumentError(std::move(*message));
  return v;
}

// ---------------------------------------------------------------------------------------------
// Suggestions for unknown keys.

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string_view LastSegment(std::string_view key) {
  const size_t dot = key.rfind('.');
  return dot == std::string_view::npos ? key : key.substr(dot + 1);
}

// " (did you mean \"server.port\"?)" or "" when nothing is close.
std::string Suggestion(std::string_view unknown) {
  // A right name in the wrong section ("port" at top level, "level" under [server]).
  for (const Setting& s : kSettings) {
    if (LastSegment(s.key) == LastSegment(unknown)) {
      return fmt::format(" (did you mean {}?)", Quote(s.key));
    }
  }
  const Setting* best = nullptr;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const Setting& s : kSettings) {
    const size_t d = EditDistance(unknown, s.key);
    if (d < best_distance) {
      best_distance = d;
      best = &s;
    }
  }
  if (best != nullptr && best_distance <= std::max<size_t>(2, unknown.size() / 3)) {
    return fmt::format(" (did you mean {}?)", Quote(best->key));
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// The TOML file.

std::string Position(const std::string& path, const toml::source_region& where) {
  return fmt::format("{}:{}:{}", path, where.begin.line, where.begin.column);
}

std::string DescribeNode(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "string " + Quote(node.as_string()->get());
    case toml::node_type::integer: return fmt::format("integer {}", node.as_integer()->get());
    case toml::node_type::floating_point: {
      std::string text = fmt::format("{}", node.as_floating_point()->get());
      // fmt writes 1.0 as "1"; show it the way it was written, as a float.
      if (text.find_first_not_of("-0123456789") == std::string::npos) text += ".0";
      return "float " + text;
    }
    case toml::node_type::boolean:
      return node.as_boolean()->get() ? "boolean true" : "boolean false";
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

// Builder: applies values in precedence order, recording origins and collecting errors.
class Loader {
 public:
  Loader() {
    for (const Setting& s : kSettings) loaded_.origin_of[std::string(s.key)] = "default";
  }

  void Apply(const Setting& s, Value v, std::string_view origin) {
    s.set(loaded_.config, v);
    loaded_.origin_of[std::string(s.key)] = origin;
  }
  void Fail(std::string message) { errors_.push_back(std::move(message)); }

  void ReadFile(const std::string& path, std::string_view named_by) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) {
      Fail(fmt::format("config file {} ({}) does not exist", Quote(path), named_by));
      return;
    }
    if (!std::filesystem::is_regular_file(status)) {
      Fail(fmt::format("config file {} ({}) is not a regular file", Quote(path), named_by));
      return;
    }
    loaded_.file = path;
    toml::table root;
    try {
      root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      Fail(fmt::format("{}: {}", Position(path, e.source()), e.description()));
      return;
    } catch (const std::exception& e) {
      Fail(fmt::format("config file {}: {}", Quote(path), e.what()));
      return;
    }
    ReadTable(path, root, "");
    // toml++ iterates keys in sorted order; report in file order, as an editor would show them.
    std::stable_sort(file_errors_.begin(), file_errors_.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [where, message] : file_errors_) Fail(std::move(message));
    file_errors_.clear();
  }

  // Records an error at a place in the config file: "<file>:<line>:<column>: <message>".
  void FailAt(const std::string& path, const toml::source_region& where, std::string_view message) {
    file_errors_.emplace_back(std::pair(where.begin.line, where.begin.column),
                              fmt::format("{}: {}", Position(path, where), message));
  }

  void ReadTable(const std::string& path, const toml::table& table, std::string_view prefix) {
    for (const auto& [toml_key, node] : table) {
      const std::string key = prefix.empty() ? std::string(toml_key.str())
                                             : fmt::format("{}.{}", prefix, toml_key.str());
      if (const Setting* s = FindSetting(key)) {
        ReadValue(path, *s, node);
      } else if (IsSection(key)) {
        if (const toml::table* sub = node.as_table()) {
          ReadTable(path, *sub, key);
        } else {
          FailAt(path, toml_key.source(),
                 fmt::format("{} must be a table, got {}", key, DescribeNode(node)));
        }
      } else if (const toml::table* sub = node.as_table(); sub != nullptr && !sub->empty()) {
        // A misspelt section: report its keys, whose full names make better suggestions
        // ("sever.port" -> "server.port").
        ReadTable(path, *sub, key);
      } else {
        FailAt(path, toml_key.source(),
               fmt::format("unknown setting {}{}", Quote(key), Suggestion(key)));
      }
    }
  }

  void ReadValue(const std::string& path, const Setting& s, const toml::node& node) {
    Value v;
    if (s.kind == Kind::kInt) {
      const auto* n = node.as_integer();
      if (n == nullptr) {
        FailAt(path, node.source(),
               fmt::format("{} must be an integer, got {}", s.key, DescribeNode(node)));
        return;
      }
      v = n->get();
    } else {
      const auto* str = node.as_string();
      if (str == nullptr) {
        FailAt(path, node.source(),
               fmt::format("{} must be a string, got {}", s.key, DescribeNode(node)));
        return;
      }
      v = str->get();
    }
    if (auto message = Validate(s, v)) {
      FailAt(path, node.source(), fmt::format("{} {}", s.key, *message));
      return;
    }
    Apply(s, std::move(v), "file");
  }

  void ReadEnv(const std::map<std::string, std::string>& env) {
    for (const Setting& s : kSettings) {
      const std::string name = EnvName(s.key);
      const auto it = env.find(name);
      if (it == env.end()) continue;
      auto v = ParseText(s, it->second);
      if (!v) {
        Fail(fmt::format("environment variable {} ({}) {}", name, s.key, v.error().message));
        continue;
      }
      Apply(s, std::move(*v), "env");
    }
  }

  void ReadOverrides(const std::vector<std::pair<std::string, std::string>>& overrides) {
    for (const auto& [key, text] : overrides) {
      const Setting* s = FindSetting(key);
      if (s == nullptr) {
        Fail(fmt::format("command-line override: unknown setting {}{}", Quote(key),
                         Suggestion(key)));
        continue;
      }
      auto v = ParseText(*s, text);
      if (!v) {
        Fail(fmt::format("command-line override {} {}", key, v.error().message));
        continue;
      }
      Apply(*s, std::move(*v), "flag");
    }
  }

  Result<LoadedConfig> Finish() && {
    if (errors_.empty()) return std::move(loaded_);
    std::string message;
    for (const std::string& e : errors_) {
      if (!message.empty()) message += "; ";
      message += e;
    }
    return InvalidArgumentError(std::move(message));
  }

 private:
  LoadedConfig loaded_;
  std::vector<std::string> errors_;
  // Errors of the file being read, keyed by (line, column) for sorting.
  using SourcePosition = std::pair<toml::source_index, toml::source_index>;  // line, column
  std::vector<std::pair<SourcePosition, std::string>> file_errors_;
};

std::string ValueAsToml(const Setting& s, const Value& v) {
  if (const auto* n = std::get_if<int64_t>(&v)) return std::to_string(*n);
  return Quote(std::get<std::string>(v));
}

std::string_view SectionOf(std::string_view key) {
  const size_t dot = key.find('.');
  return dot == std::string_view::npos ? std::string_view() : key.substr(0, dot);
}

}  // namespace

log::Options Config::LogOptions() const {
  yunzhi::log::Options o;
  o.level = log.level;
  o.json = log.format == LogFormat::kJson;
  o.file = log.file;
  return o;
}

std::map<std::string, std::string> ConfigSources::FromProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    if (!text.starts_with("YUNZHI_")) continue;
    const size_t eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return env;
}

Result<LoadedConfig> LoadConfig(const ConfigSources& sources) {
  try {
    Loader loader;
    if (!sources.file.empty()) {
      loader.ReadFile(sources.file, "given on the command line");
    } else if (auto it = sources.env.find("YUNZHI_CONFIG");
               it != sources.env.end() && !it->second.empty()) {
      loader.ReadFile(it->second, "named by YUNZHI_CONFIG");
    }
    loader.ReadEnv(sources.env);
    loader.ReadOverrides(sources.overrides);
    return std::move(loader).Finish();
  } catch (const std::exception& e) {
    // Only allocation failures can get here; the contract is "never throws".
    return InternalError(fmt::format("loading configuration: {}", e.what()));
  }
}

std::string RenderConfigReference() {
  const Config defaults;
  std::string out =
      "| Key | Type | Default | Environment variable | Allowed values | Description |\n"
      "|---|---|---|---|---|---|\n";
  for (const Setting& s : kSettings) {
    std::string type;
    std::string allowed;
    switch (s.kind) {
      case Kind::kString:
        type = "string";
        allowed = s.allow_empty ? "any" : "not empty";
        break;
      case Kind::kInt:
        type = "integer";
        allowed = s.max == kNoMax ? fmt::format("≥ {}", s.min)
                                  : fmt::format("{} – {}", s.min, s.max);
        break;
      case Kind::kEnum:
        type = "string";
        for (size_t i = 0; i < s.choices.size(); ++i) {
          if (i > 0) allowed += ", ";
          allowed += fmt::format("`{}`", s.choices[i]);
        }
        break;
    }
    out += fmt::format("| `{}` | {} | `{}` | `{}` | {} | {} |\n", s.key, type,
                       ValueAsToml(s, s.get(defaults)), EnvName(s.key), allowed, s.help);
  }
  return out;
}

std::string RenderEffectiveConfig(const LoadedConfig& loaded) {
  std::string out =
      "# Effective Yunzhi configuration. The comment after each value names its source;\n"
      "# precedence, lowest to highest: default < file < env < flag.\n";
  if (!loaded.file.empty()) out += fmt::format("# file: {}\n", loaded.file);

  // Top-level keys first (TOML puts everything after a [section] header into that section),
  // then each section in table order.
  std::vector<std::string_view> sections = {""};
  for (const Setting& s : kSettings) {
    const std::string_view section = SectionOf(s.key);
    if (std::find(sections.begin(), sections.end(), section) == sections.end()) {
      sections.push_back(section);
    }
  }
  for (std::string_view section : sections) {
    out += section.empty() ? "\n" : fmt::format("\n[{}]\n", section);
    for (const Setting& s : kSettings) {
      if (SectionOf(s.key) != section) continue;
      const auto it = loaded.origin_of.find(std::string(s.key));
      const std::string origin = it == loaded.origin_of.end() ? "default" : it->second;
      const std::string name = section.empty() ? std::string(s.key)
                                               : std::string(s.key.substr(section.size() + 1));
      out += fmt::format("{} = {}  # {}{}\n", name, ValueAsToml(s, s.get(loaded.config)), origin,
                         origin == "env" ? " " + EnvName(s.key) : "");
    }
  }
  return out;
}

}  // namespace yunzhi
