// Bidirectional multi-head attention of one image frame's patches over themselves, as Qwen3-VL's
// ViT blocks run it (no mask, no KV cache, queries, keys and values from one qkv projection).
//
// vision_attention computes, per head, the scores as a GEMM (queries, pre-multiplied by the
// scale, times the transposed keys: matmul_untransposed, one fp32 fma chain over head_dim per
// score), the softmax of attention_internal.h's step 2 (softmax_rows_avx2 on AVX2 CPUs, its
// scalar twin otherwise) and the output as a second GEMM (probabilities times the values:
// matmul_untransposed, one fp32 chain over the keys in order, step 3 of attention_internal.h).
// Queries go in blocks of kVisionQueryBlock, so memory is O(block * n), not O(n^2); heads run in
// parallel on the global thread pool. vision_attention_reference is the definition in double
// that the fast path is tested against. The BF16 matmul order runs this fp32 attention too: a
// BF16 version (keys and values as BF16 matmul weights) was no faster on Zen 5, head_dim 72
// being a short dot product for vdpbf16ps, and moved the BF16 golden's logits from 0.08 to 0.52
// (tolerance 0.3).
#pragma once

#include <cstdint>

namespace epserve {

constexpr int64_t kVisionQueryBlock = 256;

// qkv [n, 3, heads, head_dim] (the rotary already applied to q and k) -> out [n, heads,
// head_dim]: out = softmax(scale * q k^T) v per head.
void vision_attention(const float* qkv, int64_t n, int64_t heads, int64_t head_dim, float scale,
                      float* out);
void vision_attention_reference(const float* qkv, int64_t n, int64_t heads, int64_t head_dim,
                                float scale, float* out);

}  // namespace epserve
