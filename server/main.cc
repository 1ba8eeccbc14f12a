// retain-server: flags → ServerConfig → RunServer (server.h). Nothing else belongs here.
#include "server/server.h"
#include "server/server_config.h"

int main(int argc, char** argv) {
  retain::server::ParsedFlags flags = retain::server::ParseServerConfig(argc, argv);
  if (!flags.config) return flags.exit_code;
  return retain::server::RunServer(*flags.config);
}
