// The FP8-BF16 and INT4-A8 orders of the block-scaled matmul (matmul_quant.h): their scalar
// definitions, the preparation of x (bf16 rounding, int8 quantization), the choice of order and
// path from cpu_features(), and the driver that runs the row kernels on the thread pool.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>

#include "core/thread_pool.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/matmul_quant.h"
#include "kernels/cpu/vector_paths.h"

namespace epserve::matmul_detail {
namespace {

constexpr int64_t kChunk = 128;  // INT4-A8 columns per chunk: 16 lanes of 8
constexpr int64_t kXGroup = 32;  // INT4-A8 activation group

float scale_value(const WeightView& w, int64_t i) {
  return w.scale_dtype == DType::BF16 ? bf16_to_f32(static_cast<const bf16_t*>(w.scales)[i])
                                      : static_cast<const float*>(w.scales)[i];
}

// The BF16 order's final reduction of sixteen lane sums.
float reduce16(const float* acc) {
  float h[8], q[4];
  for (int l = 0; l < 8; ++l) h[l] = acc[l] + acc[l + 8];
  for (int l = 0; l < 4; ++l) q[l] = h[l] + h[l + 4];
  return (q[0] + q[2]) + (q[1] + q[3]);
}

// A 64-byte aligned scratch buffer per calling thread, kept between calls.
template <typename T>
T* scratch(int slot, int64_t count) {
  static thread_local std::unique_ptr<char, void (*)(void*)> buffers[6] = {
      {nullptr, std::free}, {nullptr, std::free}, {nullptr, std::free},
      {nullptr, std::free}, {nullptr, std::free}, {nullptr, std::free}};
  static thread_local int64_t capacity[6] = {};
  const int64_t bytes =
      std::max<int64_t>(64, (count * static_cast<int64_t>(sizeof(T)) + 63) / 64 * 64);
  if (bytes > capacity[slot]) {
    auto* p = static_cast<char*>(std::aligned_alloc(64, static_cast<size_t>(bytes)));
    EPS_CHECK(p != nullptr, "matmul: out of memory for {} bytes of activations", bytes);
    buffers[slot].reset(p);
    capacity[slot] = bytes;
  }
  return reinterpret_cast<T*>(buffers[slot].get());
}

bool has_int4_vnni() {
  return cpu_features().avx512_vnni || cpu_features().avx_vnni;
}

}  // namespace

const char* quant_path_name(QuantPath path) {
  switch (path) {
    case QuantPath::kFp32Scalar:
      return "fp32-scalar";
    case QuantPath::kFp32Avx2:
      return "fp32-avx2";
    case QuantPath::kFp32Avx512:
      return "fp32-avx512";
    case QuantPath::kFp8Bf16Scalar:
      return "fp8-bf16-scalar";
    case QuantPath::kFp8Bf16Avx512:
      return "fp8-bf16-avx512";
    case QuantPath::kInt4A8Scalar:
      return "int4-a8-scalar";
    case QuantPath::kInt4A8Avx512Vnni:
      return "int4-a8-avx512-vnni";
    case QuantPath::kInt4A8AvxVnni:
      return "int4-a8-avx-vnni";
  }
  return "?";
}

bool quant_path_available(QuantPath path) {
  const CpuFeatures& f = cpu_features();
  switch (path) {
    case QuantPath::kFp32Avx2:
      return f.avx2_fma;
    case QuantPath::kFp32Avx512:
      return f.avx512;
    case QuantPath::kFp8Bf16Avx512:
      return f.avx512_bf16;
    case QuantPath::kInt4A8Avx512Vnni:
      return f.avx512_vnni;
    case QuantPath::kInt4A8AvxVnni:
      return f.avx_vnni;
    default:
      return true;
  }
}

bool fp8_bf16_view_ok(const WeightView& w) {
  return w.format == WeightFormat::kFp8Block && w.cols % 32 == 0 && w.col0 % 32 == 0 &&
         w.block_cols % 32 == 0;
}

bool int4_a8_view_ok(const WeightView& w) {
  return w.format == WeightFormat::kInt4Group && w.cols % 8 == 0 && w.col0 % 8 == 0 &&
         w.block_cols % 8 == 0 && w.block_rows == 1;
}

QuantOrder quant_order(const WeightView& w) {
  if (w.format == WeightFormat::kFp8Block && cpu_features().avx512_bf16 && fp8_bf16_view_ok(w))
    return QuantOrder::kFp8Bf16;
  if (w.format == WeightFormat::kInt4Group && has_int4_vnni() && int4_a8_view_ok(w))
    return QuantOrder::kInt4A8;
  return QuantOrder::kFp32;
}

QuantPath quant_auto_path(const WeightView& w, bool scalar) {
  if (scalar) return QuantPath::kFp32Scalar;
  switch (quant_order(w)) {
    case QuantOrder::kFp8Bf16:
      return QuantPath::kFp8Bf16Avx512;
    case QuantOrder::kInt4A8:
      return cpu_features().avx512_vnni ? QuantPath::kInt4A8Avx512Vnni : QuantPath::kInt4A8AvxVnni;
    case QuantOrder::kFp32:
      break;
  }
  if (!quant_vector_ok(w)) return QuantPath::kFp32Scalar;
  return cpu_has_avx512() ? QuantPath::kFp32Avx512 : QuantPath::kFp32Avx2;
}

// x[t] quantized in groups of 32 (the INT4-A8 definition), into both layouts.
void int4_a8_quantize(const float* x, int64_t cols, int64_t chunks, int8_t* q, float* group_scale,
                      int8_t* packed, int32_t* offset, float* lane_scale) {
  const int64_t groups = (cols + kXGroup - 1) / kXGroup;
  std::fill(q, q + chunks * kChunk, int8_t{0});
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t k0 = g * kXGroup, k1 = std::min(cols, k0 + kXGroup);
    float amax = 0.0f;
    for (int64_t k = k0; k < k1; ++k) {
      const float a = std::fabs(x[k]);
      amax = a > amax ? a : amax;
    }
    const float d = amax / 127.0f;
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    group_scale[g] = d;
    for (int64_t k = k0; k < k1; ++k) {
      float v = x[k] * inv;
      // Round to nearest even as nearbyint does (|v| <= 127, so adding 1.5 x 2^23 drops the
      // fraction exactly), without a libm call per element.
      v = std::isnan(v) ? 0.0f : (std::clamp(v, -127.0f, 127.0f) + 0x1.8p23f) - 0x1.8p23f;
      q[k] = static_cast<int8_t>(v);
    }
  }
  for (int64_t c = 0; c < chunks; ++c) {
    const int8_t* qc = q + c * kChunk;
    int8_t* pc = packed + c * kChunk;
    for (int l = 0; l < 16; ++l) {
      int32_t sum = 0;
      for (int i = 0; i < 4; ++i) {
        pc[4 * l + i] = qc[8 * l + 2 * i];
        pc[64 + 4 * l + i] = qc[8 * l + 2 * i + 1];
        sum += qc[8 * l + 2 * i] + qc[8 * l + 2 * i + 1];
      }
      offset[c * 16 + l] = -8 * sum;
      const int64_t k = c * kChunk + 8 * l;
      lane_scale[c * 16 + l] = k < cols ? group_scale[k / kXGroup] : 0.0f;
    }
  }
}

