// SplitMix64 (Steele, Lea and Flood): the one 64-bit mixing function behind epserve's
// counter-based draws (dynamic expert dispatch, fake routing, make-model weights, request seeds).
#pragma once

#include <cstdint>

namespace epserve {

inline constexpr uint64_t kSplitMixGamma = 0x9e3779b97f4a7c15ULL;

// A well-mixed function of x.
inline uint64_t splitmix64(uint64_t x) {
  x += kSplitMixGamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// The next value of the stream whose state is `state`, which advances.
inline uint64_t splitmix64_next(uint64_t& state) {
  uint64_t z = splitmix64(state);
  state += kSplitMixGamma;
  return z;
}

}  // namespace epserve
