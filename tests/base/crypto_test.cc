#include "yunzhi/base/crypto.h"

#include <map>
#include <set>

#include <gtest/gtest.h>

namespace yunzhi::crypto {
namespace {

TEST(CryptoTest, Sha256MatchesKnownVectors) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(CryptoTest, IncrementalSha256EqualsOneShot) {
  std::string data;
  for (int i = 0; i < 100000; ++i) data.push_back(static_cast<char>(i * 31));
  Sha256 h;
  for (size_t i = 0; i < data.size(); i += 777) h.Update(std::string_view(data).substr(i, 777));
  EXPECT_EQ(h.FinishHex(), Sha256Hex(data));
}

TEST(CryptoTest, RandomAlnumHasLengthAlphabetAndSpread) {
  EXPECT_EQ(RandomAlnum(0), "");
  std::map<char, int> counts;
  const std::string s = RandomAlnum(62 * 400);
  ASSERT_EQ(s.size(), 62u * 400);
  for (char c : s) {
    ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << c;
    ++counts[c];
  }
  // Every character appears, none wildly more often than the 400 expected (p of a false alarm is
  // negligible at these bounds).
  EXPECT_EQ(counts.size(), 62u);
  for (const auto& [c, n] : counts) {
    EXPECT_GT(n, 250) << c;
    EXPECT_LT(n, 550) << c;
  }
  std::set<std::string> distinct;
  for (int i = 0; i < 1000; ++i) distinct.insert(RandomAlnum(16));
  EXPECT_EQ(distinct.size(), 1000u);
}

TEST(CryptoTest, ConstantTimeEqualsAndHex) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secrets"));
  EXPECT_EQ(HexEncode(std::string("\x00\xff\x10", 3)), "00ff10");
  EXPECT_EQ(RandomBytes(33).size(), 33u);
}

// Reference values from Python's hashlib.blake2b (an implementation independent of libsodium):
// blake2b(b"yunzhi derived key v1\0fts-terms", key=bytes(range(32)), digest_size=32), then
// base32 of the first 10 bytes of blake2b(term, key=derived, digest_size=16).
TEST(CryptoTest, DeriveKeyAndTermTokensMatchBlake2bReference) {
  std::string master;
  for (int i = 0; i < 32; ++i) master.push_back(static_cast<char>(i));
  auto cipher = DataCipher::Create(master);
  ASSERT_TRUE(cipher);
  const std::string derived = (*cipher)->DeriveKey("fts-terms");
  EXPECT_EQ(HexEncode(derived), "4131766183dbd68fba39c8df4595b0a37411bb21187f46597a5c585e0cc3a380");
  auto hasher = TermHasher::Create(derived);
  ASSERT_TRUE(hasher);
  EXPECT_EQ((*hasher)->Token("launch"), "4ywvhzkqu7c3dr2w");
  EXPECT_EQ((*hasher)->Token("通义"), "n3u5r2ace6akmpms");
  std::string appended = "x ";
  (*hasher)->AppendToken("launch", &appended);
  EXPECT_EQ(appended, "x 4ywvhzkqu7c3dr2w");
}

TEST(CryptoTest, DerivedKeysDependOnPurposeAndSecret) {
  auto a = DataCipher::Create(RandomBytes(DataCipher::kKeyBytes));
  auto b = DataCipher::Create(RandomBytes(DataCipher::kKeyBytes));
  ASSERT_TRUE(a && b);
  const std::string k1 = (*a)->DeriveKey("fts-terms:ks_1");
  EXPECT_EQ(k1.size(), DataCipher::kKeyBytes);
  EXPECT_EQ(k1, (*a)->DeriveKey("fts-terms:ks_1"));
  EXPECT_NE(k1, (*a)->DeriveKey("fts-terms:ks_2"));
  EXPECT_NE(k1, (*a)->DeriveKey(""));
  EXPECT_NE(k1, (*b)->DeriveKey("fts-terms:ks_1"));
}

TEST(CryptoTest, TermTokensAreBase32AndKeyed) {
  EXPECT_FALSE(TermHasher::Create("short"));
  auto h1 = TermHasher::Create(RandomBytes(TermHasher::kKeyBytes));
  auto h2 = TermHasher::Create(RandomBytes(TermHasher::kKeyBytes));
  ASSERT_TRUE(h1 && h2);
  std::set<std::string> tokens;
  for (int i = 0; i < 20000; ++i) {
    const std::string term = "term" + std::to_string(i);
    const std::string t = (*h1)->Token(term);
    ASSERT_EQ(t.size(), TermHasher::kTokenChars);
    for (char c : t) ASSERT_TRUE((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')) << t;
    EXPECT_EQ(t, (*h1)->Token(term));
    EXPECT_NE(t, (*h2)->Token(term));
    tokens.insert(t);
  }
  EXPECT_EQ(tokens.size(), 20000u);  // no collisions among distinct terms
  EXPECT_EQ((*h1)->Token("").size(), TermHasher::kTokenChars);
}

}  // namespace
}  // namespace yunzhi::crypto