void fp8_bf16_rows_scalar(const bf16_t* xb, int64_t x_stride, int64_t num_tokens,
                          const WeightView& w, float* y, int64_t n_begin, int64_t n_end) {
  const auto* data = static_cast<const uint8_t*>(w.data);
  for (int64_t n = n_begin; n < n_end; ++n) {
    const uint8_t* row = data + (w.row0 + n) * w.row_stride + w.col0;
    const int64_t scale_row = (w.row0 + n) / w.block_rows * w.scale_stride;
    for (int64_t t = 0; t < num_tokens; ++t) {
      const bf16_t* xt = xb + t * x_stride;
      float acc[16] = {};
      for (int64_t k = 0; k < w.cols;) {
        const int64_t b = (w.col0 + k) / w.block_cols;
        const int64_t block_end = std::min(w.cols, (b + 1) * w.block_cols - w.col0);
        float p[16] = {};
        for (; k < block_end; k += 32) {
          for (int l = 0; l < 16; ++l) {
            for (int64_t kk : {k + 2 * l + 1, k + 2 * l}) {
              const float wv = fp8_e4m3_to_f32(row[kk]) * 256.0f;  // exact, and exact in bf16
              p[l] = bf16_dp_step(bf16_to_f32(xt[kk]), wv, p[l]);
            }
          }
        }
        const float s = scale_value(w, scale_row + b) * 0x1p-8f;
        for (int l = 0; l < 16; ++l) acc[l] = std::fma(p[l], s, acc[l]);
      }
      y[t * w.rows + n] = reduce16(acc);
    }
  }
}

