#include "server/history_flags.h"

#include "CLI/CLI.hpp"
#include "server/server_config.h"

namespace retain::server {
namespace {

// A byte budget where 0 turns the feature off.
absl::StatusOr<size_t> ParseBudget(const std::string& value, const char* flag) {
  if (value == "0") return size_t{0};
  return ParseByteSize(value, flag);
}

}  // namespace

void AddHistoryFlags(CLI::App& app, RawHistoryFlags* f) {
  app.add_option("--checkpoint-interval", f->checkpoint_interval,
                 "also checkpoint a session every N tokens inside a long prompt; 0 = only at the end of each request")
      ->type_name("N")->capture_default_str();
  app.add_option("--checkpoint-budget-bytes", f->checkpoint_budget,
                 "host memory per model for session checkpoints (rewind, fork at a position), oldest dropped first; "
                 "0 = none")
      ->type_name("BYTES")->capture_default_str();
  app.add_option("--max-checkpoints-per-session", f->max_checkpoints_per_session,
                 "checkpoints one session keeps (its oldest dropped first)")
      ->type_name("N")->capture_default_str();
  app.add_option("--prefix-block", f->prefix_block,
                 "the prefix cache keeps a prompt's state every N tokens (and at its end)")
      ->type_name("N")->capture_default_str();
  app.add_option("--prefix-cache-bytes", f->prefix_cache,
                 "host memory per model for the shared prefix-state cache (LRU); 0 = off")
      ->type_name("BYTES")->capture_default_str();
  app.add_flag("--prefix-cache-shared", f->prefix_cache_shared,
               "let every tenant use every cached prefix (default: a tenant's cached prefixes serve only that tenant)");
}

absl::Status BuildHistoryConfig(const RawHistoryFlags& f, engine::ServingOptions* s, bool* prefix_cache_shared) {
  absl::Status st;
  if (!(st = ParseIntFlag(f.checkpoint_interval, "--checkpoint-interval", 0, 1 << 24, &s->checkpoint_interval)).ok()) return st;
  auto budget = ParseBudget(f.checkpoint_budget, "--checkpoint-budget-bytes");
  if (!budget.ok()) return budget.status();
  s->checkpoint_budget_bytes = *budget;
  if (!(st = ParseIntFlag(f.max_checkpoints_per_session, "--max-checkpoints-per-session", 1, 1 << 16,
                          &s->max_checkpoints_per_session)).ok())
    return st;
  if (!(st = ParseIntFlag(f.prefix_block, "--prefix-block", 1, 1 << 20, &s->prefix_block)).ok()) return st;
  auto cache = ParseBudget(f.prefix_cache, "--prefix-cache-bytes");
  if (!cache.ok()) return cache.status();
  s->prefix_cache_bytes = *cache;
  *prefix_cache_shared = f.prefix_cache_shared;
  return absl::OkStatus();
}

}  // namespace retain::server
