// The shared prefix-state cache of one model: states after exact token prefixes of prompts that
// started from a fresh state, so a later prompt with the same beginning copies the state and
// feeds only the rest. Keyed by a hash of (namespace, token ids); every hit is checked against
// the stored namespace and ids, so a hash collision can only cost a miss, never a wrong state.
// Namespaces keep tenants apart (the server passes the tenant, or "" when sharing is allowed).
// LRU under a byte budget.
//
// Thread safety: none; the engine calls it under its mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/types/span.h"
#include "retain/engine/model.h"

namespace retain::engine {

class PrefixCache {
 public:
  // budget_bytes 0 = off (Lookup always misses, Insert keeps nothing).
  explicit PrefixCache(size_t budget_bytes) : budget_(budget_bytes) {}

  bool enabled() const { return budget_ > 0; }

  struct Hit {
    int64_t tokens = 0;                 // the prefix length served
    const std::string* state = nullptr;  // Model::ExportState bytes; valid until the next Insert
  };
  // The longest cached prefix of `prompt` of at most `max_tokens` tokens, in `ns`.
  Hit Lookup(const std::string& ns, absl::Span<const TokenId> prompt, int64_t max_tokens);
  // True when the exact prefix is cached (so a caller can skip exporting a state for Insert).
  bool Contains(const std::string& ns, absl::Span<const TokenId> prefix);
  // Caches `state` as the state after `prefix` in `ns` (an existing entry is only touched), then
  // evicts least recently used entries until within the budget.
  void Insert(const std::string& ns, absl::Span<const TokenId> prefix, std::string state);

  size_t bytes() const { return bytes_; }
  size_t entries() const { return lru_.size(); }
  uint64_t evictions() const { return evictions_; }

  // Tests: replaces the key hash (e.g. a constant, to force every entry to collide).
  using HashFn = uint64_t (*)(const std::string& ns, absl::Span<const TokenId> prefix);
  void SetHashForTesting(HashFn fn) { hash_ = fn; }

 private:
  struct Entry {
    std::string ns;
    std::vector<TokenId> tokens;
    std::string state;
    uint64_t hash;
  };
  using Lru = std::list<Entry>;  // least recently used first

  static uint64_t DefaultHash(const std::string& ns, absl::Span<const TokenId> prefix);
  Lru::iterator Find(const std::string& ns, absl::Span<const TokenId> prefix);
  size_t EntryBytes(const Entry& e) const { return e.state.size() + e.tokens.size() * sizeof(TokenId) + e.ns.size(); }

  const size_t budget_;
  HashFn hash_ = &DefaultHash;
  Lru lru_;
  std::unordered_multimap<uint64_t, Lru::iterator> by_hash_;
  std::map<int64_t, int> lengths_;  // prefix length -> entries of that length, for Lookup
  size_t bytes_ = 0;
  uint64_t evictions_ = 0;
};

}  // namespace retain::engine
