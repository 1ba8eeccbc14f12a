#include "server/generate_prepare.h"

#include "absl/strings/str_cat.h"
#include "retain/engine/text_stream.h"
#include "retain/v1/retain.pb.h"
#include "server/model_registry.h"
#include "server/request_validation.h"
#include "server/session_owners.h"

namespace retain::server {

absl::StatusOr<ServedModel*> ResolveGenerateModel(const ServiceDeps& deps, const Caller& caller,
                                                  const v1::GenerateRequest& request) {
  if (request.session_id().empty()) return deps.registry->Find(request.model());
  absl::Status st = CheckSessionId(request.session_id(), "session_id");
  if (!st.ok()) return st;
  auto owner = deps.owners->Find(caller, request.session_id());
  if (!owner.ok()) return owner.status();
  ServedModel* model = owner->first;
  if (!request.model().empty() && request.model() != model->name)
    return absl::InvalidArgumentError(absl::StrCat("model \"", request.model().substr(0, 128),
                                                   "\" does not hold session_id ", request.session_id(),
                                                   "; it belongs to model ", model->name));
  return model;
}

absl::StatusOr<PreparedGenerate> PrepareGenerate(const ServiceDeps& deps, const Caller& caller, const ServedModel& model,
                                                 const v1::GenerateRequest& request, absl::Time deadline) {
  engine::Engine& engine = *model.engine;
  ValidationContext vc{&engine.options(), engine.model().config().vocab_size, engine.tokenizer()};
  auto input = ValidateGenerateRequest(request, vc);
  if (!input.ok()) return input.status();
  input->deadline = deadline;
  input->cache_namespace = CacheNamespace(deps, caller.tenant);
  auto place = TakeRequestPlace(caller);
  if (!place.ok()) return place.status();
  return PreparedGenerate{*std::move(input), *std::move(place)};
}

std::string AlternativeText(const engine::Tokenizer* tokenizer, engine::TokenId id) {
  if (tokenizer == nullptr) return "";
  engine::TextStream stream(tokenizer, {});
  auto piece = stream.Push(id);
  if (!piece.ok()) return "";
  return piece->text + stream.Flush();
}

}  // namespace retain::server
