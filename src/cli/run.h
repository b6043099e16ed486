// `yunzhi run` (generate or chat in the terminal) and `yunzhi bench` (engine speed, like
// llama-bench): thin wrappers over the engine.
#pragma once

#include <cstdint>
#include <string>

namespace yunzhi::cli {

struct RunFlags {
  std::string model;   // .gguf file or Hugging Face directory
  std::string prompt;  // empty: interactive chat on stdin
  std::string system;  // system message for chat
  bool raw = false;    // complete the prompt as plain text, no chat template
  int threads = 0;
  int64_t max_tokens = 512;
  int64_t n_ctx = 4096;
  float temperature = 0.8f;
  float top_p = 0.95f;
  int top_k = 40;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int64_t seed = -1;   // < 0: random
};
int RunRun(const RunFlags& flags);

struct BenchFlags {
  std::string model;
  int threads = 0;
  int64_t prompt_tokens = 512;  // -p
  int64_t gen_tokens = 128;     // -n
  int repetitions = 3;          // -r
  // -d: every test starts with this many tokens already in its sequence's KV cache (filled
  // untimed), as llama-bench's depth: decoding and prompt processing deep into a context, where
  // attention reads a long cache.
  int64_t depth = 0;
  // -b: the generation test decodes this many sequences together (one Forward per step, each
  // sequence its own KV cache, as the server's batches of concurrent streams); tokens/s is the
  // aggregate over all of them.
  int batch = 1;
  // --bandwidth: after the tests, measure the memory read bandwidth with the same number of
  // threads (kernels::BandwidthProbe) and print generation as a share of that limit; then decode
  // again in 16-token windows, each against probes taken right before and after it (with -b 1).
  bool bandwidth = false;
  // --isa: run the kernels of this instruction set (avx512 | avx2 | scalar) instead of the best
  // the CPU has, to measure what a machine without it would get. Set before loading: which
  // weights are repacked at load depends on it.
  std::string isa;
};
int RunBench(const BenchFlags& flags);

}  // namespace yunzhi::cli
