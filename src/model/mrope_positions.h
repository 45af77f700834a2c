// Qwen3-VL's 3-D rotary positions (transformers' get_rope_index): text tokens count up on all
// three axes; an image's tokens take (start + t, start + row, start + col) over its merged grid,
// and the text after it continues from start + max(rows, cols). The prompt's positions are
// fixed at admission; a later token at 1-D position p gets p + rope_delta on all three axes.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "io/model_config.h"

namespace epserve {

struct ImageRun {
  int64_t first = 0;       // index of its first image token in the prompt
  int64_t num_tokens = 0;  // grid_t * grid_h * grid_w / merge^2
};

struct MropePositions {
  std::vector<int32_t> thw;  // [prompt_len, 3]
  int64_t rope_delta = 0;    // max position + 1 - prompt_len
  std::vector<ImageRun> runs;
};

// tokens [n]; grids: (t, h, w) in patches per image, in prompt order. Each run of
// vision.image_token_id tokens is one image of exactly its grid's token count; an error names
// the mismatch (count of runs, or a run's length).
MropePositions qwen3_vl_mrope_positions(const int32_t* tokens, int64_t n,
                                        const std::vector<std::array<int64_t, 3>>& grids,
                                        const VisionConfig& vision);

}  // namespace epserve
