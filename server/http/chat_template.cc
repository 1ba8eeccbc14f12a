#include "server/http/chat_template.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"

namespace retain::server {

absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir) {
  ChatTemplate t;
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path);
  if (!in) return t;  // a model without config.json loads with defaults; so does its chat
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json config = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (!config.is_object() || !config.contains("chat_template")) return t;
  const nlohmann::json& j = config["chat_template"];
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": chat_template must be an object"));
  struct Field {
    const char* name;
    std::string* value;
  };
  const Field fields[] = {{"system", &t.system},         {"user", &t.user},
                          {"assistant", &t.assistant},   {"generation", &t.generation},
                          {"continuation", &t.continuation}};
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (const Field& f : fields) {
      if (key != f.name) continue;
      if (!value.is_string())
        return absl::InvalidArgumentError(absl::StrCat(path, ": chat_template.", key, " must be a string"));
      *f.value = value.get<std::string>();
      known = true;
    }
    if (!known)
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": chat_template.", key, " is not a template key (system, user, assistant, generation, continuation)"));
  }
  return t;
}

absl::StatusOr<std::string> RenderChat(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool continuing) {
  std::string prompt = continuing ? t.continuation : "";
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    const std::string* form = role == "system" || role == "developer" ? &t.system
                              : role == "user"                        ? &t.user
                              : role == "assistant"                   ? &t.assistant
                                                                      : nullptr;
    if (form == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role \"", role.substr(0, 64),
                                                     "\" is not one of system, developer, user, assistant"));
    absl::StrAppend(&prompt, absl::StrReplaceAll(*form, {{"{content}", messages[i].content}}));
  }
  absl::StrAppend(&prompt, t.generation);
  return prompt;
}

}  // namespace retain::server
