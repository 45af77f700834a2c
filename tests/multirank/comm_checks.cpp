#include "comm_checks.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace epserve::test {
namespace {

// Values with spread-out exponents, so that the summation order changes the rounding.
std::vector<float> floats_of(int rank, size_t count, int salt) {
  std::mt19937 gen(rank * 7919 + salt * 104729 + static_cast<int>(count));
  std::uniform_real_distribution<float> mant(-1.0f, 1.0f);
  std::uniform_int_distribution<int> expo(-20, 20);
  std::vector<float> v(count);
  for (auto& x : v) x = std::ldexp(mant(gen), expo(gen));
  return v;
}

uint64_t mix(uint64_t h, const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

uint64_t check_collectives(Communicator& comm) {
  const int n = comm.size(), r = comm.rank();
  uint64_t digest = 1469598103934665603ull;

  comm.barrier();

  for (int root = 0; root < n; ++root) {
    std::vector<int64_t> v(100, r == root ? root * 11 + 1 : -1);
    comm.broadcast(v.data(), v.size() * 8, root);
    EXPECT_EQ(v[99], root * 11 + 1) << "broadcast from root " << root;
  }

  std::vector<int32_t> mine(3, r * 10), all(3 * n);
  comm.allgather(mine.data(), 12, all.data());
  for (int q = 0; q < n; ++q) EXPECT_EQ(all[3 * q + 2], q * 10);

  // allgatherv with rank q contributing q bytes-worth of int16 values (rank 0: nothing).
  std::vector<size_t> sizes(n);
  size_t total = 0;
  for (int q = 0; q < n; ++q) total += sizes[q] = q * 2 * sizeof(int16_t);
  std::vector<int16_t> part(r * 2, int16_t(r + 100)), gathered(total / 2);
  comm.allgatherv(part.data(), part.size() * 2, gathered.data(), sizes);
  for (size_t i = 0, q = 0; q < size_t(n); ++q) {
    for (size_t k = 0; k < q * 2; ++k, ++i) EXPECT_EQ(gathered[i], int16_t(q + 100));
  }

  for (size_t count : {size_t(1), size_t(7), size_t(1000), size_t(100000), size_t(100003)}) {
    std::vector<float> got = floats_of(r, count, 1);
    comm.allreduce(got.data(), count, ReduceOp::kSum);
    std::vector<float> ref = floats_of(0, count, 1);
    for (int q = 1; q < n; ++q) {
      auto other = floats_of(q, count, 1);
      for (size_t i = 0; i < count; ++i) ref[i] = ref[i] + other[i];
    }
    EXPECT_EQ(std::memcmp(got.data(), ref.data(), count * 4), 0) << "float sum, count " << count;
    digest = mix(digest, got.data(), count * 4);

    std::vector<double> dmax(count);
    for (size_t i = 0; i < count; ++i) dmax[i] = double((i * 31 + r * 17) % 101);
    comm.allreduce(dmax.data(), count, ReduceOp::kMax);
    for (size_t i = 0; i < count; i += 97) {
      double expect = 0;
      for (int q = 0; q < n; ++q) expect = std::max(expect, double((i * 31 + q * 17) % 101));
      EXPECT_EQ(dmax[i], expect);
    }
    std::vector<int64_t> isum(count, r + 1);
    comm.allreduce(isum.data(), count, ReduceOp::kSum);
    EXPECT_EQ(isum[count - 1], int64_t(n) * (n + 1) / 2);
  }

  // Bit-identical on every rank: compare a digest of a float allreduce.
  {
    std::vector<float> v = floats_of(r, 4099, 2);
    comm.allreduce(v.data(), v.size(), ReduceOp::kSum);
    std::vector<uint64_t> digests(n);
    uint64_t d = mix(0, v.data(), v.size() * 4);
    comm.allgather(&d, 8, digests.data());
    for (int q = 0; q < n; ++q) EXPECT_EQ(digests[q], d) << "rank " << q << " differs";
  }

  {
    const size_t count = 513;
    std::vector<float> send = floats_of(r, count * n, 3), got(count);
    comm.reduce_scatter(send.data(), got.data(), count, ReduceOp::kSum);
    std::vector<float> ref(count);
    for (int q = 0; q < n; ++q) {
      auto other = floats_of(q, count * n, 3);
      for (size_t i = 0; i < count; ++i) {
        float x = other[r * count + i];
        ref[i] = q == 0 ? x : ref[i] + x;
      }
    }
    EXPECT_EQ(std::memcmp(got.data(), ref.data(), count * 4), 0) << "reduce_scatter";
    digest = mix(digest, got.data(), count * 4);
  }

  {
    std::vector<int32_t> send(n * 5), recv(n * 5);
    for (int q = 0; q < n; ++q) {
      for (int k = 0; k < 5; ++k) send[q * 5 + k] = r * 1000 + q * 10 + k;
    }
    comm.all_to_all(send.data(), recv.data(), 5 * 4);
    for (int q = 0; q < n; ++q) EXPECT_EQ(recv[q * 5 + 4], q * 1000 + r * 10 + 4);
  }

  {
    // all_to_allv: rank a sends (a + b) % 3 * 1000 int32 to rank b (zeros included).
    auto amount = [](int a, int b) { return size_t((a + b) % 3) * 1000; };
    std::vector<size_t> sb(n), rb(n);
    size_t st = 0, rt = 0;
    for (int q = 0; q < n; ++q) {
      st += sb[q] = amount(r, q) * 4;
      rt += rb[q] = amount(q, r) * 4;
    }
    std::vector<int32_t> send(st / 4), recv(rt / 4, -1);
    for (size_t i = 0, q = 0; q < size_t(n); ++q) {
      for (size_t k = 0; k < amount(r, q); ++k) send[i++] = r * 100000 + int(q) * 1000 + int(k);
    }
    comm.all_to_allv(send.data(), sb, recv.data(), rb);
    for (size_t i = 0, q = 0; q < size_t(n); ++q) {
      for (size_t k = 0; k < amount(q, r); ++k, ++i) {
        EXPECT_EQ(recv[i], int(q) * 100000 + r * 1000 + int(k));
      }
    }
  }
  comm.barrier();
  return digest;
}

}  // namespace epserve::test
