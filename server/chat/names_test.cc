#include "server/chat/names.h"

#include <gtest/gtest.h>

#include <string>

namespace quire::chat {
namespace {

std::string Repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(Utf8Test, AcceptsWellFormed) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9"));               // é
  EXPECT_TRUE(IsValidUtf8("\xE2\x82\xAC"));              // €
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80"));          // U+1F600
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));          // U+10FFFF
  EXPECT_TRUE(IsValidUtf8("\xED\x9F\xBF\xEE\x80\x80"));  // U+D7FF, U+E000
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));      // NUL is a scalar value
}

// Long ASCII runs are skipped eight bytes at a time: a bad byte must be
// found at every offset around them, and good text across them accepted.
TEST(Utf8Test, LongAsciiRunsAroundOtherBytes) {
  for (std::size_t at = 0; at <= 20; ++at) {
    std::string text(20, 'a');
    EXPECT_TRUE(IsValidUtf8(text.substr(0, at) + "\xC3\xA9" + text)) << at;
    EXPECT_FALSE(IsValidUtf8(text.substr(0, at) + "\xFF" + text)) << at;
    EXPECT_FALSE(IsValidUtf8(text.substr(0, at) + "\xE2\x82" + text)) << at;  // cut short
  }
}

TEST(Utf8Test, RejectsMalformed) {
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xC1\xBF"));          // overlong
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));      // overlong, 3 bytes
  EXPECT_FALSE(IsValidUtf8("\xF0\x80\x80\xAF"));  // overlong, 4 bytes
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // U+D800, a surrogate
  EXPECT_FALSE(IsValidUtf8("\xED\xBF\xBF"));      // U+DFFF, a surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // U+110000
  EXPECT_FALSE(IsValidUtf8("\xF5\x80\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xFF"));
  EXPECT_FALSE(IsValidUtf8("\x80"));          // lone continuation
  EXPECT_FALSE(IsValidUtf8("a\xC3"));         // truncated 2-byte
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));      // truncated 3-byte
  EXPECT_FALSE(IsValidUtf8("\xF0\x9F\x98"));  // truncated 4-byte
  EXPECT_FALSE(IsValidUtf8("\xE2\x82x"));     // bad continuation
}

TEST(NfcTest, ComposesAndRejectsInvalid) {
  EXPECT_EQ(ToNfc("Cafe\xCC\x81"), std::optional<std::string>("Caf\xC3\xA9"));
  EXPECT_EQ(ToNfc("Caf\xC3\xA9"), std::optional<std::string>("Caf\xC3\xA9"));
  EXPECT_EQ(ToNfc(""), std::optional<std::string>(""));
  // U+212B ANGSTROM SIGN is canonically U+00C5.
  EXPECT_EQ(ToNfc("\xE2\x84\xAB"), std::optional<std::string>("\xC3\x85"));
  // NFC keeps compatibility characters: the ligature stays.
  EXPECT_EQ(ToNfc("\xEF\xAC\x81"), std::optional<std::string>("\xEF\xAC\x81"));
  EXPECT_EQ(ToNfc(std::string("a\0b", 3)), std::optional<std::string>(std::string("a\0b", 3)));
  EXPECT_EQ(ToNfc("\xC0\xAF"), std::nullopt);
  EXPECT_EQ(ToNfc("\xED\xA0\x80"), std::nullopt);
  EXPECT_EQ(ToNfc("\xF4\x90\x80\x80"), std::nullopt);
  EXPECT_EQ(ToNfc("ok\xE2\x82"), std::nullopt);
}

std::string Canon(const std::string& raw) {
  return CanonicalName(*ToNfc(raw));
}

TEST(CanonicalNameTest, SameNames) {
  EXPECT_EQ(Canon("Alice"), Canon("aLiCe"));
  EXPECT_EQ(Canon("Alice"), "alice");
  EXPECT_EQ(Canon("Stra\xC3\x9F"
                  "e"),
            Canon("STRASSE"));
  EXPECT_EQ(Canon("STRASSE"), "strasse");
  EXPECT_EQ(Canon("\xEF\xAC\x81"), Canon("fi"));        // U+FB01 LATIN SMALL LIGATURE FI
  EXPECT_EQ(Canon("\xE2\x84\xAB"), Canon("\xC3\xA5"));  // U+212B ANGSTROM SIGN vs å
  EXPECT_EQ(Canon("\xC3\x85"), "\xC3\xA5");
  EXPECT_EQ(Canon("Cafe\xCC\x81"), Canon("CAF\xC3\x89"));
  EXPECT_EQ(Canon("\xEF\xBC\xA1"), "a");  // U+FF21 FULLWIDTH A
  // Default-ignorable characters vanish, as in NFKC_Casefold.
  EXPECT_EQ(Canon("a\xC2\xAD"
                  "b"),
            "ab");  // U+00AD SOFT HYPHEN
  EXPECT_EQ(Canon("a\xE2\x80\x8B"
                  "b"),
            "ab");  // U+200B ZERO WIDTH SPACE
  EXPECT_EQ(CanonicalName(""), "");
}

TEST(CanonicalNameTest, DifferentNames) {
  EXPECT_NE(Canon("alice"), Canon("alicia"));
  EXPECT_NE(Canon("caf\xC3\xA9"), Canon("cafe"));  // accents are kept
  EXPECT_NE(Canon("a b"), Canon("ab"));            // spaces are kept
}

TEST(CountScalarsTest, Counts) {
  EXPECT_EQ(CountScalars(""), 0u);
  EXPECT_EQ(CountScalars("abc"), 3u);
  EXPECT_EQ(CountScalars("caf\xC3\xA9"), 4u);
  EXPECT_EQ(CountScalars("\xE2\x82\xAC\xF0\x9F\x98\x80"), 2u);
  EXPECT_EQ(CountScalars(std::string("a\0b", 3)), 3u);
}

