#include "yunzhi/store/blob_store.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "yunzhi/base/crypto.h"

#include "store/store_test_util.h"

namespace yunzhi::store {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using testing::ReadFile;
using testing::TempDir;
using testing::WriteFile;

// SHA-256("hello"), from the FIPS 180 definition (any sha256sum gives it).
constexpr std::string_view kHelloDigest =
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

size_t CountFiles(const fs::path& dir) {
  size_t n = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file()) ++n;
  }
  return n;
}

std::string PseudoRandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(gen() & 0xff);
  return out;
}

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = BlobStore::Open(dir_ / "blobs");
    ASSERT_TRUE(store) << store.error().ToString();
    store_ = std::move(*store);
  }

  TempDir dir_;
  std::unique_ptr<BlobStore> store_;
};

TEST_F(BlobStoreTest, PutGetContainsRemove) {
  ASSERT_OK_AND_ASSIGN(BlobInfo info, store_->Put("hello"));
  EXPECT_EQ(info.digest, kHelloDigest);
  EXPECT_EQ(info.size_bytes, 5u);
  EXPECT_TRUE(store_->Contains(info.digest));
  ASSERT_OK_AND_ASSIGN(std::string bytes, store_->Get(info.digest));
  EXPECT_EQ(bytes, "hello");
  EXPECT_OK(store_->Verify(info.digest));

  ASSERT_OK(store_->Remove(info.digest));
  EXPECT_FALSE(store_->Contains(info.digest));
  auto gone = store_->Get(info.digest);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Code::kNotFound);
  Status verify_gone = store_->Verify(info.digest);
  ASSERT_FALSE(verify_gone);
  EXPECT_EQ(verify_gone.error().code, Code::kNotFound);
  EXPECT_OK(store_->Remove(info.digest));  // idempotent
}

TEST_F(BlobStoreTest, LaysOutBlobsBySha256) {
  ASSERT_OK_AND_ASSIGN(BlobInfo info, store_->Put("hello"));
  const fs::path expected = store_->root() / "sha256" / "2c" / kHelloDigest.substr(2);
  EXPECT_EQ(store_->PathOf(info.digest), expected);
  EXPECT_EQ(ReadFile(expected), "hello");
  EXPECT_TRUE(store_->root().is_absolute());
}

TEST_F(BlobStoreTest, StoresBinaryAndEmptyBlobs) {
  const std::string binary("\0\x01\xff\0end", 7);
  ASSERT_OK_AND_ASSIGN(BlobInfo bin, store_->Put(binary));
  EXPECT_EQ(bin.size_bytes, 7u);
  ASSERT_OK_AND_ASSIGN(std::string back, store_->Get(bin.digest));
  EXPECT_EQ(back, binary);

  ASSERT_OK_AND_ASSIGN(BlobInfo empty, store_->Put(""));
  EXPECT_EQ(empty.digest, crypto::Sha256Hex(""));
  EXPECT_EQ(empty.size_bytes, 0u);
  ASSERT_OK_AND_ASSIGN(std::string empty_back, store_->Get(empty.digest));
  EXPECT_EQ(empty_back, "");
  EXPECT_OK(store_->Verify(empty.digest));
}

TEST_F(BlobStoreTest, StoresIdenticalBytesOnce) {
  ASSERT_OK_AND_ASSIGN(BlobInfo a, store_->Put("same bytes"));
  const auto first_write = fs::last_write_time(store_->PathOf(a.digest));
  ASSERT_OK_AND_ASSIGN(BlobInfo b, store_->Put("same bytes"));
  WriteFile(dir_ / "same.txt", "same bytes");
  ASSERT_OK_AND_ASSIGN(BlobInfo c, store_->PutFile(dir_ / "same.txt"));
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_EQ(a.digest, c.digest);
  EXPECT_EQ(CountFiles(store_->root()), 1u);
  // The stored file was not rewritten.
  EXPECT_EQ(fs::last_write_time(store_->PathOf(a.digest)), first_write);
}

TEST_F(BlobStoreTest, PutFileStreamsAFileOfSeveralMiB) {
  // Not a multiple of the 1 MiB copy piece, so the last piece is partial.
  const std::string content = PseudoRandomBytes((5 << 20) + 12345, 42);
  WriteFile(dir_ / "weights.bin", content);
  ASSERT_OK_AND_ASSIGN(BlobInfo info, store_->PutFile(dir_ / "weights.bin"));
  EXPECT_EQ(info.digest, crypto::Sha256Hex(content));
  EXPECT_EQ(info.size_bytes, content.size());
  EXPECT_EQ(fs::file_size(store_->PathOf(info.digest)), content.size());
  ASSERT_OK_AND_ASSIGN(std::string back, store_->Get(info.digest));
  EXPECT_TRUE(back == content);
  EXPECT_OK(store_->Verify(info.digest));
}

TEST_F(BlobStoreTest, PutFileErrors) {
  auto missing = store_->PutFile(dir_ / "no-such-file");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Code::kNotFound);
  EXPECT_THAT(missing.error().message, HasSubstr("no-such-file"));

  auto directory = store_->PutFile(dir_.path());
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().code, Code::kInvalidArgument);
}

