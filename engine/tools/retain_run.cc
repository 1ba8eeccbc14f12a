// retain-run: the engine's command-line tool.
//   retain-run [--model DIR] --prompt TEXT [--max-tokens N --temperature T --top-p P --top-k K --seed S]
//   retain-run --model DIR --case CASE.json --out OUT.safetensors [--batch]
//   retain-run --vocab FILE --encode      (UTF-8 text on stdin -> ids on one line)
//   retain-run --vocab FILE --decode      (ids on stdin -> bytes on stdout)
// Common: --threads N (0, the default, = every core; else 1 to 1024), --step-tokens N (prefill
// chunk). Without --model, the shipped default model. --help or -h: the usage.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <iterator>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "engine/tools/conformance_case.h"
#include "engine/tools/flag_number.h"
#include "retain/engine/model.h"
#include "retain/engine/sampler.h"
#include "retain/engine/status_macros.h"
#include "retain/engine/tokenizer.h"

#ifndef RETAIN_DEFAULT_MODEL_DIR
#define RETAIN_DEFAULT_MODEL_DIR ""
#endif

namespace retain::engine {
namespace {

constexpr char kUsage[] =
    "usage:\n"
    "  retain-run [--model DIR] --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P]\n"
    "             [--top-k K] [--seed S] [--threads N] [--step-tokens N]\n"
    "  retain-run --model DIR --case CASE.json --out OUT.safetensors [--batch]\n"
    "  retain-run --vocab FILE (--encode | --decode)\n"
    "  retain-run --help | -h\n"
    "--threads 0 (the default) uses every core, else 1 to 1024. Without --model: $RETAIN_MODEL_DIR,\n"
    "else the shipped default model.\n";

struct Args {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> flags;
  bool Has(const std::string& k) const { return values.count(k) > 0; }
  std::string Get(const std::string& k, const std::string& d = "") const {
    auto it = values.find(k);
    return it == values.end() ? d : it->second;
  }
  bool Flag(const std::string& k) const { return flags.count(k) > 0; }
};

absl::StatusOr<Args> ParseArgs(int argc, char** argv) {
  static const char* kValued[] = {"--model", "--prompt", "--max-tokens", "--temperature", "--top-p",
                                  "--top-k", "--seed", "--threads", "--step-tokens", "--case",
                                  "--out", "--vocab"};
  static const char* kFlags[] = {"--batch", "--encode", "--decode"};
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    std::string v;
    bool has_inline = false;
    if (auto eq = k.find('='); eq != std::string::npos && k.rfind("--", 0) == 0) {
      v = k.substr(eq + 1);
      k = k.substr(0, eq);
      has_inline = true;
    }
    bool known = false;
    if (k == "--help" || k == "-h") {  // the usage, whatever else is given
      a.flags["--help"] = true;
      return a;
    }
    for (const char* f : kFlags)
      if (k == f) known = true, a.flags[k] = true;
    if (known) continue;
    for (const char* f : kValued) {
      if (k != f) continue;
      known = true;
      if (!has_inline) {
        if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(k, " needs a value"));
        v = argv[++i];
      }
      a.values[k] = v;
    }
    if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown argument '", k, "'"));
  }
  return a;
}

// The value of `key`, when given, into *out; out of range of T or of [lo, hi] says so.
template <typename T>
absl::Status ParseNumber(const Args& a, const std::string& key, T* out, T lo = std::numeric_limits<T>::lowest(),
                         T hi = std::numeric_limits<T>::max()) {
  if (!a.Has(key)) return absl::OkStatus();
  return tools::ParseFlagNumber(key, a.Get(key), out, lo, hi);
}

std::string ReadStdin() {
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

absl::Status RunTokenizer(const Args& a) {
  RETAIN_ASSIGN_OR_RETURN(auto tok, LoadRwkvWorldTokenizer(a.Get("--vocab")));
  const std::string in = ReadStdin();
  if (a.Flag("--encode")) {
    const std::vector<TokenId> ids = tok->Encode(in);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n";
    return absl::OkStatus();
  }
  std::vector<TokenId> ids;
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t start = in.find_first_not_of(" \t\r\n,", pos);
    if (start == std::string::npos) break;
    size_t end = in.find_first_of(" \t\r\n,", start);
    if (end == std::string::npos) end = in.size();
    int id;
    if (!absl::SimpleAtoi(in.substr(start, end - start), &id)) {
      return absl::InvalidArgumentError(absl::StrCat("not a token id: '", in.substr(start, end - start), "'"));
    }
    ids.push_back(id);
    pos = end;
  }
  RETAIN_ASSIGN_OR_RETURN(std::string bytes, tok->Decode(ids));
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);
  return absl::OkStatus();
}

absl::Status RunCase(const Args& a, Model& model) {
  if (!a.Has("--out")) return absl::InvalidArgumentError("--case needs --out OUT.safetensors");
  RETAIN_ASSIGN_OR_RETURN(ConformanceCase c, ReadConformanceCase(a.Get("--case")));
  RETAIN_ASSIGN_OR_RETURN(CaseOutput out, RunConformanceCase(model, c, a.Flag("--batch")));
  return WriteCaseOutput(out, a.Get("--out"));
}

