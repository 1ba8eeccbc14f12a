// Request validation, as retain-server runs it on every Generate and CreateSession: the input's
// first byte picks the message (GenerateRequest or CreateSessionRequest) and the model it is
// checked against (the shipped byte-level model with its tokenizer or with token ids only, or
// the RWKV World tokenizer's 65536 ids); the rest is the serialized message.
//
// Beyond "never crash", what the server accepts the engine must accept too: every field the
// engine checks again is named by the server first. The engine is draining, so Submit validates
// and then answers UNAVAILABLE without running anything.
#include <cstdio>
#include <cstdlib>

#include "fuzz/fuzz_support.h"
#include "retain/v1/retain.pb.h"
#include "server/request_validation.h"

using namespace retain;

namespace {

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "%s\n", what.c_str());
  std::abort();
}

class NullSink : public engine::GenerateSink {
 public:
  void OnStarted(const engine::StartedEvent&) override { Fail("a draining engine started a request"); }
  bool OnToken(engine::TokenEvent&&) override { Fail("a draining engine produced a token"); }
  void OnFinished(const engine::FinishedEvent&) override { Fail("a draining engine finished a request"); }
  void OnError(const absl::Status&) override {}
};

engine::Engine* DrainingEngine(bool with_tokenizer) {
  static bool drained[2] = {false, false};
  engine::Engine* e = fuzz::ShippedModel(with_tokenizer).engine.get();
  if (!drained[with_tokenizer]) {
    e->BeginDrain();
    drained[with_tokenizer] = true;
  }
  return e;
}

void CheckIds(const std::vector<engine::TokenId>& ids, const server::ValidationContext& ctx) {
  if (static_cast<int64_t>(ids.size()) > ctx.options->max_prompt_tokens) Fail("a prompt over the limit passed");
  for (engine::TokenId id : ids)
    if (id < 0 || id >= ctx.vocab_size) Fail("a prompt id out of range passed");
}

}  // namespace

// Protobuf logs every string field that is not UTF-8; the parse failing is all that matters here.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int model_choice = data[0] % 3;  // 0 byte model + tokenizer, 1 ids only, 2 World vocab
  const bool create_session = (data[0] / 3) % 2 == 1;
  ++data, --size;

  static const engine::ServingOptions options;  // retain-server's defaults
  engine::Engine* engine = model_choice == 2 ? nullptr : DrainingEngine(model_choice == 0);
  server::ValidationContext ctx;
  ctx.options = engine != nullptr ? &engine->options() : &options;
  if (model_choice == 2) {
    ctx.tokenizer = &fuzz::WorldTokenizer();
    ctx.vocab_size = ctx.tokenizer->vocab_size();
  } else {
    ctx.tokenizer = engine->tokenizer();
    ctx.vocab_size = engine->model().config().vocab_size;
  }

  if (create_session) {
    v1::CreateSessionRequest request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
    auto prefix = server::ValidateSessionPrefix(request, ctx);
    if (prefix.ok()) CheckIds(*prefix, ctx);
    return 0;
  }
  v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  auto input = server::ValidateGenerateRequest(request, ctx);
  if (!input.ok()) {
    const auto code = input.status().code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kFailedPrecondition)
      Fail("validation gave an unexpected code: " + input.status().ToString());
    return 0;
  }
  CheckIds(input->prompt, ctx);
  if (engine == nullptr) return 0;
  auto submitted = engine->Submit(*std::move(input), std::make_shared<NullSink>());
  if (submitted.ok() || submitted.status().code() != absl::StatusCode::kUnavailable)
    Fail("the engine refused what the server's validation passed: " + submitted.status().ToString());
  return 0;
}
