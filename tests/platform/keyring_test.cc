// The keyring on real files and a real SQLite database: wrong and missing master keys, rotation
// (also interrupted), crypto-shredding and concurrent key creation.
#include "yunzhi/platform/keyring.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "support/process.h"
#include "yunzhi/base/crypto.h"
#include "yunzhi/platform/schema.h"
#include "yunzhi/store/blob_store.h"

namespace yunzhi::platform {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteAll(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

class KeyringTest : public ::testing::Test {
 protected:
  void SetUp() override { OpenDb(); }

  void OpenDb() {
    store::DatabaseOptions options;
    options.url = db_path().string();
    auto db = store::Database::Open(options);
    ASSERT_TRUE(db) << db.error().ToString();
    db_ = std::move(*db);
    ASSERT_TRUE(MigrateSchema(*db_));
  }
  void CloseDb() { db_.reset(); }

  fs::path dir() const { return fs::path(tmp_.path()); }
  fs::path db_path() const { return dir() / "yunzhi.db"; }
  fs::path key_file() const { return dir() / "master.key"; }

  Result<std::unique_ptr<Keyring>> OpenKeyring(std::optional<std::string> env = std::nullopt) {
    KeyringOptions o;
    o.master_key_file = key_file();
    o.master_key_hex = std::move(env);
    return Keyring::Open(*db_, o, clock_);
  }

  std::unique_ptr<Keyring> MustOpen() {
    auto kr = OpenKeyring();
    EXPECT_TRUE(kr) << kr.error().ToString();
    return kr ? std::move(*kr) : nullptr;
  }

  int64_t CountTenantKeys() {
    auto r = db_->QueryOne("SELECT COUNT(*) FROM tenant_keys");
    EXPECT_TRUE(r && *r);
    return (r && *r) ? (*r)->Int(0) : -1;
  }

  yunzhi::testing::TempDir tmp_;
  FakeClock clock_;
  std::unique_ptr<store::Database> db_;
};

TEST_F(KeyringTest, GeneratesAPrivateMasterKeyFileOnFirstOpen) {
  auto kr = MustOpen();
  ASSERT_TRUE(kr);
  EXPECT_TRUE(kr->generated_master_key());
  struct stat st{};
  ASSERT_EQ(::stat(key_file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  const std::string hex = ReadAll(key_file());
  EXPECT_EQ(hex.size(), 65u);  // 64 hex + newline
  kr.reset();
  auto again = MustOpen();
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->generated_master_key());
  EXPECT_EQ(ReadAll(key_file()), hex);
}

TEST_F(KeyringTest, ProcessesOpeningAFreshDataDirAtOnceAgreeOnOneMasterKey) {
  // Separate Database objects stand in for a server and a CLI command starting together.
  constexpr int kOpeners = 6;
  std::vector<std::unique_ptr<store::Database>> dbs;
  for (int i = 0; i < kOpeners; ++i) {
    store::DatabaseOptions options;
    options.url = db_path().string();
    auto db = store::Database::Open(options);
    ASSERT_TRUE(db);
    dbs.push_back(std::move(*db));
  }
  std::vector<std::unique_ptr<Keyring>> rings(kOpeners);
  std::vector<std::string> errors(kOpeners);
  std::vector<std::thread> threads;
  for (int i = 0; i < kOpeners; ++i) {
    threads.emplace_back([&, i] {
      KeyringOptions o;
      o.master_key_file = key_file();
      auto kr = Keyring::Open(*dbs[i], o, clock_);
      if (kr) {
        rings[i] = std::move(*kr);
      } else {
        errors[i] = kr.error().ToString();
      }
    });
  }
  for (auto& t : threads) t.join();
  int n_generated = 0;
  for (int i = 0; i < kOpeners; ++i) {
    ASSERT_NE(rings[i], nullptr) << errors[i];
    n_generated += rings[i]->generated_master_key() ? 1 : 0;
  }
  EXPECT_EQ(n_generated, 1);
  auto a = rings[0]->ForTenant("ten_a");
  ASSERT_TRUE(a);
  const std::string sealed = (*a)->Seal("x");
  for (int i = 1; i < kOpeners; ++i) {
    auto c = rings[i]->ForTenant("ten_a");
    ASSERT_TRUE(c) << i;
    EXPECT_TRUE((*c)->Open(sealed)) << i;
  }
  EXPECT_TRUE(MustOpen());
}

TEST_F(KeyringTest, SealedBlobsHoldNoPlaintext) {
  auto kr = MustOpen();
  ASSERT_TRUE(kr);
  auto cipher = kr->ForTenant("ten_acme");
  ASSERT_TRUE(cipher) << cipher.error().ToString();
  const std::string marker = "TOP-SECRET-MARKER-7f3a9c";
  std::string plaintext;
  for (int i = 0; i < 100; ++i) plaintext += "line " + std::to_string(i) + " " + marker + "\n";
  auto blobs = store::BlobStore::Open(dir() / "blobs");
  ASSERT_TRUE(blobs);
  auto put = (*blobs)->Put((*cipher)->Seal(plaintext, "doc_1"));
  ASSERT_TRUE(put);
  const std::string on_disk = ReadAll((*blobs)->PathOf(put->digest));
  ASSERT_EQ(on_disk.size(), plaintext.size() + crypto::DataCipher::kOverheadBytes);
  EXPECT_EQ(on_disk.find(marker), std::string::npos);
  EXPECT_EQ(on_disk.find("line 1"), std::string::npos);
  auto opened = (*cipher)->Open(on_disk, "doc_1");
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, plaintext);
  // Neither the master key nor the raw data key is in the database file.
  CloseDb();
  std::string db_bytes = ReadAll(db_path());
  for (const char* suffix : {"-wal"}) {
    if (fs::exists(db_path().string() + suffix)) db_bytes += ReadAll(db_path().string() + suffix);
  }
  const std::string master_hex = ReadAll(key_file()).substr(0, 64);
  EXPECT_EQ(db_bytes.find(master_hex), std::string::npos);
  std::string master_raw;
  for (size_t i = 0; i < 64; i += 2) {
    master_raw.push_back(static_cast<char>(std::stoi(master_hex.substr(i, 2), nullptr, 16)));
  }
  EXPECT_EQ(db_bytes.find(master_raw), std::string::npos);
}

TEST_F(KeyringTest, WrongMasterKeyFailsAtStartAndTouchesNothing) {
  {
    auto kr = MustOpen();
    ASSERT_TRUE(kr);
    ASSERT_TRUE(kr->ForTenant("ten_a"));
    ASSERT_TRUE(kr->ForTenant("ten_b"));
  }
  CloseDb();  // checkpoints the WAL into the main file
  WriteAll(key_file(), crypto::HexEncode(Keyring::GenerateMasterKey()) + "\n");
  const std::string db_before = ReadAll(db_path());
  const std::string key_before = ReadAll(key_file());
  OpenDb();
  auto kr = OpenKeyring();
  ASSERT_FALSE(kr);
  EXPECT_EQ(kr.error().code, Code::kFailedPrecondition);
  EXPECT_NE(kr.error().message.find("master key does not match this data dir"), std::string::npos)
      << kr.error().message;
  EXPECT_NE(kr.error().message.find(key_file().string()), std::string::npos);
  // A wrong key in the environment fails the same way.
  auto env = OpenKeyring(crypto::HexEncode(Keyring::GenerateMasterKey()));
  ASSERT_FALSE(env);
  EXPECT_NE(env.error().message.find("does not match"), std::string::npos);
  CloseDb();
  EXPECT_EQ(ReadAll(db_path()), db_before);
  EXPECT_EQ(ReadAll(key_file()), key_before);
  EXPECT_FALSE(fs::exists(key_file().string() + ".new"));
}

TEST_F(KeyringTest, MissingKeyFileWithExistingKeysFailsAndGeneratesNothing) {
  {
    auto kr = MustOpen();
    ASSERT_TRUE(kr);
    ASSERT_TRUE(kr->ForTenant("ten_a"));
  }
  fs::remove(key_file());
  auto kr = OpenKeyring();
  ASSERT_FALSE(kr);
  EXPECT_EQ(kr.error().code, Code::kFailedPrecondition);
  EXPECT_NE(kr.error().message.find("missing"), std::string::npos) << kr.error().message;
  EXPECT_FALSE(fs::exists(key_file()));
}

TEST_F(KeyringTest, EnvironmentKeyWinsAndIsNeverWritten) {
  const std::string hex = crypto::HexEncode(Keyring::GenerateMasterKey());
  std::string sealed;
  {
    auto kr = OpenKeyring(hex);
    ASSERT_TRUE(kr) << kr.error().ToString();
    EXPECT_FALSE((*kr)->generated_master_key());
    EXPECT_EQ((*kr)->master_key_source(), "YUNZHI_MASTER_KEY");
    auto c = (*kr)->ForTenant("ten_a");
    ASSERT_TRUE(c);
    sealed = (*c)->Seal("hello");
    auto rot = (*kr)->RotateMaster(Keyring::GenerateMasterKey());
    ASSERT_FALSE(rot);
    EXPECT_EQ(rot.error().code, Code::kFailedPrecondition);
  }
  EXPECT_FALSE(fs::exists(key_file()));
  auto kr = OpenKeyring(hex);
  ASSERT_TRUE(kr);
  auto c = (*kr)->ForTenant("ten_a");
  ASSERT_TRUE(c);
  auto opened = (*c)->Open(sealed);
  ASSERT_TRUE(opened);
  EXPECT_EQ(*opened, "hello");

  for (const std::string& bad : {std::string("abc"), std::string(64, 'g'), std::string(66, 'a')}) {
    auto r = OpenKeyring(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Code::kInvalidArgument);
    EXPECT_NE(r.error().message.find("YUNZHI_MASTER_KEY"), std::string::npos);
  }
}

TEST_F(KeyringTest, MalformedKeyFileIsAClearError) {
  WriteAll(key_file(), "not a key\n");
  auto kr = OpenKeyring();
  ASSERT_FALSE(kr);
  EXPECT_EQ(kr.error().code, Code::kInvalidArgument);
  EXPECT_NE(kr.error().message.find("64 hex"), std::string::npos);
}

TEST_F(KeyringTest, RotationKeepsEveryTenantsDataReadableAndRetiresTheOldKey) {
  std::map<std::string, std::string> sealed;
  std::string old_hex;
  {
    auto kr = MustOpen();
    ASSERT_TRUE(kr);
    old_hex = ReadAll(key_file());
    for (const char* t : {"ten_a", "ten_b", "ten_c"}) {
      auto c = kr->ForTenant(t);
      ASSERT_TRUE(c);
      sealed[t] = (*c)->Seal(std::string("data of ") + t, t);
    }
    const std::string new_key = Keyring::GenerateMasterKey();
    auto rot = kr->RotateMaster(new_key);
    ASSERT_TRUE(rot) << rot.error().ToString();
    EXPECT_EQ(ReadAll(key_file()), crypto::HexEncode(new_key) + "\n");
    EXPECT_FALSE(fs::exists(key_file().string() + ".new"));
    EXPECT_FALSE(fs::exists(key_file().string() + ".prev"));
    // The same process keeps working, also for tenants created after the rotation.
    auto c = kr->ForTenant("ten_a");
    ASSERT_TRUE(c);
    EXPECT_EQ(*(*c)->Open(sealed["ten_a"], "ten_a"), "data of ten_a");
    ASSERT_TRUE(kr->ForTenant("ten_d"));
    EXPECT_FALSE(kr->RotateMaster("short"));
  }
  {
    auto kr = MustOpen();  // a fresh start with the new key file
    ASSERT_TRUE(kr);
    for (const auto& [t, s] : sealed) {
      auto c = kr->ForTenant(t);
      ASSERT_TRUE(c) << c.error().ToString();
      auto opened = (*c)->Open(s, t);
      ASSERT_TRUE(opened) << t;
      EXPECT_EQ(*opened, "data of " + t);
    }
    EXPECT_TRUE(kr->ForTenant("ten_d"));
    EXPECT_EQ(CountTenantKeys(), 4);
  }
  WriteAll(key_file(), old_hex);
  auto stale = OpenKeyring();
  ASSERT_FALSE(stale);
  EXPECT_NE(stale.error().message.find("does not match"), std::string::npos);
}

TEST_F(KeyringTest, RotationInterruptedAtAnyStepStillOpens) {
  std::string sealed, old_hex, new_hex;
  const std::string next = key_file().string() + ".new";
  const std::string prev = key_file().string() + ".prev";
  {
    auto kr = MustOpen();
    ASSERT_TRUE(kr);
    old_hex = ReadAll(key_file());
    auto c = kr->ForTenant("ten_a");
    ASSERT_TRUE(c);
    sealed = (*c)->Seal("survives");
  }
  auto expect_opens = [&](const std::string& want_hex, const char* when) {
    auto kr = OpenKeyring();
    ASSERT_TRUE(kr) << when << ": " << kr.error().ToString();
    auto c = (*kr)->ForTenant("ten_a");
    ASSERT_TRUE(c) << when;
    auto opened = (*c)->Open(sealed);
    ASSERT_TRUE(opened) << when;
    EXPECT_EQ(ReadAll(key_file()), want_hex) << when;
    EXPECT_FALSE(fs::exists(next)) << when;
    EXPECT_FALSE(fs::exists(prev)) << when;
  };
  // Crash after step 1 (new key written, database not yet committed): the old key stays.
  WriteAll(next, crypto::HexEncode(Keyring::GenerateMasterKey()) + "\n");
  expect_opens(old_hex, "before commit");

  // Rotate for real, then recreate the file states a crash after the commit can leave.
  {
    auto kr = MustOpen();
    ASSERT_TRUE(kr);
    ASSERT_TRUE(kr->RotateMaster(Keyring::GenerateMasterKey()));
    new_hex = ReadAll(key_file());
  }
  // After commit, before any rename: <file> old, <file>.new new.
  WriteAll(key_file(), old_hex);
  WriteAll(next, new_hex);
  expect_opens(new_hex, "after commit");
  // Between the renames: no <file>, .new new, .prev old.
  fs::remove(key_file());
  WriteAll(next, new_hex);
  WriteAll(prev, old_hex);
  expect_opens(new_hex, "between renames");
  // After the renames, before removing .prev.
  WriteAll(prev, old_hex);
  expect_opens(new_hex, "before cleanup");
}

TEST_F(KeyringTest, DestroyingATenantKeyMakesItsCiphertextUnreadableForever) {
  std::string sealed_a, sealed_b;
  {
    auto kr = MustOpen();
    ASSERT_TRUE(kr);
    auto a = kr->ForTenant("ten_a");
    auto b = kr->ForTenant("ten_b");
    ASSERT_TRUE(a && b);
    sealed_a = (*a)->Seal("tenant a secret");
    sealed_b = (*b)->Seal("tenant b secret");
    ASSERT_TRUE(kr->DestroyTenantKey("ten_a"));
    EXPECT_TRUE(kr->DestroyTenantKey("ten_never_had_one"));
    EXPECT_FALSE(kr->DestroyTenantKey(""));
    auto fresh = kr->ForTenant("ten_a");
    ASSERT_TRUE(fresh);
    EXPECT_NE(fresh->get(), a->get());
    auto r = (*fresh)->Open(sealed_a);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, Code::kInternal);
    EXPECT_TRUE((*kr->ForTenant("ten_b"))->Open(sealed_b));
  }
  auto kr = MustOpen();
  ASSERT_TRUE(kr);
  auto a = kr->ForTenant("ten_a");
  ASSERT_TRUE(a);
  EXPECT_FALSE((*a)->Open(sealed_a));
  EXPECT_EQ(*(*kr->ForTenant("ten_b"))->Open(sealed_b), "tenant b secret");
  EXPECT_EQ(CountTenantKeys(), 2);
}

TEST_F(KeyringTest, WrappedKeysCannotBeMovedBetweenTenants) {
  {
    auto kr = MustOpen();
    ASSERT_TRUE(kr);
    ASSERT_TRUE(kr->ForTenant("ten_a"));
    ASSERT_TRUE(kr->ForTenant("ten_b"));
  }
  ASSERT_TRUE(db_->Execute(
      "UPDATE tenant_keys SET wrapped = (SELECT wrapped FROM tenant_keys WHERE tenant_id = "
      "'ten_a') WHERE tenant_id = 'ten_b'"));
  auto kr = MustOpen();
  ASSERT_TRUE(kr);
  auto b = kr->ForTenant("ten_b");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, Code::kInternal);
  EXPECT_FALSE(kr->ForTenant(""));
}

