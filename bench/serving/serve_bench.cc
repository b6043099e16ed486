// serve_bench: a load generator for a running `yunzhi serve` (or any OpenAI-compatible server).
//
// It drives POST /v1/completions with streamed answers and token-id prompts (so prompt lengths
// are exact) and measures, per request, the time to first token (TTFT: last byte of the request
// written -> first content event read), the time per output token (TPOT) and the gaps between
// tokens. Two experiments, printed as Markdown for docs/benchmarks.md:
//
//  1. Concurrency: N closed-loop streams (N = 1, 4, 8, 16 by default), each a thread with its own
//     keep-alive connection sending requests back to back for a fixed duration. Every request has
//     a fresh random prompt, so the prefix cache cannot help. Aggregate throughput counts the
//     generated tokens that arrived inside the measurement window; TTFT/TPOT cover the requests
//     sent inside it. Before the first level one request loads the model (its TTFT is reported
//     as the cold start) and two more warm it up; none of them is counted.
//     Arrivals are "staggered" by default: stream i starts i/N of a single-stream request
//     duration after stream 0, so requests arrive one at a time as they would from independent
//     clients (closed loops keep that phase). "burst" starts all streams together.
//  2. Prefix cache: requests sharing one long prefix (1000 tokens) with distinct short suffixes
//     (16 tokens), sent one after another: the first misses, the rest should hit; compared with
//     requests of the same length whose prompts share nothing. Reports the server's
//     usage.prompt_tokens_details.cached_tokens.
//
// Run (see bench/serving/serve_bench.sh, which also starts a server on a random-weight model):
//   serve_bench --port 8080 --key yz-... --model bench/qwen05b
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include "sse_client.h"

namespace yunzhi::bench {
namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string key;
  std::string model = "bench/qwen05b";
  std::vector<int> concurrency = {1, 4, 8, 16};
  double duration_s = 60;
  int prompt_tokens = 128;
  int max_tokens = 64;
  std::string arrival = "staggered";  // or "burst"
  int32_t token_lo = 1000;            // prompt token ids are drawn from [token_lo, token_hi)
  int32_t token_hi = 150000;
  uint64_t seed = 42;
  int prefix_tokens = 1000;
  int suffix_tokens = 16;
  int prefix_requests = 5;    // per case
  int prefix_max_tokens = 4;  // generated per prefix request (only TTFT matters)
  int block_tokens = 16;      // the server's KV block: only whole blocks can be shared
  bool skip_concurrency = false;
  bool skip_prefix = false;
  double timeout_s = 600;
  std::string label;  // free text for the report header (threads, machine...)
};

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// 1-minute load average of the machine, from /proc/loadavg; -1 if unreadable.
double LoadAverage() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return load;
}

// Nearest-rank percentile (p in [0, 100]) of `v`; NaN when empty.
double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
}

std::string Fmt(double v, int decimals = 1) {
  if (std::isnan(v)) return "–";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int n, const Options& o) {
  std::uniform_int_distribution<int32_t> dist(o.token_lo, o.token_hi - 1);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& id : t) id = dist(rng);
  return t;
}

// One streamed completion, as observed by the client.
struct RequestResult {
  bool ok = false;
  std::string error;  // when !ok
  int status = 0;
  std::string retry_after;
  Clock::time_point sent;
  std::vector<Clock::time_point> token_times;  // arrival of each content event
  int64_t prompt_tokens = -1;                  // from usage; -1 when absent
  int64_t completion_tokens = -1;
  int64_t cached_tokens = -1;
  bool done = false;  // saw "data: [DONE]"

  double ttft_ms() const { return token_times.empty() ? std::nan("") : Ms(token_times[0] - sent); }
  // Tokens generated: the server's count, else the content events seen.
  int64_t n_tokens() const {
    return completion_tokens >= 0 ? completion_tokens : static_cast<int64_t>(token_times.size());
  }
  double tpot_ms() const {
    const int64_t n = n_tokens();
    if (token_times.size() < 2 || n < 2) return std::nan("");
    return Ms(token_times.back() - token_times.front()) / static_cast<double>(n - 1);
  }
};

std::string RequestBody(const Options& o, const std::vector<int32_t>& prompt, int max_tokens) {
  json::array ids;
  ids.reserve(prompt.size());
  for (int32_t t : prompt) ids.emplace_back(t);
  json::object body;
  body["model"] = o.model;
  body["prompt"] = std::move(ids);
  body["max_tokens"] = max_tokens;
  body["stream"] = true;
  body["stream_options"] = json::object{{"include_usage", true}};
  body["temperature"] = 0;
  body["ignore_eos"] = true;
  return json::serialize(body);
}

