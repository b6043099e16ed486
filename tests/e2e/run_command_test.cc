// The README's first command, for real: scripts/run.sh installs what is missing, builds the
// Release binary and starts `yunzhi serve`, which must answer /healthz.
#include <signal.h>

#include <regex>

#include <gtest/gtest.h>

#include "support/http_client.h"
#include "support/process.h"

namespace yunzhi::testing {
namespace {

using namespace std::chrono_literals;

TEST(RunCommandTest, RunScriptBuildsAndServesHealthz) {
  TempDir dir;
  ChildProcess run({std::string(YUNZHI_SOURCE_DIR) + "/scripts/run.sh", "--port", "0",
                    "--data-dir", dir.path() + "/data", "--log-level", "warn"});
  // A cold Release build of everything takes minutes on 2 cores; an incremental one, seconds.
  ASSERT_TRUE(run.WaitForOutput(
      [](const std::string& out) { return out.find("serving on") != std::string::npos; }, 900s))
      << run.out() << run.err();
  std::smatch m;
  const std::string out = run.out();
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(http://127\.0\.0\.1:(\d+))"))) << out;
  HttpClient client(static_cast<uint16_t>(std::stoi(m[1])));
  auto health = client.Send("GET", "/healthz");
  ASSERT_TRUE(health) << health.error().ToString();
  EXPECT_EQ(health->status, 200);
  EXPECT_NE(health->body.find("ok"), std::string::npos);
  run.Signal(SIGTERM);
  EXPECT_EQ(run.Wait(60s), 0) << run.err();
}

}  // namespace
}  // namespace yunzhi::testing
