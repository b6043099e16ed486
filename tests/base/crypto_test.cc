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

}  // namespace
}  // namespace yunzhi::crypto
