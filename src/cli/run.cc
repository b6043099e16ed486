#include "cli/run.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <random>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "cli/common.h"
#include "engine/kernels/kernels.h"
#include "yunzhi/engine/chat.h"
#include "yunzhi/engine/generate.h"
#include "yunzhi/engine/model.h"

namespace yunzhi::cli {
namespace {

using engine::ChatFormatter;
using engine::GenerateOptions;
using engine::Model;
using engine::ModelRunner;
using engine::TemplateValue;

struct Loaded {
  std::shared_ptr<const Model> model;
  std::unique_ptr<ModelRunner> runner;
  double load_ms = 0;
};

Result<Loaded> LoadModel(const std::string& path, int threads, int64_t n_ctx,
                         int64_t n_sequences = 1) {
  Loaded out;
  const auto start = std::chrono::steady_clock::now();
  YZ_ASSIGN_OR_RETURN(out.model, Model::Load(path));
  engine::RunnerOptions options;
  options.n_threads = threads;
  options.n_ctx = n_ctx > 0 ? std::min(n_ctx, out.model->config().n_ctx_train) : 0;
  if (n_sequences > 1 && options.n_ctx > 0) {
    options.kv_cache.n_blocks =
        n_sequences * ((options.n_ctx + options.kv_cache.block_tokens - 1) /
                       options.kv_cache.block_tokens);
  }
  YZ_ASSIGN_OR_RETURN(out.runner, ModelRunner::Create(out.model, options));
  out.load_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

GenerateOptions OptionsFrom(const RunFlags& f) {
  GenerateOptions o;
  o.max_tokens = f.max_tokens;
  o.sampling.temperature = f.temperature;
  o.sampling.top_p = f.top_p;
  o.sampling.top_k = f.top_k;
  o.sampling.min_p = f.min_p;
  o.sampling.repetition_penalty = f.repeat_penalty;
  if (f.seed >= 0) o.sampling.seed = static_cast<uint64_t>(f.seed);
  return o;
}

bool Print(std::string_view piece) {
  std::fwrite(piece.data(), 1, piece.size(), stdout);
  std::fflush(stdout);
  return true;
}

TemplateValue Message(std::string_view role, std::string content) {
  return TemplateValue::Object{{"role", TemplateValue(role)}, {"content", TemplateValue(std::move(content))}};
}

// Puts `context` into `seq`'s cache (the bench's depth; untimed by the callers).
Status Prefill(ModelRunner& runner, engine::Sequence* seq, std::span<const int32_t> context,
               engine::ForwardOutput* out) {
  if (context.empty()) return OkStatus();
  engine::BatchItem item{seq, context, false};
  return runner.Forward({&item, 1}, out);
}

// The generation test's sequences: each step feeds every sequence its previous greedy token.
class Decoder {
 public:
  Decoder(ModelRunner& runner, int64_t n_seq, std::mt19937& rng,
          std::uniform_int_distribution<int32_t>& pick)
      : runner_(runner), seqs_(static_cast<size_t>(n_seq)), tokens_(static_cast<size_t>(n_seq)),
        items_(static_cast<size_t>(n_seq)) {
    for (int32_t& token : tokens_) token = pick(rng);
  }
  ~Decoder() {
    for (engine::Sequence& seq : seqs_) runner_.kv_cache().Release(&seq);
  }
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Puts `context` into every sequence's cache first (the bench's depth).
  Status Fill(std::span<const int32_t> context) {
    for (engine::Sequence& seq : seqs_) YZ_RETURN_IF_ERROR(Prefill(runner_, &seq, context, &out_));
    return OkStatus();
  }

  Status Steps(int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      for (size_t k = 0; k < items_.size(); ++k) {
        items_[k] = {&seqs_[k], std::span<const int32_t>(&tokens_[k], 1), false};
      }
      YZ_RETURN_IF_ERROR(runner_.Forward(items_, &out_));
      for (size_t k = 0; k < items_.size(); ++k) {
        auto row = out_.Row(static_cast<int64_t>(k));
        tokens_[k] = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      }
    }
    return OkStatus();
  }

