#include "server/model_registry.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "retain/engine/model.h"
#include "server/host_state_tier.h"
#include "server/redis_tier.h"
#include "server/metrics.h"
#include "server/model_fingerprint.h"

namespace retain::server {
namespace {

absl::Status Named(const ModelSpec& spec, const std::string& backend, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat("--model ", spec.name, "=", spec.dir, " (--backend ", backend, "): ", s.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::Load(const ServerConfig& config, Metrics* metrics,
                                                                   HostStateTier* host, RedisTier* redis) {
  auto registry = std::make_unique<ModelRegistry>();
  for (const ModelSpec& spec : config.models) {
    auto served = std::make_unique<ServedModel>();
    served->name = spec.name;
    served->dir = spec.dir;
    served->backend = config.backend;
    served->is_default = registry->models_.empty();

    engine::ModelOptions mo;
    mo.backend = config.backend;
    mo.num_threads = config.threads;
    // One model step per engine step: the prefill chunk the scheduler composes runs as one
    // matrix-matrix pass instead of being split again inside the model.
    mo.max_step_tokens = config.serving.max_step_tokens;
    auto model = engine::LoadModel(spec.dir, mo);
    if (!model.ok()) return Named(spec, config.backend, model.status());
    std::unique_ptr<engine::Tokenizer> tokenizer;
    auto tok = engine::LoadModelTokenizer((*model)->config());
    if (tok.ok()) {
      tokenizer = *std::move(tok);
    } else if (tok.status().code() != absl::StatusCode::kNotFound) {
      return Named(spec, config.backend, tok.status());
    }
    auto fingerprint = ModelFingerprint(spec.dir);
    if (!fingerprint.ok()) return Named(spec, config.backend, fingerprint.status());
    served->fingerprint = *fingerprint;

    const engine::ModelConfig& mc = (*model)->config();
    served->snapshot.architecture = std::string(engine::ArchitectureName(mc.arch));
    served->snapshot.n_layer = mc.n_layer;
    served->snapshot.n_embd = mc.n_embd;
    served->snapshot.vocab_size = mc.vocab_size;
    served->snapshot.state_bytes = (*model)->state_bytes();
    served->snapshot.fingerprint = *fingerprint;

    engine::ServingOptions so = config.serving;
    // End of text: RWKV World's id 0 (<|endoftext|>). A byte-level model's 0 is the NUL byte and a
    // model without a tokenizer has no known end token: the client stops them by stop_token_ids.
    so.eos_token_id = tokenizer && tokenizer->name() == "rwkv_world" ? 0 : -1;
    if (host != nullptr) served->host_parking = std::make_unique<ModelParking>(host, served->snapshot);
    if (redis != nullptr) {
      served->parking = std::make_unique<RedisParking>(redis, served->host_parking.get(), served->snapshot, spec.name);
    } else {
      served->parking = std::move(served->host_parking);
    }
    auto eng = engine::Engine::Create(*std::move(model), std::move(tokenizer), so, metrics->AddModel(spec.name),
                                      served->parking.get());
    if (!eng.ok())
      return Named(spec, config.backend,
                   absl::Status(eng.status().code(), absl::StrCat("--state-budget-bytes ", so.state_budget_bytes, ": ",
                                                                  eng.status().message())));
    served->engine = *std::move(eng);
    if (redis != nullptr) {
      // A write that failed while Redis was down is redone from the engine's current state.
      engine::Engine* e = served->engine.get();
      redis->SetExporter(served->fingerprint, spec.name,
                         [e, m = served->snapshot](const std::string& id, int64_t* position) -> absl::StatusOr<std::string> {
                           auto snap = e->ExportSession(id);
                           if (!snap.ok()) return snap.status();
                           *position = snap->position;
                           return EncodeSessionSnapshot(m, *snap);
                         });
    }
    registry->models_.push_back(std::move(served));
  }
  return registry;
}

absl::StatusOr<ServedModel*> ModelRegistry::Find(absl::string_view name, absl::string_view field) const {
  if (name.empty()) return models_.front().get();
  for (const auto& m : models_)
    if (m->name == name) return m.get();
  std::vector<std::string> names;
  for (const auto& m : models_) names.push_back(m->name);
  return absl::NotFoundError(
      absl::StrCat(field, " \"", name.substr(0, 128), "\" is not served here (models: ", absl::StrJoin(names, ", "), ")"));
}

absl::StatusOr<std::pair<ServedModel*, engine::SessionInfo>> ModelRegistry::FindSession(const std::string& id,
                                                                                        absl::string_view field) const {
  for (const auto& m : models_) {
    auto info = m->engine->GetSession(id);
    if (info.ok()) return std::make_pair(m.get(), *std::move(info));
    if (info.status().code() != absl::StatusCode::kNotFound) return info.status();
    // Session ids are random 128-bit values, so at most one engine ever knew this one: its word
    // that it was evicted is the answer.
    if (absl::StrContains(info.status().message(), "evicted"))
      return absl::NotFoundError(absl::StrCat(field, ": ", info.status().message()));
  }
  return UnknownSession(id, field);
}

absl::Status ModelRegistry::UnknownSession(absl::string_view id, absl::string_view field) {
  return absl::NotFoundError(absl::StrCat(field, ": session ", id, " not found"));
}

absl::StatusOr<ServedModel*> ModelRegistry::FindByFingerprint(uint64_t fingerprint) const {
  for (const auto& m : models_)
    if (m->fingerprint == fingerprint) return m.get();
  return absl::FailedPreconditionError(absl::StrCat("the snapshot is of a model this server does not serve (fingerprint ",
                                                    FingerprintHex(fingerprint), ")"));
}

std::vector<std::pair<std::string, engine::EngineStats>> ModelRegistry::Stats() const {
  std::vector<std::pair<std::string, engine::EngineStats>> out;
  for (const auto& m : models_) out.emplace_back(m->name, m->engine->Stats());
  return out;
}

}  // namespace retain::server
