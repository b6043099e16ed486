#include "yunzhi/store/data_dir.h"

#include <unistd.h>

#include <filesystem>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "yunzhi/store/blob_store.h"
#include "yunzhi/store/database.h"

#include "store/store_test_util.h"

namespace yunzhi::store {
namespace {

namespace fs = std::filesystem;
using testing::ForkedChild;
using ::testing::HasSubstr;
using testing::Pipe;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

TEST(DataDirTest, CreatesMissingDirectoryAndParents) {
  TempDir tmp;
  const fs::path dir = tmp / "a/b/data";
  ASSERT_OK_AND_ASSIGN(DataDir data, DataDir::Open(dir));
  EXPECT_TRUE(fs::is_directory(dir));
  EXPECT_EQ(data.path(), dir);
  EXPECT_EQ(data.database_path(), dir / "yunzhi.db");
  EXPECT_EQ(data.blobs_path(), dir / "blobs");
  EXPECT_EQ(data.database_url(), "sqlite:" + (dir / "yunzhi.db").string());
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_TRUE(fs::is_empty(dir));  // the probe file is gone
}

TEST(DataDirTest, OpensAnExistingDirectoryAsAnAbsolutePath) {
  TempDir tmp;
  fs::create_directory(tmp / "data");
  ::chmod((tmp / "data").c_str(), 0755);
  const fs::path cwd = fs::current_path();
  fs::current_path(tmp.path());
  auto data = DataDir::Open("data/");
  fs::current_path(cwd);
  ASSERT_TRUE(data) << data.error().ToString();
  EXPECT_EQ(data->path(), tmp / "data");
  struct stat st {};
  ASSERT_EQ(::stat((tmp / "data").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);  // an existing directory keeps its mode
  EXPECT_TRUE(fs::is_empty(tmp / "data"));
}

TEST(DataDirTest, DatabaseAndBlobsWorkInIt) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(DataDir data, DataDir::Open(tmp / "data"));
  DatabaseOptions options;
  options.url = data.database_url();
  ASSERT_OK_AND_ASSIGN(auto db, Database::Open(options));
  ASSERT_OK(db->Execute("CREATE TABLE t (x)"));
  EXPECT_TRUE(fs::exists(data.database_path()));
  ASSERT_OK_AND_ASSIGN(auto blobs, BlobStore::Open(data.blobs_path()));
  ASSERT_OK(blobs->Put("x"));
  EXPECT_TRUE(fs::is_directory(data.blobs_path() / "sha256"));
}

TEST(DataDirTest, RegularFileIsNotADirectory) {
  TempDir tmp;
  WriteFile(tmp / "file", "x");
  auto data = DataDir::Open(tmp / "file");
  ASSERT_FALSE(data);
  EXPECT_EQ(data.error().code, Code::kUnavailable);
  EXPECT_EQ(data.error().message, "data dir " + (tmp / "file").string() + " is not a directory");

  auto under = DataDir::Open(tmp / "file" / "data");
  ASSERT_FALSE(under);
  EXPECT_EQ(under.error().code, Code::kUnavailable);
  EXPECT_THAT(under.error().message, HasSubstr("data dir " + (tmp / "file" / "data").string()));
  EXPECT_THAT(under.error().message, HasSubstr("Not a directory"));
}

TEST(DataDirTest, UnwritableLocationsAreUnavailable) {
  // Root may write anywhere a permission bit forbids, but not into /proc.
  auto under_proc = DataDir::Open("/proc/yunzhi-test/data");
  ASSERT_FALSE(under_proc);
  EXPECT_EQ(under_proc.error().code, Code::kUnavailable);
  EXPECT_THAT(under_proc.error().message,
              HasSubstr("data dir /proc/yunzhi-test/data cannot be created: "));

  auto proc = DataDir::Open("/proc");
  ASSERT_FALSE(proc);
  EXPECT_EQ(proc.error().code, Code::kUnavailable);
  EXPECT_THAT(proc.error().message, HasSubstr("data dir /proc is not writable: "));

  if (::geteuid() != 0) {
    TempDir tmp;
    fs::create_directory(tmp / "ro");
    ::chmod((tmp / "ro").c_str(), 0555);
    auto ro = DataDir::Open(tmp / "ro");
    ::chmod((tmp / "ro").c_str(), 0755);
    ASSERT_FALSE(ro);
    EXPECT_EQ(ro.error().message,
              "data dir " + (tmp / "ro").string() + " is not writable: Permission denied");
  }
}

TEST(ServerLockTest, SecondLockFailsWithPidAndUrlThenFreesOnDestruction) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(DataDir data, DataDir::Open(tmp.path()));
  const std::string pid = std::to_string(::getpid());
  {
    ASSERT_OK_AND_ASSIGN(auto lock, ServerLock::Acquire(data));
    EXPECT_EQ(ReadFile(data.lock_path()), "pid=" + pid + "\n");

    // flock belongs to the open file, so even this process cannot take it twice.
    auto second = ServerLock::Acquire(data);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, Code::kFailedPrecondition);
    EXPECT_EQ(second.error().message, "data dir " + tmp.path().string() +
                                          " is in use by another yunzhi server (pid " + pid + ")");