 private:
  ModelRunner& runner_;
  std::vector<engine::Sequence> seqs_;
  std::vector<int32_t> tokens_;
  std::vector<engine::BatchItem> items_;
  engine::ForwardOutput out_;
};

// Generation against the bandwidth of the same moment. On a shared machine the bandwidth can
// change within seconds (this project's VM flips between about 53 and 85 GB/s), so a rate
// averaged over a whole test and a probe taken after it may see different machines. Here each
// window of kWindowTokens decoded tokens is bracketed by probes of kWindowProbePasses passes, and
// compared with the faster of its two probes (the conservative bound); windows whose two probes
// differ by more than 10% straddle a change and are counted apart. The probe evicts the caches,
// so the ratio means something only for models well beyond the last-level cache, the ones whose
// decoding is bound by DRAM in the first place.
// `bytes_at(p)`: the bytes a decoding step reads on average when its tokens sit around position p.
Status PairedWindows(ModelRunner& runner, engine::kernels::BandwidthProbe& probe,
                     const std::function<double(double)>& bytes_at, const BenchFlags& flags,
                     std::span<const int32_t> context, std::mt19937& rng,
                     std::uniform_int_distribution<int32_t>& pick) {
  constexpr int64_t kWindowTokens = 16;
  constexpr int kWindowProbePasses = 6;  // each of BandwidthProbe's three variants twice
  std::vector<double> ratios, unstable;
  std::vector<std::pair<double, double>> stable;  // (bound GB/s, ratio) of each stable window
  double gbs_min = std::numeric_limits<double>::infinity(), gbs_max = 0;
  for (int rep = 0; rep < std::max(1, flags.repetitions); ++rep) {
    Decoder decoder(runner, 1, rng, pick);
    YZ_RETURN_IF_ERROR(decoder.Fill(context));
    double before = probe.Measure(kWindowProbePasses);
    for (int64_t done = 0; done < flags.gen_tokens; done += kWindowTokens) {
      const int64_t n = std::min(kWindowTokens, flags.gen_tokens - done);
      const auto start = std::chrono::steady_clock::now();
      YZ_RETURN_IF_ERROR(decoder.Steps(n));
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double after = probe.Measure(kWindowProbePasses);
      const double lo = std::min(before, after), hi = std::max(before, after);
      const double at = static_cast<double>(flags.depth + done) + static_cast<double>(n + 1) / 2;
      const double ratio = static_cast<double>(n) / s * bytes_at(at) / (hi * 1e9);
      if (hi > 1.1 * lo) {
        unstable.push_back(ratio);
      } else {
        ratios.push_back(ratio);
        stable.emplace_back(hi, ratio);
      }
      gbs_min = std::min(gbs_min, lo);
      gbs_max = std::max(gbs_max, hi);
      before = after;
    }
  }
  if (ratios.empty()) {
    std::printf("paired windows: none stable (%zu straddled a bandwidth change)\n",
                unstable.size());
    return OkStatus();
  }
  std::sort(ratios.begin(), ratios.end());
  const auto at = [&](double q) {
    return 100.0 * ratios[static_cast<size_t>(q * static_cast<double>(ratios.size() - 1) + 0.5)];
  };
  std::printf(
      "paired windows (%lld tokens each, probes of %d passes before and after; bandwidth "
      "%.1f-%.1f GB/s): tg at %.1f%% of the bound (median of %zu stable windows; quartiles "
      "%.1f-%.1f%%, min %.1f%%, max %.1f%%), %zu windows straddled a change\n",
      static_cast<long long>(kWindowTokens), kWindowProbePasses, gbs_min, gbs_max, at(0.5),
      ratios.size(), at(0.25), at(0.75), at(0.0), at(1.0), unstable.size());
  // A machine that changed state during the run (this project's VM reads about 45 or about 80
  // GB/s): the windows of each half of the bandwidth range apart, so that a median over both
  // does not hide how decoding fares in either.
  double band_lo = std::numeric_limits<double>::infinity(), band_hi = 0;
  for (const auto& [gbs, ratio] : stable) {
    band_lo = std::min(band_lo, gbs);
    band_hi = std::max(band_hi, gbs);
  }
  if (band_hi > 1.3 * band_lo) {
    const double mid = (band_lo + band_hi) / 2;
    for (bool upper : {false, true}) {
      std::vector<double> band;
      for (const auto& [gbs, ratio] : stable) {
        if ((gbs >= mid) == upper) band.push_back(ratio);
      }
      std::sort(band.begin(), band.end());
      std::printf("  windows at %s %.1f GB/s: tg at %.1f%% of the bound (median of %zu; "
                  "min %.1f%%, max %.1f%%)\n",
                  upper ? ">=" : "<", mid, 100.0 * band[band.size() / 2], band.size(),
                  100.0 * band.front(), 100.0 * band.back());
    }
  }
  return OkStatus();
}

}  // namespace