absl::Status Generate(const Args& a, Model& model) {
  SamplingParams sp;
  int max_tokens = 128;
  int64_t seed = 0;
  RETAIN_RETURN_IF_ERROR(ParseNumber(a, "--max-tokens", &max_tokens));
  RETAIN_RETURN_IF_ERROR(ParseNumber(a, "--temperature", &sp.temperature));
  RETAIN_RETURN_IF_ERROR(ParseNumber(a, "--top-p", &sp.top_p));
  RETAIN_RETURN_IF_ERROR(ParseNumber(a, "--top-k", &sp.top_k));
  RETAIN_RETURN_IF_ERROR(ParseNumber(a, "--seed", &seed));
  sp.seed = static_cast<uint64_t>(seed);
  RETAIN_RETURN_IF_ERROR(ValidateSamplingParams(sp));
  if (max_tokens < 0) return absl::InvalidArgumentError("--max-tokens must be >= 0");
  RETAIN_ASSIGN_OR_RETURN(auto tok, LoadModelTokenizer(model.config()));
  const std::string prompt = a.Get("--prompt");
  std::vector<TokenId> ids = tok->Encode(prompt);
  if (ids.empty()) return absl::InvalidArgumentError("--prompt is empty");
  const bool stop_on_zero = tok->name() == "rwkv_world";  // id 0 = end of document

  RETAIN_ASSIGN_OR_RETURN(void* state, model.AllocateStates(1));
  std::vector<float> logits(model.config().vocab_size);
  Sampler sampler(sp, model.config().vocab_size);
  const auto t0 = std::chrono::steady_clock::now();
  SequenceInput seq{ids, state, false};
  RETAIN_RETURN_IF_ERROR(model.Forward({&seq, 1}, absl::MakeSpan(logits)));
  const auto t1 = std::chrono::steady_clock::now();
  std::string pending;  // bytes of an incomplete UTF-8 character, held until it completes
  int generated = 0;
  while (generated < max_tokens) {
    TokenId next = sampler.Sample(logits);
    if (stop_on_zero && next == 0) break;
    RETAIN_ASSIGN_OR_RETURN(std::string bytes, tok->TokenBytes(next));
    pending += bytes;
    const size_t hold = IncompleteUtf8Tail(pending);
    std::fwrite(pending.data(), 1, pending.size() - hold, stdout);
    std::fflush(stdout);
    pending.erase(0, pending.size() - hold);
    if (++generated == max_tokens) break;
    RETAIN_RETURN_IF_ERROR(model.Decode({&next, 1}, {&state, 1}, absl::MakeSpan(logits)));
  }
  std::fwrite(pending.data(), 1, pending.size(), stdout);
  std::printf("\n");
  std::fflush(stdout);
  const auto t2 = std::chrono::steady_clock::now();
  const double pre = std::chrono::duration<double>(t1 - t0).count();
  const double dec = std::chrono::duration<double>(t2 - t1).count();
  std::fprintf(stderr, "[retain-run] prompt %zu tokens in %.3f s (%.1f tok/s); generated %d tokens in %.3f s (%.1f tok/s)\n",
               ids.size(), pre, ids.size() / std::max(pre, 1e-9), generated, dec,
               generated / std::max(dec, 1e-9));
  return absl::OkStatus();
}

absl::Status Main(int argc, char** argv) {
  RETAIN_ASSIGN_OR_RETURN(Args a, ParseArgs(argc, argv));
  if (a.Flag("--help") || argc == 1) {
    std::fputs(kUsage, stdout);
    return absl::OkStatus();
  }
  if (a.Flag("--encode") || a.Flag("--decode")) {
    if (!a.Has("--vocab")) return absl::InvalidArgumentError("--encode/--decode need --vocab FILE");
    return RunTokenizer(a);
  }
  ModelOptions options;
  RETAIN_RETURN_IF_ERROR(ParseNumber(a, "--threads", &options.num_threads, 0, tools::kMaxThreads));
  RETAIN_RETURN_IF_ERROR(ParseNumber(a, "--step-tokens", &options.max_step_tokens));
  std::string dir = a.Get("--model");
  if (dir.empty()) {
    const char* env = std::getenv("RETAIN_MODEL_DIR");
    dir = env != nullptr ? env : RETAIN_DEFAULT_MODEL_DIR;
  }
  if (dir.empty()) return absl::InvalidArgumentError("no --model given and no default model built in");
  RETAIN_ASSIGN_OR_RETURN(auto model, LoadModel(dir, options));
  if (a.Has("--case")) return RunCase(a, *model);
  if (a.Has("--prompt")) return Generate(a, *model);
  return absl::InvalidArgumentError("nothing to do: give --prompt TEXT or --case CASE.json");
}

}  // namespace
}  // namespace retain::engine

int main(int argc, char** argv) {
  absl::Status s = retain::engine::Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "retain-run: %s\n", std::string(s.message()).c_str());
    return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