TEST(NameProblemTest, ValidNames) {
  EXPECT_EQ(NameProblem("a"), std::nullopt);
  EXPECT_EQ(NameProblem("Alice"), std::nullopt);
  EXPECT_EQ(NameProblem("general chat"), std::nullopt);
  EXPECT_EQ(NameProblem("a b c"), std::nullopt);
  EXPECT_EQ(NameProblem("caf\xC3\xA9 \xE2\x82\xAC"), std::nullopt);
  // U+00A0 inside, next to ordinary letters, is fine.
  EXPECT_EQ(NameProblem("a\xC2\xA0"
                        "b"),
            std::nullopt);
}

TEST(NameProblemTest, Length) {
  EXPECT_EQ(NameProblem(""), "name must be 1 to 63 characters");
  const std::string euro = "\xE2\x82\xAC";                 // 3 bytes, one scalar value
  EXPECT_EQ(NameProblem(Repeat(euro, 63)), std::nullopt);  // 189 bytes
  EXPECT_EQ(NameProblem(Repeat(euro, 64)), "name must be 1 to 63 characters");
  const std::string emoji = "\xF0\x9F\x98\x80";
  EXPECT_EQ(NameProblem(Repeat(emoji, 63)), std::nullopt);
  EXPECT_TRUE(NameProblem(Repeat(emoji, 64)).has_value());
  EXPECT_EQ(NameProblem(Repeat("a", 63)), std::nullopt);
  EXPECT_TRUE(NameProblem(Repeat("a", 64)).has_value());
}

TEST(NameProblemTest, Whitespace) {
  const std::string edge = "name must not begin or end with whitespace";
  EXPECT_EQ(NameProblem(" alice"), edge);
  EXPECT_EQ(NameProblem("alice "), edge);
  EXPECT_EQ(NameProblem(" "), edge);
  EXPECT_EQ(NameProblem("\xC2\xA0"
                        "alice"),
            edge);                                    // U+00A0 leading
  EXPECT_EQ(NameProblem("alice\xE3\x80\x80"), edge);  // U+3000 trailing
  EXPECT_EQ(NameProblem("\xE2\x80\xAF"
                        "alice"),
            edge);  // U+202F leading
  const std::string run = "name must not contain two whitespace characters in a row";
  EXPECT_EQ(NameProblem("a  b"), run);
  EXPECT_EQ(NameProblem("a \xC2\xA0"
                        "b"),
            run);
  EXPECT_EQ(NameProblem("a\xE2\x80\x80\xE2\x80\x8A"
                        "b"),
            run);  // U+2000 U+200A
  // Not White_Space, so not a run: U+200B ZERO WIDTH SPACE.
  EXPECT_EQ(NameProblem("a \xE2\x80\x8B b"), std::nullopt);
}

TEST(NameProblemTest, Controls) {
  const std::string control = "name must not contain control characters";
  EXPECT_EQ(NameProblem("a\tb"), control);      // tab is Cc (and White_Space)
  EXPECT_EQ(NameProblem("bell\x07"), control);  // U+0007
  EXPECT_EQ(NameProblem("a\x07"
                        "b"),
            control);
  EXPECT_EQ(NameProblem("a\nb"), control);
  EXPECT_EQ(NameProblem("a\x7F"
                        "b"),
            control);  // DEL
  EXPECT_EQ(NameProblem("a\xC2\x85"
                        "b"),
            control);  // U+0085 NEL (Cc and White_Space)
  EXPECT_EQ(NameProblem("a\xC2\x9F"
                        "b"),
            control);  // U+009F
  EXPECT_EQ(NameProblem(std::string("a\0b", 3)), control);
  // U+00A0 is White_Space but not Cc.
  EXPECT_EQ(NameProblem("a\xC2\xA0"
                        "b"),
            std::nullopt);
}

TEST(NameProblemTest, InvalidUtf8) {
  EXPECT_TRUE(NameProblem("\xC0\xAF").has_value());
}

TEST(BodyProblemTest, Bodies) {
  EXPECT_EQ(BodyProblem("hello"), std::nullopt);
  EXPECT_EQ(BodyProblem(" hello \n\n  world\t"), std::nullopt);
  EXPECT_EQ(BodyProblem("\x07"), std::nullopt);          // controls are allowed in bodies
  EXPECT_EQ(BodyProblem("\xE2\x80\x8B"), std::nullopt);  // ZWSP is not White_Space
  EXPECT_EQ(BodyProblem(""), "message body must not be empty");
  EXPECT_EQ(BodyProblem(std::string_view("a\0b", 3)), "message body must not contain U+0000");
  EXPECT_EQ(BodyProblem("  \n\t"), "message body must not be only whitespace");
  EXPECT_EQ(BodyProblem("\xC2\xA0\xE3\x80\x80\xC2\x85"),
            "message body must not be only whitespace");
  EXPECT_TRUE(BodyProblem("\xC0\xAF").has_value());
}

TEST(BodyProblemTest, Length) {
  const std::string euro = "\xE2\x82\xAC";
  EXPECT_EQ(BodyProblem(Repeat(euro, 8192)), std::nullopt);
  EXPECT_EQ(BodyProblem(Repeat(euro, 8193)), "message body must be at most 8192 characters");
  EXPECT_EQ(BodyProblem(Repeat("x", 8192)), std::nullopt);
  EXPECT_TRUE(BodyProblem(Repeat("x", 8193)).has_value());
  EXPECT_TRUE(BodyProblem(Repeat(" ", 8193)).has_value());
}

}  // namespace
}  // namespace quire::chat
