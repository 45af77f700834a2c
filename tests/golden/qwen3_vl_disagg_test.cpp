// Qwen3-VL requests split over a PD prefill scheduler and a decode scheduler: the prefill side
// runs the vision tower and the prompt, its KV is copied slot by slot into the pages the decode
// side reserved (as the UCX agent writes it), and the decode side, which has only the images'
// grids (no pixels), decodes with the prompt's rope delta. The greedy tokens are transformers'.
// The vision record of the prefill answer (VisionHandoff) is what a decode side needs and checks.
#include <gtest/gtest.h>

#include <map>

#include "io/safetensors.h"
#include "kernels/cpu/matmul_internal.h"
#include "model/causal_lm.h"
#include "runtime/model_runner.h"
#include "runtime/scheduler.h"
#include "support/vl_golden.h"

namespace epserve {
namespace {

using nlohmann::json;

std::string data_dir() {
  return std::string(EPSERVE_SOURCE_DIR) + "/tests/data";
}

bool bf16_path() {
  return matmul_detail::canonical_path(DType::BF16) == matmul_detail::MatmulPath::kBf16Scalar;
}

using testing::values;

struct Outcome {
  std::vector<int32_t> tokens;
  std::string error;
  int error_status = 0;
  bool finished = false;
};

class Qwen3VlDisagg : public ::testing::Test {
 protected:
  void SetUp() override {
    golden_ = SafetensorsFile::open(data_dir() + "/golden/qwen3_vl_moe_tiny.safetensors");
    model_ = load_causal_lm(data_dir() + "/models/qwen3_vl_moe_tiny");
    start(512);
  }

  // Both schedulers afresh, the decode side with `decode_slots` KV slots.
  void start(int64_t decode_slots) {
    prefill_.reset();
    decode_.reset();
    prefill_runner_ = std::make_unique<LocalModelRunner>(*model_, 512);
    decode_runner_ = std::make_unique<LocalModelRunner>(*model_, decode_slots);
    SchedulerConfig p, d;
    p.disaggregation_mode = "prefill";
    p.chunked_prefill_size = 7;  // chunks cut through the images
    d.disaggregation_mode = "decode";
    prefill_ = std::make_unique<Scheduler>(*prefill_runner_, p);
    decode_ = std::make_unique<Scheduler>(*decode_runner_, d);
    // Writes the prompt's KV into the decode side's reserved slots, every layer.
    prefill_->set_kv_sender([this](const json& target, const std::vector<int32_t>& slots) {
      const auto dst = target.at("slots").get<std::vector<int32_t>>();
      EXPECT_EQ(dst.size(), slots.size());
      KvCache& from = prefill_runner_->cache();
      KvCache& to = decode_runner_->cache();
      const KvLayout layout = from.layout();
      for (int64_t l = 0; l < model_->config().num_layers; ++l) {
        for (size_t i = 0; i < slots.size(); ++i) {
          std::copy_n(from.k(l) + slots[i] * layout.k_width, layout.k_width,
                      to.k(l) + dst[i] * layout.k_width);
          std::copy_n(from.v(l) + slots[i] * layout.v_width, layout.v_width,
                      to.v(l) + dst[i] * layout.v_width);
        }
      }
      return static_cast<int64_t>(slots.size() * layout.floats_per_slot() * sizeof(float));
    });
  }

  GenerateInput input(const std::string& c, int64_t max_new) {
    GenerateInput in = testing::vl_golden_input(*golden_, c, max_new, 0x5eed0000);
    in.bootstrap_host = "127.0.0.1";
    in.bootstrap_room = next_room_++;
    return in;
  }

  // What a decode server's frontend makes of the same request: the grids, no pixels, no hashes.
  static GenerateInput without_pixels(GenerateInput in) {
    for (ImageInput& im : in.images) {
      im.pixel_values.clear();
      im.content_hash = 0;
    }
    return in;
  }

