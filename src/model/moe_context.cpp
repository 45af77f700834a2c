#include "model/moe_context.h"

#include "core/error.h"
#include "ep/dispatcher.h"
#include "ep/expert_location.h"

namespace epserve {

MoeContext::MoeContext(std::shared_ptr<const ep::ExpertLocation> location)
    : location_(std::move(location)) {}

void MoeContext::set_location(std::shared_ptr<const ep::ExpertLocation> location) {
  EPS_CHECK(location != nullptr, "the expert placement cannot be removed");
  if (location_) {
    EPS_CHECK(location->num_layers() == location_->num_layers() &&
                  location->num_logical() == location_->num_logical() &&
                  location->num_physical() == location_->num_physical() &&
                  location->ep_size() == location_->ep_size(),
              "the new placement ({} layers, {} experts, {} slots, ep {}) does not match the one "
              "in force ({}, {}, {}, ep {})",
              location->num_layers(), location->num_logical(), location->num_physical(),
              location->ep_size(), location_->num_layers(), location_->num_logical(),
              location_->num_physical(), location_->ep_size());
  }
  location_ = std::move(location);
}

}  // namespace epserve
