#include "server/session_ops.h"

#include "server/model_registry.h"
#include "server/request_validation.h"
#include "server/session_owners.h"
#include "server/tenants.h"

namespace retain::server {

absl::StatusOr<std::pair<ServedModel*, engine::SessionInfo>> ForkOwnedSession(const ServiceDeps& deps,
                                                                              const Caller& caller,
                                                                              const std::string& id,
                                                                              std::string* model) {
  absl::Status st = CheckSessionId(id, "session_id");
  if (!st.ok()) return st;
  auto owner = deps.owners->Find(caller, id);
  if (!owner.ok()) return owner.status();
  ServedModel* m = owner->first;
  *model = m->name;
  auto info = deps.owners->Add(caller, *m, [&] { return m->engine->ForkSession(id); });
  if (!info.ok()) return info.status();
  return std::make_pair(m, *std::move(info));
}

absl::Status DeleteOwnedSession(const ServiceDeps& deps, const Caller& caller, const std::string& id,
                                std::string* model) {
  absl::Status st = CheckSessionId(id, "session_id");
  if (!st.ok()) return st;
  auto owner = deps.owners->Find(caller, id);
  if (!owner.ok()) return owner.status();
  *model = owner->first->name;
  st = owner->first->engine->DeleteSession(id);
  if (st.ok()) deps.owners->Remove(id);
  return st;
}

}  // namespace retain::server
