// Golden tests: epserve's forward pass against outputs that Hugging Face transformers 5.24
// computed on the same checkpoints (tools/reference/make_golden.py, fp32 compute on the
// BF16-rounded weights). Tolerances (fp32 order): logits 1e-4 absolute (transformers' own
// fp32-vs-fp64 error on these models is up to 1.4e-5, so both fp32 implementations sit within ~3e-5
// of the exact value; logits are up to ~14), top-k weights 1e-5; router top-k ids and greedy tokens
// exact (every golden margin is at least 1e-3, far above fp32 error).
// The quantized models (deepseek_v3_tiny_fp8, kimi_k2_tiny_int4) run from their FP8 / packed INT4
// weights (always in the fp32 order); their goldens are transformers on the dequantised weights
// (tools/reference/make_quant_models.py), with the same tolerances.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "io/safetensors.h"
#include "kernels/cpu/matmul_internal.h"
#include "model/causal_lm.h"
#include "runtime/generator.h"
#include "support/matmul_order.h"

namespace epserve {
namespace {

constexpr float kLogitTolerance = 1e-4f;
constexpr float kWeightTolerance = 1e-5f;
// On a CPU with AVX512-BF16, matmuls with BF16 weights round activations to bf16 before each
// product (matmul_internal.h), up to 2^-9 relative per input, which the layers carry on. Measured
// on Zen 5 over the four models (routing kept in fp32, see moe.cpp): logits differ from
// transformers' by up to 0.141 and router weights by up to 0.0067 before the first token
// that picks another expert (3 of the 16 prompts have one); the tolerances are twice that.
constexpr float kLogitToleranceBf16 = 0.3f;
constexpr float kWeightToleranceBf16 = 0.015f;

constexpr const char* kFp32Only =
    "these checks are for the fp32 order; BF16 weights take the BF16 order on this CPU "
    "(Bf16OrderStaysCloseToTransformers checks it); ctest runs them again with "
    "EPSERVE_CPU_FEATURES=scalar (tests named fp32_*)";

// The model's matmuls round activations (the BF16 order; INT4-A8 for the INT4 fixture on a VNNI
// CPU, whose measured differences fit the same tolerances: matmul_quant.h, quantization.md).
const std::string* g_model = nullptr;
bool bf16_path() {
  return testing::activations_rounded(g_model ? *g_model : std::string());
}
float weight_tolerance() {
  return bf16_path() ? kWeightToleranceBf16 : kWeightTolerance;
}

// The largest differences seen, printed by each test so that the tolerances can be checked.
struct MaxDiff;
MaxDiff* g_max = nullptr;
struct MaxDiff {
  float logits = 0.0f, weights = 0.0f;
  ~MaxDiff() {
    std::printf("max |logit diff| %.3g, max |router weight diff| %.3g (%s path)\n", logits, weights,
                bf16_path() ? "bf16" : "fp32");
    g_max = nullptr;
  }
};
constexpr int kPrompts = 4;
constexpr int kDecodeSteps = 8;

std::string data_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data";
}

// Records the routing of every MoE layer, one entry per forward pass.
class RoutingRecorder : public MoeObserver {
 public:
  struct Call {
    int64_t num_tokens;
    int top_k;
    std::vector<int32_t> ids;
    std::vector<float> weights;
  };
  void on_routing(int layer, int64_t num_tokens, int top_k, const int32_t* ids,
                  const float* weights) override {
    calls[layer].push_back(Call{num_tokens, top_k,
                                std::vector<int32_t>(ids, ids + num_tokens * top_k),
                                std::vector<float>(weights, weights + num_tokens * top_k)});
  }
  std::map<int, std::vector<Call>> calls;
};

std::vector<int32_t> to_ids(const Tensor& t) {
  return std::vector<int32_t>(t.ptr<int32_t>(), t.ptr<int32_t>() + t.numel());
}

// Compares one token's routing (ids in our descending-score order) with transformers' (ids
// sorted ascending, weights in the same order).
void expect_same_routing(const int32_t* ids, const float* weights, int top_k,
                         const int32_t* golden_ids, const float* golden_weights,
                         const std::string& where) {
  std::vector<int> order(top_k);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return ids[a] < ids[b]; });
  for (int k = 0; k < top_k; ++k) {
    ASSERT_EQ(ids[order[k]], golden_ids[k]) << where << " slot " << k;
    EXPECT_NEAR(weights[order[k]], golden_weights[k], weight_tolerance()) << where << " slot " << k;
    if (g_max)
      g_max->weights = std::max(g_max->weights, std::fabs(weights[order[k]] - golden_weights[k]));
  }
}

