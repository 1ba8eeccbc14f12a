// retain load: the load generator's three modes (streams, conversations, soak), sharing the
// options and the resolved target.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/support/status.h>

#include "client/channel.h"

namespace retain::client {

inline constexpr int kMaxLoadStreams = 4096;
inline constexpr double kMaxLoadDurationSeconds = 3600;
inline constexpr int kMaxLoadTurns = 1000;
inline constexpr int kMaxLoadPromptTokens = 65536;
inline constexpr int kMaxLoadChannels = 64;
// load --soak: every check passed (0), or one failed (3); usage and RPC errors as elsewhere.
inline constexpr int kExitSoakFailed = 3;

struct LoadOptions {
  // Stream mode.
  int streams = 0;
  double duration = 0;
  double warmup = 0;  // seconds run before the measured duration starts
  int prompt_tokens = 0;
  // Conversation mode.
  int conversations = 0;
  int turns = 0;
  int turn_tokens = 0;
  // Soak mode (load_soak.cc): --streams workers for --duration, after --warmup.
  bool soak = false;
  int slow_readers = -1;          // workers that read slowly; -1 = streams / 50, at least 1
  int soak_sessions = 3;          // sessions one worker holds at most
  int soak_max_position = 1024;   // a session past this is verified and deleted
  int soak_continuation = 16;     // greedy tokens compared against the replay
  std::string metrics;            // HOST:PORT of the server's /metrics
  int server_pid = 0;             // its VmRSS is checked when given
  int test_corrupt_history = 0;   // test hook: corrupt this many histories per worker before verifying
  // All modes.
  int max_tokens = 0;
  std::string model;
  uint64_t seed = 0;
  int channels = 1;
  float temperature = 0;  // stream mode only; conversations are greedy
  bool json = false, quiet = false, allow_remote = false, keep_sessions = false;
};

struct LoadTarget {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::string model;  // the resolved name (the server's default when --model was not given)
  int vocab_size = 0;
};

// The first error an RPC ended with and the count per code, shared by the worker threads.
class ErrorTally {
 public:
  void Add(const grpc::Status& s);
  uint64_t total() const;
  std::map<std::string, uint64_t> by_code() const;
  // 0 when there was none, else 10 + the first error's code (after printing it).
  int ExitCode() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, uint64_t> by_code_;
  uint64_t total_ = 0;
  bool have_first_ = false;
  grpc::Status first_;
};

int RunStreamLoad(const GlobalOptions& g, const LoadOptions& o, const LoadTarget& t);        // load_stream.cc
int RunConversationLoad(const GlobalOptions& g, const LoadOptions& o, const LoadTarget& t);  // load_conversation.cc
int RunSoakLoad(const GlobalOptions& g, const LoadOptions& o, const LoadTarget& t);          // load_soak.cc

}  // namespace retain::client
