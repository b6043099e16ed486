// Tokenizer throughput on real vocabs and documents from ../shared/testdata.
//
//   cmake -B build/bench -DYUNZHI_BUILD_BENCH=ON && ninja -C build/bench engine_tokenizer_bench
//   build/bench/bench/engine/engine_tokenizer_bench
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "yunzhi/engine/gguf.h"
#include "yunzhi/engine/tokenizer.h"

namespace yunzhi::engine {
namespace {

const std::string kTestdata = YUNZHI_TESTDATA_DIR;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

enum VocabId { kLlamaSpm, kLlama3, kQwen2 };
enum DocId { kEnglish, kChinese };

const Tokenizer& GetTokenizer(int which) {
  static std::map<int, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[which];
  if (!slot) {
    Result<Vocab> vocab = InternalError("unset");
    if (which == kLlamaSpm) {
      auto gguf = GgufFile::Open(kTestdata + "/tokenizer/ggml-vocab-llama-spm.gguf");
      YZ_CHECK(gguf.has_value());
      vocab = VocabFromGguf(*gguf);
    } else if (which == kLlama3) {
      vocab = VocabFromHfDir(kTestdata + "/tokenizer/hf/llama3.1");
    } else {
      vocab = VocabFromTiktokenFile(kTestdata + "/tokenizer/qwen.tiktoken");
    }
    YZ_CHECK(vocab.has_value());
    auto tokenizer = Tokenizer::Create(std::move(*vocab));
    YZ_CHECK(tokenizer.has_value());
    slot = std::make_unique<Tokenizer>(std::move(*tokenizer));
  }
  return *slot;
}

const std::string& GetDoc(int which) {
  static const std::string english =
      ReadFile(kTestdata + "/docs/txt/unstructured-norwich-city.txt");
  static const std::string chinese = ReadFile(kTestdata + "/docs/txt/chatchat-test-zh.txt");
  return which == kEnglish ? english : chinese;
}

const char* kVocabNames[] = {"llama_spm", "llama3_hf", "qwen2_tiktoken"};
const char* kDocNames[] = {"en_48KB", "zh_40KB"};

void BM_Encode(benchmark::State& state) {
  const Tokenizer& tokenizer = GetTokenizer(static_cast<int>(state.range(0)));
  const std::string& text = GetDoc(static_cast<int>(state.range(1)));
  state.SetLabel(std::string(kVocabNames[state.range(0)]) + "/" + kDocNames[state.range(1)]);
  size_t n_tokens = 0;
  for (auto _ : state) {
    const auto ids = tokenizer.Encode(text);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
}
BENCHMARK(BM_Encode)
    ->ArgsProduct({{kLlamaSpm, kLlama3, kQwen2}, {kEnglish, kChinese}})
    ->Unit(benchmark::kMillisecond);

void BM_StreamingDecode(benchmark::State& state) {
  const Tokenizer& tokenizer = GetTokenizer(static_cast<int>(state.range(0)));
  const std::string& text = GetDoc(static_cast<int>(state.range(1)));
  state.SetLabel(std::string(kVocabNames[state.range(0)]) + "/" + kDocNames[state.range(1)]);
  const std::vector<int32_t> ids = tokenizer.Encode(text);
  for (auto _ : state) {
    StreamingDecoder stream(tokenizer);
    size_t n_bytes = 0;
    for (const int32_t id : ids) n_bytes += stream.Push(id).size();
    n_bytes += stream.Flush().size();
    benchmark::DoNotOptimize(n_bytes);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * ids.size()));
}
BENCHMARK(BM_StreamingDecode)
    ->ArgsProduct({{kLlamaSpm, kLlama3, kQwen2}, {kEnglish, kChinese}})
    ->Unit(benchmark::kMillisecond);

void BM_LoadVocab(benchmark::State& state) {
  state.SetLabel(kVocabNames[state.range(0)]);
  for (auto _ : state) {
    Result<Vocab> vocab = InternalError("unset");
    if (state.range(0) == kLlamaSpm) {
      auto gguf = GgufFile::Open(kTestdata + "/tokenizer/ggml-vocab-llama-spm.gguf");
      vocab = VocabFromGguf(*gguf);
    } else if (state.range(0) == kLlama3) {
      vocab = VocabFromHfDir(kTestdata + "/tokenizer/hf/llama3.1");
    } else {
      vocab = VocabFromTiktokenFile(kTestdata + "/tokenizer/qwen.tiktoken");
    }
    auto tokenizer = Tokenizer::Create(std::move(*vocab));
    benchmark::DoNotOptimize(tokenizer->n_vocab());
  }
}
BENCHMARK(BM_LoadVocab)->DenseRange(kLlamaSpm, kQwen2)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace yunzhi::engine
