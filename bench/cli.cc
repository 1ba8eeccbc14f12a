#include "bench/cli.h"

#include "absl/strings/str_cat.h"
#include "engine/tools/flag_number.h"

namespace retain::bench {

absl::Status ParseFlags(int argc, char** argv, const Flags& flags, bool* help) {
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (k == "--help" || k == "-h") {
      *help = true;
      return absl::OkStatus();
    }
    if (auto b = flags.switches.find(k); b != flags.switches.end()) {
      *b->second = true;
      continue;
    }
    const bool known = flags.strings.count(k) || flags.ints.count(k) || flags.doubles.count(k);
    if (!known) return absl::InvalidArgumentError(absl::StrCat("unknown argument '", k, "' (--help lists them)"));
    if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(k, " needs a value"));
    const std::string v = argv[++i];
    if (auto s = flags.strings.find(k); s != flags.strings.end()) {
      *s->second = v;
    } else if (auto n = flags.ints.find(k); n != flags.ints.end()) {
      const IntFlag& f = n->second;
      if (absl::Status st = tools::ParseFlagNumber(k, v, f.value, f.lo, f.hi); !st.ok()) return st;
    } else if (auto d = flags.doubles.find(k); d != flags.doubles.end()) {
      if (absl::Status st = tools::ParseFlagNumber(k, v, d->second); !st.ok()) return st;
    }
  }
  return absl::OkStatus();
}

}  // namespace retain::bench