float max_abs_diff(const float* a, const float* b, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  if (g_max) g_max->logits = std::max(g_max->logits, m);
  return m;
}

class Golden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_name_ = GetParam();
    g_model = &model_name_;
    model_ = load_causal_lm(data_dir() + "/models/" + GetParam());
    golden_ = SafetensorsFile::open(data_dir() + "/golden/" + GetParam() + ".safetensors");
  }
  Tensor golden(const std::string& name) const { return golden_->get(name); }

  void TearDown() override { g_model = nullptr; }

  std::string model_name_;
  std::unique_ptr<CausalLM> model_;
  std::shared_ptr<SafetensorsFile> golden_;
};

TEST_P(Golden, PrefillLogitsAndRoutingMatchTransformers) {
  if (bf16_path()) GTEST_SKIP() << kFp32Only;
  const int64_t V = model_->vocab_size();
  MaxDiff max_diff;
  g_max = &max_diff;
  for (int p = 0; p < kPrompts; ++p) {
    std::string prefix = fmt::format("prompt{}.", p);
    std::vector<int32_t> ids = to_ids(golden(prefix + "input_ids"));
    RoutingRecorder recorder;
    model_->set_moe_observer(&recorder);
    GenerateRequest request;
    request.input_ids = ids;
    request.max_new_tokens = 1;
    request.sampling.temperature = 0.0f;
    request.return_prompt_logits = true;
    GenerateResult result = generate(*model_, {request})[0];
    model_->set_moe_observer(nullptr);

    Tensor logits = golden(prefix + "prefill_logits");
    ASSERT_EQ(result.prompt_logits.size(), ids.size());
    for (size_t t = 0; t < ids.size(); ++t) {
      EXPECT_LE(max_abs_diff(result.prompt_logits[t].data(), logits.ptr<float>() + t * V, V),
                kLogitTolerance)
          << prefix << " position " << t;
    }
    for (const auto& [layer, calls] : recorder.calls) {
      ASSERT_EQ(calls.size(), 1u);
      std::string name = fmt::format("{}layer{}.", prefix, layer);
      Tensor golden_ids = golden(name + "topk_ids");
      Tensor golden_weights = golden(name + "topk_weights");
      int top_k = calls[0].top_k;
      ASSERT_EQ(golden_ids.dim(1), top_k);
      for (size_t t = 0; t < ids.size(); ++t) {
        expect_same_routing(calls[0].ids.data() + t * top_k, calls[0].weights.data() + t * top_k,
                            top_k, golden_ids.ptr<int32_t>() + t * top_k,
                            golden_weights.ptr<float>() + t * top_k,
                            fmt::format("{} token {}", name, t));
      }
    }
    EXPECT_EQ(recorder.calls.size(), static_cast<size_t>(model_->config().num_moe_layers()));
  }
}

