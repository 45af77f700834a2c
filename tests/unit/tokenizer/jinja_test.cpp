// The Jinja engine on small templates whose jinja2 output is committed
// (tests/data/tokenizers/templates/jinja_cases.json: whitespace control, Python formatting of
// values, tojson, loops, macros, namespaces, filters, tests, string methods), and its load-time
// errors for unsupported constructs.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "reference_test_util.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/jinja.h"

namespace epserve::tokenizer {
namespace {

using testing::fixture_dir;

TEST(Jinja, MatchesJinja2OnFeatureCases) {
  std::ifstream in(fixture_dir() + "/templates/jinja_cases.json");
  ASSERT_TRUE(in.good());
  auto cases = nlohmann::ordered_json::parse(in);
  ASSERT_GE(cases.size(), 20u);
  for (const auto& c : cases) {
    std::string source = c["source"];
    jinja::Dict vars;
    for (auto it = c["vars"].begin(); it != c["vars"].end(); ++it) {
      vars.set(it.key(), jinja::Value::from_json(it.value()));
    }
    std::string ours;
    try {
      ours = jinja::Template(source).render(vars);
    } catch (const Error& e) {
      ADD_FAILURE() << "template " << source << " failed: " << e.what();
      continue;
    }
    EXPECT_EQ(ours, c["rendered"].get<std::string>()) << "template: " << source;
  }
}

std::string error_of(const std::string& source) {
  try {
    jinja::Template t(source);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Jinja, UnsupportedConstructsFailAtLoadWithTheirLine) {
  EXPECT_EQ(error_of("a\nb\n{% include 'x.jinja' %}"),
            "template line 3: statement '{% include %}' is not supported");
  EXPECT_EQ(error_of("{{ x }}\n{{ x | frobnicate }}"),
            "template line 2: filter 'frobnicate' is not supported");
  EXPECT_EQ(error_of("{% if x is prime %}{% endif %}"),
            "template line 1: test 'prime' is not supported");
  EXPECT_EQ(error_of("\n\n\n{{ '{}'.format(x) }}"),
            "template line 4: method 'format' is not supported");
  EXPECT_NE(error_of("{% for x in xs %}"), "");  // missing endfor
  EXPECT_NE(error_of("{{ x "), "");              // unclosed tag
  EXPECT_NE(error_of("{% for x in xs recursive %}{% endfor %}"), "");
}

TEST(Jinja, RuntimeErrorsNameTheLine) {
  jinja::Template t("ok\n{{ missing.attr }}");
  try {
    t.render(jinja::Dict{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "template line 2: 'missing' is undefined");
  }
  jinja::Template raise("{{ raise_exception('no system role') }}");
  EXPECT_THROW(raise.render(jinja::Dict{}), Error);
}

// The tiny Kimi-K2-Thinking-shaped INT4 fixture ships Kimi-K2-Thinking's template (the file that
// ChatTemplateReference checks against jinja2): earlier turns' reasoning becomes <think></think>,
// the turns after the last plain assistant answer keep reasoning_content. Expected strings:
// jinja2 with transformers' settings (tools/reference/tokenizer/render_templates.py).
TEST(ChatTemplate, KimiK2TinyInt4CarriesTheThinkingTemplate) {
  const std::string model = fixture_dir() + "/../models/kimi_k2_tiny_int4";
  std::ifstream thinking(fixture_dir() + "/templates/kimi_k2_thinking.jinja");
  const std::string source(std::istreambuf_iterator<char>(thinking), {});
  auto kimi = ChatTemplate::load(model);
  EXPECT_EQ(kimi.source(), source);
  const std::string sys =
      "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot "
      "AI.<|im_end|>";
  EXPECT_EQ(kimi.render(R"([{"role":"user","content":"hi"},
      {"role":"assistant","content":"A","reasoning_content":"r1"},
      {"role":"user","content":"q"}])",
                        true),
            sys +
                "<|im_user|>user<|im_middle|>hi<|im_end|><|im_assistant|>assistant<|im_middle|>"
                "<think></think>A<|im_end|><|im_user|>user<|im_middle|>q<|im_end|>"
                "<|im_assistant|>assistant<|im_middle|>");
  EXPECT_EQ(kimi.render(R"([{"role":"user","content":"q"},
      {"role":"assistant","content":"B","reasoning_content":"r2","tool_calls":[{"id":"functions.f:0",
       "type":"function","function":{"name":"f","arguments":"{}"}}]},
      {"role":"tool","tool_call_id":"functions.f:0","content":"ok"}])",
                        true),
            sys +
                "<|im_user|>user<|im_middle|>q<|im_end|><|im_assistant|>assistant<|im_middle|>"
                "<think>r2</think>B<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0"
                "<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|>"
                "<|im_end|><|im_system|>tool<|im_middle|>## Return of functions.f:0\nok<|im_end|>"
                "<|im_assistant|>assistant<|im_middle|>");
}

TEST(ChatTemplate, LoadsFromEachPlaceModelsShipIt) {
  // tokenizer_config.json "chat_template" string
  auto qwen = ChatTemplate::load(fixture_dir() + "/small/qwen3");
  EXPECT_EQ(
      qwen.render(R"([{"role":"user","content":"hi"}])", true, R"({"enable_thinking":false})"),
      "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  // chat_template.jinja beside tokenizer_config.json (Kimi)
  auto kimi = ChatTemplate::load(fixture_dir() + "/small/kimi_k2");
  EXPECT_NE(kimi.render(R"([{"role":"user","content":"hi"}])", true)
                .find("<|im_user|>user<|im_middle|>hi"),
            std::string::npos);
  // bos_token from tokenizer_config.json reaches the template (DeepSeek)
  auto ds = ChatTemplate::load(fixture_dir() + "/small/deepseek_v3");
  EXPECT_EQ(ds.render(R"([{"role":"user","content":"hi"}])", true, R"({"thinking":true})"),
            "<｜begin▁of▁sentence｜><｜User｜>hi<｜Assistant｜><think>");
  // a list of named templates
  auto dir = std::filesystem::temp_directory_path() / "epserve_named_templates";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"chat_template": [{"name": "default", "template": "D{{ messages|length }}"},
                              {"name": "tool_use", "template": "T"}]})";
  EXPECT_EQ(ChatTemplate::load(dir).render("[{}, {}]", false), "D2");
  EXPECT_EQ(ChatTemplate::load(dir, "tool_use").render("[]", false), "T");
  EXPECT_THROW(ChatTemplate::load(dir, "rag"), Error);
  // unsupported construct: reported at load, naming the file and line
  std::ofstream(dir / "chat_template.jinja")
      << "{% for m in messages %}\n{{ m | nope }}{% endfor %}";
  try {
    ChatTemplate::load(dir);
    FAIL() << "expected a load error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("chat_template.jinja"), std::string::npos) << msg;
    EXPECT_NE(msg.find("line 2: filter 'nope' is not supported"), std::string::npos) << msg;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace epserve::tokenizer
