#include "yunzhi/base/posix.h"

#include <fmt/format.h>

namespace yunzhi {

Error IoError(std::string_view what, const std::filesystem::path& path, int err) {
  return UnavailableError(fmt::format("{} {}: {}", what, path.string(), OsReason(err)));
}

}  // namespace yunzhi
