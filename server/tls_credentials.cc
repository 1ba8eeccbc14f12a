#include "server/tls_credentials.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace retain::server {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioFree>;

absl::Status FileError(const char* flag, const std::string& path, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, " ", path, ": ", why));
}

// OpenSSL's reason for the last failure, consumed from its error queue.
std::string OpenSslReason() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM block of that kind";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return FileError(flag, path, "cannot be opened (missing or unreadable)");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return FileError(flag, path, "cannot be read");
  std::string text = ss.str();
  if (text.empty()) return FileError(flag, path, "is empty");
  return text;
}

Bio MemoryBio(const std::string& text) { return Bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size()))); }

// The number of certificates in `pem`; an error when there is none or one does not parse.
absl::StatusOr<int> CountCertificates(const char* flag, const std::string& path, const std::string& pem,
                                      std::unique_ptr<X509, X509Free>* first) {
  Bio bio = MemoryBio(pem);
  int n = 0;
  ERR_clear_error();
  while (true) {
    std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) break;
    if (n++ == 0 && first != nullptr) *first = std::move(cert);
  }
  // The loop ends at the end of the data (PEM_R_NO_START_LINE) or at a block that does not parse.
  const unsigned long e = ERR_peek_last_error();
  const bool clean_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
  if (n == 0) {
    ERR_clear_error();
    return FileError(flag, path, "holds no PEM certificate");
  }
  if (e != 0 && !clean_end) return FileError(flag, path, absl::StrCat("a certificate does not parse: ", OpenSslReason()));
  ERR_clear_error();
  return n;
}

}  // namespace

absl::StatusOr<ServerTransport> MakeServerTransport(const TlsConfig& tls) {
  ServerTransport out;
  if (!tls.enabled()) {
    out.credentials = grpc::InsecureServerCredentials();
    out.description = "plaintext";
    return out;
  }
  auto cert_pem = ReadPem("--tls-cert", tls.cert);
  if (!cert_pem.ok()) return cert_pem.status();
  auto key_pem = ReadPem("--tls-key", tls.key);
  if (!key_pem.ok()) return key_pem.status();
  std::unique_ptr<X509, X509Free> cert;
  auto certs = CountCertificates("--tls-cert", tls.cert, *cert_pem, &cert);
  if (!certs.ok()) return certs.status();

  Bio key_bio = MemoryBio(*key_pem);
  ERR_clear_error();
  std::unique_ptr<EVP_PKEY, KeyFree> key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr)
    return FileError("--tls-key", tls.key, absl::StrCat("holds no PEM private key (or one with a passphrase): ",
                                                        OpenSslReason()));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return FileError("--tls-key", tls.key, absl::StrCat("is not the private key of the certificate in --tls-cert ", tls.cert));
  }

  grpc::SslServerCredentialsOptions options;
  options.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
  out.description = "TLS";
  if (!tls.client_ca.empty()) {
    auto ca_pem = ReadPem("--tls-client-ca", tls.client_ca);
    if (!ca_pem.ok()) return ca_pem.status();
    auto cas = CountCertificates("--tls-client-ca", tls.client_ca, *ca_pem, nullptr);
    if (!cas.ok()) return cas.status();
    options.pem_root_certs = *ca_pem;
    options.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    out.description = "mTLS: client certificates required";
  }
  out.credentials = grpc::SslServerCredentials(options);
  return out;
}

}  // namespace retain::server
