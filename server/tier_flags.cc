#include "server/tier_flags.h"

#include "CLI/CLI.hpp"
#include "server/server_config.h"

namespace retain::server {

void AddTierFlags(CLI::App& app, RawTierFlags* f) {
  app.add_option("--host-state-budget-bytes", f->host_state_budget,
                 "host memory for idle sessions spilled from the device pool when it is full (export format, "
                 "least recently used dropped first; shared by all models); 0 = none: a session evicted for room "
                 "is lost")
      ->type_name("BYTES")->capture_default_str();
}

absl::Status BuildTierConfig(const RawTierFlags& f, TierConfig* c) {
  if (f.host_state_budget == "0") {
    c->host_state_budget_bytes = 0;
    return absl::OkStatus();
  }
  auto budget = ParseByteSize(f.host_state_budget, "--host-state-budget-bytes");
  if (!budget.ok()) return budget.status();
  c->host_state_budget_bytes = *budget;
  return absl::OkStatus();
}

}  // namespace retain::server
