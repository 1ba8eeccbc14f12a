// retain-fuzz-seeds OUT_DIR: writes the seed inputs that are easier to make with the real code
// than to keep as files: serialized requests (with fuzz_request_validation's selector byte),
// real session snapshots of the shipped model (with fuzz_session_snapshot's byte) and small
// safetensors images. scripts/fuzz.sh runs it into each target's working corpus.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "retain/v1/retain.pb.h"
#include "server/session_snapshot.h"

using namespace retain;

namespace {

std::string out_dir;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  const std::string dir = out_dir + "/" + target;
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

// Selector byte of fuzz_request_validation: model 0..2, then message type.
std::string Request(int model, bool create_session, const google::protobuf::Message& m) {
  return std::string(1, static_cast<char>(model + 3 * (create_session ? 1 : 0))) + m.SerializeAsString();
}

void RequestSeeds() {
  v1::GenerateRequest text;
  text.set_prompt_text("And God said");
  text.mutable_stopping()->set_max_tokens(40);
  v1::GenerateRequest full = text;
  full.set_session_id("0123456789abcdef0123456789abcdef");
  auto* s = full.mutable_sampling();
  s->set_temperature(0.7f), s->set_top_p(0.9f), s->set_top_k(40), s->set_min_p(0.05f);
  s->set_presence_penalty(0.1f), s->set_frequency_penalty(0.2f), s->set_repetition_penalty(1.1f);
  s->set_penalty_decay(0.99f), s->set_seed(42);
  full.mutable_stopping()->add_stop("\n\n");
  full.mutable_stopping()->add_stop("Amen.");
  full.mutable_stopping()->add_stop_token_ids(10);
  full.mutable_stopping()->set_ignore_eos(true);
  full.set_logprobs(5);
  v1::GenerateRequest ids;
  for (int t : {65, 110, 100, 32, 71, 111, 100}) ids.add_prompt_tokens(t);
  ids.mutable_stopping()->add_stop_token_ids(0);
  v1::GenerateRequest cont;
  cont.set_session_id("s-1");
  v1::CreateSessionRequest prefix_text, prefix_ids;
  prefix_text.set_prefix_text("In the beginning");
  for (int t : {73, 110, 32}) prefix_ids.add_prefix_tokens(t);
  for (int model = 0; model < 3; ++model) {
    const std::string m = std::to_string(model);
    Write("fuzz_request_validation", "generate-text-" + m, Request(model, false, text));
    Write("fuzz_request_validation", "generate-full-" + m, Request(model, false, full));
    Write("fuzz_request_validation", "generate-ids-" + m, Request(model, false, ids));
    Write("fuzz_request_validation", "generate-continue-" + m, Request(model, false, cont));
    Write("fuzz_request_validation", "create-text-" + m, Request(model, true, prefix_text));
    Write("fuzz_request_validation", "create-ids-" + m, Request(model, true, prefix_ids));
  }
}

// Real snapshots: a fresh state, one after a prompt with a pending token, one with last logits.
void SnapshotSeeds() {
  fuzz::ServedModel& served = fuzz::ShippedModel(true);
  engine::Model& m = served.engine->model();
  server::SnapshotModel id;
  id.architecture = served.architecture;
  id.n_layer = m.config().n_layer, id.n_embd = m.config().n_embd, id.vocab_size = m.config().vocab_size;
  id.state_bytes = m.state_bytes();
  id.fingerprint = served.fingerprint;

  void* state = *m.AllocateStates(1);
  const int vocab = m.config().vocab_size;
  std::vector<float> logits(vocab);
  auto write = [&](const std::string& name, const engine::SessionSnapshot& snap) {
    const std::string bytes = server::EncodeSessionSnapshot(id, snap);
    Write("fuzz_session_snapshot", name, std::string(1, '\0') + bytes);
    Write("fuzz_session_snapshot", name + "-checksummed", std::string(1, '\1') + bytes);
  };
  engine::SessionSnapshot fresh;
  fresh.state = *m.ExportState(state);
  write("fresh", fresh);

  const std::vector<engine::TokenId> prompt = {65, 110, 100, 32, 71, 111, 100};
  engine::SequenceInput seq{prompt, state, false};
  if (!m.Forward(absl::MakeConstSpan(&seq, 1), absl::MakeSpan(logits)).ok()) std::abort();
  engine::SessionSnapshot pending;
  pending.state = *m.ExportState(state);
  pending.position = static_cast<int64_t>(prompt.size()) + 1;
  pending.pending = 32;
  write("pending", pending);
  engine::SessionSnapshot cut;
  cut.state = pending.state;
  cut.position = static_cast<int64_t>(prompt.size());
  cut.last_logits = logits;
  write("last-logits", cut);
}

std::string ImageOf(const std::vector<engine::TensorToWrite>& tensors) {
  const std::string path = fuzz::ScratchDir() + "/seed.safetensors";
  if (!engine::WriteSafetensors(path, tensors).ok()) std::abort();
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void SafetensorsSeeds() {
  using engine::DType;
  Write("fuzz_safetensors", "one-f32", ImageOf({{"a", DType::kF32, {2, 3}, {1, 2, 3, 4, 5, 6}}}));
  Write("fuzz_safetensors", "mixed", ImageOf({{"emb.weight", DType::kBF16, {4, 2}, std::vector<float>(8, 0.5f)},
                                              {"head.weight", DType::kF16, {2, 4}, std::vector<float>(8, -1.0f)},
                                              {"scalar", DType::kF32, {}, {3.0f}}}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: retain-fuzz-seeds OUT_DIR\n");
    return 2;
  }
  out_dir = argv[1];
  RequestSeeds();
  SnapshotSeeds();
  SafetensorsSeeds();
  return 0;
}
