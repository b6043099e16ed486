#include "yunzhi/base/status.h"

#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace yunzhi {

namespace {
struct CodeInfo {
  std::string_view name;
  int http_status;
  std::string_view openai_type;
};

CodeInfo Info(Code code) {
  switch (code) {
    case Code::kOk: return {"OK", 200, ""};
    case Code::kInvalidArgument: return {"INVALID_ARGUMENT", 400, "invalid_request_error"};
    case Code::kUnauthenticated: return {"UNAUTHENTICATED", 401, "authentication_error"};
    case Code::kPermissionDenied: return {"PERMISSION_DENIED", 403, "permission_error"};
    case Code::kNotFound: return {"NOT_FOUND", 404, "not_found_error"};
    case Code::kMethodNotAllowed: return {"METHOD_NOT_ALLOWED", 405, "invalid_request_error"};
    case Code::kAlreadyExists: return {"ALREADY_EXISTS", 409, "conflict_error"};
    case Code::kFailedPrecondition: return {"FAILED_PRECONDITION", 409, "invalid_request_error"};
    case Code::kPayloadTooLarge: return {"PAYLOAD_TOO_LARGE", 413, "invalid_request_error"};
    case Code::kUnsupportedMediaType:
      return {"UNSUPPORTED_MEDIA_TYPE", 415, "invalid_request_error"};
    case Code::kResourceExhausted: return {"RESOURCE_EXHAUSTED", 429, "rate_limit_error"};
    case Code::kQuotaExceeded: return {"QUOTA_EXCEEDED", 429, "insufficient_quota"};
    case Code::kCancelled: return {"CANCELLED", 499, "cancelled"};
    case Code::kInternal: return {"INTERNAL", 500, "server_error"};
    case Code::kUnimplemented: return {"UNIMPLEMENTED", 501, "server_error"};
    case Code::kUnavailable: return {"UNAVAILABLE", 503, "server_error"};
    case Code::kDeadlineExceeded: return {"DEADLINE_EXCEEDED", 504, "timeout"};
  }
  return {"UNKNOWN", 500, "server_error"};
}
}  // namespace

std::string_view CodeName(Code code) { return Info(code).name; }
int HttpStatus(Code code) { return Info(code).http_status; }
std::string_view OpenAiErrorType(Code code) { return Info(code).openai_type; }

std::string Error::ToString() const { return fmt::format("{}: {}", CodeName(code), message); }

namespace internal {
void CheckFailed(const char* cond, const char* file, int line) {
  std::fprintf(stderr, "YZ_CHECK failed: %s at %s:%d\n", cond, file, line);
  std::abort();
}
}  // namespace internal

}  // namespace yunzhi
