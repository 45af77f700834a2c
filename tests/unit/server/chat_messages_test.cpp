// Chat messages as SGLang hands them to a template: text parts joined with one space for templates
// that take string content, kept as a list for templates that loop over the content.
#include "server/chat_messages.h"

#include <gtest/gtest.h>

#include "core/mapped_file.h"
#include "server/errors.h"

namespace epserve {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

std::string template_file(const std::string& name) {
  return read_text_file(std::string(EPSERVE_SOURCE_DIR) + "/tests/data/tokenizers/templates/" +
                        name);
}

TEST(ChatMessages, ContentFormatIsDetectedAsSglangDoes) {
  EXPECT_EQ(detect_chat_content_format(template_file("qwen3.jinja")), ChatContentFormat::kString);
  EXPECT_EQ(detect_chat_content_format(template_file("deepseek_v3_1.jinja")),
            ChatContentFormat::kString);
  EXPECT_EQ(detect_chat_content_format(template_file("kimi_k2_instruct.jinja")),
            ChatContentFormat::kOpenai);
  EXPECT_EQ(detect_chat_content_format(
                "{% for m in messages %}{% for part in m['content'] %}{{ part.text }}"
                "{% endfor %}{% endfor %}"),
            ChatContentFormat::kOpenai);
  EXPECT_EQ(detect_chat_content_format("{% for c in message.content | reverse %}{% endfor %}"),
            ChatContentFormat::kOpenai);
  EXPECT_EQ(detect_chat_content_format("{{ message.content }}{% for x in message.tool_calls %}"),
            ChatContentFormat::kString);
}

json parts_message(const std::string& role) {
  return {{"role", role},
          {"content", json::array({{{"type", "text"}, {"text", "Hello"}},
                                   {{"type", "text"}, {"text", "world"}}})}};
}

TEST(ChatMessages, TextPartsJoinedWithASpaceForStringTemplates) {
  ordered_json out =
      template_messages(json::array({parts_message("user")}), ChatContentFormat::kString);
  EXPECT_EQ(out[0]["content"], "Hello world");
}

TEST(ChatMessages, TextPartsKeptAsAListForOpenaiTemplates) {
  ordered_json out = template_messages(json::array({parts_message("user"), parts_message("tool")}),
                                       ChatContentFormat::kOpenai);
  ASSERT_TRUE(out[0]["content"].is_array());
  EXPECT_EQ(out[0]["content"][1]["text"], "world");
  EXPECT_EQ(out[1]["content"], "Hello world");  // tool results are joined for every template
}

TEST(ChatMessages, ImagePartsAreRefusedWithoutVision) {
  json image = {{"role", "user"},
                {"content", json::array({{{"type", "image_url"}, {"image_url", "x"}}})}};
  EXPECT_THROW(template_messages(json::array({image}), ChatContentFormat::kString), ApiError);
}

}  // namespace
}  // namespace epserve
