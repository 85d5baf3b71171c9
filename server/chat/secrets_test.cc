#include "server/chat/secrets.h"

#include <gtest/gtest.h>
#include <sodium.h>

#include <string>

namespace quire::chat {
namespace {

bool IsLowerHex(const std::string& s) {
  return s.find_first_not_of("0123456789abcdef") == std::string::npos;
}

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(InitSecrets()); }
};

TEST_F(SecretsTest, HashVerifyRoundTrip) {
  const std::string hash = HashPassword("correct horse battery staple");
  EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << hash;
  EXPECT_TRUE(VerifyPassword("correct horse battery staple", hash));
  EXPECT_FALSE(VerifyPassword("correct horse battery stapler", hash));
  EXPECT_FALSE(VerifyPassword("", hash));
  // The interactive limits, not something weaker.
  EXPECT_EQ(crypto_pwhash_str_needs_rehash(hash.c_str(), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                           crypto_pwhash_MEMLIMIT_INTERACTIVE),
            0);
}

TEST_F(SecretsTest, UnicodeAndBinaryPasswords) {
  const std::string nfc = "p\xC3\xA4ssw\xC3\xB6rd";
  const std::string hash = HashPassword(nfc);
  EXPECT_TRUE(VerifyPassword(nfc, hash));
  EXPECT_FALSE(VerifyPassword("pa\xCC\x88ssw\xC3\xB6rd", hash));  // NFD differs in bytes
  const std::string with_nul("a\0b", 3);
  const std::string nul_hash = HashPassword(with_nul);
  EXPECT_TRUE(VerifyPassword(with_nul, nul_hash));
  EXPECT_FALSE(VerifyPassword("a", nul_hash));
}

TEST_F(SecretsTest, HashesDifferBySalt) {
  const std::string a = HashPassword("same");
  const std::string b = HashPassword("same");
  EXPECT_NE(a, b);
  EXPECT_TRUE(VerifyPassword("same", a));
  EXPECT_TRUE(VerifyPassword("same", b));
}

TEST_F(SecretsTest, MalformedHashesNeverMatch) {
  EXPECT_FALSE(VerifyPassword("", ""));
  EXPECT_FALSE(VerifyPassword("x", ""));
  EXPECT_FALSE(VerifyPassword("x", "not a hash"));
  EXPECT_FALSE(VerifyPassword("x", "$argon2id$v=19$m=65536,t=2,p=1$"));
  EXPECT_FALSE(VerifyPassword("x", std::string(500, 'a')));
  std::string hash = HashPassword("x");
  EXPECT_FALSE(VerifyPassword("x", hash + std::string(1, '\0') + "junk"));
  hash.back() = hash.back() == 'A' ? 'B' : 'A';  // corrupt the digest
  EXPECT_FALSE(VerifyPassword("x", hash));
}

TEST_F(SecretsTest, DummyHash) {
  const std::string& dummy = DummyPasswordHash();
  EXPECT_EQ(dummy.rfind("$argon2id$", 0), 0u);
  EXPECT_EQ(&dummy, &DummyPasswordHash());  // computed once
  EXPECT_FALSE(VerifyPassword("", dummy));
  EXPECT_FALSE(VerifyPassword("password", dummy));
}

TEST_F(SecretsTest, Tokens) {
  const std::string a = NewToken();
  const std::string b = NewToken();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_TRUE(IsLowerHex(a)) << a;
  EXPECT_NE(a, b);
}

TEST_F(SecretsTest, Passwords) {
  const std::string a = NewPassword();
  EXPECT_EQ(a.size(), 20u);
  EXPECT_EQ(a.find_first_not_of("23456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"),
            std::string::npos)
      << a;
  EXPECT_NE(NewPassword(), a);
  EXPECT_EQ(NewPassword(32).size(), 32u);
}

TEST_F(SecretsTest, HashToken) {
  // SHA-256 test vectors (FIPS 180-2).
  EXPECT_EQ(HashToken(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string token = NewToken();
  EXPECT_EQ(HashToken(token), HashToken(token));
  EXPECT_NE(HashToken(token), HashToken(NewToken()));
  EXPECT_NE(HashToken(token), token);
  EXPECT_EQ(HashToken(token).size(), 64u);
  EXPECT_TRUE(IsLowerHex(HashToken(token)));
}

}  // namespace
}  // namespace quire::chat
