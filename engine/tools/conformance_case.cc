// Conformance case runner.
#include "engine/tools/conformance_case.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "retain/engine/safetensors.h"
#include "retain/engine/status_macros.h"

namespace retain::engine {
namespace {

absl::StatusOr<std::vector<std::vector<TokenId>>> IdLists(const nlohmann::json& j, const char* key,
                                                         const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' must be an array of arrays"));
  }
  std::vector<std::vector<TokenId>> out;
  for (const auto& list : *it) {
    if (!list.is_array()) return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' must hold arrays"));
    out.emplace_back();
    for (const auto& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": '", key, "' holds a non-id value"));
      }
      out.back().push_back(static_cast<TokenId>(id.get<int64_t>()));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<ConformanceCase> ReadConformanceCase(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  ConformanceCase c;
  RETAIN_ASSIGN_OR_RETURN(c.prompts, IdLists(j, "prompts", path));
  RETAIN_ASSIGN_OR_RETURN(c.decode, IdLists(j, "decode", path));
  if (c.prompts.size() != c.decode.size()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": 'prompts' and 'decode' differ in length"));
  }
  if (auto t = j.find("tolerance"); t != j.end() && t->is_object() && t->contains("max_abs") &&
                                    (*t)["max_abs"].is_number()) {
    c.max_abs = (*t)["max_abs"].get<double>();
  }
  return c;
}

absl::StatusOr<CaseOutput> RunConformanceCase(Model& model, const ConformanceCase& c, bool batch) {
  const int v = model.config().vocab_size;
  const int n = static_cast<int>(c.prompts.size());
  CaseOutput out;
  out.vocab = v;
  if (n == 0) return out;
  RETAIN_ASSIGN_OR_RETURN(void* states, model.AllocateStates(n));
  auto state = [&](int i) { return static_cast<char*>(states) + model.state_bytes() * i; };
  std::vector<std::vector<float>> prompt_logits(n), decode_logits(n);
  for (int i = 0; i < n; ++i) decode_logits[i].reserve(c.decode[i].size() * v);

  if (batch) {
    std::vector<SequenceInput> seqs;
    size_t rows = 0;
    for (int i = 0; i < n; ++i) {
      seqs.push_back({c.prompts[i], state(i), true});
      rows += c.prompts[i].size();
    }
    std::vector<float> all(rows * v);
    RETAIN_RETURN_IF_ERROR(model.Forward(seqs, absl::MakeSpan(all)));
    size_t off = 0;
    for (int i = 0; i < n; ++i) {
      prompt_logits[i].assign(all.begin() + off, all.begin() + off + c.prompts[i].size() * v);
      off += c.prompts[i].size() * v;
    }
    for (size_t step = 0;; ++step) {
      std::vector<TokenId> tokens;
      std::vector<void*> ptrs;
      std::vector<int> who;
      for (int i = 0; i < n; ++i) {
        if (step < c.decode[i].size()) {
          tokens.push_back(c.decode[i][step]);
          ptrs.push_back(state(i));
          who.push_back(i);
        }
      }
      if (tokens.empty()) break;
      std::vector<float> logits(tokens.size() * v);
      RETAIN_RETURN_IF_ERROR(model.Decode(tokens, ptrs, absl::MakeSpan(logits)));
      for (size_t b = 0; b < who.size(); ++b)
        decode_logits[who[b]].insert(decode_logits[who[b]].end(), logits.begin() + b * v, logits.begin() + (b + 1) * v);
    }
  } else {
    for (int i = 0; i < n; ++i) {
      prompt_logits[i].resize(c.prompts[i].size() * v);
      SequenceInput seq{c.prompts[i], state(i), true};
      RETAIN_RETURN_IF_ERROR(model.Forward({&seq, 1}, absl::MakeSpan(prompt_logits[i])));
      std::vector<float> row(v);
      for (TokenId t : c.decode[i]) {
        void* p = state(i);
        RETAIN_RETURN_IF_ERROR(model.Decode({&t, 1}, {&p, 1}, absl::MakeSpan(row)));
        decode_logits[i].insert(decode_logits[i].end(), row.begin(), row.end());
      }
    }
  }
  for (int i = 0; i < n; ++i) {
    out.tensors[absl::StrCat("prompt", i, ".logits")] = std::move(prompt_logits[i]);
    out.tensors[absl::StrCat("prompt", i, ".decode_logits")] = std::move(decode_logits[i]);
  }
  return out;
}

absl::Status WriteCaseOutput(const CaseOutput& out, const std::string& path) {
  std::vector<TensorToWrite> tensors;
  for (const auto& [name, values] : out.tensors) {
    tensors.push_back({name, DType::kF32, {static_cast<int64_t>(values.size() / out.vocab), out.vocab}, values});
  }
  return WriteSafetensors(path, tensors);
}

absl::StatusOr<double> MaxAbsDiff(const CaseOutput& actual, const std::string& expected_path) {
  RETAIN_ASSIGN_OR_RETURN(auto expected, SafetensorsFile::Open(expected_path));
  double worst = 0;
  for (const auto& [name, info] : expected->tensors()) {
    auto it = actual.tensors.find(name);
    if (it == actual.tensors.end()) return absl::NotFoundError(absl::StrCat("no output for '", name, "'"));
    if (static_cast<int64_t>(it->second.size()) != info.numel()) {
      return absl::InvalidArgumentError(absl::StrCat("'", name, "': ", it->second.size(), " values, expected ", info.numel()));
    }
    for (size_t i = 0; i < it->second.size(); ++i) {
      const double d = std::fabs(static_cast<double>(it->second[i]) - LoadAsFloat(info.data, info.dtype, i));
      if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
    }
  }
  return worst;
}

}  // namespace retain::engine
