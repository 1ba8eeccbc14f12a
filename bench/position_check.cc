// retain-position-check: is a decode step's cost independent of how many tokens the state has seen?
//
//   retain-position-check [--arch rwkv7] [--shape 0.1b] [--dtype f16] [--near 16] [--far 16384]
//                         [--pairs 40] [--steps 50]      (--help or -h: the usage)
//
// Two sessions of one model, brought to --near and --far positions by really running that many
// tokens, then decoded in alternating windows of --steps steps. On a shared host the step time of
// separate runs moves by more than the 5 % being asked about; windows a few milliseconds apart see
// the same neighbours, so their ratio isolates the position. Prints one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/cli.h"
#include "bench/random_models.h"
#include "nlohmann/json.hpp"
#include "retain/engine/model.h"
#include "retain/engine/safetensors.h"
#include "retain/engine/status_macros.h"

namespace retain::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kUsage[] =
    "usage: retain-position-check [--arch rwkv7|rwkv4|retnet|transnormer] [--shape 0.1b] [--dtype f16]\n"
    "                             [--near 16] [--far 16384] [--pairs 40] [--steps 50]\n"
    "Brings two sessions of a random-weight model to --near and --far positions, then times decode\n"
    "steps in --pairs alternating windows of --steps steps each; prints one JSON line.\n";

struct Options {
  std::string arch = "rwkv7", shape = "0.1b", dtype = "f16";
  int near = 16, far = 16384, pairs = 40, steps = 50;
  bool help = false;
};

absl::StatusOr<Options> Parse(int argc, char** argv) {
  Options o;
  RETAIN_RETURN_IF_ERROR(ParseFlags(
      argc, argv,
      {.strings = {{"--arch", &o.arch}, {"--shape", &o.shape}, {"--dtype", &o.dtype}},
       .ints = {{"--near", &o.near}, {"--far", &o.far}, {"--pairs", &o.pairs}, {"--steps", &o.steps}},
       .doubles = {},
       .switches = {}},
      &o.help));
  if (o.help) return o;
  if (o.pairs < 1 || o.steps < 1) return absl::InvalidArgumentError("--pairs and --steps must be >= 1");
  return o;
}

absl::Status Run(const Options& o) {
  RETAIN_ASSIGN_OR_RETURN(const engine::DType dtype, ParseDType(o.dtype));
  RETAIN_ASSIGN_OR_RETURN(RandomModelImage image, BuildRandomModel(o.arch, o.shape, dtype, 1234));
  RETAIN_ASSIGN_OR_RETURN(auto config_dir, ConfigDir::Write(image));
  RETAIN_ASSIGN_OR_RETURN(auto weights, engine::SafetensorsFile::FromMemory("random", std::move(image.bytes)));
  int vocab = 0;
  for (const auto& [name, t] : weights->tensors())
    if (name == image.embedding) vocab = static_cast<int>(t.shape[0]);
  engine::ModelOptions mo;
  RETAIN_ASSIGN_OR_RETURN(auto model, engine::LoadModelFromWeights(*weights, config_dir->path(), mo));
  weights.reset();
  RETAIN_ASSIGN_OR_RETURN(void* states, model->AllocateStates(2));
  void* state[2] = {states, static_cast<char*>(states) + model->state_bytes()};
  std::mt19937 rng(7);
  std::vector<float> logits(vocab);
  const int positions[2] = {o.near, o.far};
  for (int i = 0; i < 2; ++i) {
    std::vector<engine::TokenId> history(positions[i]);
    for (auto& t : history) t = static_cast<engine::TokenId>(rng() % vocab);
    engine::SequenceInput in{history, state[i], false};
    RETAIN_RETURN_IF_ERROR(model->Forward({&in, 1}, absl::MakeSpan(logits)));
  }
  auto step = [&](int i) {
    const engine::TokenId tok = static_cast<engine::TokenId>(rng() % vocab);
    return model->Decode({&tok, 1}, {&state[i], 1}, absl::MakeSpan(logits));
  };
  std::vector<double> ms[2], ratio;
  for (int p = 0; p < o.pairs; ++p) {
    double t[2];
    for (int i = 0; i < 2; ++i) {
      RETAIN_RETURN_IF_ERROR(step(i));  // the other session's window left its own state in cache
      const auto t0 = Clock::now();
      for (int k = 0; k < o.steps; ++k) RETAIN_RETURN_IF_ERROR(step(i));
      ms[i].push_back(t[i] = std::chrono::duration<double, std::milli>(Clock::now() - t0).count() / o.steps);
    }
    ratio.push_back(t[1] / t[0]);
  }
  auto quantile = [](std::vector<double> v, double q) {
    std::sort(v.begin(), v.end());
    return v[static_cast<size_t>(q * (v.size() - 1) + 0.5)];
  };
  const nlohmann::json j = {{"arch", o.arch}, {"shape", o.shape}, {"dtype", o.dtype}, {"near", o.near}, {"far", o.far},
                            {"pairs", o.pairs}, {"steps_per_window", o.steps},
                            {"near_step_ms", quantile(ms[0], 0.5)}, {"far_step_ms", quantile(ms[1], 0.5)},
                            {"far_over_near", quantile(ratio, 0.5)}, {"far_over_near_q1", quantile(ratio, 0.25)},
                            {"far_over_near_q3", quantile(ratio, 0.75)}};
  std::printf("%s\n", j.dump().c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace retain::bench

int main(int argc, char** argv) {
  return retain::bench::ToolMain("retain-position-check", retain::bench::kUsage, retain::bench::Parse(argc, argv),
                                 retain::bench::Run);
}
