// Process configuration: one plain struct with documented defaults, and the loader that fills it.
//
// Sources, lowest to highest precedence:
//   built-in defaults < TOML file < YUNZHI_* environment variables < command-line overrides.
// Every setting has a dotted key ("server.port"), an environment variable derived from it
// (YUNZHI_ + key upper-cased with '.' replaced by '_': YUNZHI_SERVER_PORT) and a range or set of
// allowed values, all declared in one table in config.cc. That table drives parsing of every
// source, validation, RenderConfigReference() (pasted into docs/configuration.md and checked by a
// test) and RenderEffectiveConfig(). To add a setting: add the field below with its default, add
// one row to the table, regenerate the docs.
//
// Thread safety: Config is a plain value. The functions here are thread-safe (they touch no
// shared state; FromProcessEnvironment reads the environment, which must not be modified
// concurrently).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "yunzhi/base/log.h"
#include "yunzhi/base/status.h"

namespace yunzhi {

enum class LogFormat { kText, kJson };

// HTTP server. Timeouts are per connection; see the reference table for exact meanings.
struct ServerConfig {
  std::string host = "127.0.0.1";              // interface to listen on; "0.0.0.0" for all
  int port = 8080;                             // 0: pick a free port
  int threads = 0;                             // threads serving HTTP; 0: one per CPU core
  int64_t max_body_bytes = int64_t{32} << 20;  // larger request bodies get 413
  int64_t header_timeout_ms = 10'000;
  int64_t body_timeout_ms = 60'000;
  int64_t idle_timeout_ms = 75'000;
  int64_t write_timeout_ms = 60'000;
  int64_t shutdown_grace_ms = 30'000;

  bool operator==(const ServerConfig&) const = default;
};

// Metadata store.
struct StoreConfig {
  std::string url;  // empty: SQLite at <data_dir>/yunzhi.db
  int64_t busy_timeout_ms = 5'000;

  bool operator==(const StoreConfig&) const = default;
};

struct LogConfig {
  log::Level level = log::Level::kInfo;
  LogFormat format = LogFormat::kText;
  std::string file;  // empty: standard error

  bool operator==(const LogConfig&) const = default;
};

struct LimitsConfig {
  int64_t default_requests_per_minute = 0;  // per API key without its own limit; 0: unlimited

  bool operator==(const LimitsConfig&) const = default;
};

struct SecurityConfig {
  // File holding the master encryption key (64 hex characters, mode 0600); empty means
  // <data_dir>/master.key. The YUNZHI_MASTER_KEY environment variable, when set, wins.
  std::string master_key_file;

  bool operator==(const SecurityConfig&) const = default;
};

struct BillingConfig {
  std::string currency = "CNY";     // ISO 4217 code shown on prices and statements
  std::string trial_credit = "0";   // decimal amount granted to each new tenant ("100.00")
  int64_t trial_days = 30;          // how long the trial credit lasts
  int enabled = 1;                  // 0: no usage records, reservations or balance checks

  bool operator==(const BillingConfig&) const = default;
};

struct ServingConfig {
  int threads = 0;                  // compute threads per loaded model; 0: one per CPU core
  int64_t context_tokens = 0;       // per sequence; 0: min(the model's trained context, 4096)
  int64_t kv_cache_tokens = 0;      // KV pool per model; 0: 4 contexts' worth
  int64_t memory_budget_mb = 0;     // weights + KV of all loaded models; 0: 80% of RAM
  int64_t keep_alive_s = 300;       // idle time before a model unloads; -1: never
  int max_running = 16;             // sequences batched together per model
  int max_waiting = 256;            // queued requests per model before 429
  int64_t max_step_tokens = 160;    // tokens per batched forward pass (engine::SchedulerOptions)
  bool prefix_caching = true;
  int request_threads = 4;          // workers preparing requests (model loading, templates)

  bool operator==(const ServingConfig&) const = default;
};

struct Config {
  std::string data_dir = "./data";  // metadata DB and blobs
  ServerConfig server;
  StoreConfig store;
  LogConfig log;
  LimitsConfig limits;
  SecurityConfig security;
  BillingConfig billing;
  ServingConfig serving;

  // The logger options these settings describe (for yunzhi::log::Init).
  yunzhi::log::Options LogOptions() const;

  bool operator==(const Config&) const = default;
};

// Where to read configuration from. Everything is injected so that tests need no real
// environment or files beyond the ones they create.
struct ConfigSources {
  // Path of a TOML file (from --config). Must exist when given. When empty, the YUNZHI_CONFIG
  // entry of `env` names the file (which must then exist); when that is absent too, no file is
  // read.
  std::string file;
  // Environment variables. Only YUNZHI_* names matter; unknown YUNZHI_* names are ignored.
  std::map<std::string, std::string> env;
  // "key" -> "value" as text, e.g. {"server.port", "9000"}; applied in order (last wins).
  std::vector<std::pair<std::string, std::string>> overrides;

  // The YUNZHI_* variables of this process's environment.
  static std::map<std::string, std::string> FromProcessEnvironment();
};

struct LoadedConfig {
  Config config;
  // For every setting key: "default", "file", "env" or "flag" (the source that set it last).
  std::map<std::string, std::string> origin_of;
  // The TOML file that was read; empty when none.
  std::string file;
};

// Builds the configuration from `sources`. Never throws.
// Errors, all kInvalidArgument, each naming the source and the setting (several are reported
// together, separated by "; "):
//   - the file does not exist or cannot be read;
//   - TOML syntax error: "<file>:<line>:<column>: <toml++'s description>";
//   - unknown key in the file or in overrides, with the closest known key suggested;
//   - wrong type: "<file>:3:8: server.port must be an integer, got string \"abc\"";
//   - out of range / not an allowed value / empty where a value is required;
//   - a bad environment value, naming the variable: "environment variable YUNZHI_SERVER_PORT
//     (server.port) must be an integer, got \"abc\"".
Result<LoadedConfig> LoadConfig(const ConfigSources& sources);

// The reference of all settings as a Markdown table (key, type, default, environment variable,
// allowed values, description). docs/configuration.md contains this text verbatim.
std::string RenderConfigReference();

// The effective configuration as a TOML document that LoadConfig accepts, with a comment after
// every value saying where it came from ("# default", "# file", "# env YUNZHI_...", "# flag").
std::string RenderEffectiveConfig(const LoadedConfig& loaded);

}  // namespace yunzhi