TEST_F(BlobStoreTest, VerifyDetectsACorruptedBlob) {
  const std::string content = PseudoRandomBytes(100000, 7);
  ASSERT_OK_AND_ASSIGN(BlobInfo info, store_->Put(content));
  ASSERT_OK(store_->Verify(info.digest));
  std::string corrupted = content;
  corrupted[5000] ^= 0x01;  // one flipped bit
  WriteFile(store_->PathOf(info.digest), corrupted);
  Status s = store_->Verify(info.digest);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Code::kInternal);
  EXPECT_THAT(s.error().message, HasSubstr("corrupt blob " + info.digest));
  // Get does not check (documented): it returns the bytes on disk.
  ASSERT_OK_AND_ASSIGN(std::string back, store_->Get(info.digest));
  EXPECT_TRUE(back == corrupted);
}

TEST_F(BlobStoreTest, LeavesNoTempFilesBehind) {
  ASSERT_OK(store_->Put("one"));
  ASSERT_OK(store_->Put("one"));  // dedupe path
  WriteFile(dir_ / "f", PseudoRandomBytes(3 << 20, 1));
  ASSERT_OK(store_->PutFile(dir_ / "f"));
  ASSERT_OK(store_->PutFile(dir_ / "f"));  // dedupe path, after a full copy to a temp file
  ASSERT_FALSE(store_->PutFile(dir_ / "missing"));
  EXPECT_TRUE(fs::is_empty(store_->root() / "tmp"));
  EXPECT_EQ(CountFiles(store_->root()), 2u);
}

TEST_F(BlobStoreTest, RejectsMalformedDigests) {
  ASSERT_OK(store_->Put("hello"));
  std::string upper(kHelloDigest);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::vector<std::string> bad = {"",
                                        "xyz",
                                        std::string(kHelloDigest.substr(0, 63)),
                                        std::string(kHelloDigest) + "0",
                                        upper,
                                        "../../../../etc/passwd" + std::string(42, 'a'),
                                        std::string(64, 'g')};
  for (const std::string& digest : bad) {
    EXPECT_FALSE(BlobStore::IsValidDigest(digest)) << digest;
    EXPECT_FALSE(store_->Contains(digest)) << digest;
    auto get = store_->Get(digest);
    ASSERT_FALSE(get) << digest;
    EXPECT_EQ(get.error().code, Code::kInvalidArgument) << digest;
    Status verify = store_->Verify(digest);
    ASSERT_FALSE(verify);
    EXPECT_EQ(verify.error().code, Code::kInvalidArgument);
    Status remove = store_->Remove(digest);
    ASSERT_FALSE(remove);
    EXPECT_EQ(remove.error().code, Code::kInvalidArgument);
  }
  EXPECT_TRUE(BlobStore::IsValidDigest(kHelloDigest));
  EXPECT_TRUE(store_->Contains(kHelloDigest));
}

TEST_F(BlobStoreTest, ConcurrentPutsOfTheSameBytesAgree) {
  const std::string content = PseudoRandomBytes(1 << 20, 3);
  std::vector<std::string> digests(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < digests.size(); ++i) {
    threads.emplace_back([&, i] {
      auto info = store_->Put(content);
      digests[i] = info ? info->digest : info.error().ToString();
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& d : digests) EXPECT_EQ(d, crypto::Sha256Hex(content));
  EXPECT_EQ(CountFiles(store_->root()), 1u);
  EXPECT_OK(store_->Verify(digests[0]));
}

TEST(BlobStoreOpenTest, RemovesStaleTempFilesOnly) {
  TempDir dir;
  {
    auto store = BlobStore::Open(dir / "blobs");
    ASSERT_TRUE(store) << store.error().ToString();
  }
  const fs::path stale = dir / "blobs" / "tmp" / "blob-stale.tmp";
  const fs::path fresh = dir / "blobs" / "tmp" / "blob-fresh.tmp";
  WriteFile(stale, "left by a crash");
  WriteFile(fresh, "being written by another process");
  fs::last_write_time(stale, fs::file_time_type::clock::now() - std::chrono::hours(48));
  auto store = BlobStore::Open(dir / "blobs");
  ASSERT_TRUE(store) << store.error().ToString();
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(fresh));
}

TEST(BlobStoreOpenTest, UnwritableRootIsUnavailable) {
  auto proc = BlobStore::Open("/proc/yunzhi-test/blobs");
  ASSERT_FALSE(proc);
  EXPECT_EQ(proc.error().code, Code::kUnavailable);
  EXPECT_THAT(proc.error().message, HasSubstr("/proc/yunzhi-test/blobs"));

  TempDir dir;
  WriteFile(dir / "file", "x");
  auto under_file = BlobStore::Open(dir / "file" / "blobs");
  ASSERT_FALSE(under_file);
  EXPECT_EQ(under_file.error().code, Code::kUnavailable);
  EXPECT_THAT(under_file.error().message, HasSubstr((dir / "file" / "blobs").string()));

  if (::geteuid() != 0) {  // root writes anywhere: the cases above cover it
    fs::create_directories(dir / "ro" / "blobs" / "sha256");
    fs::create_directories(dir / "ro" / "blobs" / "tmp");
    ::chmod((dir / "ro" / "blobs" / "tmp").c_str(), 0555);
    auto ro = BlobStore::Open(dir / "ro" / "blobs");
    ASSERT_FALSE(ro);
    EXPECT_EQ(ro.error().code, Code::kUnavailable);
    EXPECT_THAT(ro.error().message, HasSubstr("not writable"));
    ::chmod((dir / "ro" / "blobs" / "tmp").c_str(), 0755);
  }
}

}  // namespace
}  // namespace yunzhi::store
