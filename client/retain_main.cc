// retain: the command-line client of retain-server (client/README.md).
#include <cstdio>
#include <string>

#include <CLI/CLI.hpp>

#include "client/channel.h"
#include "client/commands.h"

int main(int argc, char** argv) {
  using namespace retain::client;
  GlobalOptions g;
  CLI::App app("retain: the command-line client of retain-server\n"
               "exit codes: 0 ok, 1 local failure (a file), 2 usage error, 10 + N an RPC that ended with gRPC "
               "status code N (13 INVALID_ARGUMENT, 15 NOT_FOUND, 19 FAILED_PRECONDITION, 24 UNAVAILABLE)",
               "retain");
  app.add_option("--server", g.server, "server address HOST:PORT (also $RETAIN_SERVER)")
      ->envname("RETAIN_SERVER")
      ->capture_default_str();
  app.add_option("--timeout", g.timeout_seconds, "deadline of each RPC in seconds; 0 = none")
      ->check(CLI::Range(0.0, 1e7))
      ->capture_default_str();
  app.add_option("--token", g.token, "bearer token for a server run with --auth-tokens (also $RETAIN_TOKEN)")
      ->envname("RETAIN_TOKEN");
  app.add_option("--tls-ca", g.tls_ca, "TLS: PEM file of the CA that signed the server's certificate")
      ->type_name("FILE");
  app.add_option("--tls-cert", g.tls_cert, "TLS: PEM client certificate, for a server that requires one (mTLS)")
      ->type_name("FILE");
  app.add_option("--tls-key", g.tls_key, "TLS: PEM private key of --tls-cert")->type_name("FILE");
  app.require_subcommand(1);

  Action action;
  AddGenerateCommand(app, g, &action);
  AddSessionCommands(app, g, &action);
  AddModelCommands(app, g, &action);
  AddLoadCommand(app, g, &action);
  AddHealthCommand(app, g, &action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);  // 0
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message (and for a missing subcommand, the usage)
    return kExitUsage;
  }
  if (!action) return Fail(kExitUsage, "no command given (--help lists them)");
  if (g.tls_cert.empty() != g.tls_key.empty()) return Fail(kExitUsage, LoadTlsFiles(g));
  if (std::string error = LoadTlsFiles(g); !error.empty()) return Fail(kExitLocal, error);
  return action();
}
