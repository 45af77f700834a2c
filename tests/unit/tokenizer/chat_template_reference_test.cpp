// Chat templates rendered by our Jinja engine against Python jinja2 (the environment transformers
// uses) for every template fixture and conversation in tests/data/tokenizers/templates/
// expected.jsonl (written by tools/reference/tokenizer/render_templates.py).
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "core/error.h"
#include "reference_test_util.h"
#include "tokenizer/chat_template.h"

namespace epserve::tokenizer {
namespace {

using testing::fixture_dir;

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct Source {
  const char* name;
  const char* source;  // .jinja file, or tokenizer_config.json holding "chat_template"
  const char* config;
};

const Source kSources[] = {
    {"qwen3", "templates/qwen3.jinja", "small/qwen3/tokenizer_config.json"},
    {"deepseek_v3_1", "templates/deepseek_v3_1.jinja", "small/deepseek_v3/tokenizer_config.json"},
    {"kimi_k2_instruct", "templates/kimi_k2_instruct.jinja", "small/kimi_k2/tokenizer_config.json"},
    {"kimi_k2_thinking", "templates/kimi_k2_thinking.jinja", "small/kimi_k2/tokenizer_config.json"},
    {"deepseek_v3", "deepseek_v3/tokenizer_config.json", "deepseek_v3/tokenizer_config.json"},
    {"qwen2_5", "qwen2_5/tokenizer_config.json", "qwen2_5/tokenizer_config.json"},
};

TEST(ChatTemplateReference, MatchesJinja2ForEveryTemplateAndConversation) {
  std::map<std::string, ChatTemplate> templates;
  for (const Source& s : kSources) {
    std::string path = fixture_dir() + "/" + s.source;
    auto config = nlohmann::json::parse(read(fixture_dir() + "/" + s.config));
    std::string source = std::string(s.source).ends_with(".json")
                             ? nlohmann::json::parse(read(path))["chat_template"].get<std::string>()
                             : read(path);
    templates.emplace(s.name, ChatTemplate::from_source(source, config, path));
  }
  std::ifstream in(fixture_dir() + "/templates/expected.jsonl");
  ASSERT_TRUE(in.good());
  std::map<std::string, int> per_template;
  std::string line;
  int mismatches = 0;
  while (std::getline(in, line)) {
    auto r = nlohmann::ordered_json::parse(line);
    std::string name = r["template"];
    const ChatTemplate& t = templates.at(name);
    ++per_template[name];
    bool agp = r["add_generation_prompt"];
    if (r.contains("error")) {
      EXPECT_THROW(t.render_json(r["messages"], agp, r["kwargs"]), Error)
          << name << ": jinja2 raised " << r["error"] << " for " << r["messages"].dump();
      continue;
    }
    std::string ours;
    try {
      ours = t.render_json(r["messages"], agp, r["kwargs"]);
    } catch (const Error& e) {
      ADD_FAILURE() << name << ": " << e.what() << " for " << r["messages"].dump();
      continue;
    }
    if (ours != r["rendered"].get<std::string>() && ++mismatches <= 5) {
      ADD_FAILURE() << name << " add_generation_prompt=" << agp << " kwargs=" << r["kwargs"].dump()
                    << "\nmessages: " << r["messages"].dump() << "\njinja2:\n"
                    << r["rendered"].get<std::string>() << "\nours:\n"
                    << ours;
    }
  }
  EXPECT_EQ(mismatches, 0);
  for (const Source& s : kSources) EXPECT_GE(per_template[s.name], 40) << s.name;
}

}  // namespace
}  // namespace epserve::tokenizer
