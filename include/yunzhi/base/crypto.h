// Small cryptographic helpers over libsodium: hashing, randomness, constant-time comparison,
// authenticated encryption at rest, key derivation and keyed hashing of index terms.
// Thread safety: all functions are thread-safe (libsodium is initialised once, on first use).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "yunzhi/base/status.h"

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

// Authenticated encryption of data at rest (documents, extracted text) under one key.
// Sealed form: a version byte, a random 24-byte nonce, then XChaCha20-Poly1305 ciphertext + tag
// (41 bytes longer than the plaintext). `associated_data` (e.g. a tenant and document id) is
// authenticated but not stored: Open must be given the same bytes.
// Thread safety: Seal and Open are safe from many threads.
class DataCipher {
 public:
  // Errors: kInvalidArgument unless `key` is exactly kKeyBytes long.
  static Result<std::unique_ptr<DataCipher>> Create(std::string_view key);
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kOverheadBytes = 1 + 24 + 16;

  ~DataCipher();
  DataCipher(const DataCipher&) = delete;
  DataCipher& operator=(const DataCipher&) = delete;

  std::string Seal(std::string_view plaintext, std::string_view associated_data = {}) const;
  // Errors: kInternal when the input was not sealed by this key with this associated data
  // (tampered, truncated, wrong key).
  Result<std::string> Open(std::string_view sealed, std::string_view associated_data = {}) const;

  // A kKeyBytes key for another use of the same secret, named by `purpose` (e.g.
  // "fts-terms:ks_01..."): keyed BLAKE2b-256 of "yunzhi derived key v1\0" + purpose under this
  // key. Deterministic; different purposes give independent keys, and a derived key reveals
  // nothing about this one or its siblings. Destroying this key destroys every derived key.
  std::string DeriveKey(std::string_view purpose) const;

 private:
  explicit DataCipher(std::string_view key);
  unsigned char key_[kKeyBytes];
};

// Keyed hashing of search-index terms, so that a full-text index can be stored without the
// words it indexes: Token(term) is a deterministic 80-bit keyed BLAKE2b of the term, written as
// 16 lowercase RFC 4648 base32 characters ([a-z2-7], no padding) — one "word" for any plain
// ASCII tokenizer. Without the key nobody can tell which term a token stands for (beyond
// frequency analysis: equal terms give equal tokens); with 80 bits, two distinct terms of a
// 10^7-term vocabulary share a token with probability below 10^-10.
// Thread safety: Token and AppendToken are safe from many threads.
class TermHasher {
 public:
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kTokenChars = 16;
  // Errors: kInvalidArgument unless `key` is exactly kKeyBytes long.
  static Result<std::unique_ptr<TermHasher>> Create(std::string_view key);

  ~TermHasher();
  TermHasher(const TermHasher&) = delete;
  TermHasher& operator=(const TermHasher&) = delete;

  std::string Token(std::string_view term) const;
  // Appends Token(term) to `out` (no separator).
  void AppendToken(std::string_view term, std::string* out) const;

 private:
  explicit TermHasher(std::string_view key);
  unsigned char key_[kKeyBytes];
};

}  // namespace yunzhi::crypto
