// Stop strings on streamed text: nothing that could begin a stop string is shown early, a match
// across chunks is found, the text ends at the first match.
#include "server/stop_strings.h"

#include <gtest/gtest.h>

namespace epserve {
namespace {

std::string feed_all(StopStringFilter& f, const std::vector<std::string>& chunks,
                     std::vector<std::string>* shown = nullptr) {
  std::string out;
  for (const auto& c : chunks) {
    std::string s = f.feed(c);
    if (shown != nullptr) shown->push_back(s);
    out += s;
  }
  return out + f.flush();
}

TEST(StopStrings, NoStopsPassesEverything) {
  StopStringFilter f({});
  EXPECT_EQ(f.feed("abc"), "abc");
  EXPECT_EQ(f.flush(), "");
  EXPECT_FALSE(f.matched());
}

TEST(StopStrings, HoldsBackAPossibleStart) {
  StopStringFilter f({"END"});
  EXPECT_EQ(f.feed("hello E"), "hello ");
  EXPECT_EQ(f.feed("N"), "");
  EXPECT_EQ(f.feed("x"), "ENx");  // not a stop string after all
  EXPECT_FALSE(f.matched());
}

TEST(StopStrings, MatchAcrossChunksTruncates) {
  StopStringFilter f({"END"});
  std::vector<std::string> shown;
  std::string text = feed_all(f, {"one E", "N", "D two"}, &shown);
  EXPECT_EQ(text, "one ");
  EXPECT_TRUE(f.matched());
  EXPECT_EQ(f.matched_stop(), "END");
  for (const auto& s : shown) EXPECT_EQ(s.find('E'), std::string::npos) << s;
  EXPECT_EQ(f.feed("more"), "");
}

TEST(StopStrings, EarliestMatchWins) {
  StopStringFilter f({"cd", "b"});
  EXPECT_EQ(f.feed("abcd"), "a");
  EXPECT_EQ(f.matched_stop(), "b");
}

TEST(StopStrings, NoStopTrimKeepsTheStopString) {
  StopStringFilter f({"\n\n"}, true);
  EXPECT_EQ(feed_all(f, {"a\n", "\nb"}), "a\n\n");
}

TEST(StopStrings, FlushReleasesTheTail) {
  StopStringFilter f({"stop"});
  EXPECT_EQ(f.feed("sto"), "");
  EXPECT_EQ(f.flush(), "sto");
}

TEST(StopStrings, StreamedEqualsWhole) {
  // Whatever the chunking, the released text is the same.
  const std::string text = "the cat sat. The end. More";
  for (size_t step = 1; step <= 5; ++step) {
    StopStringFilter f({"end.", "xyz"});
    std::vector<std::string> chunks;
    for (size_t i = 0; i < text.size(); i += step) chunks.push_back(text.substr(i, step));
    EXPECT_EQ(feed_all(f, chunks), "the cat sat. The ") << step;
  }
}

TEST(StopStrings, MultibyteStopString) {
  StopStringFilter f({"ü!"});
  EXPECT_EQ(f.feed("grün"), "grün");
  EXPECT_EQ(f.feed(" ü"), " ");
  EXPECT_EQ(f.feed("!"), "");
  EXPECT_TRUE(f.matched());
}

}  // namespace
}  // namespace epserve