// Reads an integer member, or -1.
int64_t IntAt(const json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end() || !it->value().is_number()) return -1;
  return it->value().to_number<int64_t>();
}

RequestResult RunRequest(SseClient& client, const Options& o, const std::vector<int32_t>& prompt,
                         int max_tokens) {
  RequestResult r;
  const std::string body = RequestBody(o, prompt, max_tokens);
  auto on_event = [&](std::string_view data, Clock::time_point arrived) {
    if (data == "[DONE]") {
      r.done = true;
      return true;
    }
    boost::system::error_code ec;
    json::value v = json::parse(data, ec);
    if (ec || !v.is_object()) {
      r.error = "unparsable event: " + std::string(data.substr(0, 200));
      return false;
    }
    const json::object& chunk = v.as_object();
    if (auto it = chunk.find("error"); it != chunk.end()) {
      r.error = "error event: " + json::serialize(it->value()).substr(0, 300);
      return false;
    }
    if (auto it = chunk.find("choices");
        it != chunk.end() && it->value().is_array() && !it->value().as_array().empty()) {
      // A content event carries a token. An event with empty text that only announces the
      // finish_reason carries none (servers differ on whether they send one).
      const json::value& c = it->value().as_array()[0];
      bool empty_text = true, finished = false;
      if (c.is_object()) {
        const json::object& co = c.as_object();
        if (auto t = co.find("text"); t != co.end() && t->value().is_string()) {
          empty_text = t->value().as_string().empty();
        }
        if (auto f = co.find("finish_reason"); f != co.end() && !f->value().is_null()) {
          finished = true;
        }
      }
      if (!(empty_text && finished)) r.token_times.push_back(arrived);
    }
    if (auto it = chunk.find("usage"); it != chunk.end() && it->value().is_object()) {
      const json::object& u = it->value().as_object();
      r.prompt_tokens = IntAt(u, "prompt_tokens");
      r.completion_tokens = IntAt(u, "completion_tokens");
      if (auto d = u.find("prompt_tokens_details"); d != u.end() && d->value().is_object()) {
        r.cached_tokens = IntAt(d->value().as_object(), "cached_tokens");
      }
    }
    return true;
  };
  PostResult post = client.PostStream("/v1/completions", o.key, body, on_event, &r.sent);
  r.status = post.status;
  r.retry_after = post.retry_after;
  if (!post.ok) {
    r.error = "transport: " + post.error;
  } else if (post.status != 200) {
    r.error = "HTTP " + std::to_string(post.status) + ": " + post.body.substr(0, 300);
  } else if (r.error.empty() && !r.done) {
    r.error = "stream ended without [DONE]";
  } else if (r.error.empty() && r.token_times.empty()) {
    r.error = "no content event";
  }
  r.ok = r.error.empty();
  return r;
}

// ---------------------------------------------------------------------------------------------
// Concurrency levels.

struct LevelStats {
  int n_streams = 0;
  int n_requests = 0;  // completed and counted (sent inside the window)
  int n_errors = 0;
  int n_rejected = 0;  // 429/503 answers
  std::string first_error;
  double tokens_per_s = 0;
  double ttft_p50_ms = 0, ttft_p99_ms = 0;
  double tpot_p50_ms = 0, itl_p99_ms = 0;
  double load_before = 0, load_after = 0;
  double window_s = 0;
};