  // Runs both schedulers, passing the decode side's slots to the prefill side and the prefill
  // side's answers (through `edit`) back, as the relay does; the decode side's outputs by rid.
  std::map<std::string, Outcome> run(const std::vector<GenerateInput>& inputs,
                                     const std::function<void(json&)>& edit = {}) {
    std::map<std::string, Outcome> done;
    std::vector<TokenOutput> prefill_out, decode_out;
    for (const GenerateInput& in : inputs) {
      prefill_->add(in, prefill_out);
      decode_->add(without_pixels(in), decode_out);
    }
    for (int guard = 0; guard < 500; ++guard) {
      for (const TokenOutput& o : decode_out) {
        Outcome& d = done[o.rid];
        d.tokens.insert(d.tokens.end(), o.token_ids.begin(), o.token_ids.end());
        if (o.finished) {
          d.finished = true;
          d.error = o.error;
          d.error_status = o.error_status;
        }
      }
      decode_out.clear();
      prefill_out.clear();
      bool all_done = done.size() == inputs.size();
      for (const auto& [rid, d] : done) all_done = all_done && d.finished;
      if (all_done) return done;
      decode_->poll_disagg(decode_out);
      for (DisaggOutput& o : decode_->take_disagg_outputs()) {
        if (!o.body.contains("slots")) continue;
        prefill_->disagg(
            {o.rid, {{"target", {{"ranks", json::array()}, {"slots", o.body["slots"]}}}}},
            prefill_out);
      }
      prefill_->poll_disagg(prefill_out);
      for (DisaggOutput& o : prefill_->take_disagg_outputs()) {
        if (!o.body.contains("transfer")) continue;
        json result = o.body["transfer"];
        if (!result.value("ok", false)) {
          decode_->disagg({o.rid, {{"error", result.value("error", "")}, {"status", 502}}},
                          decode_out);
          continue;
        }
        if (edit) edit(result);
        decode_->disagg({o.rid, {{"received", result}}}, decode_out);
      }
      if (prefill_->has_work()) prefill_->step(prefill_out);
      if (decode_->has_work()) decode_->step(decode_out);
    }
    ADD_FAILURE() << "the schedulers did not drain";
    return done;
  }

  std::vector<int32_t> greedy(const std::string& c) const {
    return values<int32_t>(golden_->get(c + ".greedy_tokens"));
  }

