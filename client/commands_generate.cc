// retain generate: one Generate stream; text to stdout as it arrives, the finish to stderr.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include "client/commands.h"
#include "retain/v1/retain.grpc.pb.h"

namespace retain::client {
namespace {

struct GenerateOptions {
  std::string session, model, prompt, tokens;
  float temperature = 1, top_p = 1, min_p = 0, presence_penalty = 0, frequency_penalty = 0,
        repetition_penalty = 1, penalty_decay = 1;
  int top_k = 0, max_tokens = 0, logprobs = 0;
  uint64_t seed = 0;
  std::vector<std::string> stop;
  std::vector<int> stop_token_ids;
  bool ignore_eos = false;
  // Which optional fields were given (only those are sent: absence means the server's default).
  CLI::Option *o_temperature, *o_top_p, *o_top_k, *o_min_p, *o_presence, *o_frequency, *o_repetition, *o_decay,
      *o_seed, *o_max_tokens, *o_tokens;
};

const char* ReasonName(v1::Finished::Reason r) {
  switch (r) {
    case v1::Finished::LENGTH: return "LENGTH";
    case v1::Finished::STOP: return "STOP";
    case v1::Finished::EOS: return "EOS";
    case v1::Finished::CANCELLED: return "CANCELLED";
    default: return "UNSPECIFIED";
  }
}

void WriteOut(const std::string& s) {
  if (s.empty()) return;
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

int RunGenerate(const GlobalOptions& g, const GenerateOptions& o) {
  v1::GenerateRequest req;
  req.set_model(o.model);
  req.set_session_id(o.session);
  req.set_prompt_text(o.prompt);
  if (o.o_tokens->count() > 0) {
    std::vector<int> ids;
    std::string error;
    if (!ParseTokenIds({o.tokens}, &ids, &error)) return Fail(kExitUsage, "--tokens: " + error);
    for (int id : ids) req.add_prompt_tokens(id);
  }
  v1::SamplingParams* s = req.mutable_sampling();
  if (o.o_temperature->count()) s->set_temperature(o.temperature);
  if (o.o_top_p->count()) s->set_top_p(o.top_p);
  if (o.o_top_k->count()) s->set_top_k(o.top_k);
  if (o.o_min_p->count()) s->set_min_p(o.min_p);
  if (o.o_presence->count()) s->set_presence_penalty(o.presence_penalty);
  if (o.o_frequency->count()) s->set_frequency_penalty(o.frequency_penalty);
  if (o.o_repetition->count()) s->set_repetition_penalty(o.repetition_penalty);
  if (o.o_decay->count()) s->set_penalty_decay(o.penalty_decay);
  if (o.o_seed->count()) s->set_seed(o.seed);
  v1::StoppingCriteria* st = req.mutable_stopping();
  if (o.o_max_tokens->count()) st->set_max_tokens(o.max_tokens);
  for (const auto& x : o.stop) st->add_stop(x);
  for (int id : o.stop_token_ids) st->add_stop_token_ids(id);
  st->set_ignore_eos(o.ignore_eos);
  req.set_logprobs(o.logprobs);

  auto stub = v1::Retain::NewStub(MakeChannel(g));
  grpc::ClientContext ctx;
  ApplyCallOptions(ctx, g);
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader = stub->Generate(&ctx, req);
  v1::GenerateResponse resp;
  bool wrote = false, finished = false;
  while (reader->Read(&resp)) {
    if (resp.has_token()) {
      const v1::Token& t = resp.token();
      WriteOut(t.text());
      wrote = wrote || !t.text().empty();
      if (o.logprobs > 0) {
        std::string line = "[token] id=" + std::to_string(t.id()) + " logprob=" + std::to_string(t.logprob()) + " top=";
        for (int i = 0; i < t.top_logprobs_size(); ++i)
          line += (i ? "," : "") + std::to_string(t.top_logprobs(i).id()) + ":" +
                  std::to_string(t.top_logprobs(i).logprob());
        std::fprintf(stderr, "%s\n", line.c_str());
      }
    } else if (resp.has_finished()) {
      const v1::Finished& f = resp.finished();
      WriteOut(f.text_tail());
      WriteOut("\n");
      finished = true;
      std::string line = std::string("[retain] finished: reason=") + ReasonName(f.reason());
      if (!f.stop().empty()) line += " stop=\"" + f.stop() + "\"";
      if (f.reason() == v1::Finished::STOP && f.stop().empty()) line += " stop_token_id=" + std::to_string(f.stop_token_id());
      const v1::Usage& u = f.usage();
      char buf[256];
      std::snprintf(buf, sizeof buf, " prompt_tokens=%d tokens=%d position=%lld ttft=%.3fs total=%.3fs",
                    u.prompt_tokens(), u.generated_tokens(), static_cast<long long>(f.position()),
                    u.time_to_first_token_seconds(), u.total_seconds());
      line += buf;
      if (!o.session.empty()) line += " session=" + o.session;
      std::fprintf(stderr, "%s\n", line.c_str());
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    if (wrote && !finished) WriteOut("\n");
    return ReportRpcError(status);
  }
  return kExitOk;
}

}  // namespace

void AddGenerateCommand(CLI::App& app, const GlobalOptions& g, Action* action) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* sub = app.add_subcommand("generate", "Generate text: streams the text to stdout as it comes");
  sub->add_option("prompt", o->prompt, "the prompt text (empty: continue --session from its pending token)");
  o->o_tokens = sub->add_option("--tokens", o->tokens, "the prompt as token ids, e.g. \"1 2 3\" (instead of text)");
  sub->add_option("--session", o->session, "continue this session (default: a throw-away state)");
  sub->add_option("--model", o->model, "model name (default: the server's default model)");
  o->o_temperature = sub->add_option("--temperature", o->temperature, "0 = greedy (server default 1)");
  o->o_top_p = sub->add_option("--top-p", o->top_p, "nucleus sampling, (0, 1]");
  o->o_top_k = sub->add_option("--top-k", o->top_k, "0 = off");
  o->o_min_p = sub->add_option("--min-p", o->min_p, "[0, 1]");
  o->o_presence = sub->add_option("--presence-penalty", o->presence_penalty);
  o->o_frequency = sub->add_option("--frequency-penalty", o->frequency_penalty);
  o->o_repetition = sub->add_option("--repetition-penalty", o->repetition_penalty, "> 0; 1 = off");
  o->o_decay = sub->add_option("--penalty-decay", o->penalty_decay, "(0, 1]");
  o->o_seed = sub->add_option("--seed", o->seed, "sampling seed");
  o->o_max_tokens = sub->add_option("--max-tokens", o->max_tokens, "tokens to generate (default: the server's)");
  sub->add_option("--stop", o->stop, "stop string (repeatable); its text is not printed")
      ->allow_extra_args(false);
  sub->add_option("--stop-token-id", o->stop_token_ids, "stop token id (repeatable)")->allow_extra_args(false);
  sub->add_flag("--ignore-eos", o->ignore_eos, "keep generating past the end-of-text token");
  sub->add_option("--logprobs", o->logprobs, "top-n alternatives per token, printed to stderr (0 = none)");
  sub->callback([&g, o, action] { *action = [&g, o] { return RunGenerate(g, *o); }; });
}

bool ParseTokenIds(const std::vector<std::string>& args, std::vector<int>* ids, std::string* error) {
  for (const std::string& a : args) {
    size_t i = 0;
    while (i < a.size()) {
      if (a[i] == ' ' || a[i] == ',' || a[i] == '\t' || a[i] == '\n') {
        ++i;
        continue;
      }
      size_t j = i;
      if (a[j] == '-') ++j;
      while (j < a.size() && a[j] >= '0' && a[j] <= '9') ++j;
      const std::string word = a.substr(i, j - i);
      if (j == i || word == "-" || (j < a.size() && a[j] != ' ' && a[j] != ',' && a[j] != '\t' && a[j] != '\n')) {
        size_t end = a.find_first_of(" ,\t\n", i);
        *error = "\"" + a.substr(i, end == std::string::npos ? std::string::npos : end - i) + "\" is not a token id";
        return false;
      }
      long long v = 0;
      try {
        v = std::stoll(word);
      } catch (...) {
        v = 1LL << 40;
      }
      if (v < INT32_MIN || v > INT32_MAX) {
        *error = "\"" + word + "\" is out of the int32 range";
        return false;
      }
      ids->push_back(static_cast<int>(v));
      i = j;
    }
  }
  return true;
}

}  // namespace retain::client