LevelStats RunLevel(const Options& o, int n_streams, double request_s) {
  LevelStats s;
  s.n_streams = n_streams;
  s.load_before = LoadAverage();
  const double stagger_s = o.arrival == "burst" ? 0.0 : request_s / n_streams;
  const auto t0 = Clock::now() + std::chrono::milliseconds(50);
  const auto window_start = t0 + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(stagger_s * (n_streams - 1)));
  const auto window_end = window_start + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(o.duration_s));

  std::vector<std::vector<RequestResult>> per_stream(static_cast<size_t>(n_streams));
  std::atomic<int> n_errors{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < n_streams; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937_64 rng(o.seed * 1000003 + static_cast<uint64_t>(n_streams) * 1009 +
                          static_cast<uint64_t>(i));
      SseClient client(o.host, static_cast<uint16_t>(o.port),
                       std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)));
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(stagger_s * i)));
      while (Clock::now() < window_end && n_errors.load() < 50) {
        RequestResult r =
            RunRequest(client, o, RandomTokens(rng, o.prompt_tokens, o), o.max_tokens);
        const bool ok = r.ok;
        const int status = r.status;
        const std::string retry_after = r.retry_after;
        per_stream[static_cast<size_t>(i)].push_back(std::move(r));
        if (ok) continue;
        n_errors.fetch_add(1);
        // Overload answers say when to come back; anything else: do not spin on a dead server.
        double wait_s = 0.2;
        if (status == 429 || status == 503) wait_s = std::max(1.0, std::atof(retry_after.c_str()));
        std::this_thread::sleep_for(std::chrono::duration<double>(wait_s));
      }
    });
  }
  for (auto& t : threads) t.join();
  s.load_after = LoadAverage();
  s.window_s = o.duration_s;

  std::vector<double> ttft, tpot, itl;
  double tokens_in_window = 0;
  for (const auto& stream : per_stream) {
    for (const RequestResult& r : stream) {
      if (!r.ok) {
        if (r.status == 429 || r.status == 503) {
          ++s.n_rejected;
        } else {
          ++s.n_errors;
        }
        if (s.first_error.empty()) s.first_error = r.error;
        continue;
      }
      // Tokens inside the window; when an event carries several tokens, the request's tokens
      // are spread evenly over its events.
      int64_t in_window = 0;
      for (auto t : r.token_times) in_window += (t >= window_start && t <= window_end) ? 1 : 0;
      tokens_in_window += static_cast<double>(r.n_tokens()) * static_cast<double>(in_window) /
                          static_cast<double>(r.token_times.size());
      if (r.sent < window_start) continue;  // ramp-up: not a steady-state request
      ++s.n_requests;
      ttft.push_back(r.ttft_ms());
      if (double t = r.tpot_ms(); !std::isnan(t)) tpot.push_back(t);
      for (size_t k = 1; k < r.token_times.size(); ++k) {
        itl.push_back(Ms(r.token_times[k] - r.token_times[k - 1]));
      }
    }
  }
  s.tokens_per_s = tokens_in_window / o.duration_s;
  s.ttft_p50_ms = Percentile(ttft, 50);
  s.ttft_p99_ms = Percentile(ttft, 99);
  s.tpot_p50_ms = Percentile(tpot, 50);
  s.itl_p99_ms = Percentile(itl, 99);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Prefix cache.

struct PrefixCase {
  std::string name;
  std::vector<RequestResult> results;
};

std::string CachedList(const std::vector<RequestResult>& rs, size_t from, size_t to) {
  std::string out;
  for (size_t i = from; i < to && i < rs.size(); ++i) {
    if (!out.empty()) out += ", ";
    out += rs[i].cached_tokens >= 0 ? std::to_string(rs[i].cached_tokens) : "?";
  }
  return out;
}