TEST_F(KeyringTest, ConcurrentFirstUseCreatesExactlyOneKey) {
  auto kr1 = MustOpen();
  ASSERT_TRUE(kr1);
  // A second keyring on its own connection pool stands in for a second process.
  store::DatabaseOptions options;
  options.url = db_path().string();
  auto db2 = store::Database::Open(options);
  ASSERT_TRUE(db2);
  KeyringOptions o;
  o.master_key_file = key_file();
  auto kr2 = Keyring::Open(**db2, o, clock_);
  ASSERT_TRUE(kr2) << kr2.error().ToString();

  constexpr int kThreads = 8;
  std::vector<std::shared_ptr<const crypto::DataCipher>> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      Keyring& kr = i % 2 == 0 ? *kr1 : **kr2;
      auto c = kr.ForTenant("ten_new");
      if (c) got[i] = *c;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(CountTenantKeys(), 1);
  const std::string sealed = got[0]->Seal("same key everywhere");
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_NE(got[i], nullptr) << i;
    auto opened = got[i]->Open(sealed);
    ASSERT_TRUE(opened) << i;
  }
  // Within one keyring the cipher is cached: one object.
  EXPECT_EQ(got[0].get(), got[2].get());
}

}  // namespace
}  // namespace yunzhi::platform
