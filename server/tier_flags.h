// The session state tier flags of retain-server (host_state_tier.h): where idle sessions go when
// the device pool is full. Kept apart from server_config.cc as history_flags.cc is.
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/status.h"

namespace CLI {
class App;
}

namespace retain::server {

struct TierConfig {
  size_t host_state_budget_bytes = 0;  // 0 = no host tier: an evicted session is lost
  bool enabled() const { return host_state_budget_bytes > 0; }
};

struct RawTierFlags {
  std::string host_state_budget = "0";
};

void AddTierFlags(CLI::App& app, RawTierFlags* f);
// InvalidArgument naming the flag.
absl::Status BuildTierConfig(const RawTierFlags& f, TierConfig* config);

}  // namespace retain::server