std::vector<double> Ttfts(const std::vector<RequestResult>& rs, size_t from, size_t to) {
  std::vector<double> v;
  for (size_t i = from; i < to && i < rs.size(); ++i) {
    if (rs[i].ok) v.push_back(rs[i].ttft_ms());
  }
  return v;
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"Load generator for the OpenAI-compatible /v1/completions of `yunzhi serve`"};
  app.add_option("--host", o.host, "server address (default 127.0.0.1)");
  app.add_option("--port", o.port, "server port")->required();
  app.add_option("--key", o.key, "API key (default: $YUNZHI_API_KEY)");
  app.add_option("--model", o.model, "model name (default bench/qwen05b)");
  app.add_option("--concurrency", o.concurrency, "stream counts (default 1 4 8 16)")
      ->delimiter(',');
  app.add_option("--duration", o.duration_s, "seconds measured per level (default 60)");
  app.add_option("--prompt-tokens", o.prompt_tokens, "prompt length (default 128)");
  app.add_option("--max-tokens", o.max_tokens, "tokens generated per request (default 64)");
  app.add_option("--arrival", o.arrival, "staggered | burst (default staggered)")
      ->check(CLI::IsMember({"staggered", "burst"}));
  app.add_option("--token-lo", o.token_lo, "smallest random prompt token id (default 1000)");
  app.add_option("--token-hi", o.token_hi, "random prompt token ids are below this (150000)");
  app.add_option("--seed", o.seed, "random seed of the prompts (default 42)");
  app.add_option("--prefix-tokens", o.prefix_tokens, "shared prefix length (default 1000)");
  app.add_option("--suffix-tokens", o.suffix_tokens, "distinct suffix length (default 16)");
  app.add_option("--prefix-requests", o.prefix_requests, "requests per prefix case (default 5)");
  app.add_option("--prefix-max-tokens", o.prefix_max_tokens, "generated per prefix request (4)");
  app.add_option("--block-tokens", o.block_tokens, "server's KV block size (default 16)");
  app.add_flag("--skip-concurrency", o.skip_concurrency, "only the prefix-cache experiment");
  app.add_flag("--skip-prefix", o.skip_prefix, "only the concurrency experiment");
  app.add_option("--timeout", o.timeout_s, "seconds without a byte before a request fails (600)");
  app.add_option("--label", o.label, "text for the report header (threads, build...)");
  CLI11_PARSE(app, argc, argv);
  if (o.key.empty()) {
    if (const char* k = std::getenv("YUNZHI_API_KEY")) o.key = k;
  }
  if (o.token_hi <= o.token_lo) {
    std::fprintf(stderr, "--token-hi must be above --token-lo\n");
    return 2;
  }
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000));
  std::mt19937_64 rng(o.seed);
  std::ostringstream md;

  // Cold start, then warm-up: not counted anywhere else.
  double request_s = 0;
  {
    SseClient client(o.host, static_cast<uint16_t>(o.port), timeout);
    std::fprintf(stderr, "cold request (loads the model)...\n");
    const double load = LoadAverage();
    RequestResult cold = RunRequest(client, o, RandomTokens(rng, o.prompt_tokens, o), o.max_tokens);
    if (!cold.ok) {
      std::fprintf(stderr, "cold request failed: %s\n", cold.error.c_str());
      return 1;
    }
    std::vector<double> latencies;
    for (int i = 0; i < 2; ++i) {
      RequestResult w = RunRequest(client, o, RandomTokens(rng, o.prompt_tokens, o), o.max_tokens);
      if (!w.ok) {
        std::fprintf(stderr, "warm-up request failed: %s\n", w.error.c_str());
        return 1;
      }
      latencies.push_back(Seconds(w.token_times.back() - w.sent));
    }
    request_s = Percentile(latencies, 50);
    md << "Cold start (first request, model load included): TTFT " << Fmt(cold.ttft_ms(), 0)
       << " ms, prompt " << cold.prompt_tokens << " tokens, " << cold.n_tokens()
       << " generated; load " << Fmt(load, 2)
       << ". Warm single request: " << Fmt(request_s * 1000, 0) << " ms end to end.\n\n";
    std::fprintf(stderr, "cold TTFT %.0f ms, warm request %.0f ms\n", cold.ttft_ms(),
                 request_s * 1000);
  }

  if (!o.skip_concurrency) {
    std::vector<LevelStats> levels;
    for (int n : o.concurrency) {
      std::fprintf(stderr, "%d stream(s), %.0f s...\n", n, o.duration_s);
      levels.push_back(RunLevel(o, n, request_s));
      const LevelStats& s = levels.back();
      std::fprintf(stderr,
                   "  %.1f tok/s, TTFT p50 %.0f p99 %.0f ms, TPOT p50 %.1f ms, %d req, %d err, "
                   "%d rejected, load %.2f->%.2f %s\n",
                   s.tokens_per_s, s.ttft_p50_ms, s.ttft_p99_ms, s.tpot_p50_ms, s.n_requests,
                   s.n_errors, s.n_rejected, s.load_before, s.load_after, s.first_error.c_str());
    }
    const LevelStats* single = nullptr;
    const LevelStats* eight = nullptr;
    for (const auto& s : levels) {
      if (s.n_streams == 1) single = &s;
      if (s.n_streams == 8) eight = &s;
    }
    md << "| streams | requests | generated tok/s | × 1 stream | TTFT p50 ms | TTFT p99 ms | "
          "TPOT p50 ms | inter-token p99 ms | errors / 429-503 | load (1 min) before → after |\n"
       << "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
    for (const auto& s : levels) {
      md << "| " << s.n_streams << " | " << s.n_requests << " | " << Fmt(s.tokens_per_s) << " | "
         << (single != nullptr && single->tokens_per_s > 0
                 ? Fmt(s.tokens_per_s / single->tokens_per_s, 2)
                 : "–")
         << " | " << Fmt(s.ttft_p50_ms, 0) << " | " << Fmt(s.ttft_p99_ms, 0) << " | "
         << Fmt(s.tpot_p50_ms) << " | " << Fmt(s.itl_p99_ms) << " | " << s.n_errors << " / "
         << s.n_rejected << " | " << Fmt(s.load_before, 2) << " → " << Fmt(s.load_after, 2)
         << " |\n";
    }
    md << "\n";
    for (const auto& s : levels) {
      if (!s.first_error.empty()) {
        md << "First error at " << s.n_streams << " streams: `" << s.first_error << "`\n\n";
      }
    }
    if (single != nullptr && eight != nullptr) {
      const double x = eight->tokens_per_s / single->tokens_per_s;
      const double t = eight->ttft_p50_ms / single->ttft_p50_ms;
      md << "Targets: throughput at 8 streams " << Fmt(x, 2)
         << "× one stream (target ≥ 3×: " << (x >= 3 ? "met" : "not met")
         << "); TTFT p50 at 8 streams " << Fmt(t, 2)
         << "× one stream (target < 2×: " << (t < 2 ? "met" : "not met") << ").\n\n";
    }
  }

  if (!o.skip_prefix) {
    SseClient client(o.host, static_cast<uint16_t>(o.port), timeout);
    const int n_prompt = o.prefix_tokens + o.suffix_tokens;
    const size_t n = static_cast<size_t>(std::max(2, o.prefix_requests));
    const double load = LoadAverage();
    // Unique prompts first: nothing is shared, every request prefills all of its prompt.
    std::vector<RequestResult> unique, shared;
    std::fprintf(stderr, "prefix cache: %zu unique %d-token prompts...\n", n, n_prompt);
    for (size_t i = 0; i < n; ++i) {
      unique.push_back(RunRequest(client, o, RandomTokens(rng, n_prompt, o), o.prefix_max_tokens));
    }
    std::fprintf(stderr, "prefix cache: %zu prompts sharing a %d-token prefix...\n", n,
                 o.prefix_tokens);
    const std::vector<int32_t> prefix = RandomTokens(rng, o.prefix_tokens, o);
    for (size_t i = 0; i < n; ++i) {
      std::vector<int32_t> p = prefix;
      const std::vector<int32_t> suffix = RandomTokens(rng, o.suffix_tokens, o);
      p.insert(p.end(), suffix.begin(), suffix.end());
      shared.push_back(RunRequest(client, o, p, o.prefix_max_tokens));
    }
    const double load_after = LoadAverage();
    for (const auto* rs : {&unique, &shared}) {
      for (const auto& r : *rs) {
        if (!r.ok) md << "Prefix request failed: `" << r.error << "`\n\n";
      }
    }
    const std::vector<double> unique_ttft = Ttfts(unique, 0, n);
    const std::vector<double> miss_ttft = Ttfts(shared, 0, 1);
    const std::vector<double> hit_ttft = Ttfts(shared, 1, n);
    const double hit = Percentile(hit_ttft, 50);
    md << "| " << n_prompt
       << "-token prompts | requests | TTFT p50 ms | TTFT min–max ms | "
          "cached_tokens |\n|---|---:|---:|---:|---|\n";
    md << "| unique prompts | " << unique_ttft.size() << " | "
       << Fmt(Percentile(unique_ttft, 50), 0) << " | " << Fmt(Percentile(unique_ttft, 0), 0) << "–"
       << Fmt(Percentile(unique_ttft, 100), 0) << " | " << CachedList(unique, 0, n) << " |\n";
    md << "| shared " << o.prefix_tokens << "-token prefix, first (miss) | " << miss_ttft.size()
       << " | " << Fmt(Percentile(miss_ttft, 50), 0) << " | – | " << CachedList(shared, 0, 1)
       << " |\n";
    md << "| shared " << o.prefix_tokens << "-token prefix, later (hit) | " << hit_ttft.size()
       << " | " << Fmt(hit, 0) << " | " << Fmt(Percentile(hit_ttft, 0), 0) << "–"
       << Fmt(Percentile(hit_ttft, 100), 0) << " | " << CachedList(shared, 1, n) << " |\n\n";
    int64_t min_cached = -1;
    for (size_t i = 1; i < shared.size(); ++i) {
      const int64_t c = shared[i].cached_tokens;
      min_cached = (min_cached < 0 || c < min_cached) ? c : min_cached;
    }
    // Only whole blocks of the prefix can be shared: the block that straddles the end of the
    // prefix also holds suffix tokens, which differ between requests.
    const int64_t shareable = o.prefix_tokens / o.block_tokens * o.block_tokens;
    md << "Prefix hit speed-up: " << Fmt(Percentile(unique_ttft, 50) / hit, 1)
       << "× over unique prompts, " << Fmt(Percentile(miss_ttft, 50) / hit, 1)
       << "× over the miss. Hits reused at least " << min_cached << " tokens of the "
       << o.prefix_tokens << "-token prefix, whose whole " << o.block_tokens
       << "-token blocks hold " << shareable << " (target, the shared prefix's prefill skipped: "
       << (min_cached >= shareable ? "met" : "not met") << "). Load " << Fmt(load, 2) << " → "
       << Fmt(load_after, 2) << ".\n";
  }

  std::printf("%s", md.str().c_str());
  return 0;
}

}  // namespace
}  // namespace yunzhi::bench

int main(int argc, char** argv) { return yunzhi::bench::Main(argc, argv); }
