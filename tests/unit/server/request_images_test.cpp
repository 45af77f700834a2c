// Images in chat and /generate requests against the HF processor: tests/data/images/chat_cases.json
// holds what Qwen3VLProcessor made of messages with one and two images (the Qwen3-VL chat
// template, tools/reference/qwen3_vl_chat_template.jinja, with the qwen3_vl_moe_tiny tokenizer
// and preprocessor): the rendered text and the input_ids with each <|image_pad|> expanded.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "media/image_source.h"
#include "server/chat_messages.h"
#include "server/errors.h"
#include "server/request_images.h"
#include "support/read_file.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace epserve {
namespace {

using testing::read_file;

using nlohmann::json;
using nlohmann::ordered_json;

const std::string kSource = EPSERVE_SOURCE_DIR;
const std::string kImages = kSource + "/tests/data/images/";
const std::string kVlModel = kSource + "/tests/data/models/qwen3_vl_moe_tiny";

std::string base64(const std::string& bytes) {
  const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int k = 3; k >= 0; --k) out += a[(v >> (6 * k)) & 63];
  }
  if (i < bytes.size()) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= uint8_t(bytes[i + 1]) << 8;
    out += a[(v >> 18) & 63];
    out += a[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? a[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

int status_of(const std::function<void()>& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const ApiError& e) {
    if (message) *message = e.what();
    return e.status();
  }
  return 200;
}

TEST(RequestImages, ChatMatchesTheHfProcessor) {
  auto tokenizer = tokenizer::Tokenizer::load(kVlModel);
  auto chat_template = tokenizer::ChatTemplate::from_source(
      read_file(kSource + "/tools/reference/qwen3_vl_chat_template.jinja"),
      json::parse(read_file(kVlModel + "/tokenizer_config.json")), "qwen3_vl_chat_template");
  ASSERT_EQ(detect_chat_content_format(chat_template.source()), ChatContentFormat::kOpenai);
  std::optional<VisionInfo> vision = load_vision_info(kVlModel);
  ASSERT_TRUE(vision);
  EXPECT_EQ(vision->image_token_id, 12);
  EXPECT_EQ(vision->vision_start_token_id, 9);
  media::ImageSourcePolicy policy{kImages};
  json cases = json::parse(read_file(kImages + "chat_cases.json"));
  ASSERT_EQ(cases.size(), 2u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    json messages = c["messages"];
    // The first image as a data: URL, any other as a file under the allowed directory.
    int index = 0;
    for (auto& part : messages[1]["content"]) {
      if (part["type"] != "image_url") continue;
      std::string file = part["image_url"]["url"];
      part["image_url"]["url"] = index++ == 0
                                     ? "data:image/png;base64," + base64(read_file(kImages + file))
                                     : kImages + file;
    }
    std::vector<std::string> urls;
    ordered_json for_template = template_messages(messages, ChatContentFormat::kOpenai, &urls);
    ASSERT_EQ(urls.size(), c["images"].size());
    std::string text = chat_template.render_json(for_template, true);
    EXPECT_EQ(text, c["text"].get<std::string>());
    std::vector<int32_t> ids = tokenizer.encode(text, false);
    std::vector<ImageInput> images = load_request_images(vision, policy, urls, "messages");
    place_images(vision, images, 4096, ids);
    EXPECT_EQ(ids, c["input_ids"].get<std::vector<int32_t>>());
    for (size_t i = 0; i < images.size(); ++i) {
      EXPECT_EQ(images[i].grid_t, c["image_grid_thw"][i][0]);
      EXPECT_EQ(images[i].grid_h, c["image_grid_thw"][i][1]);
      EXPECT_EQ(images[i].grid_w, c["image_grid_thw"][i][2]);
      EXPECT_EQ(static_cast<int64_t>(images[i].pixel_values.size()),
                images[i].grid_h * images[i].grid_w * vision->processor.patch_dim());
      EXPECT_NE(images[i].content_hash, 0u);
    }
    // A PD decode server reads the sizes only: the same prompt, no pixels, no hashes.
    std::optional<VisionInfo> sizes = vision;
    sizes->sizes_only = true;
    std::vector<int32_t> decode_ids = tokenizer.encode(text, false);
    std::vector<ImageInput> headers = load_request_images(sizes, policy, urls, "messages");
    place_images(sizes, headers, 4096, decode_ids);
    EXPECT_EQ(decode_ids, ids);
    ASSERT_EQ(headers.size(), images.size());
    for (size_t i = 0; i < images.size(); ++i) {
      EXPECT_EQ(headers[i].grid_h, images[i].grid_h);
      EXPECT_EQ(headers[i].grid_w, images[i].grid_w);
      EXPECT_TRUE(headers[i].pixel_values.empty());
      EXPECT_EQ(headers[i].content_hash, 0u);
    }
  }
}

TEST(RequestImages, PlaceholdersAndImagesMustAgree) {
  VisionInfo vision;
  vision.image_token_id = 7;
  vision.processor.merge_size = 2;
  ImageInput image;
  image.grid_h = 4;
  image.grid_w = 6;  // 6 tokens
  std::vector<ImageInput> one = {image};
  std::vector<int32_t> ids = {1, 9, 7, 10, 2};
  expand_image_tokens(vision, one, ids);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 9, 7, 7, 7, 7, 7, 7, 10, 2}));
  expand_image_tokens(vision, one, ids);  // already expanded: kept
  EXPECT_EQ(ids.size(), 10u);
  std::string message;
  std::vector<int32_t> none = {1, 2};
  EXPECT_EQ(status_of([&] { expand_image_tokens(vision, one, none); }, &message), 400);
  EXPECT_NE(message.find("0 image placeholder(s)"), std::string::npos) << message;
  std::vector<int32_t> two = {7, 3, 7};
  EXPECT_EQ(status_of([&] { expand_image_tokens(vision, one, two); }), 400);
  std::vector<int32_t> three = {7, 7, 7};
  EXPECT_EQ(status_of([&] { expand_image_tokens(vision, one, three); }, &message), 400);
  EXPECT_NE(message.find("is 3 image tokens"), std::string::npos) << message;
  std::vector<int32_t> long_prompt = {1, 7, 2};
  std::optional<VisionInfo> v = vision;
  EXPECT_EQ(status_of([&] { place_images(v, one, 8, long_prompt); }, &message), 400);
  EXPECT_NE(message.find("6 of them for 1 image(s)"), std::string::npos) << message;
}