int RunRun(const RunFlags& flags) {
  auto loaded = LoadModel(flags.model, flags.threads, flags.n_ctx);
  if (!loaded) return PrintError(loaded.error());
  ModelRunner& runner = *loaded->runner;
  const GenerateOptions options = OptionsFrom(flags);

  if (flags.raw) {
    if (flags.prompt.empty()) {
      return PrintError(InvalidArgumentError("--raw needs a prompt"));
    }
    auto tokens = loaded->model->tokenizer().Encode(flags.prompt, {.add_special = true});
    std::fputs(flags.prompt.c_str(), stdout);
    auto r = engine::Generate(runner, tokens, options, Print);
    if (!r) return PrintError(r.error());
    std::fputs("\n", stdout);
    return 0;
  }

  auto formatter = ChatFormatter::ForModel(loaded->model);
  if (!formatter) return PrintError(formatter.error());
  TemplateValue::Array messages;
  if (!flags.system.empty()) messages.push_back(Message("system", flags.system));

  auto turn = [&](const std::string& user) -> Status {
    messages.push_back(Message("user", user));
    engine::ChatInput input;
    input.messages = messages;
    YZ_ASSIGN_OR_RETURN(auto tokens, formatter->Format(std::move(input)));
    YZ_ASSIGN_OR_RETURN(auto result, engine::Generate(runner, tokens, options, Print));
    std::fputs("\n", stdout);
    messages.push_back(Message("assistant", result.text));
    return OkStatus();
  };

  if (!flags.prompt.empty()) {
    if (auto s = turn(flags.prompt); !s) return PrintError(s.error());
    return 0;
  }
  std::fprintf(stderr, "Chatting with %s (%s). Type /bye or press Ctrl-D to leave.\n",
               flags.model.c_str(), formatter->uses_fallback() ? "ChatML fallback template"
                                                               : "the model's chat template");
  std::string line;
  while (true) {
    std::fputs(">>> ", stderr);
    if (!std::getline(std::cin, line) || line == "/bye") break;
    if (line.empty()) continue;
    if (auto s = turn(line); !s) {
      PrintError(s.error());
      messages.pop_back();  // drop the user turn that failed
    }
  }
  return 0;
}

