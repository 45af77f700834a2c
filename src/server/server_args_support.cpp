// What this build of epserve can run. resolve_server_args() accepts every valid SGLang setting;
// this file refuses, in one message naming them all, the valid settings whose implementation has
// not landed yet, so that none is silently ignored. Delete a check when its feature lands.
#include <spdlog/spdlog.h>

#include "core/error.h"
#include "server/parallel_flags.h"
#include "server/server_args.h"

namespace epserve {

void check_supported(const ServerArgs& a) {
  std::vector<std::string> missing = a.parallel.not_implemented();
  auto not_yet = [&missing](bool asked, const char* what) {
    if (asked) missing.emplace_back(what);
  };
  not_yet(a.device == "cuda", "--device cuda (the CUDA backend)");
  // The per-token record keeps one contiguous token range per rank and layer; with two-batch
  // overlap a rank's tokens are two ranges.
  not_yet(a.parallel.enable_two_batch_overlap && a.experts.recorder_mode == "per_token",
          "--expert-distribution-recorder-mode per_token with --enable-two-batch-overlap");
  refuse_not_implemented(missing);
  const std::string warning = ignored_flags_warning(a);
  if (!warning.empty()) spdlog::warn("{}", warning);
}

}  // namespace epserve
