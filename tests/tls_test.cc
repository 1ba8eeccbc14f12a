// retain-server's transport security end to end: the real binary over 127.0.0.1 with certificates
// made at test time by openssl (tests/testing/test_certs.*). TLS with the right CA connects, a
// plain-text client or one trusting another CA does not; with mTLS a client needs a certificate
// from the configured CA; bad TLS files stop the server before it serves, naming the file; the
// receive-message limit holds; the `retain` CLI connects with --tls-ca (and its client cert).
#include <signal.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "retain/v1/retain.grpc.pb.h"
#include "tests/testing/command.h"
#include "tests/testing/server_process.h"
#include "tests/testing/service_client.h"
#include "tests/testing/test_certs.h"

namespace retain::server {
namespace {

using retain::testing::RunCommand;
using retain::testing::ServerProcess;
using retain::testing::TestCerts;

const std::vector<std::string> kBaseArgs = {"--threads", "1", "--state-budget-bytes", "4MiB", "--metrics-listen", ""};

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto certs = retain::testing::MakeTestCerts();
    ASSERT_TRUE(certs.ok()) << certs.status();
    certs_ = new TestCerts(*std::move(certs));
  }
  static void TearDownTestSuite() {
    if (certs_ != nullptr) RunCommand("rm -rf " + certs_->dir);
    delete certs_;
    certs_ = nullptr;
  }

  void Start(std::vector<std::string> extra) {
    std::vector<std::string> args = kBaseArgs;
    args.insert(args.end(), extra.begin(), extra.end());
    auto started = ServerProcess::Start(args);
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = *std::move(started);
  }
  void StartTls() { Start({"--tls-cert", certs_->server_cert, "--tls-key", certs_->server_key}); }
  void StartMtls() {
    Start({"--tls-cert", certs_->server_cert, "--tls-key", certs_->server_key, "--tls-client-ca", certs_->ca});
  }
  void TearDown() override {
    if (server_ == nullptr) return;
    ASSERT_TRUE(server_->Signal(SIGTERM));
    EXPECT_EQ(server_->Wait(), 0) << server_->Stderr();
  }

  static std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& ca, const std::string& cert = "",
                                                       const std::string& key = "") {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = retain::testing::ReadTextFile(ca);
    if (!cert.empty()) {
      o.pem_cert_chain = retain::testing::ReadTextFile(cert);
      o.pem_private_key = retain::testing::ReadTextFile(key);
    }
    return grpc::SslCredentials(o);
  }

  // ListModels through `creds`, with a deadline so a refused handshake ends the call.
  grpc::Status ListModels(const std::shared_ptr<grpc::ChannelCredentials>& creds) {
    auto stub = v1::Retain::NewStub(grpc::CreateChannel(server_->address(), creds));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::ListModelsResponse resp;
    grpc::Status st = stub->ListModels(&ctx, v1::ListModelsRequest(), &resp);
    if (st.ok() && resp.models_size() == 0) return grpc::Status(grpc::StatusCode::INTERNAL, "no models listed");
    return st;
  }

  // The server binary run to its exit with `args`; its exit code and stderr.
  static retain::testing::CommandResult RunServer(const std::vector<std::string>& args) {
    std::string line = RETAIN_SERVER_BIN;
    for (const std::string& a : kBaseArgs) absl::StrAppend(&line, " '", a, "'");
    absl::StrAppend(&line, " --listen 127.0.0.1:0");
    for (const std::string& a : args) absl::StrAppend(&line, " '", a, "'");
    // A server that did start would serve forever: end it, so a wrong pass cannot hang the test.
    return RunCommand("timeout 60 " + line + " 2>&1");
  }

  static TestCerts* certs_;
  std::unique_ptr<ServerProcess> server_;
};

TestCerts* TlsTest::certs_ = nullptr;

TEST_F(TlsTest, PlaintextServerSaysSoInItsStartUpLine) {
  Start({});
  EXPECT_NE(server_->Stderr().find("(plaintext)"), std::string::npos) << server_->Stderr();
  EXPECT_TRUE(ListModels(grpc::InsecureChannelCredentials()).ok());
}

