// Tenants: who a call is, from its `authorization: Bearer TOKEN` metadata and the --auth-tokens
// file, and what that tenant may hold (its limits) and holds now (requests in flight).
//
// The file: one tenant per line, `NAME TOKEN` or `NAME sha256:HEX` (the token's SHA-256, so the
// file need hold no secret), then optional `sessions=N`, `requests=N`, `state-bytes=BYTES`
// columns overriding the --tenant-max-* defaults; `#` starts a comment. Only SHA-256 digests are
// kept in memory and a presented token is compared, by digest, against every tenant in constant
// time, so neither timing nor a memory dump gives tokens away.
//
// Without --auth-tokens there is one anonymous tenant (name "") and no token is asked for.
// Thread-safe: Reload swaps the table; a call keeps the Caller it was authenticated as.
#pragma once

#include <array>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/security_config.h"

namespace retain::server {

using Sha256Digest = std::array<unsigned char, 32>;
Sha256Digest Sha256(absl::string_view data);

struct TenantEntry {
  std::string name;
  Sha256Digest digest{};
  TenantLimits limits;
};

// Parses a token file's text. InvalidArgument naming `path` and the line number of a malformed
// line (a bad name, a missing token, bad hex, an unknown or bad column, a repeated name or token).
absl::StatusOr<std::vector<TenantEntry>> ParseTenantFile(absl::string_view text, const std::string& path,
                                                         const TenantLimits& defaults);

// What a tenant holds right now; shared by every call of that tenant name across reloads.
struct TenantUsage {
  std::atomic<int64_t> requests{0};
};

// The authenticated caller of one RPC.
struct Caller {
  std::string tenant;  // "" = the anonymous tenant (no --auth-tokens)
  TenantLimits limits;
  std::shared_ptr<TenantUsage> usage;
  // "tenant \"alice\"" or "the anonymous tenant", for messages.
  std::string Describe() const;
};

// Holds a request place of a tenant (a Generate or CreateSession call) until destroyed.
class RequestPlace {
 public:
  RequestPlace() = default;
  explicit RequestPlace(std::shared_ptr<TenantUsage> usage) : usage_(std::move(usage)) {}
  RequestPlace(RequestPlace&& o) noexcept = default;
  RequestPlace& operator=(RequestPlace&& o) noexcept;
  ~RequestPlace();

 private:
  std::shared_ptr<TenantUsage> usage_;
};

// ResourceExhausted naming the limit when the caller has its `requests` limit in flight already.
absl::StatusOr<RequestPlace> TakeRequestPlace(const Caller& caller);

class Tenants {
 public:
  // `path` "" = anonymous mode. Otherwise reads and parses the file: the error names it (and the line).
  static absl::StatusOr<std::unique_ptr<Tenants>> Load(const std::string& path, const TenantLimits& defaults);

  bool enabled() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  size_t size() const;

  // The caller of a call whose `authorization` metadata is `authorization` (nullptr = none sent).
  // Unauthenticated, with one message for a missing and for an unknown token.
  absl::StatusOr<Caller> Authenticate(const std::string* authorization) const;

  // Rereads the file. On error the tenants stay as they were; the status says why.
  absl::Status Reload();

  // Every tenant name now, for the metrics.
  std::vector<std::string> Names() const;

 private:
  Tenants(std::string path, const TenantLimits& defaults) : path_(std::move(path)), defaults_(defaults) {}
  std::shared_ptr<TenantUsage> UsageOf(const std::string& name) const;

  const std::string path_;
  const TenantLimits defaults_;
  mutable std::mutex mu_;
  std::shared_ptr<const std::vector<TenantEntry>> entries_;
  // By name, never dropped: a tenant removed and added back keeps counting its calls in flight.
  mutable std::map<std::string, std::shared_ptr<TenantUsage>> usage_;
};

}  // namespace retain::server
