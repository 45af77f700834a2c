#include "server/sampling.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "server/errors.h"

namespace epserve {

namespace {

void check_ids_in_vocab(const std::vector<int32_t>& ids, int32_t vocab, const std::string& what) {
  for (int32_t id : ids) {
    if (id >= vocab) {
      bad_request(fmt::format("{}: token id {} is out-of-vocabulary (the vocabulary has {} "
                              "tokens)",
                              what, id, vocab),
                  what);
    }
  }
}

}  // namespace

void read_sampling_fields(const FieldReader& r, SamplingRequest& s) {
  if (auto v = r.number("temperature", 0, 1e6)) s.params.temperature = static_cast<float>(*v);
  if (auto v = r.number("top_p", 0, 1)) {
    if (*v <= 0) bad_request(r.name("top_p") + " must be in (0, 1]", r.name("top_p"));
    s.params.top_p = static_cast<float>(*v);
  }
  if (auto v = r.integer("top_k", -1, INT32_MAX)) {
    if (*v == 0) {
      bad_request(r.name("top_k") + " must be -1 (no limit) or at least 1", r.name("top_k"));
    }
    s.params.top_k = static_cast<int>(*v);
  }
  if (auto v = r.number("min_p", 0, 1)) s.params.min_p = static_cast<float>(*v);
  if (auto v = r.number("frequency_penalty", -2, 2)) {
    s.params.frequency_penalty = static_cast<float>(*v);
  }
  if (auto v = r.number("presence_penalty", -2, 2)) {
    s.params.presence_penalty = static_cast<float>(*v);
  }
  if (auto v = r.number("repetition_penalty", 0, 2)) {
    if (*v <= 0) {
      bad_request(r.name("repetition_penalty") + " must be in (0, 2]",
                  r.name("repetition_penalty"));
    }
    s.params.repetition_penalty = static_cast<float>(*v);
  }
  if (auto v = r.strings("stop")) s.stop = *v;
  if (auto v = r.token_ids("stop_token_ids")) s.stop_token_ids = *v;
  if (auto v = r.boolean("ignore_eos")) s.ignore_eos = *v;
  if (auto v = r.boolean("skip_special_tokens")) s.skip_special_tokens = *v;
  if (auto v = r.boolean("no_stop_trim")) s.no_stop_trim = *v;
  if (auto v = r.integer("n", 1, 128)) s.n = *v;
  if (auto v = r.integer("seed", INT64_MIN, INT64_MAX)) s.seed = static_cast<uint64_t>(*v);
  if (const json* bias = r.object("logit_bias")) {
    for (const auto& [key, value] : bias->items()) {
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(key, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != key.size() || id < 0 || id > INT32_MAX) {
        bad_request(fmt::format("{}: key '{}' is not a token id", r.name("logit_bias"), key),
                    r.name("logit_bias"));
      }
      if (!value.is_number() || value.get<double>() < -100 || value.get<double>() > 100) {
        bad_request(fmt::format("{}: the bias of token {} must be a number in [-100, 100]",
                                r.name("logit_bias"), key),
                    r.name("logit_bias"));
      }
      s.params.logit_bias[static_cast<int32_t>(id)] = value.get<float>();
    }
  }
}

void read_bootstrap_fields(const FieldReader& r, SamplingRequest& s) {
  if (r.has("bootstrap_room") && !r.raw("bootstrap_room").is_number_integer()) {
    bad_request("bootstrap_room: expected an integer (one request per bootstrap room)",
                "bootstrap_room");
  }
  s.bootstrap_room = r.integer("bootstrap_room", 0, INT64_MAX).value_or(-1);
  s.bootstrap_host = r.string("bootstrap_host").value_or("");
  s.bootstrap_port = static_cast<int>(r.integer("bootstrap_port", 1, 65535).value_or(0));
  // SGLang takes routed_dp_rank, and data_parallel_rank (its older name) when routed_dp_rank is
  // absent.
  for (const char* key : {"data_parallel_rank", "routed_dp_rank"}) {
    if (auto rank = r.integer(key, INT32_MIN, INT32_MAX)) {
      if (*rank < 0) bad_request(fmt::format("{} must be non-negative", r.name(key)), r.name(key));
      s.data_parallel_rank = *rank;
    }
  }
}

GenerationPlan plan_generation(ServerContext& ctx, const std::vector<std::vector<int32_t>>& prompts,
                               const SamplingRequest& s, int64_t default_max_new_tokens,
                               const std::string& rid_base) {
  const int64_t context = ctx.model.context_length;
  const int32_t vocab = ctx.model.vocab_size;
  std::vector<int32_t> bias_ids;
  for (const auto& [id, b] : s.params.logit_bias) bias_ids.push_back(id);
  check_ids_in_vocab(bias_ids, vocab, "logit_bias");
  check_ids_in_vocab(s.stop_token_ids, vocab, "stop_token_ids");
  if (s.max_new_tokens && *s.max_new_tokens > context) {
    bad_request(fmt::format("max_completion_tokens is too large: {}. This model supports at "
                            "most {} completion tokens.",
                            *s.max_new_tokens, context),
                s.max_new_tokens_name);
  }
  if (s.min_new_tokens > s.max_new_tokens.value_or(context)) {
    bad_request(fmt::format("min_new_tokens ({}) is larger than {} ({})", s.min_new_tokens,
                            s.max_new_tokens_name, s.max_new_tokens.value_or(context)));
  }

  // SGLang also stops on the tokenizer's EOS (tokenizer_config.json) besides the model's EOS ids
  // (config.json and generation_config.json, which the scheduler knows).
  std::vector<int32_t> stop_token_ids = s.stop_token_ids;
  if (std::optional<int32_t> eos = ctx.tokenizer.eos_id(); eos && *eos >= 0 && *eos < vocab) {
    auto listed = [&](const std::vector<int32_t>& ids) {
      return std::find(ids.begin(), ids.end(), *eos) != ids.end();
    };
    if (!listed(ctx.model.eos_token_ids) && !listed(stop_token_ids)) {
      stop_token_ids.push_back(*eos);
    }
  }

  GenerationPlan plan;
  // Frontend::submit checks it against the DP groups.
  plan.dp_rank = static_cast<int>(s.data_parallel_rank);
  size_t total = prompts.size() * static_cast<size_t>(s.n);
  if (s.bootstrap_room >= 0 && total > 1) {
    bad_request(
        "bootstrap_room names one request: n > 1 and batches are not supported with PD "
        "disaggregation",
        "bootstrap_room");
  }
  for (size_t p = 0; p < prompts.size(); ++p) {
    const std::vector<int32_t>& ids = prompts[p];
    auto len = static_cast<int64_t>(ids.size());
    if (len == 0) bad_request("the prompt is empty (no tokens)");
    check_ids_in_vocab(ids, vocab, "input_ids");
    if (len >= context) {
      bad_request(
          fmt::format("The input ({} tokens) is longer than the model's context length "
                      "({} tokens).",
                      len, context));
    }
    int64_t max_new = s.max_new_tokens.value_or(
        default_max_new_tokens < 0 ? context - len
                                   : std::min(default_max_new_tokens, context - len));
    if (len + max_new > context) {
      bad_request(fmt::format("Requested token count exceeds the model's maximum context length "
                              "of {} tokens. You requested a total of {} tokens: {} tokens from "
                              "the input messages and {} tokens for the completion. Please "
                              "reduce the number of tokens in the input messages or the "
                              "completion to fit within the limit.",
                              context, len + max_new, len, max_new),
                  s.max_new_tokens_name);
    }
    for (int64_t j = 0; j < s.n; ++j) {
      GenerateInput in;
      size_t k = p * static_cast<size_t>(s.n) + static_cast<size_t>(j);
      in.rid = total == 1 ? rid_base : fmt::format("{}-{}", rid_base, k);
      in.input_ids = ids;
      in.sampling = s.params;
      in.seed = s.seed ? *s.seed + static_cast<uint64_t>(j) : ctx.frontend.next_seed();
      in.max_new_tokens = max_new;
      in.min_new_tokens = s.min_new_tokens;
      in.stop_token_ids = stop_token_ids;
      in.ignore_eos = s.ignore_eos;
      in.return_logprob = s.return_logprob;
      in.top_logprobs_num = s.top_logprobs_num;
      in.logprob_start_len = s.logprob_start_len;
      in.bootstrap_host = s.bootstrap_host;
      in.bootstrap_port = s.bootstrap_port;
      in.bootstrap_room = s.bootstrap_room;
      plan.inputs.push_back(std::move(in));
      plan.options.push_back(ChoiceOptions{s.stop, s.no_stop_trim, s.skip_special_tokens, max_new});
    }
  }
  return plan;
}

std::string make_request_id(const std::string& prefix) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}{:016x}{:016x}", prefix, rng(), rng());
}

}  // namespace epserve
