// Load-balancing policies of SGLang's router, each choosing one of the available workers (healthy,
// circuit not open): random, round_robin (a counter over the available list), power_of_two (two
// distinct random workers, the lower load wins; the load is the one the load monitor reported
// from GET /get_load when there is one, else the requests the router has in flight there).
// cache_aware: router/cache_aware.h. In PD mode the prefill and decode sides each have their own
// policy object.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "router/worker.h"

namespace epserve {

class Policy {
 public:
  virtual ~Policy() = default;
  virtual const char* name() const = 0;
  // `available` is non-empty; `text` is the request's text (for text-aware policies).
  virtual std::shared_ptr<Worker> select(const WorkerList& available, const std::string& text) = 0;
  virtual bool needs_request_text() const { return false; }
};

struct CacheAwareOptions;

// SGLang's policy names: random, round_robin, power_of_two, cache_aware (router/cache_aware.h).
// Throws epserve::Error on others.
std::unique_ptr<Policy> make_policy(const std::string& name, const CacheAwareOptions& cache_aware);

// The load power_of_two compares: the reported one when the monitor has it, else in-flight.
int64_t policy_load(const Worker& worker);

}  // namespace epserve
