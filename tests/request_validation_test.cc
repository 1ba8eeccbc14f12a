// server/request_validation: what the fuzzer (fuzz/fuzz_request_validation.cc) holds it to, as
// unit tests: a request it passes is one the engine accepts, and every refusal names the proto
// field.
#include "server/request_validation.h"

#include <gtest/gtest.h>

#include "retain/v1/retain.pb.h"

namespace retain::server {
namespace {

TEST(RequestValidation, StopStringsNeedATokenizer) {
  // Found by fuzz_request_validation: the server passed these, the engine then refused them with
  // a message naming "stop" rather than the proto's stopping.stop.
  const engine::ServingOptions options;
  const ValidationContext ids_only{&options, 256, nullptr};
  v1::GenerateRequest r;
  r.add_prompt_tokens(65);
  r.mutable_stopping()->add_stop("x");
  auto in = ValidateGenerateRequest(r, ids_only);
  ASSERT_FALSE(in.ok());
  EXPECT_EQ(in.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(in.status().message().find("stopping.stop"), absl::string_view::npos) << in.status();

  const auto bytes = engine::MakeByteTokenizer();
  const ValidationContext with_tokenizer{&options, 256, bytes.get()};
  auto ok = ValidateGenerateRequest(r, with_tokenizer);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->stop, std::vector<std::string>{"x"});
}

TEST(RequestValidation, StopTokenIdsNeedNoTokenizer) {
  const engine::ServingOptions options;
  const ValidationContext ids_only{&options, 256, nullptr};
  v1::GenerateRequest r;
  r.add_prompt_tokens(65);
  r.mutable_stopping()->add_stop_token_ids(10);
  EXPECT_TRUE(ValidateGenerateRequest(r, ids_only).ok());
}

}  // namespace
}  // namespace retain::server
