// multipart/form-data bodies (RFC 7578): the parts of an upload. Private to src/api/.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "yunzhi/base/status.h"

namespace yunzhi::api {

struct FormPart {
  std::string name;          // the form field name
  std::string filename;      // empty for plain fields
  std::string content_type;  // empty when the part did not say
  std::string data;
};

// The boundary parameter of a multipart Content-Type, or an error when `content_type` is not
// multipart/form-data or has no boundary.
Result<std::string> MultipartBoundary(std::string_view content_type);

// Splits `body` into its parts. Errors: kInvalidArgument naming what is malformed (missing
// boundary line, unterminated part, a part without Content-Disposition).
Result<std::vector<FormPart>> ParseMultipart(std::string_view body, std::string_view boundary);

}  // namespace yunzhi::api