TEST_P(Golden, GreedyDecodeMatchesTransformers) {
  if (bf16_path()) GTEST_SKIP() << kFp32Only;
  const int64_t V = model_->vocab_size();
  MaxDiff max_diff;
  g_max = &max_diff;
  for (int p = 0; p < kPrompts; ++p) {
    std::string prefix = fmt::format("prompt{}.", p);
    RoutingRecorder recorder;
    model_->set_moe_observer(&recorder);
    GenerateRequest request;
    request.input_ids = to_ids(golden(prefix + "input_ids"));
    request.max_new_tokens = kDecodeSteps;
    request.sampling.temperature = 0.0f;
    request.ignore_eos = true;
    request.return_logits = true;
    GenerateResult result = generate(*model_, {request})[0];
    model_->set_moe_observer(nullptr);

    EXPECT_EQ(result.output_ids, to_ids(golden(prefix + "greedy_ids"))) << prefix;
    Tensor logits = golden(prefix + "greedy_logits");
    ASSERT_EQ(result.logits.size(), static_cast<size_t>(kDecodeSteps));
    for (int s = 0; s < kDecodeSteps; ++s) {
      EXPECT_LE(max_abs_diff(result.logits[s].data(), logits.ptr<float>() + s * V, V),
                kLogitTolerance)
          << prefix << " step " << s;
    }
    // Routing of the decode steps (calls 1..7 of each layer; call 0 is the prefill).
    for (const auto& [layer, calls] : recorder.calls) {
      std::string name = fmt::format("{}decode.layer{}.", prefix, layer);
      Tensor golden_ids = golden(name + "topk_ids");
      Tensor golden_weights = golden(name + "topk_weights");
      ASSERT_EQ(calls.size(), static_cast<size_t>(kDecodeSteps));
      int top_k = calls[0].top_k;
      for (int s = 1; s < kDecodeSteps; ++s) {
        ASSERT_EQ(calls[s].num_tokens, 1);
        expect_same_routing(calls[s].ids.data(), calls[s].weights.data(), top_k,
                            golden_ids.ptr<int32_t>() + (s - 1) * top_k,
                            golden_weights.ptr<float>() + (s - 1) * top_k,
                            fmt::format("{} step {}", name, s));
      }
    }
  }
}

