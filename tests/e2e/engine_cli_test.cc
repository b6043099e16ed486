// The engine's commands on the real binary: run, bench, quantize.
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/process.h"

namespace yunzhi::testing {
namespace {

const std::string kBinary = YUNZHI_BINARY;
const std::string kStories = std::string(YUNZHI_TESTDATA_DIR) + "/models/stories260K.gguf";

TEST(EngineCliTest, RunCompletesAPromptGreedily) {
  auto r = RunCommand({kBinary, "run", kStories, "--raw", "Once upon a time", "-n", "12", "--temp",
                       "0", "-t", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("Once upon a time, there was a little girl named Lily."))
      << r.out;
}

TEST(EngineCliTest, RunChatsOnStdinWithTheFallbackTemplate) {
  // No prompt: interactive chat; stdin is /dev/null, so it ends at once after the greeting.
  auto r = RunCommand({kBinary, "run", kStories, "-n", "4"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("ChatML fallback"), std::string::npos) << r.err;
}

TEST(EngineCliTest, RunReportsAMissingModelClearly) {
  auto r = RunCommand({kBinary, "run", "/nonexistent/model.gguf", "hi"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
}

TEST(EngineCliTest, BenchPrintsPromptAndGenerationRates) {
  auto r = RunCommand({kBinary, "bench", kStories, "-t", "2", "-p", "32", "-n", "8", "-r", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| pp32 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| tg8 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak RSS"), std::string::npos) << r.out;
}

// `yunzhi bench` on stories260K, 2 threads, a 16-token prompt and 4 generated tokens once, with
// `extra` arguments.
CommandResult ShortBench(std::initializer_list<std::string> extra) {
  std::vector<std::string> argv = {kBinary, "bench", kStories, "-t", "2", "-p", "16",
                                   "-n",    "4",     "-r",     "1"};
  argv.insert(argv.end(), extra);
  return RunCommand(argv);
}

// -d: the tests run deep into a context (llama-bench's depth), and the bandwidth bound counts
// the KV cache read at that depth. The context is really taken: a
// depth that leaves no room for the tests in the model's context (stories260K: 2048) is refused,
// naming the sizes.
TEST(EngineCliTest, BenchRunsTheTestsAtTheDepthAskedFor) {
  auto r = ShortBench({"-d", "1000", "--bandwidth"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| pp16 @ d1000 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| tg4 @ d1000 |"), std::string::npos) << r.out;
  // At depth the bound counts the KV cache each step reads: stories260K (5 layers, 4 KV heads of
  // 8, F16 cache: 640 bytes a position) at an average position of 1002.5 reads 0.6 MiB of it.
  EXPECT_NE(r.out.find("and 0.6 MiB of KV cache per step (on average at depth 1000)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("(bandwidth / bytes read per step)"), std::string::npos) << r.out;
  auto full = ShortBench({"-d", "2020"});
  EXPECT_NE(full.exit_code, 0);
  EXPECT_NE(full.err.find("--depth 2020 + -p 16 + -n 4 (+16) = 2056 tokens"), std::string::npos)
      << full.err;
  EXPECT_NE(full.err.find("context of 2048"), std::string::npos) << full.err;
}

TEST(EngineCliTest, BenchBandwidthComparesGenerationWithTheProbeOfTheSameMoment) {
  auto r = RunCommand({kBinary, "bench", kStories, "-t", "2", "-p", "0", "-n", "32", "-r", "1",
                       "--bandwidth"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("memory read bandwidth"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tg at "), std::string::npos) << r.out;
  // 32 tokens: two windows of 16, each stable or counted as straddling a change.
  EXPECT_NE(r.out.find("paired windows"), std::string::npos) << r.out;
  EXPECT_TRUE(r.out.find("of 2 stable windows") != std::string::npos ||
              r.out.find("1 windows straddled") != std::string::npos ||
              r.out.find("none stable (2 straddled") != std::string::npos)
      << r.out;
}

TEST(EngineCliTest, BenchRunsTheKernelsOfTheInstructionSetAskedFor) {
  // The portable kernels exist on every x86-64 CPU; the generated text is not checked here, only
  // that the run used them and says so.
  auto r = ShortBench({"--isa", "scalar"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("kernels: scalar"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| tg4 |"), std::string::npos) << r.out;
  auto bad = RunCommand({kBinary, "bench", kStories, "--isa", "neon"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--isa"), std::string::npos) << bad.err;
}

TEST(EngineCliTest, QuantizeWritesALoadableModel) {
  TempDir dir;
  const std::string out = dir.path() + "/stories-q8_0.gguf";
  auto q = RunCommand({kBinary, "quantize", kStories, out, "--type", "q8_0", "-q"});
  ASSERT_EQ(q.exit_code, 0) << q.err;
  ASSERT_TRUE(std::filesystem::exists(out));
  auto r = RunCommand({kBinary, "run", out, "--raw", "Once upon a time", "-n", "4", "--temp", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("Once upon a time")) << r.out;
}

}  // namespace
}  // namespace yunzhi::testing