void int4_a8_rows_scalar(const Int8Activations& xa, const WeightView& w, float* y, int64_t n_begin,
                         int64_t n_end) {
  const int64_t q_stride = xa.chunks * kChunk;
  const int64_t g_stride = (xa.cols + kXGroup - 1) / kXGroup;
  for (int64_t n = n_begin; n < n_end; ++n) {
    for (int64_t t = 0; t < xa.num_tokens; ++t) {
      const int8_t* q = xa.q + t * q_stride;
      float acc[16] = {};
      for (int64_t c = 0; c < xa.chunks; ++c) {
        for (int l = 0; l < 16; ++l) {
          const int64_t k = c * kChunk + 8 * l;
          if (k >= w.cols) continue;
          int32_t s = 0;
          for (int64_t j = 0; j < 8; ++j) {
            const int64_t i = (w.row0 + n) * w.row_stride + w.col0 + k + j;
            const uint32_t word = static_cast<const uint32_t*>(w.data)[i / 8];
            const int nibble = static_cast<int>((word >> (4 * (i % 8))) & 0xf);
            s += (nibble - 8) * q[k + j];
          }
          const float sw =
              scale_value(w, (w.row0 + n) * w.scale_stride + (w.col0 + k) / w.block_cols);
          const float cs = sw * xa.group_scale[t * g_stride + k / kXGroup];
          acc[l] = std::fma(static_cast<float>(s), cs, acc[l]);
        }
      }
      y[t * w.rows + n] = reduce16(acc);
    }
  }
}

