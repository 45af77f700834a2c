// A request's images inside the scheduler (Qwen3-VL): the prompt's 3-D rotary positions and
// image-token runs, fixed at admission; each image's vision-tower output, computed on the group
// leader the first time a prompt chunk reaches one of its tokens and kept until the prompt is
// done (so chunked prefill encodes each image once); and the prefix-cache key, in which every
// image token is replaced by a value derived from its image's content hash (SGLang pads image
// tokens with the hash for its radix key): two different images never share a cached prefix,
// the same image at the same place does.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/forward_batch.h"
#include "model/mrope_positions.h"
#include "runtime/protocol.h"

namespace epserve {

class ModelRunner;

struct RequestVision {
  bool active = false;   // the model has a vision tower: the batch carries 3-D positions
  MropePositions mrope;  // of the prompt (empty thw for a text-only prompt: delta 0)
  std::vector<std::vector<float>> embeds;  // per image, [tokens, width]; empty until needed
};

// Checks the request's images against the model and its prompt and fills `vision`; returns an
// error message for the client, or "" when the request is fine. Without `with_pixels` (a PD
// decode server, which never runs the vision tower) the images' grids are all that is used:
// their pixel values are neither checked nor needed.
std::string prepare_vision(const ModelConfig& config, const std::vector<int32_t>& input_ids,
                           const std::vector<ImageInput>& images, RequestVision& vision,
                           bool with_pixels = true);

// PD disaggregation: what a prefill server sends a decode server about a request with images,
// in its transfer answer as {"vision": {"rope_delta": int, "image_hashes": [uint64, ...]}}.
// A decode server reads only its images' sizes (their grids; it decodes no pixels), so it takes
// the content hashes that key its prefix cache from here, and checks the prompt's rope delta
// (the decode positions are p + rope_delta) against the one its own grids give.
struct VisionHandoff {
  int64_t rope_delta = 0;
  std::vector<uint64_t> image_hashes;  // per image, in prompt order
};
VisionHandoff make_vision_handoff(const std::vector<ImageInput>& images,
                                  const RequestVision& vision);
nlohmann::json vision_handoff_json(const VisionHandoff& handoff);
// Reads a handoff from the network (empty error) or says what is wrong with it.
std::string parse_vision_handoff(const nlohmann::json& j, VisionHandoff& handoff);
// Decode side: checks `handoff` against the request's own images and prompt positions and sets
// the images' content hashes; returns an error (the two servers disagree) or "".
std::string apply_vision_handoff(const VisionHandoff& handoff, std::vector<ImageInput>& images,
                                 const RequestVision& vision);

// The tokens the prefix cache keys this request by: `tokens` with each image token replaced by
// a key from its image's content hash, outside the vocabulary (>= 2^30).
std::vector<int32_t> prefix_cache_key(const std::vector<int32_t>& tokens,
                                      const std::vector<ImageInput>& images,
                                      const RequestVision& vision);

// Appends the 3-D positions of tokens [begin, begin + count) of the request to the batch's last
// sequence, and the vision-tower rows of its image tokens there (encoding the images they fall
// in that are not encoded yet, with runner.encode_image).
void add_vision_rows(ForwardBatch& batch, int64_t begin, int64_t count,
                     const std::vector<ImageInput>& images, RequestVision& vision,
                     ModelRunner& runner);

// Drops the kept embeddings once the prompt is fully computed.
void release_vision_embeds(RequestVision& vision);

}  // namespace epserve
