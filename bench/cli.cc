#include "bench/cli.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace retain::bench {

absl::Status ParseFlags(int argc, char** argv, const Flags& flags) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (auto b = flags.switches.find(k); b != flags.switches.end()) {
      *b->second = true;
      continue;
    }
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(k, " needs a value (or is unknown)"));
    const std::string v = argv[++i];
    if (auto s = flags.strings.find(k); s != flags.strings.end()) {
      *s->second = v;
    } else if (auto n = flags.ints.find(k); n != flags.ints.end()) {
      if (!absl::SimpleAtoi(v, n->second) || *n->second < 0) return absl::InvalidArgumentError(absl::StrCat(k, ": bad number '", v, "'"));
    } else if (auto d = flags.doubles.find(k); d != flags.doubles.end()) {
      if (!absl::SimpleAtod(v, d->second)) return absl::InvalidArgumentError(absl::StrCat(k, ": bad number '", v, "'"));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", k, "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace retain::bench
