// Model lifecycle: load on first use (one load for concurrent callers), keep-alive, memory
// budget with LRU eviction of idle models, clear errors for unknown or vanished models.
#include "yunzhi/serving/model_manager.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include "model_writer.h"
#include "serving_test_util.h"
#include "support/process.h"

namespace yunzhi::serving {
namespace {

using testing::WaitLoaded;

using namespace std::chrono_literals;
using yunzhi::testing::TempDir;

class ModelManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"a", "b"}) {
      tools::ModelSpec spec;
      spec.seed = name[0];
      const std::string path = dir_.path() + "/" + name + ".gguf";
      ASSERT_TRUE(tools::WriteModel(spec, {.gguf_path = path}));
      paths_[std::string("test/") + name] = path;
    }
  }

  ModelResolver Resolver() {
    return [this](std::string_view name) -> Result<ModelSource> {
      ++resolves_;
      auto it = paths_.find(std::string(name));
      if (it == paths_.end()) {
        return Error(Code::kNotFound, fmt::format("model '{}' does not exist", name), "model",
                     "model_not_found");
      }
      return ModelSource{it->first, "id-" + it->first, it->second, keep_alive_[it->first]};
    };
  }

  ServingOptions Options() {
    ServingOptions o;
    o.n_threads = 1;
    o.n_ctx = 128;
    o.reap_interval = 10ms;
    return o;
  }


  TempDir dir_;
  std::map<std::string, std::string> paths_;
  std::map<std::string, std::optional<int64_t>> keep_alive_;
  std::atomic<int> resolves_{0};
};

TEST_F(ModelManagerTest, FirstAcquireLoadsLaterOnesReuseAndListShowsIt) {
  ModelManager m(Resolver(), Options(), nullptr);
  {
    auto first = m.Acquire("test/a");
    ASSERT_TRUE(first) << first.error().ToString();
    EXPECT_TRUE(first->cold_start());
    auto second = m.Acquire("test/a");
    ASSERT_TRUE(second);
    EXPECT_FALSE(second->cold_start());
    EXPECT_EQ(&**first, &**second);
    auto list = m.List();
    ASSERT_EQ(list.size(), 1u);
    EXPECT_EQ(list[0].name, "test/a");
    EXPECT_EQ(list[0].leases, 2);
    EXPECT_EQ(list[0].n_ctx, 128);
    EXPECT_GT(list[0].weight_bytes, 0);
    EXPECT_GT(list[0].kv_bytes, 0);
    EXPECT_FALSE(list[0].expires_at_ms.has_value());  // in use
  }
  auto list = m.List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].leases, 0);
  EXPECT_TRUE(list[0].expires_at_ms.has_value());  // the default 5 minutes started
}

TEST_F(ModelManagerTest, ConcurrentFirstRequestsShareOneLoad) {
  ModelManager m(Resolver(), Options(), nullptr);
  std::atomic<int> cold{0}, ok{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      auto lease = m.Acquire("test/b");
      if (lease) {
        ++ok;
        if (lease->cold_start()) ++cold;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 6);
  EXPECT_EQ(cold, 1);
}

TEST_F(ModelManagerTest, KeepAliveZeroUnloadsWhenTheLastLeaseEnds) {
  ModelManager m(Resolver(), Options(), nullptr);
  {
    auto a = m.Acquire("test/a", 0);
    ASSERT_TRUE(a);
  }
  EXPECT_TRUE(WaitLoaded(m, "test/a", false));
  // The model's own keep-alive (from the registry) applies when the request gives none.
  keep_alive_["test/b"] = 0;
  {
    auto b = m.Acquire("test/b");
    ASSERT_TRUE(b);
  }
  EXPECT_TRUE(WaitLoaded(m, "test/b", false));
  // Negative: stays.
  {
    auto a = m.Acquire("test/a", -1);
    ASSERT_TRUE(a);
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(WaitLoaded(m, "test/a", true));
  EXPECT_FALSE(m.List()[0].expires_at_ms.has_value());
}

TEST_F(ModelManagerTest, IdleModelIsUnloadedWhenItsKeepAliveExpires) {
  FakeClock clock;
  ModelManager m(Resolver(), Options(), nullptr, clock);
  { ASSERT_TRUE(m.Acquire("test/a", 60'000)); }
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(WaitLoaded(m, "test/a", true));
  clock.Advance(std::chrono::milliseconds(60'001));
  EXPECT_TRUE(WaitLoaded(m, "test/a", false));
}

TEST_F(ModelManagerTest, MemoryBudgetEvictsIdleModelsAndRefusesWhenAllAreBusy) {
  // Measure one model's cost, then allow room for exactly one.
  int64_t cost = 0;
  {
    ModelManager probe(Resolver(), Options(), nullptr);
    auto lease = probe.Acquire("test/a");
    ASSERT_TRUE(lease);
    cost = (*lease)->weight_bytes + (*lease)->kv_bytes;
  }
  ServingOptions o = Options();
  o.memory_budget_bytes = cost + cost / 2;
  ModelManager m(Resolver(), o, nullptr);
  { ASSERT_TRUE(m.Acquire("test/a")); }
  {
    auto b = m.Acquire("test/b");  // a is idle: evicted to make room
    ASSERT_TRUE(b) << b.error().ToString();
    ASSERT_EQ(m.List().size(), 1u);
    EXPECT_EQ(m.List()[0].name, "test/b");
    auto a = m.Acquire("test/a");  // b is in use: no room
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, Code::kResourceExhausted);
    EXPECT_EQ(a.error().detail, "memory_budget");
  }
  EXPECT_TRUE(m.Acquire("test/a"));  // b idle again
}

TEST_F(ModelManagerTest, UnknownAndVanishedModelsGiveClearErrors) {
  ModelManager m(Resolver(), Options(), nullptr);
  auto unknown = m.Acquire("test/zzz");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, Code::kNotFound);
  EXPECT_EQ(unknown.error().detail, "model_not_found");

  std::filesystem::remove(paths_["test/a"]);
  auto gone = m.Acquire("test/a");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Code::kUnavailable);
  EXPECT_EQ(gone.error().detail, "model_load_failed");
  EXPECT_NE(gone.error().message.find("a.gguf"), std::string::npos) << gone.error().message;
  EXPECT_TRUE(m.List().empty());
  EXPECT_TRUE(m.Acquire("test/b"));  // the manager is fine
}

TEST_F(ModelManagerTest, UnloadRefusesWhileInUseAndShutdownEndsAcquires) {
  ModelManager m(Resolver(), Options(), nullptr);
  {
    auto a = m.Acquire("test/a");
    ASSERT_TRUE(a);
    auto busy = m.Unload("test/a");
    ASSERT_FALSE(busy);
    EXPECT_EQ(busy.error().code, Code::kFailedPrecondition);
  }
  EXPECT_TRUE(m.Unload("test/a"));
  EXPECT_TRUE(m.List().empty());
  EXPECT_FALSE(m.Unload("test/a"));
  m.Shutdown();
  auto late = m.Acquire("test/a");
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().code, Code::kUnavailable);
}

}  // namespace
}  // namespace yunzhi::serving
