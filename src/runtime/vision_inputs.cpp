#include "runtime/vision_inputs.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/splitmix.h"
#include "runtime/model_runner.h"

namespace epserve {

std::string prepare_vision(const ModelConfig& config, const std::vector<int32_t>& input_ids,
                           const std::vector<ImageInput>& images, RequestVision& vision) {
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
    if (static_cast<int64_t>(im.pixel_values.size()) != rows * vc.patch_dim()) {
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

void release_vision_embeds(RequestVision& vision) {
  for (auto& e : vision.embeds) std::vector<float>().swap(e);
}

}  // namespace epserve
