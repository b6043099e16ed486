// Identifiers for everything the platform creates: "<prefix>_<ULID>", e.g.
// "req_01JDQ8M4Z9T6V2K3W5X7Y8Z0AB" (a request) or "key_..." (an API key record).
//
// The 26-character ULID is 48 bits of Unix milliseconds followed by 80 random bits, in Crockford
// base32 (digits and uppercase letters without I, L, O, U). Ids of one prefix therefore sort by
// creation time as plain strings, which keeps database indexes append-mostly and lets listings
// page by id. Within one process, ids made in the same millisecond are strictly increasing (the
// random part is incremented instead of redrawn). The random part comes from the OS CSPRNG, but
// ids are not secrets: never use one as a credential.
//
// Thread safety: all functions are thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "yunzhi/base/clock.h"

namespace yunzhi {

// Number of characters of the ULID part of an id.
inline constexpr size_t kUlidChars = 26;

// A new id "<prefix>_<ULID>" stamped with clock.NowUnixMs().
// Preconditions (checked): prefix is non-empty and made of [a-z0-9]; the clock reads between
// 1970 and the year 10889 (48 bits of milliseconds).
// Ordering: the ULID part is strictly greater than that of every id this process made earlier in
// the same millisecond (any prefix); across milliseconds, ids are ordered by timestamp, so a wall
// clock that jumps back can produce ids that sort before earlier ones.
std::string NewId(std::string_view prefix, const Clock& clock = *Clock::System());

// Whether `id` is exactly "<prefix>_" followed by a canonical (uppercase) ULID.
bool IsValidId(std::string_view id, std::string_view prefix);

// The creation time (Unix ms) encoded in an id of any prefix, or -1 when the text after the last
// '_' (the whole text when there is none) is not a canonical ULID.
int64_t IdTimestampMs(std::string_view id);

}  // namespace yunzhi
