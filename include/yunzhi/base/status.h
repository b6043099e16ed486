// Errors as values.
//
// Expected outcomes (bad input, unknown model, quota exhausted, unauthorised) travel as
// `Result<T>` / `Status`, never as exceptions. `Code` is a small canonical set; each code maps to
// one HTTP status and one OpenAI error `type`, so an error produced deep in a module reaches the
// client unchanged in meaning. Propagate with YZ_RETURN_IF_ERROR / YZ_ASSIGN_OR_RETURN.
//
// Thread safety: all types here are plain values.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include <tl/expected.hpp>

namespace yunzhi {

enum class Code {
  kOk = 0,
  kInvalidArgument,       // 400 invalid_request_error: the request itself is wrong
  kUnauthenticated,       // 401 authentication_error: no or bad credentials
  kPermissionDenied,      // 403 permission_error: valid credentials, not allowed
  kNotFound,              // 404 not_found_error: the named thing does not exist
  kMethodNotAllowed,      // 405 invalid_request_error: route exists, method does not
  kAlreadyExists,         // 409 conflict_error: the thing to create exists already
  kFailedPrecondition,    // 409 invalid_request_error: state forbids it (e.g. data dir in use)
  kPayloadTooLarge,       // 413 invalid_request_error: body or upload above a limit
  kUnsupportedMediaType,  // 415 invalid_request_error: wrong Content-Type
  kResourceExhausted,     // 429 rate_limit_error: a rate limit; retry later
  kQuotaExceeded,         // 429 insufficient_quota: credits, balance or spend limit used up
  kCancelled,             // 499 cancelled: the caller went away
  kInternal,              // 500 server_error: a bug or an unexpected failure
  kUnimplemented,         // 501 server_error: not built (yet)
  kUnavailable,           // 503 server_error: overloaded or shutting down; retry later
  kDeadlineExceeded,      // 504 timeout: took too long
};

// Name of the code, e.g. "INVALID_ARGUMENT".
std::string_view CodeName(Code code);
// The HTTP status the code maps to.
int HttpStatus(Code code);
// The OpenAI error `type` the code maps to ("invalid_request_error", "server_error", ...).
std::string_view OpenAiErrorType(Code code);

struct Error {
  Code code = Code::kInternal;
  std::string message;
  // Optional: the request parameter at fault (OpenAI `param`), e.g. "messages[0].role".
  std::string param;
  // Optional: a machine-readable detail (OpenAI `code`), e.g. "invalid_api_key".
  std::string detail;

  Error() = default;
  Error(Code c, std::string msg, std::string param_name = {}, std::string detail_code = {})
      : code(c), message(std::move(msg)), param(std::move(param_name)), detail(std::move(detail_code)) {}

  // "NOT_FOUND: model 'x' does not exist"
  std::string ToString() const;
};

// A value or an Error. [[nodiscard]]: an ignored Result is a bug.
template <typename T>
class [[nodiscard]] Result : public tl::expected<T, Error> {
 public:
  using Base = tl::expected<T, Error>;
  using Base::Base;
  Result(Error e) : Base(tl::unexpect, std::move(e)) {}  // NOLINT: implicit by design
  Result(Base b) : Base(std::move(b)) {}                 // NOLINT
};

using Status = Result<void>;

inline Status OkStatus() { return {}; }

inline Error InvalidArgumentError(std::string m, std::string param = {}) {
  return {Code::kInvalidArgument, std::move(m), std::move(param)};
}
inline Error NotFoundError(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Error AlreadyExistsError(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Error FailedPreconditionError(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
inline Error PermissionDeniedError(std::string m) { return {Code::kPermissionDenied, std::move(m)}; }
inline Error UnauthenticatedError(std::string m) { return {Code::kUnauthenticated, std::move(m)}; }
inline Error InternalError(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Error UnavailableError(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Error UnimplementedError(std::string m) { return {Code::kUnimplemented, std::move(m)}; }

}  // namespace yunzhi

#define YZ_CONCAT_INNER_(a, b) a##b
#define YZ_CONCAT_(a, b) YZ_CONCAT_INNER_(a, b)

// Returns the error of `expr` (a Result or Status) from the enclosing function.
#define YZ_RETURN_IF_ERROR(expr)                              \
  do {                                                        \
    auto yz_status_ = (expr);                                 \
    if (!yz_status_) return std::move(yz_status_).error();    \
  } while (0)

// `YZ_ASSIGN_OR_RETURN(auto x, F());` assigns the value of F() or returns its error.
#define YZ_ASSIGN_OR_RETURN(lhs, expr) \
  YZ_ASSIGN_OR_RETURN_IMPL_(YZ_CONCAT_(yz_result_, __LINE__), lhs, expr)
#define YZ_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp) return std::move(tmp).error();        \
  lhs = std::move(*tmp)

// Programmer errors only (never input): always on / debug-only.
#define YZ_CHECK(cond)                                                           \
  do {                                                                           \
    if (!(cond)) ::yunzhi::internal::CheckFailed(#cond, __FILE__, __LINE__);     \
  } while (0)
#ifdef NDEBUG
#define YZ_DCHECK(cond) \
  do {                  \
  } while (0)
#else
#define YZ_DCHECK(cond) YZ_CHECK(cond)
#endif

namespace yunzhi::internal {
[[noreturn]] void CheckFailed(const char* cond, const char* file, int line);
}  // namespace yunzhi::internal
