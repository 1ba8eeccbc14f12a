#include "server/tenants.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace retain::server {
namespace {

constexpr char kUnauthenticated[] =
    "missing or unknown bearer token: send the metadata `authorization: Bearer TOKEN` with a token of --auth-tokens";

bool ValidTenantName(absl::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

bool ParseHexDigest(absl::string_view hex, Sha256Digest* out) {
  if (hex.size() != 64) return false;
  for (size_t i = 0; i < 32; ++i) {
    int v = 0;
    for (char c : hex.substr(2 * i, 2)) {
      const int d = absl::ascii_isdigit(c) ? c - '0'
                    : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                    : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                             : -1;
      if (d < 0) return false;
      v = v * 16 + d;
    }
    (*out)[i] = static_cast<unsigned char>(v);
  }
  return true;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--auth-tokens ", path, ": cannot be opened (missing or unreadable)"));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat("--auth-tokens ", path, ": cannot be read"));
  return ss.str();
}

}  // namespace

Sha256Digest Sha256(absl::string_view data) {
  Sha256Digest d{};
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), d.data(), &n, EVP_sha256(), nullptr);
  return d;
}

absl::StatusOr<std::vector<TenantEntry>> ParseTenantFile(absl::string_view text, const std::string& path,
                                                         const TenantLimits& defaults) {
  std::vector<TenantEntry> out;
  std::set<std::string> names;
  std::set<Sha256Digest> digests;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat("--auth-tokens ", path, " line ", line_no, ": ", why));
    };
    if (const size_t hash = line.find('#'); hash != absl::string_view::npos) line = line.substr(0, hash);
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    if (fields.size() < 2) return bad("needs NAME and TOKEN (or NAME sha256:HEX)");
    TenantEntry e;
    e.name = std::string(fields[0]);
    if (!ValidTenantName(e.name))
      return bad("the tenant name must be 1 to 64 letters, digits, '.', '_' or '-'");
    absl::string_view token = fields[1];
    if (absl::ConsumePrefix(&token, "sha256:")) {
      if (!ParseHexDigest(token, &e.digest)) return bad("sha256: must be followed by 64 hex digits");
    } else {
      // A token may hold '=' (base64 padding), but not look like a forgotten token.
      for (const char* column : {"sessions=", "requests=", "state-bytes="})
        if (absl::StartsWith(token, column)) return bad("the second field must be the token (or sha256:HEX), not a column");
      e.digest = Sha256(token);
    }
    e.limits = defaults;
    for (size_t i = 2; i < fields.size(); ++i) {
      std::pair<std::string, std::string> kv = absl::StrSplit(fields[i], absl::MaxSplits('=', 1));
      absl::Status st;
      if (kv.first == "sessions") {
        st = ParseLimit(kv.second, false, "sessions=", &e.limits.sessions);
      } else if (kv.first == "requests") {
        st = ParseLimit(kv.second, false, "requests=", &e.limits.requests);
      } else if (kv.first == "state-bytes") {
        st = ParseLimit(kv.second, true, "state-bytes=", &e.limits.state_bytes);
      } else {
        return bad(absl::StrCat("unknown column \"", fields[i], "\" (sessions=N, requests=N, state-bytes=BYTES)"));
      }
      if (!st.ok()) return bad(std::string(st.message()));
    }
    if (!names.insert(e.name).second) return bad(absl::StrCat("tenant ", e.name, " is named twice"));
    if (!digests.insert(e.digest).second) return bad("this token is another tenant's too");
    out.push_back(std::move(e));
  }
  return out;
}

std::string Caller::Describe() const {
  return tenant.empty() ? "the anonymous tenant" : absl::StrCat("tenant \"", tenant, "\"");
}

RequestPlace& RequestPlace::operator=(RequestPlace&& o) noexcept {
  if (this != &o) {
    if (usage_) usage_->requests.fetch_sub(1);
    usage_ = std::move(o.usage_);
  }
  return *this;
}

RequestPlace::~RequestPlace() {
  if (usage_) usage_->requests.fetch_sub(1);
}

absl::StatusOr<RequestPlace> TakeRequestPlace(const Caller& caller) {
  const int64_t now = caller.usage->requests.fetch_add(1) + 1;
  if (caller.limits.requests > 0 && now > caller.limits.requests) {
    caller.usage->requests.fetch_sub(1);
    return absl::ResourceExhaustedError(absl::StrCat(caller.Describe(), " has ", caller.limits.requests,
                                                     " requests in flight, its limit of concurrent requests "
                                                     "(requests=, --tenant-max-requests)"));
  }
  return RequestPlace(caller.usage);
}

absl::StatusOr<std::unique_ptr<Tenants>> Tenants::Load(const std::string& path, const TenantLimits& defaults) {
  std::unique_ptr<Tenants> t(new Tenants(path, defaults));
  if (path.empty()) return t;
  absl::Status st = t->Reload();
  if (!st.ok()) return st;
  return t;
}

size_t Tenants::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return entries_ ? entries_->size() : 0;
}

absl::Status Tenants::Reload() {
  auto text = ReadFile(path_);
  if (!text.ok()) return text.status();
  auto entries = ParseTenantFile(*text, path_, defaults_);
  if (!entries.ok()) return entries.status();
  auto table = std::make_shared<const std::vector<TenantEntry>>(*std::move(entries));
  std::lock_guard<std::mutex> l(mu_);
  entries_ = std::move(table);
  return absl::OkStatus();
}

std::shared_ptr<TenantUsage> Tenants::UsageOf(const std::string& name) const {
  std::lock_guard<std::mutex> l(mu_);
  auto& u = usage_[name];
  if (!u) u = std::make_shared<TenantUsage>();
  return u;
}

absl::StatusOr<Caller> Tenants::Authenticate(const std::string* authorization) const {
  if (!enabled()) return Caller{"", defaults_, UsageOf("")};
  std::shared_ptr<const std::vector<TenantEntry>> table;
  {
    std::lock_guard<std::mutex> l(mu_);
    table = entries_;
  }
  absl::string_view value = authorization != nullptr ? absl::string_view(*authorization) : absl::string_view();
  value = absl::StripAsciiWhitespace(value);
  bool bearer = value.size() > 7 && absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ");
  const Sha256Digest presented = Sha256(bearer ? absl::StripLeadingAsciiWhitespace(value.substr(7)) : value);
  // Every entry is compared, each in constant time, so the time taken says nothing about which
  // tenant (if any) matched or how much of a digest did.
  const TenantEntry* match = nullptr;
  for (const TenantEntry& e : *table)
    if (CRYPTO_memcmp(e.digest.data(), presented.data(), presented.size()) == 0) match = &e;
  if (!bearer || match == nullptr) return absl::UnauthenticatedError(kUnauthenticated);
  return Caller{match->name, match->limits, UsageOf(match->name)};
}

std::vector<std::string> Tenants::Names() const {
  std::lock_guard<std::mutex> l(mu_);
  std::vector<std::string> out;
  if (entries_)
    for (const TenantEntry& e : *entries_) out.push_back(e.name);
  return out;
}

}  // namespace retain::server
