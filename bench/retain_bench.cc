// retain-bench: speed of the engine as a fraction of this machine's roofline, measured in one run.
//
//   retain-bench --arch rwkv7|rwkv4|retnet|transnormer --shape NAME --dtype f32|f16|bf16
//                --mode decode|prefill
//                --batch B [--prompt-tokens T] [--position P] [--threads N] [--seconds S]
//                [--windows W] [--step-tokens N] --json
//   (--help or -h: the usage; --threads 0, the default, = every core, else 1 to 1024)
//
// Roofline = min(bandwidth limit, compute limit) in tokens/s:
//   bandwidth: tokens per weight pass × read_bw ÷ (weight bytes read per pass, the embedding counted
//              as one row per sequence, + sequences × state bytes read and written per pass)
//   compute:   fma_peak ÷ (2 × matrix parameters used per token)
// A decode step is one weight pass for `batch` tokens; prefill passes hold up to --step-tokens rows.
// Logits: every decode token needs the head; prefill only the last token of each prompt, so the
// head is not counted per prefill token (as llama-bench does).
// The limits are measured again before each of --windows timed windows and each window's rate is
// divided by its own roofline; the median window is reported, every window's figures beside it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/cli.h"
#include "bench/machine_limits.h"
#include "bench/random_models.h"
#include "engine/kernels/cpu/isa.h"
#include "engine/tools/flag_number.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "retain/engine/status_macros.h"

namespace retain::bench {
namespace {

using Clock = std::chrono::steady_clock;
using engine::DType;

constexpr double kReadGib = 1.0;                 // read buffers: far beyond any last-level cache
constexpr long kFmaItersPerWindow = 50'000'000;  // ~0.12 s per thread at 3.5 GHz
constexpr int kLimitReps = 3;                    // best of, per window

constexpr char kUsage[] =
    "usage: retain-bench [--arch rwkv7|rwkv4|retnet|transnormer] [--shape NAME] [--dtype f32|f16|bf16]\n"
    "                    [--mode decode|prefill] [--batch B] [--prompt-tokens T] [--position P]\n"
    "                    [--threads N] [--seconds S] [--windows W] [--step-tokens N] [--json]\n"
    "Builds a model with random weights at a real shape and prints its tokens/s as a fraction of this\n"
    "machine's roofline, measured before each of --windows timed windows (median window reported).\n"
    "Defaults: --arch rwkv7 --shape 0.1b --dtype f16 --mode decode --batch 1 --prompt-tokens 512\n"
    "--position 0 --seconds 5 --windows 5 --step-tokens 256; --threads 0 (the default) = every core,\n"
    "else 1 to 1024. --json prints one line. An unknown --shape lists the known ones.\n";

struct Options {
  std::string arch = "rwkv7", shape = "0.1b", dtype = "f16", mode = "decode";
  int batch = 1, prompt_tokens = 512, position = 0, threads = 0, step_tokens = 256, windows = 5;
  double seconds = 5.0;  // timed, over all windows
  bool json = false;
  bool help = false;
};

absl::StatusOr<Options> Parse(int argc, char** argv) {
  Options o;
  RETAIN_RETURN_IF_ERROR(ParseFlags(
      argc, argv,
      {.strings = {{"--arch", &o.arch}, {"--shape", &o.shape}, {"--dtype", &o.dtype}, {"--mode", &o.mode}},
       .ints = {{"--batch", &o.batch}, {"--prompt-tokens", &o.prompt_tokens}, {"--position", &o.position},
                {"--threads", {&o.threads, 0, tools::kMaxThreads}}, {"--step-tokens", &o.step_tokens},
                {"--windows", &o.windows}},
       .doubles = {{"--seconds", &o.seconds}},
       .switches = {{"--json", &o.json}}},
      &o.help));
  if (o.help) return o;
  if (o.windows < 1) return absl::InvalidArgumentError("--windows must be >= 1");
  if (o.batch < 1) return absl::InvalidArgumentError("--batch must be >= 1");
  if (o.mode != "decode" && o.mode != "prefill") return absl::InvalidArgumentError("--mode is decode or prefill");
  if (o.mode == "prefill" && o.prompt_tokens < 1) return absl::InvalidArgumentError("--prompt-tokens must be >= 1");
  return o;
}

// Resident set high-water mark since the last ResetPeakRss (Linux).
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }
size_t PeakRssBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

std::vector<engine::TokenId> Tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<engine::TokenId> t(n);
  for (auto& x : t) x = static_cast<engine::TokenId>(rng() % vocab);
  return t;
}