void quant_matmul_path(const float* x, int64_t num_tokens, const WeightView& w, float* y,
                       QuantPath path) {
  EPS_CHECK(w.format == WeightFormat::kFp8Block || w.format == WeightFormat::kInt4Group,
            "quant_matmul needs a block-scaled weight view");
  if (num_tokens == 0 || w.rows == 0) return;
  if (w.cols == 0) {
    std::fill(y, y + num_tokens * w.rows, 0.0f);
    return;
  }
  ThreadPool& pool = ThreadPool::global();
  // Row chunks of 16, about 64K multiply-adds per chunk at least.
  constexpr int64_t kRowChunk = 16;  // two tiles of 8 rows
  const int64_t min_rows = std::max<int64_t>(kRowChunk, (int64_t{1} << 16) / (num_tokens * w.cols));
  const int64_t num_blocks = (w.rows + kRowChunk - 1) / kRowChunk;
  auto over_rows = [&](auto&& kernel) {
    pool.parallel_for(
        num_blocks,
        [&](int64_t b0, int64_t b1) { kernel(b0 * kRowChunk, std::min(w.rows, b1 * kRowChunk)); },
        (min_rows + kRowChunk - 1) / kRowChunk, 4);
  };
  switch (path) {
    case QuantPath::kFp32Scalar:
      quant_matmul_with(x, num_tokens, w, y, quant_rows_scalar);
      return;
    case QuantPath::kFp32Avx2:
    case QuantPath::kFp32Avx512:
      EPS_CHECK(quant_vector_ok(w) && quant_path_available(path),
                "quantized matmul path {} is not available here", quant_path_name(path));
      quant_matmul_with(x, num_tokens, w, y,
                        path == QuantPath::kFp32Avx2 ? quant_rows_avx2 : quant_rows_avx512);
      return;
    case QuantPath::kFp8Bf16Scalar:
    case QuantPath::kFp8Bf16Avx512: {
      const bool vector = path == QuantPath::kFp8Bf16Avx512;
      EPS_CHECK(fp8_bf16_view_ok(w) && quant_path_available(path),
                "quantized matmul path {} is not available here", quant_path_name(path));
      const int64_t x_stride = w.cols;  // a multiple of 32
      bf16_t* xb = scratch<bf16_t>(0, num_tokens * x_stride);
      if (vector) {
        round_to_bf16_avx512(x, num_tokens, w.cols, xb, x_stride);
      } else {
        for (int64_t i = 0; i < num_tokens * w.cols; ++i) xb[i] = bf16_from_f32_rne_daz(x[i]);
      }
      over_rows([&](int64_t n0, int64_t n1) {
        (vector ? fp8_bf16_rows_avx512 : fp8_bf16_rows_scalar)(xb, x_stride, num_tokens, w, y, n0,
                                                               n1);
      });
      return;
    }
    case QuantPath::kInt4A8Scalar:
    case QuantPath::kInt4A8Avx512Vnni:
    case QuantPath::kInt4A8AvxVnni: {
      EPS_CHECK(int4_a8_view_ok(w) && quant_path_available(path),
                "quantized matmul path {} is not available here", quant_path_name(path));
      Int8Activations xa;
      xa.num_tokens = num_tokens;
      xa.cols = w.cols;
      xa.chunks = (w.cols + kChunk - 1) / kChunk;
      const int64_t groups = (w.cols + kXGroup - 1) / kXGroup;
      auto* q = scratch<int8_t>(1, num_tokens * xa.chunks * kChunk);
      auto* gs = scratch<float>(2, num_tokens * groups);
      auto* packed = scratch<int8_t>(3, num_tokens * xa.chunks * kChunk);
      auto* offset = scratch<int32_t>(4, num_tokens * xa.chunks * 16);
      auto* lane_scale = scratch<float>(5, num_tokens * xa.chunks * 16);
      auto quantize =
          path == QuantPath::kInt4A8Avx512Vnni ? int4_a8_quantize_avx512vnni : int4_a8_quantize;
      pool.parallel_for(
          num_tokens,
          [&](int64_t t0, int64_t t1) {
            for (int64_t t = t0; t < t1; ++t) {
              quantize(x + t * w.cols, w.cols, xa.chunks, q + t * xa.chunks * kChunk,
                       gs + t * groups, packed + t * xa.chunks * kChunk,
                       offset + t * xa.chunks * 16, lane_scale + t * xa.chunks * 16);
            }
          },
          std::max<int64_t>(1, (int64_t{1} << 15) / w.cols));
      xa.q = q;
      xa.group_scale = gs;
      xa.packed = packed;
      xa.offset = offset;
      xa.lane_scale = lane_scale;
      auto kernel = path == QuantPath::kInt4A8Scalar       ? int4_a8_rows_scalar
                    : path == QuantPath::kInt4A8Avx512Vnni ? int4_a8_rows_avx512vnni
                                                           : int4_a8_rows_avxvnni;
      over_rows([&](int64_t n0, int64_t n1) { kernel(xa, w, y, n0, n1); });
      return;
    }
  }
}

}  // namespace epserve::matmul_detail
