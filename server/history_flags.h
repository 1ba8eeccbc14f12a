// The checkpoint and prefix-cache flags of retain-server (engine/serving/checkpoints.h,
// prefix_cache.h): parsed into the engine's ServingOptions, plus whether tenants share cached
// prefixes. Kept apart from server_config.cc as security_flags.cc is.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "retain/engine/serving.h"

namespace CLI {
class App;
}

namespace retain::server {

struct RawHistoryFlags {
  std::string checkpoint_interval = "0";
  std::string checkpoint_budget = "256MiB";
  std::string max_checkpoints_per_session = "16";
  std::string prefix_block = "256";
  std::string prefix_cache = "256MiB";
  bool prefix_cache_shared = false;
};

void AddHistoryFlags(CLI::App& app, RawHistoryFlags* f);
// InvalidArgument naming the flag.
absl::Status BuildHistoryConfig(const RawHistoryFlags& f, engine::ServingOptions* serving, bool* prefix_cache_shared);

}  // namespace retain::server