// All prompts in one batch give bit-identical logits and tokens to running them one by one:
// a request's result must not depend on its batch-mates.
// The BF16 order (activations rounded to bf16 before each product) against the same fp32
// transformers outputs. Its error moves router scores by more than the smallest golden margins
// (1e-3), so a token may pick another expert there and everything after it differs by O(1):
// the checks hold up to the first token whose routing differs from transformers' (at most two
// prompts of the four per model are allowed such a token); before it, logits within
// kLogitToleranceBf16, router weights within kWeightToleranceBf16 and the same greedy tokens.
TEST_P(Golden, Bf16OrderStaysCloseToTransformers) {
  if (!bf16_path()) GTEST_SKIP() << "BF16 weights take the fp32 order on this CPU";
  const int64_t V = model_->vocab_size();
  MaxDiff max_diff;
  g_max = &max_diff;
  int diverged = 0;
  for (int p = 0; p < kPrompts; ++p) {
    std::string prefix = fmt::format("prompt{}.", p);
    std::vector<int32_t> ids = to_ids(golden(prefix + "input_ids"));
    RoutingRecorder recorder;
    model_->set_moe_observer(&recorder);
    GenerateRequest request;
    request.input_ids = ids;
    request.max_new_tokens = kDecodeSteps;
    request.sampling.temperature = 0.0f;
    request.ignore_eos = true;
    request.return_prompt_logits = true;
    request.return_logits = true;
    GenerateResult result = generate(*model_, {request})[0];
    model_->set_moe_observer(nullptr);

    // The first position (prompt tokens, then decode steps) whose routing differs anywhere.
    const int64_t P = static_cast<int64_t>(ids.size());
    int64_t first = P + kDecodeSteps;
    for (const auto& [layer, calls] : recorder.calls) {
      ASSERT_EQ(calls.size(), static_cast<size_t>(kDecodeSteps));
      const int top_k = calls[0].top_k;
      auto same = [&](const int32_t* a, const int32_t* b) {
        std::vector<int32_t> x(a, a + top_k), y(b, b + top_k);
        std::sort(x.begin(), x.end());
        return x == y;
      };
      Tensor prefill_ids = golden(fmt::format("{}layer{}.topk_ids", prefix, layer));
      for (int64_t t = 0; t < P && t < first; ++t) {
        if (!same(calls[0].ids.data() + t * top_k, prefill_ids.ptr<int32_t>() + t * top_k)) {
          first = t;
        }
      }
      Tensor decode_ids = golden(fmt::format("{}decode.layer{}.topk_ids", prefix, layer));
      for (int s = 1; s < kDecodeSteps && P + s < first; ++s) {
        if (!same(calls[s].ids.data(), decode_ids.ptr<int32_t>() + (s - 1) * top_k)) {
          first = P + s;
        }
      }
      // Router weights of the tokens before `first` (the prefill call).
      Tensor prefill_weights = golden(fmt::format("{}layer{}.topk_weights", prefix, layer));
      for (int64_t t = 0; t < std::min(P, first); ++t) {
        expect_same_routing(calls[0].ids.data() + t * top_k, calls[0].weights.data() + t * top_k,
                            top_k, prefill_ids.ptr<int32_t>() + t * top_k,
                            prefill_weights.ptr<float>() + t * top_k,
                            fmt::format("{}layer{} token {}", prefix, layer, t));
      }
    }
    if (first < P + kDecodeSteps) {
      ++diverged;
      std::printf("%s %s: routing first differs from transformers at %s %lld\n", GetParam().c_str(),
                  prefix.c_str(), first < P ? "prompt token" : "decode step",
                  static_cast<long long>(first < P ? first : first - P));
    }
    Tensor prefill_logits = golden(prefix + "prefill_logits");
    for (int64_t t = 0; t < std::min(P, first); ++t) {
      EXPECT_LE(
          max_abs_diff(result.prompt_logits[t].data(), prefill_logits.ptr<float>() + t * V, V),
          kLogitToleranceBf16)
          << prefix << " position " << t;
    }
    // Decode step s's logits come from the pass that routed position P + s - 1 (step 0 is the
    // prefill's last position); its token is output s.
    Tensor greedy_logits = golden(prefix + "greedy_logits");
    std::vector<int32_t> greedy = to_ids(golden(prefix + "greedy_ids"));
    for (int s = 0; s < kDecodeSteps && P + s - 1 < first; ++s) {
      EXPECT_LE(max_abs_diff(result.logits[s].data(), greedy_logits.ptr<float>() + s * V, V),
                kLogitToleranceBf16)
          << prefix << " step " << s;
      EXPECT_EQ(result.output_ids[s], greedy[s]) << prefix << " greedy token " << s;
    }
  }
  EXPECT_LE(diverged, 2) << "prompts whose routing differs from transformers'";
}

TEST_P(Golden, BatchedEqualsOneByOneBitwise) {
  std::vector<GenerateRequest> requests;
  for (int p = 0; p < kPrompts; ++p) {
    GenerateRequest r;
    r.input_ids = to_ids(golden(fmt::format("prompt{}.input_ids", p)));
    r.max_new_tokens = kDecodeSteps;
    r.sampling.temperature = 0.0f;
    r.ignore_eos = true;
    r.return_logits = true;
    requests.push_back(r);
  }
  std::vector<GenerateResult> batched = generate(*model_, requests);
  for (int p = 0; p < kPrompts; ++p) {
    GenerateResult single = generate(*model_, {requests[p]})[0];
    EXPECT_EQ(batched[p].output_ids, single.output_ids);
    ASSERT_EQ(batched[p].logits.size(), single.logits.size());
    for (size_t s = 0; s < single.logits.size(); ++s) {
      EXPECT_EQ(batched[p].logits[s], single.logits[s]) << "prompt " << p << " step " << s;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Models, Golden,
                         ::testing::Values("deepseek_v3_tiny", "deepseek_v3_tiny_noqlora",
                                           "qwen3_moe_tiny", "qwen3_moe_tiny_sharded",
                                           "deepseek_v3_tiny_fp8", "kimi_k2_tiny_int4"));

}  // namespace
}  // namespace epserve
