// The --auth-tokens file parser and the bearer-token check behind it: any text parses to tenants
// or gives a status naming the file and line; what parses has distinct names, loads from a file
// the same way (Tenants::Load), and then the input's last line, taken as an `authorization`
// header, authenticates or is UNAUTHENTICATED.
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "fuzz/fuzz_support.h"
#include "server/tenants.h"

using namespace retain;

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const server::TenantLimits defaults;
  auto parsed = server::ParseTenantFile(text, "tokens", defaults);
  if (!parsed.ok()) {
    if (parsed.status().message().find("tokens line ") == absl::string_view::npos)
      Fail("an error that does not name the file and line: " + parsed.status().ToString());
    return 0;
  }
  std::set<std::string> names;
  for (const auto& t : *parsed)
    if (t.name.empty() || !names.insert(t.name).second) Fail("an empty or repeated tenant name was accepted");

  auto tenants = server::Tenants::Load(fuzz::WriteScratchFile("tokens", std::string_view(text.data(), text.size())), defaults);
  if (!tenants.ok()) Fail("a file that parses does not load: " + tenants.status().ToString());
  if ((*tenants)->size() != parsed->size()) Fail("Load and ParseTenantFile disagree on the tenants");

  const size_t eol = text.rfind('\n');
  const std::string authorization(eol == absl::string_view::npos ? text : text.substr(eol + 1));
  auto caller = (*tenants)->Authenticate(&authorization);
  if (caller.ok()) {
    if (!names.count(caller->tenant)) Fail("authenticated as a tenant the file does not have");
  } else if (caller.status().code() != absl::StatusCode::kUnauthenticated) {
    Fail("a bad token gave " + caller.status().ToString());
  }
  if ((*tenants)->Authenticate(nullptr).ok() && !parsed->empty()) Fail("no token authenticated");
  return 0;
}
