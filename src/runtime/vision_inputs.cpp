#include "runtime/vision_inputs.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/splitmix.h"
#include "runtime/model_runner.h"

namespace epserve {

std::string prepare_vision(const ModelConfig& config, const std::vector<int32_t>& input_ids,
                           const std::vector<ImageInput>& images, RequestVision& vision,
                           bool with_pixels) {
  vision = RequestVision{};
  const VisionConfig& vc = config.vision;
  if (!config.has_vision()) {
    if (images.empty()) return "";
    return fmt::format("{} does not take images.", config.architecture);
  }
  vision.active = true;
  const int64_t merge = vc.spatial_merge_size;
  std::vector<std::array<int64_t, 3>> grids;
  for (size_t i = 0; i < images.size(); ++i) {
    const ImageInput& im = images[i];
    if (im.grid_t != 1) {
      return fmt::format("Image {}: grid_t {} is not 1 (a still image; video is not supported).", i,
                         im.grid_t);
    }
    if (im.grid_t <= 0 || im.grid_h <= 0 || im.grid_w <= 0 || im.grid_h % merge != 0 ||
        im.grid_w % merge != 0) {
      return fmt::format("Image {}: grid {}x{}x{} is not whole {}x{} merge windows.", i, im.grid_t,
                         im.grid_h, im.grid_w, merge, merge);
    }
    const int64_t rows = im.grid_t * im.grid_h * im.grid_w;
    if (with_pixels && static_cast<int64_t>(im.pixel_values.size()) != rows * vc.patch_dim()) {
      return fmt::format("Image {}: {} pixel values for {} patches of {} values.", i,
                         im.pixel_values.size(), rows, vc.patch_dim());
    }
    grids.push_back({im.grid_t, im.grid_h, im.grid_w});
  }
  try {
    vision.mrope = qwen3_vl_mrope_positions(input_ids.data(),
                                            static_cast<int64_t>(input_ids.size()), grids, vc);
  } catch (const Error& e) {
    return fmt::format("The prompt's image tokens do not match its images: {}", e.what());
  }
  vision.embeds.resize(images.size());
  return "";
}

std::vector<int32_t> prefix_cache_key(const std::vector<int32_t>& tokens,
                                      const std::vector<ImageInput>& images,
                                      const RequestVision& vision) {
  std::vector<int32_t> key = tokens;
  const auto& runs = vision.mrope.runs;
  for (size_t i = 0; i < runs.size(); ++i) {
    // Each image token gets its own 30 bits of a stream seeded by the image's hash, above the
    // vocabulary (bit 30 set): two images share a cached prefix only if their 64-bit hashes do,
    // not merely 30 bits of them.
    uint64_t state = images[i].content_hash;
    for (int64_t t = runs[i].first; t < runs[i].first + runs[i].num_tokens; ++t) {
      const uint64_t bits = splitmix64_next(state) & ((uint64_t{1} << 30) - 1);
      key[t] = static_cast<int32_t>((uint64_t{1} << 30) | bits);
    }
  }
  return key;
}

void add_vision_rows(ForwardBatch& batch, int64_t begin, int64_t count,
                     const std::vector<ImageInput>& images, RequestVision& vision,
                     ModelRunner& runner) {
  if (!vision.active) return;
  const SequenceInput& seq = batch.seqs.back();
  EPS_CHECK(static_cast<int64_t>(batch.mrope_positions.size()) == 3 * seq.token_offset,
            "every sequence of a vision model's batch needs 3-D positions");
  const auto& thw = vision.mrope.thw;
  const auto prompt = static_cast<int64_t>(thw.size() / 3);
  for (int64_t p = begin; p < begin + count; ++p) {
    if (p < prompt) {
      batch.mrope_positions.insert(batch.mrope_positions.end(), thw.begin() + 3 * p,
                                   thw.begin() + 3 * p + 3);
    } else {
      const auto pos = static_cast<int32_t>(p + vision.mrope.rope_delta);
      batch.mrope_positions.insert(batch.mrope_positions.end(), {pos, pos, pos});
    }
  }
  const int64_t width = runner.config().vision.embed_width();
  const auto& runs = vision.mrope.runs;
  for (size_t i = 0; i < runs.size(); ++i) {
    const int64_t lo = std::max(begin, runs[i].first);
    const int64_t hi = std::min(begin + count, runs[i].first + runs[i].num_tokens);
    if (lo >= hi) continue;
    std::vector<float>& embeds = vision.embeds[i];
    if (embeds.empty()) {
      const ImageInput& im = images[i];
      EPS_CHECK(!im.pixel_values.empty(),
                "image {} of a request has no pixel values to encode (a PD decode server's)", i);
      embeds.resize(runs[i].num_tokens * width);
      runner.encode_image(im.grid_t, im.grid_h, im.grid_w, im.pixel_values.data(), embeds.data());
    }
    batch.image_embed_width = width;
    for (int64_t p = lo; p < hi; ++p) {
      batch.image_rows.push_back(static_cast<int32_t>(seq.token_offset + (p - begin)));
      const float* row = embeds.data() + (p - runs[i].first) * width;
      batch.image_embeds.insert(batch.image_embeds.end(), row, row + width);
    }
  }
}

VisionHandoff make_vision_handoff(const std::vector<ImageInput>& images,
                                  const RequestVision& vision) {
  VisionHandoff h;
  h.rope_delta = vision.mrope.rope_delta;
  for (const ImageInput& im : images) h.image_hashes.push_back(im.content_hash);
  return h;
}

nlohmann::json vision_handoff_json(const VisionHandoff& handoff) {
  return {{"rope_delta", handoff.rope_delta}, {"image_hashes", handoff.image_hashes}};
}

std::string parse_vision_handoff(const nlohmann::json& j, VisionHandoff& handoff) {
  handoff = VisionHandoff{};
  if (!j.is_object() || !j.contains("rope_delta") || !j["rope_delta"].is_number_integer()) {
    return "the prefill server's vision record has no integer rope_delta";
  }
  if (!j.contains("image_hashes") || !j["image_hashes"].is_array()) {
    return "the prefill server's vision record has no image_hashes list";
  }
  handoff.rope_delta = j["rope_delta"].get<int64_t>();
  for (const auto& h : j["image_hashes"]) {
    if (!h.is_number_unsigned()) return "the prefill server's image_hashes are not unsigned";
    handoff.image_hashes.push_back(h.get<uint64_t>());
  }
  return "";
}

std::string apply_vision_handoff(const VisionHandoff& handoff, std::vector<ImageInput>& images,
                                 const RequestVision& vision) {
  if (handoff.image_hashes.size() != images.size()) {
    return fmt::format("the prefill server sent {} image hashes for a prompt with {} images",
                       handoff.image_hashes.size(), images.size());
  }
  if (handoff.rope_delta != vision.mrope.rope_delta) {
    return fmt::format(
        "the prefill server's rope delta ({}) is not this server's ({}): the two servers placed "
        "the prompt's images differently (are their preprocessor_config.json the same?)",
        handoff.rope_delta, vision.mrope.rope_delta);
  }
  for (size_t i = 0; i < images.size(); ++i) images[i].content_hash = handoff.image_hashes[i];
  return "";
}

void release_vision_embeds(RequestVision& vision) {
  for (auto& e : vision.embeds) std::vector<float>().swap(e);
}

}  // namespace epserve
