#include "router/policy.h"

#include <random>

#include "core/error.h"
#include "router/cache_aware.h"

namespace epserve {

namespace {

std::mt19937_64& rng() {
  thread_local std::mt19937_64 engine(std::random_device{}());
  return engine;
}

size_t random_index(size_t n) {
  return std::uniform_int_distribution<size_t>(0, n - 1)(rng());
}

class RandomPolicy : public Policy {
 public:
  const char* name() const override { return "random"; }
  std::shared_ptr<Worker> select(const WorkerList& available, const std::string&) override {
    return available[random_index(available.size())];
  }
};

class RoundRobinPolicy : public Policy {
 public:
  const char* name() const override { return "round_robin"; }
  std::shared_ptr<Worker> select(const WorkerList& available, const std::string&) override {
    return available[counter_.fetch_add(1) % available.size()];
  }

 private:
  std::atomic<size_t> counter_{0};
};

class PowerOfTwoPolicy : public Policy {
 public:
  const char* name() const override { return "power_of_two"; }
  std::shared_ptr<Worker> select(const WorkerList& available, const std::string&) override {
    if (available.size() == 1) return available[0];
    size_t first = random_index(available.size());
    size_t second = (first + 1 + random_index(available.size() - 1)) % available.size();
    const auto& a = available[first];
    const auto& b = available[second];
    return policy_load(*a) <= policy_load(*b) ? a : b;
  }
};

}  // namespace

int64_t policy_load(const Worker& worker) {
  int64_t reported = worker.reported_load.load();
  return reported >= 0 ? reported : worker.load.load();
}

std::unique_ptr<Policy> make_policy(const std::string& name, const CacheAwareOptions& cache_aware) {
  if (name == "random") return std::make_unique<RandomPolicy>();
  if (name == "round_robin") return std::make_unique<RoundRobinPolicy>();
  if (name == "power_of_two") return std::make_unique<PowerOfTwoPolicy>();
  if (name == "cache_aware") return std::make_unique<CacheAwarePolicy>(cache_aware);
  EPS_THROW("unknown policy '{}' (random, round_robin, cache_aware, power_of_two)", name);
}

}  // namespace epserve
