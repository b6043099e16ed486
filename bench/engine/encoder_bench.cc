// Encoder throughput: embeddings/s and rerank pairs/s of a bge-small-shaped random model (384-d,
// 12 layers, 12 heads, FFN 1536), batches of 32 inputs of 128 tokens, one forward pass per batch.
//
//   cmake -B build/bench -DYUNZHI_BUILD_BENCH=ON && ninja -C build/bench engine_encoder_bench
//   build/bench/bench/engine/engine_encoder_bench --benchmark_counters_tabular=true
#include <unistd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include "model_writer.h"
#include "yunzhi/engine/encoder.h"

namespace yunzhi::engine {
namespace {

// The model of (type, classifier), written once to /tmp and loaded with `threads` threads.
EncoderModel& GetModel(TensorType type, bool classifier, int threads) {
  static std::map<std::tuple<int, bool, int>, std::unique_ptr<EncoderModel>> cache;
  auto& slot = cache[{static_cast<int>(type), classifier, threads}];
  if (!slot) {
    tools::EncoderSpec s;
    s.n_vocab = 30522;
    s.n_embd = 384;
    s.n_layer = 12;
    s.n_head = 12;
    s.n_ff = 1536;
    s.n_ctx = 512;
    s.weight_type = type;
    s.classifier = classifier;
    const std::string path = fmt::format("{}/yunzhi_encoder_bench_{}_{}_{}.gguf",
                                         std::filesystem::temp_directory_path().string(), getpid(),
                                         static_cast<int>(type), classifier);
    YZ_CHECK(tools::WriteEncoderModel(s, {.gguf_path = path}).has_value());
    auto m = EncoderModel::Load(path, {.n_threads = threads});
    YZ_CHECK(m.has_value());
    std::filesystem::remove(path);  // mapped: stays readable
    slot = std::move(*m);
  }
  return *slot;
}

std::vector<EncoderInput> Batch(int n_inputs, int n_tokens, bool pairs) {
  std::vector<EncoderInput> batch(static_cast<size_t>(n_inputs));
  for (int b = 0; b < n_inputs; ++b) {
    auto& in = batch[static_cast<size_t>(b)];
    for (int t = 0; t < n_tokens; ++t) {
      in.tokens.push_back(t == 0 ? 101 : t == n_tokens - 1 ? 102 : 1000 + (b * 131 + t * 7) % 20000);
      if (pairs) in.type_ids.push_back(t < n_tokens / 4 ? 0 : 1);
    }
  }
  return batch;
}

// args: threads, weight type (0 F32, 1 F16, 2 Q8_0)
TensorType TypeArg(int64_t i) {
  return i == 0 ? TensorType::kF32 : i == 1 ? TensorType::kF16 : TensorType::kQ8_0;
}

void BM_Embed(benchmark::State& state) {
  EncoderModel& m = GetModel(TypeArg(state.range(1)), false, static_cast<int>(state.range(0)));
  const auto batch = Batch(32, 128, false);
  for (auto _ : state) {
    auto r = m.Embed(batch, true);
    YZ_CHECK(r.has_value());
    benchmark::DoNotOptimize(r->data());
  }
  state.counters["embeddings/s"] =
      benchmark::Counter(32.0 * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["tokens/s"] =
      benchmark::Counter(32.0 * 128 * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Embed)->ArgNames({"threads", "type"})->Args({2, 0})->Args({2, 1})->Args({2, 2})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Rerank(benchmark::State& state) {
  EncoderModel& m = GetModel(TypeArg(state.range(1)), true, static_cast<int>(state.range(0)));
  const auto batch = Batch(32, 128, true);
  for (auto _ : state) {
    auto r = m.Score(batch);
    YZ_CHECK(r.has_value());
    benchmark::DoNotOptimize(r->data());
  }
  state.counters["pairs/s"] =
      benchmark::Counter(32.0 * state.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Rerank)->ArgNames({"threads", "type"})->Args({2, 1})
    ->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace yunzhi::engine
