#include "server/request_images.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "media/image.h"
#include "server/errors.h"

namespace epserve {

std::optional<VisionInfo> load_vision_info(const std::string& model_path) {
  namespace fs = std::filesystem;
  fs::path config_path = fs::path(model_path) / "config.json";
  std::ifstream in(config_path);
  if (!in) return std::nullopt;
  nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded() || !config.is_object() || !config.contains("vision_config")) {
    return std::nullopt;
  }
  VisionInfo v;
  auto processor = media::load_image_processor_config(model_path);
  EPS_CHECK(processor, "{}: the model has a vision_config but no preprocessor_config.json",
            model_path);
  v.processor = *processor;
  const auto& vision_config = config["vision_config"];
  for (const char* key : {"patch_size", "temporal_patch_size", "spatial_merge_size"}) {
    if (!vision_config.contains(key)) continue;
    int64_t model_value = vision_config[key].get<int64_t>();
    int64_t processor_value = std::string(key) == "patch_size" ? v.processor.patch_size
                              : std::string(key) == "temporal_patch_size"
                                  ? v.processor.temporal_patch_size
                                  : v.processor.merge_size;
    EPS_CHECK(model_value == processor_value,
              "{}: vision_config.{} is {} but preprocessor_config.json says {}", model_path, key,
              model_value, processor_value);
  }
  EPS_CHECK(config.contains("image_token_id"),
            "{}: the model has a vision_config but no "
            "image_token_id in config.json",
            config_path.string());
  v.image_token_id = config["image_token_id"].get<int32_t>();
  v.vision_start_token_id = config.value("vision_start_token_id", -1);
  v.vision_end_token_id = config.value("vision_end_token_id", -1);
  return v;
}

std::vector<ImageInput> load_request_images(const std::optional<VisionInfo>& vision,
                                            const media::ImageSourcePolicy& policy,
                                            const std::vector<std::string>& sources,
                                            const std::string& param) {
  std::vector<ImageInput> images;
  if (sources.empty()) return images;
  if (!vision) {
    bad_request("this model does not take images (its config.json has no vision_config)", param);
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    try {
      if (vision->sizes_only) {
        media::ImageSize size =
            media::probe_image_size(media::read_image_source(sources[i], policy));
        media::ProcessedImage grid = media::image_grid(size.height, size.width, vision->processor);
        ImageInput image;
        image.grid_t = grid.grid_t;
        image.grid_h = grid.grid_h;
        image.grid_w = grid.grid_w;
        images.push_back(std::move(image));
        continue;
      }
      media::DecodedImage decoded =
          media::decode_image(media::read_image_source(sources[i], policy));
      media::ProcessedImage processed = media::process_image(decoded, vision->processor);
      ImageInput image;
      image.grid_t = processed.grid_t;
      image.grid_h = processed.grid_h;
      image.grid_w = processed.grid_w;
      image.pixel_values = std::move(processed.pixel_values);
      image.content_hash = media::image_content_hash(decoded);
      images.push_back(std::move(image));
    } catch (const Error& e) {
      bad_request(sources.size() == 1 ? fmt::format("invalid image: {}", e.what())
                                      : fmt::format("invalid image {}: {}", i, e.what()),
                  param);
    }
  }
  return images;
}

namespace {

std::string image_item(const nlohmann::json& item, const std::string& where) {
  if (item.is_string()) return item.get<std::string>();
  if (item.is_object() && item.contains("url") && item["url"].is_string()) {
    return item["url"].get<std::string>();
  }
  bad_request(where +
                  ": expected an image as a string (data: URL, base64 or file path) or "
                  "{\"url\": ...}",
              "image_data");
}

std::vector<std::string> image_list(const nlohmann::json& value, const std::string& where) {
  std::vector<std::string> out;
  if (value.is_null()) return out;
  if (!value.is_array()) return {image_item(value, where)};
  for (size_t i = 0; i < value.size(); ++i) {
    out.push_back(image_item(value[i], fmt::format("{}[{}]", where, i)));
  }
  return out;
}

}  // namespace

std::vector<std::vector<std::string>> read_image_data(const nlohmann::json& image_data,
                                                      size_t num_prompts, bool batch) {
  std::vector<std::vector<std::string>> per_prompt(num_prompts);
  if (image_data.is_null()) return per_prompt;
  if (!batch) {
    per_prompt[0] = image_list(image_data, "image_data");
    return per_prompt;
  }
  if (!image_data.is_array() || image_data.size() != num_prompts) {
    bad_request(fmt::format("image_data: for a batch of {} prompts, give a list of {} entries "
                            "(an image, a list of images, or null per prompt)",
                            num_prompts, num_prompts),
                "image_data");
  }
  for (size_t p = 0; p < num_prompts; ++p) {
    per_prompt[p] = image_list(image_data[p], fmt::format("image_data[{}]", p));
  }
  return per_prompt;
}

int64_t image_token_total(const VisionInfo& vision, const std::vector<ImageInput>& images) {
  int64_t total = 0;
  const int64_t merge = vision.processor.merge_size;
  for (const auto& image : images)
    total += image.grid_t * image.grid_h * image.grid_w / (merge * merge);
  return total;
}

void expand_image_tokens(const VisionInfo& vision, const std::vector<ImageInput>& images,
                         std::vector<int32_t>& ids) {
  const int32_t pad = vision.image_token_id;
  const int64_t merge = vision.processor.merge_size;
  std::vector<int32_t> out;
  out.reserve(ids.size() + static_cast<size_t>(image_token_total(vision, images)));
  size_t image = 0;
  for (size_t i = 0; i < ids.size();) {
    if (ids[i] != pad) {
      out.push_back(ids[i++]);
      continue;
    }
    size_t run = 0;
    while (i + run < ids.size() && ids[i + run] == pad) ++run;
    if (image < images.size()) {
      const ImageInput& m = images[image];
      const int64_t count = m.grid_t * m.grid_h * m.grid_w / (merge * merge);
      if (run != 1 && static_cast<int64_t>(run) != count) {
        bad_request(
            fmt::format("image {} takes {} image tokens, but its placeholder in the prompt "
                        "is {} image tokens (give one, or exactly {})",
                        image, count, run, count));
      }
      out.insert(out.end(), static_cast<size_t>(count), pad);
    }
    ++image;
    i += run;
  }
  if (image != images.size()) {
    bad_request(fmt::format(
        "the prompt has {} image placeholder(s) (<|vision_start|><|image_pad|><|vision_end|>) "
        "but the request has {} image(s)",
        image, images.size()));
  }
  ids = std::move(out);
}

void place_images(const std::optional<VisionInfo>& vision, const std::vector<ImageInput>& images,
                  int64_t context_length, std::vector<int32_t>& ids) {
  if (images.empty()) return;
  expand_image_tokens(*vision, images, ids);
  const int64_t len = static_cast<int64_t>(ids.size());
  if (len >= context_length) {
    bad_request(
        fmt::format("The input ({} tokens, {} of them for {} image(s)) is longer than the "
                    "model's context length ({} tokens); send smaller or fewer images",
                    len, image_token_total(*vision, images), images.size(), context_length));
  }
}

}  // namespace epserve
