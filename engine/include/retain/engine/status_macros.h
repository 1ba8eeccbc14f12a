// Propagation helpers for absl::Status / absl::StatusOr. Engine code returns errors, never throws.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RETAIN_CONCAT_INNER_(a, b) a##b
#define RETAIN_CONCAT_(a, b) RETAIN_CONCAT_INNER_(a, b)

#define RETAIN_RETURN_IF_ERROR(expr)                \
  do {                                              \
    ::absl::Status retain_status_ = (expr);         \
    if (!retain_status_.ok()) return retain_status_; \
  } while (0)

#define RETAIN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();      \
  lhs = std::move(tmp).value()

// RETAIN_ASSIGN_OR_RETURN(auto x, MakeX()); declares/assigns x or returns the error.
#define RETAIN_ASSIGN_OR_RETURN(lhs, rexpr) \
  RETAIN_ASSIGN_OR_RETURN_IMPL_(RETAIN_CONCAT_(retain_statusor_, __LINE__), lhs, rexpr)
