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
  // A shared tier (Redis) only; -1 = not this tier's to report (sessions and bytes of a shared
  // store are the store's).
  int up = -1;                    // 1 reachable, 0 down
  int64_t pending_writes = 0;     // queued writes (the asynchronous window)
  uint64_t write_failures = 0;    // writes that failed (retried once the tier is back)
  uint64_t lease_conflicts = 0;   // requests refused because another replica held the lease
  uint64_t unleased = 0;          // requests served without a lease while the tier was down
  uint64_t prefetched = 0;        // restores whose record was read before the engine's lock
};

}  // namespace retain::server
