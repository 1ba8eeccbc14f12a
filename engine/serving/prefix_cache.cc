#include "engine/serving/prefix_cache.h"

#include <algorithm>

#include <xxhash.h>

namespace retain::engine {

uint64_t PrefixCache::DefaultHash(const std::string& ns, absl::Span<const TokenId> prefix) {
  const uint64_t seed = XXH3_64bits(ns.data(), ns.size());
  return XXH3_64bits_withSeed(prefix.data(), prefix.size() * sizeof(TokenId), seed);
}

PrefixCache::Lru::iterator PrefixCache::Find(const std::string& ns, absl::Span<const TokenId> prefix) {
  auto [lo, hi] = by_hash_.equal_range(hash_(ns, prefix));
  for (auto it = lo; it != hi; ++it) {
    const Entry& e = *it->second;
    if (e.ns == ns && e.tokens.size() == prefix.size() && std::equal(prefix.begin(), prefix.end(), e.tokens.begin()))
      return it->second;
  }
  return lru_.end();
}

PrefixCache::Hit PrefixCache::Lookup(const std::string& ns, absl::Span<const TokenId> prompt, int64_t max_tokens) {
  if (!enabled()) return {};
  max_tokens = std::min<int64_t>(max_tokens, static_cast<int64_t>(prompt.size()));
  // Only lengths some entry has are tried, longest first.
  for (auto it = lengths_.upper_bound(max_tokens); it != lengths_.begin();) {
    --it;
    auto e = Find(ns, prompt.first(static_cast<size_t>(it->first)));
    if (e == lru_.end()) continue;
    lru_.splice(lru_.end(), lru_, e);
    return Hit{it->first, &e->state};
  }
  return {};
}

bool PrefixCache::Contains(const std::string& ns, absl::Span<const TokenId> prefix) {
  return enabled() && Find(ns, prefix) != lru_.end();
}

void PrefixCache::Insert(const std::string& ns, absl::Span<const TokenId> prefix, std::string state) {
  if (!enabled() || prefix.empty()) return;
  auto found = Find(ns, prefix);
  if (found != lru_.end()) {
    lru_.splice(lru_.end(), lru_, found);
    return;
  }
  Entry e{ns, std::vector<TokenId>(prefix.begin(), prefix.end()), std::move(state), hash_(ns, prefix)};
  if (EntryBytes(e) > budget_) return;  // could never fit
  bytes_ += EntryBytes(e);
  ++lengths_[static_cast<int64_t>(prefix.size())];
  lru_.push_back(std::move(e));
  by_hash_.emplace(lru_.back().hash, std::prev(lru_.end()));
  while (bytes_ > budget_) {
    Entry& victim = lru_.front();
    auto [lo, hi] = by_hash_.equal_range(victim.hash);
    for (auto it = lo; it != hi; ++it)
      if (&*it->second == &victim) {
        by_hash_.erase(it);
        break;
      }
    auto len = lengths_.find(static_cast<int64_t>(victim.tokens.size()));
    if (--len->second == 0) lengths_.erase(len);
    bytes_ -= EntryBytes(victim);
    lru_.pop_front();
    ++evictions_;
  }
}

}  // namespace retain::engine