  std::shared_ptr<SafetensorsFile> golden_;
  std::unique_ptr<CausalLM> model_;
  std::unique_ptr<LocalModelRunner> prefill_runner_, decode_runner_;
  std::unique_ptr<Scheduler> prefill_, decode_;
  int64_t next_room_ = 1;
};

TEST_F(Qwen3VlDisagg, PrefillAndDecodeSchedulersGiveTransformersTokens) {
  if (bf16_path()) GTEST_SKIP() << "greedy tokens are compared in the fp32 order (fp32_ tests)";
  std::vector<json> visions;
  auto done = run({input("text", 6), input("one_image", 6), input("two_images", 6)},
                  [&](json& result) { visions.push_back(result.value("vision", json())); });
  for (const char* c : {"text", "one_image", "two_images"}) {
    EXPECT_EQ(done[c].error, "") << c;
    EXPECT_EQ(done[c].tokens, greedy(c)) << c;
  }
  // Only requests with images carry a vision record; its delta is the prompt's (non-zero here).
  int with_images = 0;
  for (const json& v : visions) {
    if (v.is_null()) continue;
    ++with_images;
    EXPECT_NE(v.at("rope_delta").get<int64_t>(), 0);
    EXPECT_GE(v.at("image_hashes").size(), 1u);
  }
  EXPECT_EQ(with_images, 2);
}

TEST_F(Qwen3VlDisagg, TheDecodeSideKeysItsPrefixCacheAsThePrefillSideDoes) {
  // The decode side has no pixels and no hashes of its own: with the handoff its prefix-cache
  // key is the prefill side's, image tokens keyed by content, not by their token id.
  const ModelConfig& config = model_->config();
  GenerateInput in = input("two_images", 1);
  RequestVision prefill_vision, decode_vision;
  ASSERT_EQ(prepare_vision(config, in.input_ids, in.images, prefill_vision), "");
  GenerateInput decode_in = without_pixels(in);
  ASSERT_EQ(prepare_vision(config, decode_in.input_ids, decode_in.images, decode_vision, false),
            "");
  EXPECT_EQ(decode_vision.mrope.thw, prefill_vision.mrope.thw);
  const VisionHandoff handoff = make_vision_handoff(in.images, prefill_vision);
  EXPECT_EQ(handoff.rope_delta, prefill_vision.mrope.rope_delta);
  ASSERT_EQ(apply_vision_handoff(handoff, decode_in.images, decode_vision), "");
  const auto key = prefix_cache_key(in.input_ids, in.images, prefill_vision);
  EXPECT_EQ(prefix_cache_key(decode_in.input_ids, decode_in.images, decode_vision), key);
  EXPECT_NE(key, in.input_ids);
  // Another image in the same place: another key from its first image token on.
  VisionHandoff other = handoff;
  other.image_hashes[1] ^= 1;
  ASSERT_EQ(apply_vision_handoff(other, decode_in.images, decode_vision), "");
  const auto other_key = prefix_cache_key(decode_in.input_ids, decode_in.images, decode_vision);
  const int64_t second = decode_vision.mrope.runs[1].first;
  EXPECT_TRUE(std::equal(key.begin(), key.begin() + second, other_key.begin()));
  EXPECT_NE(key[second], other_key[second]);
}

TEST_F(Qwen3VlDisagg, ADecodeSideRefusesAnAnswerWithoutTheRightVisionRecord) {
  // A dropped vision record (an older prefill server), a rope delta that is not the prompt's
  // (a delta dropped to 0), and a wrong number of image hashes each fail the request (502).
  auto dropped = run({input("one_image", 3)}, [](json& r) { r.erase("vision"); });
  EXPECT_EQ(dropped["one_image"].error_status, 502);
  EXPECT_NE(dropped["one_image"].error.find("no vision record"), std::string::npos)
      << dropped["one_image"].error;
  GenerateInput zero = input("one_image", 3);
  zero.rid = "zero";
  auto zeroed = run({zero}, [](json& r) { r["vision"]["rope_delta"] = 0; });
  EXPECT_EQ(zeroed["zero"].error_status, 502);
  EXPECT_NE(zeroed["zero"].error.find("rope delta (0)"), std::string::npos) << zeroed["zero"].error;
  GenerateInput two = input("two_images", 3);
  auto hashes = run({two}, [](json& r) { r["vision"]["image_hashes"].erase(0); });
  EXPECT_EQ(hashes["two_images"].error_status, 502);
  EXPECT_NE(hashes["two_images"].error.find("1 image hashes for a prompt with 2"),
            std::string::npos)
      << hashes["two_images"].error;
  // Both sides free every page.
  EXPECT_EQ(decode_->used_tokens(), 0);
  EXPECT_EQ(prefill_->used_tokens(), 0);
}

TEST_F(Qwen3VlDisagg, ARetractedDecodeRequestResumesIfItsImageKvIsStillCached) {
  // 32 decode slots: the image request (17 prompt tokens, image at 6..11) is retracted while a
  // text request grows. With the text request 12 tokens long, only the tail after the image is
  // evicted: it is recomputed (3-D positions of its own grids, p + delta past the prompt) and the
  // tokens are transformers'. With 20, the image's KV goes too: without pixels the decode side
  // cannot recompute it, and the request ends with 503; both sides free every page either way.
  for (int64_t text_len : {12, 20}) {
    SCOPED_TRACE(text_len);
    start(32);
    GenerateInput text = input("text", text_len);
    text.rid = "a_text";
    GenerateInput image = input("one_image", 6);
    image.rid = "b_image";
    auto done = run({text, image});
    EXPECT_EQ(decode_->stats().retractions, 1);
    EXPECT_EQ(done["a_text"].error, "");
    EXPECT_EQ(done["a_text"].tokens.size(), static_cast<size_t>(text_len));
    if (text_len == 12) {
      EXPECT_EQ(done["b_image"].error, "");
      EXPECT_GE(decode_->stats().prefill_tokens, 2);  // more than the last token recomputed
      if (!bf16_path()) EXPECT_EQ(done["b_image"].tokens, greedy("one_image"));
    } else {
      EXPECT_EQ(done["b_image"].error_status, 503);
      EXPECT_NE(done["b_image"].error.find("no pixels to recompute"), std::string::npos)
          << done["b_image"].error;
    }
    EXPECT_EQ(decode_->used_tokens(), 0);
    EXPECT_EQ(prefill_->used_tokens(), 0);
  }
}

TEST(VisionHandoff, RoundTripsThroughJson) {
  VisionHandoff h{-7, {0, 1, ~uint64_t{0}}};
  json j = json::parse(vision_handoff_json(h).dump());
  VisionHandoff back;
  ASSERT_EQ(parse_vision_handoff(j, back), "");
  EXPECT_EQ(back.rope_delta, -7);
  EXPECT_EQ(back.image_hashes, h.image_hashes);
  EXPECT_NE(parse_vision_handoff(json{{"rope_delta", 1.5}, {"image_hashes", json::array()}}, back),
            "");
  EXPECT_NE(parse_vision_handoff(json{{"rope_delta", 1}, {"image_hashes", {-1}}}, back), "");
  EXPECT_NE(parse_vision_handoff(json::array(), back), "");
}

}  // namespace
}  // namespace epserve
