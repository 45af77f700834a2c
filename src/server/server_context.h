// What the HTTP routes share: the flags, the model's facts, the tokenizer and chat template, the
// frontend (link to the schedulers) and the metrics. Built once by `epserve serve`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "media/image_source.h"
#include "server/frontend.h"
#include "server/metrics.h"
#include "server/request_images.h"
#include "server/server_args.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace epserve {

class HttpServer;

struct ModelInfo {
  std::string model_path;
  std::string served_model_name;
  std::string architecture;  // HF class name
  std::string model_type;
  int64_t context_length = 0;  // --context-length, else max_position_embeddings
  int32_t vocab_size = 0;      // the model's (token ids must be below it)
  std::vector<int32_t> eos_token_ids;
  int64_t created = 0;  // unix time the server started (OpenAI's model.created)
};

struct ServerContext {
  const ServerArgs& args;
  ModelInfo model;
  tokenizer::Tokenizer tokenizer;
  std::optional<tokenizer::ChatTemplate> chat_template;
  std::string chat_template_error;  // why there is none
  Frontend& frontend;
  Metrics& metrics;
  std::optional<VisionInfo> vision = std::nullopt;  // set for a vision-language model
  media::ImageSourcePolicy media_policy = {};       // --allowed-local-media-path
};

// Registers every route (OpenAI, SGLang native, metrics) and the API-key filter.
void register_routes(HttpServer& http, ServerContext& ctx);

void register_openai_completions(HttpServer& http, ServerContext& ctx);
void register_openai_chat(HttpServer& http, ServerContext& ctx);
void register_openai_models(HttpServer& http, ServerContext& ctx);
void register_native_generate(HttpServer& http, ServerContext& ctx);
void register_native_routes(HttpServer& http, ServerContext& ctx);
void register_expert_routes(HttpServer& http, ServerContext& ctx);

}  // namespace epserve
