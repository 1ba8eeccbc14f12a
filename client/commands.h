// The subcommands of `retain`. Each Add* registers its subcommand on the app; when the
// subcommand is parsed, its callback stores in *action what to run once parsing is done.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "client/channel.h"

namespace CLI {
class App;
}

namespace retain::client {

using Action = std::function<int()>;

void AddGenerateCommand(CLI::App& app, const GlobalOptions& g, Action* action);  // commands_generate.cc
void AddSessionCommands(CLI::App& app, const GlobalOptions& g, Action* action);  // commands_session.cc
void AddModelCommands(CLI::App& app, const GlobalOptions& g, Action* action);    // commands_models.cc: models, tokenize, detokenize
void AddLoadCommand(CLI::App& app, const GlobalOptions& g, Action* action);      // load_main.cc
void AddHealthCommand(CLI::App& app, const GlobalOptions& g, Action* action);    // commands_health.cc: health

// "1 2 3", "1,2,3" or several such arguments → ids; false (with *error set) on anything else.
bool ParseTokenIds(const std::vector<std::string>& args, std::vector<int>* ids, std::string* error);

}  // namespace retain::client