absl::Status Run(const Options& o) {
  RETAIN_ASSIGN_OR_RETURN(DType dtype, ParseDType(o.dtype));
  const int threads = o.threads > 0 ? o.threads : engine::DefaultThreadCount();  // the engine's own default
  LimitsProbe probe(threads, kReadGib);

  // Model: random image in memory -> the real loader -> image freed.
  RETAIN_ASSIGN_OR_RETURN(RandomModelImage image, BuildRandomModel(o.arch, o.shape, dtype, 1234));
  RETAIN_ASSIGN_OR_RETURN(auto config_dir, ConfigDir::Write(image));
  RETAIN_ASSIGN_OR_RETURN(auto weights, engine::SafetensorsFile::FromMemory(absl::StrCat("random-", o.arch, "-", o.shape), std::move(image.bytes)));
  double weight_bytes = 0, emb_row_bytes = 0, head_params = 0, matrix_params = 0;
  int vocab = 0;
  for (const auto& [name, t] : weights->tensors()) {
    weight_bytes += t.nbytes;
    if (name == image.embedding) {
      emb_row_bytes = static_cast<double>(t.nbytes) / t.shape[0];
      vocab = static_cast<int>(t.shape[0]);
      if (image.tied) {
        matrix_params += static_cast<double>(t.numel());
        head_params = static_cast<double>(t.numel());
      }
      continue;
    }
    if (t.shape.size() == 2 && t.shape[0] > 1 && t.shape[1] > 1 && name.find("r_k") == std::string::npos) {
      matrix_params += static_cast<double>(t.numel());
      if (name == image.head) head_params = static_cast<double>(t.numel());
    }
  }
  const double emb_bytes = emb_row_bytes * vocab;
  engine::ModelOptions mo;
  mo.num_threads = threads;
  mo.max_step_tokens = o.step_tokens;
  RETAIN_ASSIGN_OR_RETURN(auto model, engine::LoadModelFromWeights(*weights, config_dir->path(), mo));
  weights.reset();
  const size_t state_bytes = model->state_bytes();
  RETAIN_ASSIGN_OR_RETURN(void* states, model->AllocateStates(o.batch));
  auto state = [&](int i) { return static_cast<char*>(states) + state_bytes * i; };
  std::vector<void*> ptrs;
  for (int i = 0; i < o.batch; ++i) ptrs.push_back(state(i));

  // Bring every session to --position by really running that many tokens (state values, not just
  // a counter, are what could make late decode steps slower).
  if (o.position > 0) {
    const auto history = Tokens(o.position, vocab, 7);
    std::vector<float> last(vocab);
    engine::SequenceInput s{history, state(0), false};
    RETAIN_RETURN_IF_ERROR(model->Forward({&s, 1}, absl::MakeSpan(last)));
    RETAIN_ASSIGN_OR_RETURN(std::string snap, model->ExportState(state(0)));
    for (int i = 1; i < o.batch; ++i) RETAIN_RETURN_IF_ERROR(model->ImportState(snap, state(i)));
  }

  std::vector<float> logits(static_cast<size_t>(o.batch) * vocab);
  const bool decode = o.mode == "decode";
  const auto prompt = Tokens(o.prompt_tokens, vocab, 11);
  std::vector<engine::SequenceInput> seqs;
  for (int i = 0; i < o.batch; ++i) seqs.push_back({prompt, state(i), false});
  auto one_iteration = [&](int it) -> absl::Status {
    if (decode) {
      const auto toks = Tokens(o.batch, vocab, 100 + it);
      return model->Decode(toks, ptrs, absl::MakeSpan(logits));
    }
    for (int i = 0; i < o.batch; ++i) RETAIN_RETURN_IF_ERROR(model->InitState(state(i)));
    return model->Forward(seqs, absl::MakeSpan(logits));
  };
  // Warm-up of at least half a second: first touch of workspaces, and the machine settling after
  // building the model and any --position history (a single warm-up step measured 37% slow).
  const auto warm = Clock::now();
  for (int w = 0; w < 2 || std::chrono::duration<double>(Clock::now() - warm).count() < 0.5; ++w) {
    RETAIN_RETURN_IF_ERROR(one_iteration(-1 - w));
  }
  // Timed windows, each after its own measurement of the limits: on a shared host the bandwidth
  // moves with the neighbours (35 to 75 GB/s within minutes here), so a rate is only compared with
  // the limits measured just before it. The median window is reported, every window beside it.
  struct Window {
    MachineLimits limits;
    int iters = 0;
    double seconds = 0;
  };
  std::vector<Window> windows(o.windows);
  ResetPeakRss();
  int iter = 0;
  for (Window& w : windows) {
    w.limits = probe.Measure(kFmaItersPerWindow, kLimitReps);
    if (decode) RETAIN_RETURN_IF_ERROR(one_iteration(++iter));  // caches refilled after the read sweep
    const auto t0 = Clock::now();
    while (w.iters < 1 || w.seconds < o.seconds / o.windows) {
      RETAIN_RETURN_IF_ERROR(one_iteration(++iter));
      ++w.iters;
      w.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    }
  }
  const size_t peak_rss = PeakRssBytes() - probe.resident_bytes();

  const double tokens_per_iter = static_cast<double>(o.batch) * (decode ? 1 : o.prompt_tokens);
  const double tokens_per_pass = decode ? o.batch : std::min<double>(static_cast<double>(o.batch) * o.prompt_tokens, o.step_tokens);
  const double seqs_per_pass = decode ? o.batch : std::max(1.0, tokens_per_pass / o.prompt_tokens);
  const double tied_head_bytes = image.tied && decode ? emb_bytes : 0;
  const double pass_bytes = weight_bytes - emb_bytes + tied_head_bytes + seqs_per_pass * emb_row_bytes +
                            (decode || image.tied ? 0 : -head_params * engine::DTypeSize(dtype)) + seqs_per_pass * 2.0 * state_bytes;
  const double params_per_token = matrix_params - (decode ? 0 : head_params);
  auto bw_limit = [&](const Window& w) { return tokens_per_pass * w.limits.read_gbps * 1e9 / pass_bytes; };
  auto compute_limit = [&](const Window& w) { return w.limits.fma_gflops * 1e9 / (2 * params_per_token); };
  auto rate = [&](const Window& w) { return w.iters * tokens_per_iter / w.seconds; };
  auto fraction = [&](const Window& w) { return rate(w) / std::min(bw_limit(w), compute_limit(w)); };
  std::sort(windows.begin(), windows.end(), [&](const Window& a, const Window& b) { return fraction(a) < fraction(b); });
  const Window& med = windows[(windows.size() - 1) / 2];  // the lower median when the count is even
  double all_tokens = 0, all_seconds = 0;
  std::vector<double> fractions, reads, fmas;
  for (const Window& w : windows) {
    all_tokens += w.iters * tokens_per_iter, all_seconds += w.seconds;
    fractions.push_back(fraction(w)), reads.push_back(w.limits.read_gbps), fmas.push_back(w.limits.fma_gflops);
  }
  const double resident = weight_bytes + static_cast<double>(o.batch) * state_bytes;

  nlohmann::json j = {
      {"arch", o.arch}, {"shape", o.shape}, {"dtype", o.dtype}, {"mode", o.mode}, {"batch", o.batch},
      {"prompt_tokens", decode ? 0 : o.prompt_tokens}, {"position", o.position}, {"threads", threads},
      {"isa", std::string(kernels::cpu::IsaName(kernels::cpu::ActiveIsa()))},
      {"tokens_per_s", rate(med)}, {"step_ms", 1e3 * med.seconds / med.iters},
      {"weight_bytes", weight_bytes}, {"state_bytes_per_session", state_bytes},
      {"params_per_token", params_per_token}, {"read_gbps", med.limits.read_gbps}, {"fma_gflops", med.limits.fma_gflops},
      {"bandwidth_limit_tokens_per_s", bw_limit(med)}, {"compute_limit_tokens_per_s", compute_limit(med)},
      {"bound", bw_limit(med) < compute_limit(med) ? "bandwidth" : "compute"},
      {"roofline_fraction", fraction(med)},
      {"fma_fraction", rate(med) * 2 * params_per_token / (med.limits.fma_gflops * 1e9)},
      {"windows", windows.size()}, {"window_roofline_fractions", fractions}, {"window_read_gbps", reads},
      {"window_fma_gflops", fmas}, {"tokens_per_s_all_windows", all_tokens / all_seconds},
      {"peak_rss_bytes", peak_rss}, {"rss_over_weights_and_states", peak_rss / resident - 1.0}};
  if (o.json) {
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("%s\n", j.dump(2).c_str());
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace retain::bench

int main(int argc, char** argv) {
  return retain::bench::ToolMain("retain-bench", retain::bench::kUsage, retain::bench::Parse(argc, argv),
                                 retain::bench::Run);
}