TEST_F(TlsTest, ClientTrustingTheCaConnects) {
  StartTls();
  EXPECT_NE(server_->Stderr().find("(TLS)"), std::string::npos) << server_->Stderr();
  grpc::Status st = ListModels(Tls(certs_->ca));
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(TlsTest, PlaintextClientToTlsServerFails) {
  StartTls();
  grpc::Status st = ListModels(grpc::InsecureChannelCredentials());
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

TEST_F(TlsTest, ClientTrustingAnotherCaFails) {
  StartTls();
  grpc::Status st = ListModels(Tls(certs_->other_ca));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

TEST_F(TlsTest, MtlsAcceptsAClientCertificateFromTheCa) {
  StartMtls();
  EXPECT_NE(server_->Stderr().find("(mTLS: client certificates required)"), std::string::npos) << server_->Stderr();
  grpc::Status st = ListModels(Tls(certs_->ca, certs_->client_cert, certs_->client_key));
  EXPECT_TRUE(st.ok()) << st.error_message();
}

TEST_F(TlsTest, MtlsRefusesAClientWithoutCertificate) {
  StartMtls();
  grpc::Status st = ListModels(Tls(certs_->ca));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

TEST_F(TlsTest, MtlsRefusesACertificateFromAnotherCa) {
  StartMtls();
  grpc::Status st = ListModels(Tls(certs_->ca, certs_->other_client_cert, certs_->other_client_key));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
}

TEST_F(TlsTest, MismatchedKeyIsAStartUpErrorNamingTheFile) {
  auto r = RunServer({"--tls-cert", certs_->server_cert, "--tls-key", certs_->stray_key});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--tls-key " + certs_->stray_key + ": is not the private key of the certificate"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("listening on"), std::string::npos) << r.out;
}

TEST_F(TlsTest, MissingOrNonPemFilesAreStartUpErrorsNamingTheFile) {
  const std::string missing = certs_->dir + "/no-such.pem";
  auto r = RunServer({"--tls-cert", missing, "--tls-key", certs_->server_key});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--tls-cert " + missing + ": cannot be opened"), std::string::npos) << r.out;

  // A key where the certificate belongs, and a client CA file with no certificate in it.
  r = RunServer({"--tls-cert", certs_->server_key, "--tls-key", certs_->server_key});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--tls-cert " + certs_->server_key + ": holds no PEM certificate"), std::string::npos) << r.out;
  r = RunServer({"--tls-cert", certs_->server_cert, "--tls-key", certs_->server_key, "--tls-client-ca",
                 certs_->client_key});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--tls-client-ca " + certs_->client_key + ": holds no PEM certificate"), std::string::npos)
      << r.out;

  r = RunServer({"--tls-cert", certs_->server_cert});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("--tls-cert and --tls-key go together"), std::string::npos) << r.out;
}

TEST_F(TlsTest, MessagesOverTheReceiveLimitAreRefused) {
  Start({"--max-receive-message-bytes", "2MiB"});
  auto stub = v1::Retain::NewStub(grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  v1::TokenizeRequest req;
  req.set_text(std::string(3 << 20, 'a'));
  grpc::ClientContext ctx;
  v1::TokenizeResponse resp;
  grpc::Status st = stub->Tokenize(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << st.error_message();
  // Just under it is taken.
  req.set_text(std::string((2 << 20) - 1024, 'a'));
  grpc::ClientContext ctx2;
  st = stub->Tokenize(&ctx2, req, &resp);
  EXPECT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.ids_size(), (2 << 20) - 1024);
}

TEST_F(TlsTest, CliConnectsWithTlsCaAndClientCertificate) {
  StartMtls();
  const std::string cli = absl::StrCat(RETAIN_CLI_BIN, " --server ", server_->address(), " --timeout 30");
  auto r = RunCommand(absl::StrCat(cli, " --tls-ca ", certs_->ca, " --tls-cert ", certs_->client_cert, " --tls-key ",
                                   certs_->client_key, " tokenize abc 2>&1"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "97 98 99\n");
  // Without its certificate the server refuses it: UNAVAILABLE, 10 + 14.
  r = RunCommand(absl::StrCat(cli, " --tls-ca ", certs_->ca, " tokenize abc 2>&1"));
  EXPECT_EQ(r.exit_code, 24) << r.out;
  r = RunCommand(absl::StrCat(cli, " --tls-ca ", certs_->dir, "/no-such.pem tokenize abc 2>&1"));
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("--tls-ca " + certs_->dir + "/no-such.pem: cannot be read"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace retain::server
