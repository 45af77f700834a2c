// torch's CPU antialiased bicubic interpolation of a uint8 image
// (aten/src/ATen/native/cpu/UpSampleKernel.cpp, the separable "aa" path for uint8, which
// torchvision >= 0.19 uses for InterpolationMode.BICUBIC on CPU tensors): PIL's resampling
// scheme. Weights are computed in double, normalised, scaled to int16 with the largest precision
// that keeps the biggest weight below 2^15, and each pass (width, then height; a dimension of
// unchanged size is skipped) sums in int32 and rounds back to uint8.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "media/image_processor.h"

namespace epserve::media {

namespace {

double cubic_filter(double x) {
  constexpr double a = -0.5;  // PIL's (and torch's, with antialias) bicubic
  x = std::abs(x);
  if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0.0;
}

struct Taps {
  int64_t max_taps = 0;
  int precision = 0;             // fractional bits of the int16 weights
  std::vector<int64_t> first;    // [out]
  std::vector<int64_t> count;    // [out]
  std::vector<int32_t> weights;  // [out, max_taps]
};

Taps compute_taps(int64_t in_size, int64_t out_size) {
  constexpr int kInterpSize = 4;
  double scale = static_cast<double>(in_size) / out_size;
  double support = (scale >= 1.0) ? (kInterpSize * 0.5) * scale : kInterpSize * 0.5;
  Taps t;
  t.max_taps = static_cast<int64_t>(std::ceil(support)) * 2 + 1;
  t.first.resize(out_size);
  t.count.resize(out_size);
  std::vector<double> weights(out_size * t.max_taps, 0.0);
  double weight_max = 0.0;
  for (int64_t i = 0; i < out_size; ++i) {
    double center = scale * (i + 0.5);
    double total = 0.0;
    double invscale = (scale >= 1.0) ? 1.0 / scale : 1.0;
    int64_t xmin = std::max(static_cast<int64_t>(center - support + 0.5), int64_t{0});
    int64_t xsize = std::min(static_cast<int64_t>(center + support + 0.5), in_size) - xmin;
    xsize = std::clamp(xsize, int64_t{0}, t.max_taps);
    double* w = weights.data() + i * t.max_taps;
    for (int64_t j = 0; j < xsize; ++j) {
      w[j] = cubic_filter((j + xmin - center + 0.5) * invscale);
      total += w[j];
    }
    if (total != 0.0) {
      for (int64_t j = 0; j < xsize; ++j) {
        w[j] /= total;
        weight_max = std::max(weight_max, w[j]);
      }
    }
    t.first[i] = xmin;
    t.count[i] = xsize;
  }
  for (t.precision = 0; t.precision < 22; ++t.precision) {
    int next = static_cast<int>(0.5 + weight_max * (1 << (t.precision + 1)));
    if (next >= (1 << 15)) break;
  }
  t.weights.resize(weights.size());
  for (size_t k = 0; k < weights.size(); ++k) {
    double v = weights[k] * (1 << t.precision);
    t.weights[k] =
        static_cast<int16_t>(v < 0 ? static_cast<int>(-0.5 + v) : static_cast<int>(0.5 + v));
  }
  return t;
}

// One pass along the middle dimension of [outer, in_size, inner] -> [outer, out_size, inner].
std::vector<uint8_t> resample_pass(const std::vector<uint8_t>& in, int64_t outer, int64_t in_size,
                                   int64_t out_size, int64_t inner) {
  Taps t = compute_taps(in_size, out_size);
  std::vector<uint8_t> out(outer * out_size * inner);
  const int32_t half = 1 << (t.precision - 1);
  for (int64_t o = 0; o < outer; ++o) {
    const uint8_t* src = in.data() + o * in_size * inner;
    uint8_t* dst = out.data() + o * out_size * inner;
    for (int64_t i = 0; i < out_size; ++i) {
      const int32_t* w = t.weights.data() + i * t.max_taps;
      const uint8_t* s0 = src + t.first[i] * inner;
      for (int64_t k = 0; k < inner; ++k) {
        int32_t acc = half;
        for (int64_t j = 0; j < t.count[i]; ++j) acc += s0[j * inner + k] * w[j];
        dst[i * inner + k] = static_cast<uint8_t>(std::clamp(acc >> t.precision, 0, 255));
      }
    }
  }
  return out;
}

}  // namespace

std::vector<uint8_t> resize_bicubic(const std::vector<uint8_t>& rgb, int64_t height, int64_t width,
                                    int64_t new_height, int64_t new_width) {
  EPS_CHECK(static_cast<int64_t>(rgb.size()) == height * width * 3, "resize: {} bytes for {}x{}",
            rgb.size(), height, width);
  std::vector<uint8_t> cur = rgb;  // [H, W, 3]: a width pass has inner 3, a height pass W * 3
  if (new_width != width) cur = resample_pass(cur, height, width, new_width, 3);
  if (new_height != height) cur = resample_pass(cur, 1, height, new_height, new_width * 3);
  return cur;
}

}  // namespace epserve::media
