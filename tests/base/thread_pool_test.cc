#include "yunzhi/base/thread_pool.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "yunzhi/base/crypto.h"
#include "yunzhi/base/log.h"

namespace yunzhi {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// A one-shot gate that tasks wait on. The wait is bounded so that a broken pool fails the test
// instead of hanging it; the bound is never reached when things work.
class Gate {
 public:
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool Wait() {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30), [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Sends the process log to a temporary file for the lifetime of the object.
class CapturedLog {
 public:
  CapturedLog() {
    path_ = (fs::temp_directory_path() / ("yunzhi_pool_test_" + crypto::RandomAlnum(12) + ".log"))
                .string();
    log::Options o;
    o.file = path_;
    EXPECT_TRUE(log::Init(o).has_value());
  }
  ~CapturedLog() {
    EXPECT_TRUE(log::Init({}).has_value());
    std::error_code ec;
    fs::remove(path_, ec);
  }
  std::string Text() const {
    std::ifstream in(path_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  std::string path_;
};

TEST(ThreadPool, SizeIsFixedAndZeroMeansHardwareConcurrency) {
  ThreadPool three(3);
  EXPECT_EQ(three.size(), 3u);
  ThreadPool automatic(0);
  EXPECT_EQ(automatic.size(), std::max(1u, std::thread::hardware_concurrency()));
}

TEST(ThreadPool, SubmitReturnsValuesIncludingVoidAndMoveOnly) {
  ThreadPool pool(2);
  std::future<int> answer = pool.Submit([] { return 42; });
  std::atomic<bool> ran{false};
  std::future<void> done = pool.Submit([&] { ran = true; });
  auto owned = std::make_unique<int>(7);
  std::future<std::unique_ptr<int>> moved =
      pool.Submit([p = std::move(owned)]() mutable { return std::move(p); });
  EXPECT_EQ(answer.get(), 42);
  done.get();
  EXPECT_TRUE(ran);
  EXPECT_EQ(*moved.get(), 7);
}

TEST(ThreadPool, RunsTasksConcurrentlyOnAllWorkers) {
  constexpr int kThreads = 4;
  ThreadPool pool(kThreads);
  // Every task waits until all have started: this only completes if they run at the same time.
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  std::set<std::thread::id> ids;
  std::vector<std::future<bool>> results;
  for (int i = 0; i < kThreads; ++i) {
    results.push_back(pool.Submit([&] {
      std::unique_lock lock(mu);
      ++started;
      ids.insert(std::this_thread::get_id());
      cv.notify_all();
      return cv.wait_for(lock, std::chrono::seconds(30), [&] { return started == kThreads; });
    }));
  }
  for (auto& r : results) EXPECT_TRUE(r.get());
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads));
}

TEST(ThreadPool, RunsTasksInFifoOrderOnOneWorker) {
  ThreadPool pool(1);
  std::vector<int> order;  // only the single worker touches it
  for (int i = 0; i < 100; ++i) pool.Post([&order, i] { order.push_back(i); });
  pool.Shutdown();
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(ThreadPool, SubmitFutureCarriesTheExceptionAndTheWorkerSurvives) {
  ThreadPool pool(1);
  std::future<int> failed = pool.Submit([]() -> int { throw std::invalid_argument("bad page"); });
  EXPECT_THAT([&] { failed.get(); },
              ::testing::ThrowsMessage<std::invalid_argument>(HasSubstr("bad page")));
  // The single worker is still alive and serving.
  EXPECT_EQ(pool.Submit([] { return 5; }).get(), 5);
}

TEST(ThreadPool, PostedTaskThatThrowsIsLoggedAndTheWorkerSurvives) {
  CapturedLog captured;
  ThreadPool pool(1, "ingest");
  pool.Post([] { throw std::runtime_error("disk on fire"); });
  pool.Post([] { throw 17; });
  // FIFO on one worker: once this runs, both throwing tasks have finished and been logged.
  EXPECT_EQ(pool.Submit([] { return 1; }).get(), 1);
  const std::string text = captured.Text();
  EXPECT_THAT(text, HasSubstr("ERROR thread_pool_task_failed pool=ingest error=\"disk on fire\""));
  EXPECT_THAT(
      text,
      HasSubstr("ERROR thread_pool_task_failed pool=ingest error=\"non-standard exception\""));
}

TEST(ThreadPool, ShutdownDrainsEverythingQueuedBeforeIt) {
  ThreadPool pool(1);
  Gate started;
  Gate release;
  std::atomic<bool> blocker_waited_ok{false};
  pool.Post([&] {
    started.Open();
    blocker_waited_ok = release.Wait();
  });
  ASSERT_TRUE(started.Wait());
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) pool.Post([&] { ++ran; });
  EXPECT_EQ(pool.queued(), 100u) << "the worker is held by the first task";

  std::thread closer([&] { pool.Shutdown(); });
  // Shutdown has begun once new work is refused; only then let the worker go, so the 100 tasks
  // are provably still queued when Shutdown starts.
  for (;;) {
    std::future<void> probe = pool.Submit([] {});
    try {
      if (probe.wait_for(std::chrono::seconds(0)) == std::future_status::ready) probe.get();
    } catch (const ThreadPoolShutDown&) {
      break;
    }
    std::this_thread::yield();
  }
  EXPECT_EQ(ran.load(), 0);
  release.Open();
  closer.join();
  EXPECT_TRUE(blocker_waited_ok);
  EXPECT_EQ(ran.load(), 100);
  EXPECT_EQ(pool.queued(), 0u);
}

TEST(ThreadPool, DestructorDrainsQueuedTasks) {
  std::atomic<int> ran{0};
  {
    ThreadPool pool(2);
    for (int i = 0; i < 1000; ++i) pool.Post([&] { ++ran; });
  }
  EXPECT_EQ(ran.load(), 1000);
}

TEST(ThreadPool, ShutdownIsIdempotentAndConcurrentCallersAllWait) {
  ThreadPool pool(2);
  std::atomic<int> ran{0};
  for (int i = 0; i < 200; ++i) pool.Post([&] { ++ran; });
  std::vector<std::thread> closers;
  for (int i = 0; i < 3; ++i) {
    closers.emplace_back([&] {
      pool.Shutdown();
      // Whoever returns first or last, the work is done by then.
      EXPECT_EQ(ran.load(), 200);
    });
  }
  for (auto& c : closers) c.join();
  pool.Shutdown();
  EXPECT_EQ(ran.load(), 200);
}

TEST(ThreadPool, SubmitAfterShutdownReturnsFutureWithShutDownError) {
  ThreadPool pool(1);
  pool.Shutdown();
  bool ran = false;
  std::future<int> f = pool.Submit([&] {
    ran = true;
    return 1;
  });
  ASSERT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  EXPECT_THROW(f.get(), ThreadPoolShutDown);
  EXPECT_FALSE(ran);
}

TEST(ThreadPool, PostAfterShutdownIsDroppedAndLogged) {
  CapturedLog captured;
  ThreadPool pool(1, "late");
  pool.Shutdown();
  auto witness = std::make_shared<int>(0);
  pool.Post([witness] { ++*witness; });
  EXPECT_EQ(*witness, 0);
  EXPECT_EQ(witness.use_count(), 1) << "the refused task is destroyed, not kept";
  EXPECT_EQ(pool.queued(), 0u);
  EXPECT_THAT(captured.Text(), HasSubstr("ERROR thread_pool_post_after_shutdown pool=late"));
}

TEST(ThreadPool, TasksMayPostMoreWorkBeforeShutdown) {
  ThreadPool pool(2);
  std::promise<int> inner_result;
  pool.Post([&] { pool.Post([&] { inner_result.set_value(9); }); });
  EXPECT_EQ(inner_result.get_future().get(), 9);
}

TEST(ThreadPoolDeathTest, ShutdownFromOwnTaskIsAProgrammerError) {
  EXPECT_DEATH(
      {
        ThreadPool pool(1);
        pool.Submit([&] { pool.Shutdown(); }).get();
      },
      "YZ_CHECK failed");
}

}  // namespace
}  // namespace yunzhi