    ASSERT_OK(lock->SetUrl("http://127.0.0.1:8080"));
    EXPECT_EQ(ReadFile(data.lock_path()), "pid=" + pid + "\nurl=http://127.0.0.1:8080\n");
    auto third = ServerLock::Acquire(data);
    ASSERT_FALSE(third);
    EXPECT_EQ(third.error().message, "data dir " + tmp.path().string() +
                                         " is in use by another yunzhi server (pid " + pid +
                                         ", http://127.0.0.1:8080)");
    Status bad = lock->SetUrl("http://x\npid=1");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, Code::kInvalidArgument);
  }
  // Released on destruction; the file stays.
  EXPECT_TRUE(fs::exists(data.lock_path()));
  ASSERT_OK_AND_ASSIGN(auto again, ServerLock::Acquire(data));
  EXPECT_EQ(ReadFile(data.lock_path()), "pid=" + pid + "\n");  // the old URL is gone
}

TEST(ServerLockTest, AnotherProcessCannotTakeAHeldLock) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(DataDir data, DataDir::Open(tmp.path()));
  ASSERT_OK_AND_ASSIGN(auto lock, ServerLock::Acquire(data));
  ASSERT_OK(lock->SetUrl("http://127.0.0.1:9090"));
  const std::string expected = "data dir " + tmp.path().string() +
                               " is in use by another yunzhi server (pid " +
                               std::to_string(::getpid()) + ", http://127.0.0.1:9090)";
  ForkedChild child([&]() -> std::string {
    auto second = ServerLock::Acquire(data);
    if (second) return "child acquired a held lock";
    if (second.error().code != Code::kFailedPrecondition) return second.error().ToString();
    return second.error().message == expected ? "" : "message: " + second.error().message;
  });
  child.Start();
  EXPECT_EQ(child.Wait(), "");
}

TEST(ServerLockTest, LockOfADeadProcessIsFree) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(DataDir data, DataDir::Open(tmp.path()));
  Pipe locked;
  // The child takes the lock, tells us, and dies without running any destructor, as a killed
  // server would.
  ForkedChild child([&]() -> std::string {
    auto lock = ServerLock::Acquire(data);
    locked.Send(lock ? 'y' : 'n');
    if (!lock) return lock.error().ToString();
    (void)lock->release();  // leak it: only the process exit frees the lock
    return "";
  });
  child.Start();
  ASSERT_EQ(locked.Receive(), 'y');
  EXPECT_EQ(child.Wait(), "");  // returns once the child has exited
  ASSERT_OK_AND_ASSIGN(auto lock, ServerLock::Acquire(data));
  EXPECT_EQ(ReadFile(data.lock_path()), "pid=" + std::to_string(::getpid()) + "\n");
}

TEST(ServerLockTest, HeldLockBlocksAnotherProcessUntilItExits) {
  TempDir tmp;
  ASSERT_OK_AND_ASSIGN(DataDir data, DataDir::Open(tmp.path()));
  Pipe locked, release;
  ForkedChild child([&]() -> std::string {
    auto lock = ServerLock::Acquire(data);
    if (!lock) return lock.error().ToString();
    locked.Send('y');
    if (release.Receive() != 'g') return "no release signal";
    return "";
  });
  child.Start();
  ASSERT_EQ(locked.Receive(), 'y');
  auto blocked = ServerLock::Acquire(data);
  ASSERT_FALSE(blocked);
  EXPECT_THAT(blocked.error().message, HasSubstr("(pid " + std::to_string(child.pid()) + ")"));
  release.Send('g');
  EXPECT_EQ(child.Wait(), "");
  EXPECT_OK(ServerLock::Acquire(data));
}

}  // namespace
}  // namespace yunzhi::store
