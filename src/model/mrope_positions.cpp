#include "model/mrope_positions.h"

#include <algorithm>

#include "core/error.h"

namespace epserve {

MropePositions qwen3_vl_mrope_positions(const int32_t* tokens, int64_t n,
                                        const std::vector<std::array<int64_t, 3>>& grids,
                                        const VisionConfig& vision) {
  const int64_t merge = vision.spatial_merge_size;
  MropePositions out;
  out.thw.reserve(3 * n);
  int64_t current = 0;  // next text position
  int64_t max_pos = -1;
  size_t image = 0;
  auto push = [&](int64_t t, int64_t h, int64_t w) {
    out.thw.push_back(static_cast<int32_t>(t));
    out.thw.push_back(static_cast<int32_t>(h));
    out.thw.push_back(static_cast<int32_t>(w));
    max_pos = std::max({max_pos, t, h, w});
  };
  for (int64_t i = 0; i < n;) {
    if (tokens[i] != vision.image_token_id) {
      push(current, current, current);
      ++current;
      ++i;
      continue;
    }
    int64_t end = i;
    while (end < n && tokens[end] == vision.image_token_id) ++end;
    EPS_CHECK(image < grids.size(), "the prompt has more image-token runs than the {} images",
              grids.size());
    const auto [gt, gh, gw] = grids[image];
    const int64_t lh = gh / merge, lw = gw / merge;
    const int64_t count = gt * lh * lw;
    EPS_CHECK(end - i == count,
              "image {} ({}x{}x{} patches) needs {} image tokens, the prompt has a run of {}",
              image, gt, gh, gw, count, end - i);
    out.runs.push_back(ImageRun{i, count});
    for (int64_t t = 0; t < gt; ++t) {
      for (int64_t r = 0; r < lh; ++r) {
        for (int64_t c = 0; c < lw; ++c) push(current + t, current + r, current + c);
      }
    }
    current += std::max(lh, lw);
    ++image;
    i = end;
  }
  EPS_CHECK(image == grids.size(), "{} images but the prompt has {} image-token runs", grids.size(),
            image);
  out.rope_delta = max_pos + 1 - n;
  return out;
}

}  // namespace epserve
