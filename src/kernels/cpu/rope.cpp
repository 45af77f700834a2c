#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace epserve {
namespace {

double yarn_mscale(double scale, double mscale) {
  if (scale <= 1.0) return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

double correction_dim(double num_rotations, int dim, double base, int max_position) {
  return (dim * std::log(max_position / (num_rotations * 2 * M_PI))) / (2 * std::log(base));
}

}  // namespace

RopeTable make_rope_table(const RopeParams& config, int rotary_dim) {
  EPS_CHECK(rotary_dim > 0 && rotary_dim % 2 == 0, "rotary dimension {} must be even", rotary_dim);
  RopeTable table;
  table.rotary_dim = rotary_dim;
  table.interleave = config.interleave;
  int half = rotary_dim / 2;
  table.inv_freq.resize(half);
  // transformers computes these in fp32: exponent = float(2i) / dim, then base ** exponent.
  std::vector<float> pos_freq(half);
  for (int i = 0; i < half; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
    pos_freq[i] = static_cast<float>(std::pow(config.theta, static_cast<double>(exponent)));
  }
  if (!config.yarn) {
    for (int i = 0; i < half; ++i) table.inv_freq[i] = 1.0f / pos_freq[i];
    return table;
  }
  double factor = config.factor;
  double low = correction_dim(config.beta_fast, rotary_dim, config.theta,
                              config.original_max_position_embeddings);
  double high = correction_dim(config.beta_slow, rotary_dim, config.theta,
                               config.original_max_position_embeddings);
  if (config.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(rotary_dim - 1));
  if (low == high) high += 0.001;
  for (int i = 0; i < half; ++i) {
    float extrapolation = 1.0f / pos_freq[i];
    float interpolation = 1.0f / (static_cast<float>(factor) * pos_freq[i]);
    float ramp = static_cast<float>((i - low) / (high - low));
    ramp = std::clamp(ramp, 0.0f, 1.0f);
    float extrapolation_factor = 1.0f - ramp;
    table.inv_freq[i] =
        interpolation * (1.0f - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  double attention_factor = config.attention_factor;
  if (attention_factor == 0.0) {
    attention_factor =
        (config.mscale != 0.0 && config.mscale_all_dim != 0.0)
            ? yarn_mscale(factor, config.mscale) / yarn_mscale(factor, config.mscale_all_dim)
            : yarn_mscale(factor, 1.0);
  }
  table.attention_factor = static_cast<float>(attention_factor);
  return table;
}

double yarn_softmax_scale_multiplier(const RopeParams& config) {
  if (!config.yarn || config.mscale_all_dim == 0.0) return 1.0;
  double m = yarn_mscale(config.factor, config.mscale_all_dim);
  return m * m;
}

void apply_rope(const RopeTable& table, int64_t position, float* x, int64_t num_heads,
                int64_t head_stride) {
  int half = table.rotary_dim / 2;
  float cos_v[256];
  float sin_v[256];
  EPS_CHECK(half <= 256, "rotary dimension {} is larger than supported", table.rotary_dim);
  for (int i = 0; i < half; ++i) {
    float angle = static_cast<float>(position) * table.inv_freq[i];
    cos_v[i] = std::cos(angle) * table.attention_factor;
    sin_v[i] = std::sin(angle) * table.attention_factor;
  }
  float tmp[512];
  for (int64_t h = 0; h < num_heads; ++h) {
    float* v = x + h * head_stride;
    if (table.interleave) {
      for (int i = 0; i < half; ++i) {
        float a = v[2 * i];
        float b = v[2 * i + 1];
        tmp[i] = a * cos_v[i] - b * sin_v[i];
        tmp[half + i] = b * cos_v[i] + a * sin_v[i];
      }
      for (int i = 0; i < 2 * half; ++i) v[i] = tmp[i];
    } else {
      for (int i = 0; i < half; ++i) {
        float a = v[i];
        float b = v[half + i];
        v[i] = a * cos_v[i] - b * sin_v[i];
        v[half + i] = b * cos_v[i] + a * sin_v[i];
      }
    }
  }
}

void apply_rope_angles(const float* angle, int half, float* x, int64_t num_heads,
                       int64_t head_stride) {
  float cos_v[256];
  float sin_v[256];
  EPS_CHECK(half <= 256, "rotary dimension {} is larger than supported", 2 * half);
  for (int i = 0; i < half; ++i) {
    cos_v[i] = std::cos(angle[i]);
    sin_v[i] = std::sin(angle[i]);
  }
  for (int64_t h = 0; h < num_heads; ++h) {
    float* v = x + h * head_stride;
    for (int i = 0; i < half; ++i) {
      float a = v[i];
      float b = v[half + i];
      v[i] = a * cos_v[i] - b * sin_v[i];
      v[half + i] = b * cos_v[i] + a * sin_v[i];
    }
  }
}

void mrope_interleaved_angles(const RopeTable& table, const int32_t* thw, const int* section,
                              float* angle) {
  const int half = table.rotary_dim / 2;
  for (int i = 0; i < half; ++i) {
    int axis = 0;
    if (i % 3 == 1 && i < 3 * section[1]) axis = 1;
    if (i % 3 == 2 && i < 3 * section[2]) axis = 2;
    angle[i] = static_cast<float>(thw[axis]) * table.inv_freq[i];
  }
}

}  // namespace epserve
