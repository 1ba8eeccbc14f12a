#include "tests/testing/test_certs.h"

#include <stdlib.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "tests/testing/command.h"

namespace retain::testing {
namespace {

// Elliptic-curve keys: generated in milliseconds, where RSA would take a noticeable while on a
// busy 2-core machine.
constexpr char kNewKey[] = "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out ";

absl::Status Run(const std::string& command) {
  CommandResult r = RunCommand(command + " 2>&1");
  if (r.exit_code != 0) return absl::InternalError(absl::StrCat("`", command, "` failed: ", r.out));
  return absl::OkStatus();
}

absl::Status MakeCa(const std::string& dir, const std::string& name) {
  if (absl::Status st = Run(absl::StrCat(kNewKey, dir, "/", name, ".key")); !st.ok()) return st;
  return Run(absl::StrCat("openssl req -x509 -new -key ", dir, "/", name, ".key -out ", dir, "/", name,
                          ".pem -days 2 -subj /CN=", name));
}

// A key and a certificate for it signed by CA `ca`, with the extensions in `ext`.
absl::Status MakeSigned(const std::string& dir, const std::string& ca, const std::string& name, const std::string& cn,
                        const std::string& ext) {
  const std::string base = absl::StrCat(dir, "/", name);
  if (absl::Status st = Run(absl::StrCat(kNewKey, base, ".key")); !st.ok()) return st;
  if (!WriteTextFile(base + ".ext", ext)) return absl::InternalError("cannot write " + base + ".ext");
  if (absl::Status st = Run(absl::StrCat("openssl req -new -key ", base, ".key -out ", base, ".csr -subj /CN=", cn));
      !st.ok())
    return st;
  return Run(absl::StrCat("openssl x509 -req -in ", base, ".csr -CA ", dir, "/", ca, ".pem -CAkey ", dir, "/", ca,
                          ".key -CAcreateserial -out ", base, ".pem -days 2 -extfile ", base, ".ext"));
}

}  // namespace

std::string ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  return static_cast<bool>(out);
}

absl::StatusOr<TestCerts> MakeTestCerts() {
  char tmpl[] = "/tmp/retain-certs-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  TestCerts c;
  c.dir = tmpl;
  const std::string& d = c.dir;
  for (const char* ca : {"ca", "other-ca"})
    if (absl::Status st = MakeCa(d, ca); !st.ok()) return st;
  if (absl::Status st = MakeSigned(d, "ca", "server", "localhost",
                                   "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
      !st.ok())
    return st;
  if (absl::Status st = MakeSigned(d, "ca", "client", "retain-test-client", "extendedKeyUsage=clientAuth\n"); !st.ok())
    return st;
  if (absl::Status st = MakeSigned(d, "other-ca", "other-client", "retain-test-other", "extendedKeyUsage=clientAuth\n");
      !st.ok())
    return st;
  if (absl::Status st = Run(absl::StrCat(kNewKey, d, "/stray.key")); !st.ok()) return st;
  c.ca = d + "/ca.pem";
  c.server_cert = d + "/server.pem";
  c.server_key = d + "/server.key";
  c.client_cert = d + "/client.pem";
  c.client_key = d + "/client.key";
  c.other_ca = d + "/other-ca.pem";
  c.other_client_cert = d + "/other-client.pem";
  c.other_client_key = d + "/other-client.key";
  c.stray_key = d + "/stray.key";
  return c;
}

}  // namespace retain::testing