TEST(RequestImages, RefusedSourcesAndModels) {
  std::optional<VisionInfo> vision = load_vision_info(kVlModel);
  media::ImageSourcePolicy none;
  media::ImageSourcePolicy images_dir{kImages};
  auto status = [&](const std::string& url, const media::ImageSourcePolicy& p,
                    std::string* message) {
    return status_of([&] { load_request_images(vision, p, {url}, "messages"); }, message);
  };
  std::string m;
  EXPECT_EQ(status("https://example.com/cat.png", images_dir, &m), 400);
  EXPECT_NE(m.find("does not reach the network"), std::string::npos) << m;
  EXPECT_EQ(status(kImages + "rgb_20x30.png", none, &m), 400);
  EXPECT_NE(m.find("--allowed-local-media-path"), std::string::npos) << m;
  EXPECT_EQ(status(kImages + "rgb_20x30.png", images_dir, &m), 200) << m;
  EXPECT_EQ(status(kImages + "../models/x.png", images_dir, &m), 400);
  EXPECT_NE(m.find("not an absolute path under"), std::string::npos) << m;
  EXPECT_EQ(status("data:image/png;base64,@@@", none, &m), 400);
  EXPECT_NE(m.find("base64 is not valid"), std::string::npos) << m;
  EXPECT_EQ(status("data:image/png," + read_file(kImages + "rgb_20x30.png"), none, &m), 400);
  EXPECT_EQ(status(base64(read_file(kImages + "refused.tiff")), none, &m), 400);
  EXPECT_NE(m.find("invalid image: the image is tiff"), std::string::npos) << m;
  EXPECT_EQ(status(base64(read_file(kImages + "rgb_20x30.png")), none, &m), 200) << m;
  // A model without vision_config refuses images.
  std::optional<VisionInfo> text_only =
      load_vision_info(kSource + "/tests/data/models/qwen3_moe_tiny");
  EXPECT_FALSE(text_only);
  EXPECT_EQ(status_of([&] { load_request_images(text_only, none, {"x"}, "image_data"); }, &m), 400);
  EXPECT_NE(m.find("does not take images"), std::string::npos) << m;
  json message = {
      {"role", "user"},
      {"content", json::array({{{"type", "image_url"}, {"image_url", {{"url", "x"}}}}})}};
  EXPECT_EQ(
      status_of([&] { template_messages(json::array({message}), ChatContentFormat::kOpenai); }, &m),
      400);
  EXPECT_NE(m.find("does not take images"), std::string::npos) << m;
}

TEST(RequestImages, ImageDataShapes) {
  EXPECT_EQ(read_image_data("a", 1, false), (std::vector<std::vector<std::string>>{{"a"}}));
  EXPECT_EQ(read_image_data(json::array({"a", {{"url", "b"}}}), 1, false),
            (std::vector<std::vector<std::string>>{{"a", "b"}}));
  EXPECT_EQ(read_image_data(json::array({"a", nullptr, json::array({"b", "c"})}), 3, true),
            (std::vector<std::vector<std::string>>{{"a"}, {}, {"b", "c"}}));
  EXPECT_EQ(status_of([] { read_image_data(json::array({"a"}), 2, true); }), 400);
  EXPECT_EQ(status_of([] { read_image_data(42, 1, false); }), 400);
}

}  // namespace
}  // namespace epserve