int RunBench(const BenchFlags& flags) {
  namespace kernels = engine::kernels;
  if (!flags.isa.empty()) {
    const kernels::Isa isa = flags.isa == "avx512" ? kernels::Isa::kAvx512
                             : flags.isa == "avx2" ? kernels::Isa::kAvx2
                                                   : kernels::Isa::kScalar;
    if (static_cast<int>(isa) > static_cast<int>(kernels::DetectIsa())) {
      return PrintError(InvalidArgumentError(
          fmt::format("--isa {}: this CPU (or this build) runs at most {}", flags.isa,
                      kernels::IsaName(kernels::DetectIsa())),
          "isa"));
    }
    kernels::SetActiveIsa(isa);
  }
  const int64_t n_seq = std::max(1, flags.batch);
  const int64_t n_ctx = flags.depth + flags.prompt_tokens + flags.gen_tokens + 16;
  auto loaded = LoadModel(flags.model, flags.threads, n_ctx, n_seq);
  if (!loaded) return PrintError(loaded.error());
  const auto& config = loaded->model->config();
  if (n_ctx > config.n_ctx_train) {
    return PrintError(InvalidArgumentError(
        fmt::format("--depth {} + -p {} + -n {} (+16) = {} tokens: more than the model's context "
                    "of {}",
                    flags.depth, flags.prompt_tokens, flags.gen_tokens, n_ctx,
                    config.n_ctx_train),
        "depth"));
  }
  ModelRunner& runner = *loaded->runner;
  std::mt19937 rng(42);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(config.n_vocab) - 1);
  std::vector<int32_t> prompt(static_cast<size_t>(flags.prompt_tokens));
  for (auto& t : prompt) t = pick(rng);
  std::vector<int32_t> context(static_cast<size_t>(flags.depth));
  for (auto& t : context) t = pick(rng);

  auto seconds = [](auto start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<double> pp_rates, tg_rates;
  engine::ForwardOutput out;
  for (int rep = 0; rep < std::max(1, flags.repetitions); ++rep) {
    if (flags.prompt_tokens > 0) {
      engine::Sequence seq;
      if (auto s = Prefill(runner, &seq, context, &out); !s) {
        runner.kv_cache().Release(&seq);
        return PrintError(s.error());
      }
      engine::BatchItem item{&seq, prompt, false};
      const auto start = std::chrono::steady_clock::now();
      auto s = runner.Forward({&item, 1}, &out);
      const double t = seconds(start);
      runner.kv_cache().Release(&seq);
      if (!s) return PrintError(s.error());
      pp_rates.push_back(static_cast<double>(flags.prompt_tokens) / t);
    }
    if (flags.gen_tokens > 0) {
      Decoder decoder(runner, n_seq, rng, pick);
      if (auto s = decoder.Fill(context); !s) return PrintError(s.error());
      const auto start = std::chrono::steady_clock::now();
      if (auto s = decoder.Steps(flags.gen_tokens); !s) return PrintError(s.error());
      tg_rates.push_back(static_cast<double>(flags.gen_tokens * n_seq) / seconds(start));
    }
  }
  auto stats = [](std::vector<double> v) {
    double mean = 0, var = 0;
    for (double x : v) mean += x;
    mean /= static_cast<double>(v.size());
    for (double x : v) var += (x - mean) * (x - mean);
    return std::pair{mean, v.size() > 1 ? std::sqrt(var / static_cast<double>(v.size() - 1)) : 0.0};
  };
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double size_mib = static_cast<double>(config.weight_bytes) / (1 << 20);
  std::printf("| model | type | size | params | threads | test | tokens/s |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  const std::string name = fmt::format("{} {}L {}d", engine::ArchitectureName(config.architecture),
                                       config.n_layer, config.n_embd);
  const std::string type = engine::WeightTypeLabel(config);
  const std::string params = fmt::format("{:.1f} M", static_cast<double>(config.n_params) / 1e6);
  const std::string at_depth = flags.depth > 0 ? fmt::format(" @ d{}", flags.depth) : "";
  // Bytes a decoding step reads with its token around position p: the weights, and with -d the
  // KV cache too (every layer's K and V rows of all p positions; without -d the bound is the
  // weights alone, as tg from an empty context reads a negligible cache).
  const double weight_bytes = static_cast<double>(config.weight_bytes);
  const double kv_per_position =
      2.0 * static_cast<double>(config.n_layer * config.n_head_kv * config.head_dim) *
      (runner.kv_cache().type() == engine::KvCacheType::kF16 ? 2.0 : 4.0);
  auto step_bytes = [&](double p) {
    return weight_bytes + (flags.depth > 0 ? kv_per_position * p : 0.0);
  };
  const double gen_at =
      static_cast<double>(flags.depth) + static_cast<double>(flags.gen_tokens + 1) / 2;
  if (!pp_rates.empty()) {
    auto [m, sd] = stats(pp_rates);
    std::printf("| %s | %s | %.1f MiB | %s | %d | pp%lld%s | %.2f ± %.2f |\n", name.c_str(),
                type.c_str(), size_mib, params.c_str(), flags.threads,
                static_cast<long long>(flags.prompt_tokens), at_depth.c_str(), m, sd);
  }
  if (!tg_rates.empty()) {
    auto [m, sd] = stats(tg_rates);
    const std::string test =
        (n_seq > 1 ? fmt::format("tg{} x{}", flags.gen_tokens, n_seq)
                   : fmt::format("tg{}", flags.gen_tokens)) +
        at_depth;
    std::printf("| %s | %s | %.1f MiB | %s | %d | %s | %.2f ± %.2f |\n", name.c_str(),
                type.c_str(), size_mib, params.c_str(), flags.threads, test.c_str(), m, sd);
    if (flags.depth > 0) {
      std::printf("\ngeneration reads %.1f MiB of weights and %.1f MiB of KV cache per step (on "
                  "average at depth %lld): %.2f GB/s effective\n",
                  size_mib, (step_bytes(gen_at) - weight_bytes) / (1 << 20),
                  static_cast<long long>(flags.depth),
                  m / static_cast<double>(n_seq) * step_bytes(gen_at) / 1e9);
    } else {
      std::printf("\ngeneration reads %.1f MiB of weights per step: %.2f GB/s effective\n",
                  size_mib, m / static_cast<double>(n_seq) * weight_bytes / 1e9);
    }
  }
  std::printf("kernels: %s%s\n", std::string(kernels::IsaName(kernels::ActiveIsa())).c_str(),
              kernels::ActiveIsa() == kernels::Isa::kAvx512 && kernels::Avx512OnHalfWidthUnits()
                  ? " (256-bit units: 256-bit float decoding)"
                  : "");
  std::printf("load %.0f ms, peak RSS %.1f MiB, KV cache %.1f MiB\n", loaded->load_ms,
              static_cast<double>(usage.ru_maxrss) / 1024.0,
              static_cast<double>(runner.kv_cache().size_bytes()) / (1 << 20));
  if (flags.bandwidth) {
    // After the tests and after reading peak RSS: the probe's buffer must not count as the
    // model's memory. Same thread count as the runner, its own pool.
    constexpr int64_t kProbeBytes = int64_t{512} << 20;
    constexpr int kProbePasses = 10;
    engine::ComputePool pool(flags.threads);
    engine::kernels::BandwidthProbe probe(&pool, kProbeBytes);
    const double gbs = probe.Measure(kProbePasses);
    std::printf("memory read bandwidth %.1f GB/s (%d threads, best of %d passes over %lld MiB)\n",
                gbs, pool.n_threads(), kProbePasses, static_cast<long long>(kProbeBytes >> 20));
    if (!tg_rates.empty() && n_seq == 1) {
      const double bytes = step_bytes(gen_at);
      const double tg = stats(tg_rates).first;
      std::printf("generation bound %.1f tokens/s (bandwidth / %s): tg at %.1f%% of it\n",
                  gbs * 1e9 / bytes, flags.depth > 0 ? "bytes read per step" : "weight bytes",
                  100.0 * tg * bytes / (gbs * 1e9));
      if (auto s = PairedWindows(runner, probe, step_bytes, flags, context, rng, pick); !s) {
        return PrintError(s.error());
      }
    }
  }
  return 0;
}

}  // namespace yunzhi::cli
