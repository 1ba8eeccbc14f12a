// What the metrics read of a session state tier at scrape time (metrics.h; the tiers in
// host_state_tier.h): counters since start, gauges now.
#pragma once

#include <cstdint>

namespace retain::server {

struct TierStats {
  int64_t sessions = 0;
  int64_t bytes = 0;
  uint64_t spills = 0;    // records written (parked)
  uint64_t restores = 0;  // records taken back by an engine
  uint64_t misses = 0;    // lookups of a session the engine did not hold and this tier did not either
  uint64_t dropped = 0;   // records dropped for the budget (those sessions are lost)
  uint64_t refused = 0;   // records that failed their check on restore (never served)
};

}  // namespace retain::server
