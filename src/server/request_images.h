// Images in requests for a vision-language model (Qwen3-VL): the model's vision facts, the
// decoding and preprocessing of a request's images (OpenAI image_url parts, SGLang's image_data)
// into GenerateInput::images, and the expansion of each image's placeholder in the prompt to the
// image's number of tokens, as the HF processor (Qwen3VLProcessor) expands <|image_pad|>.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "media/image_processor.h"
#include "media/image_source.h"
#include "runtime/protocol.h"

namespace epserve {

struct VisionInfo {
  media::ImageProcessorConfig processor;
  int32_t image_token_id = -1;
  int32_t vision_start_token_id = -1;
  int32_t vision_end_token_id = -1;
  // A PD decode server (--disaggregation-mode decode) reads each image's size from its header
  // and nothing more: its prefill server runs the vision tower, and the grid alone fixes the
  // prompt's tokens and 3-D positions. Its ImageInputs carry no pixel values and hash 0 (the
  // prefill server's hashes come with the KV).
  bool sizes_only = false;
};

// Set when the model's config.json has a vision_config; throws epserve::Error (a start-up error)
// when it has one but no preprocessor_config.json or no image_token_id.
std::optional<VisionInfo> load_vision_info(const std::string& model_path);

// Decodes and preprocesses each source (see media::read_image_source), or reads its size only
// (VisionInfo::sizes_only). Errors are 400s naming `param`; a model without vision (`vision`
// empty) refuses any image with a 400.
std::vector<ImageInput> load_request_images(const std::optional<VisionInfo>& vision,
                                            const media::ImageSourcePolicy& policy,
                                            const std::vector<std::string>& sources,
                                            const std::string& param);

// SGLang's image_data of /generate, per prompt: a string (or {"url": ...}) or a list of them for
// one prompt; for a batch, a list with one entry (string, list or null) per prompt. 400 otherwise.
std::vector<std::vector<std::string>> read_image_data(const nlohmann::json& image_data,
                                                      size_t num_prompts, bool batch);

// Each image's placeholder in the prompt is a run of image tokens (usually one, as the chat
// template writes <|vision_start|><|image_pad|><|vision_end|>); the run becomes
// grid_t * grid_h * grid_w / merge^2 image tokens (a run already that long is kept). 400 when the
// prompt has not one placeholder per image.
void expand_image_tokens(const VisionInfo& vision, const std::vector<ImageInput>& images,
                         std::vector<int32_t>& ids);

// expand_image_tokens, then a 400 when the prompt no longer fits the context (a message that
// counts the image tokens). Nothing to do without images.
void place_images(const std::optional<VisionInfo>& vision, const std::vector<ImageInput>& images,
                  int64_t context_length, std::vector<int32_t>& ids);

// Tokens the images take in the prompt.
int64_t image_token_total(const VisionInfo& vision, const std::vector<ImageInput>& images);

}  // namespace epserve
