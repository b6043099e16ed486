// Small cryptographic helpers over libsodium: hashing, randomness, constant-time comparison.
// Thread safety: all functions are thread-safe (libsodium is initialised once, on first use).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace yunzhi::crypto {

// SHA-256 of `data`, as 64 lowercase hex characters.
std::string Sha256Hex(std::string_view data);

// Incremental SHA-256 for data that arrives in pieces (files, uploads).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::string_view data);
  // The digest as 64 lowercase hex characters. Precondition: called once.
  std::string FinishHex();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// `n` bytes from the OS CSPRNG.
std::string RandomBytes(size_t n);
// `n` characters drawn uniformly from [0-9A-Za-z] (about 5.95 bits each) from the CSPRNG.
std::string RandomAlnum(size_t n);
// A uniformly random 64-bit value from the CSPRNG.
uint64_t RandomU64();

// Compares without leaking where the inputs differ (lengths may leak).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// Lowercase hex of arbitrary bytes.
std::string HexEncode(std::string_view bytes);

}  // namespace yunzhi::crypto
