// How a chat's `messages` become one prompt for a model: per role, a text with `{content}` in it,
// then the generation prompt that makes the model answer as the assistant. Read from the model
// directory's config.json, key "chat_template" (every key optional):
//   {"system": "System: {content}\n\n", "user": "User: {content}\n\n",
//    "assistant": "Assistant: {content}\n\n", "generation": "Assistant:", "continuation": "\n\n"}
// The defaults above are the RWKV World convention. `continuation` is put before the new turn
// when a request continues a session that holds tokens already: it ends where its last answer
// stopped, without the turn's separator. Pure functions.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace retain::server {

struct ChatMessage {
  std::string role;  // system, user, assistant (developer counts as system)
  std::string content;
};

struct ChatTemplate {
  std::string system = "System: {content}\n\n";
  std::string user = "User: {content}\n\n";
  std::string assistant = "Assistant: {content}\n\n";
  std::string generation = "Assistant:";
  std::string continuation = "\n\n";
};

// The template in `model_dir`/config.json, or the default when it has none. InvalidArgument
// naming the file when "chat_template" is there but not an object of strings.
absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& model_dir);

// The prompt: each message through its role's text, then `generation`; `continuation` first when
// `continuing` a session. InvalidArgument naming messages[i].role for a role it does not know.
absl::StatusOr<std::string> RenderChat(const ChatTemplate& t, const std::vector<ChatMessage>& messages, bool continuing);

}  // namespace retain::server
