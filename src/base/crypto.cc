#include "yunzhi/base/crypto.h"

#include <sodium.h>

#include <cstdlib>

#include "yunzhi/base/status.h"

namespace yunzhi::crypto {
namespace {
void EnsureInit() {
  // sodium_init is idempotent and thread-safe; a failure means no usable CSPRNG, which nothing
  // in the platform can work without.
  static const bool ok = sodium_init() >= 0;
  YZ_CHECK(ok);
}
}  // namespace

std::string HexEncode(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(bytes.size() * 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<unsigned char>(bytes[i]);
    out[2 * i] = kHex[b >> 4];
    out[2 * i + 1] = kHex[b & 15];
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  EnsureInit();
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  return HexEncode({reinterpret_cast<const char*>(digest), sizeof digest});
}

struct Sha256::State {
  crypto_hash_sha256_state st;
};

Sha256::Sha256() : state_(std::make_unique<State>()) {
  EnsureInit();
  crypto_hash_sha256_init(&state_->st);
}
Sha256::~Sha256() = default;

void Sha256::Update(std::string_view data) {
  crypto_hash_sha256_update(&state_->st, reinterpret_cast<const unsigned char*>(data.data()),
                            data.size());
}

std::string Sha256::FinishHex() {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&state_->st, digest);
  return HexEncode({reinterpret_cast<const char*>(digest), sizeof digest});
}

std::string RandomBytes(size_t n) {
  EnsureInit();
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

std::string RandomAlnum(size_t n) {
  EnsureInit();
  static constexpr char kAlphabet[] =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  // One CSPRNG call per batch of bytes (each call is a getrandom system call), with rejection
  // sampling: bytes >= 248 (= 4 * 62) are dropped so that every character is equally likely.
  std::string out;
  out.reserve(n);
  unsigned char buf[64];
  while (out.size() < n) {
    randombytes_buf(buf, sizeof buf);
    for (unsigned char b : buf) {
      if (b < 248 && out.size() < n) out.push_back(kAlphabet[b % 62]);
    }
  }
  return out;
}

uint64_t RandomU64() {
  EnsureInit();
  uint64_t v;
  randombytes_buf(&v, sizeof v);
  return v;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  EnsureInit();
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace yunzhi::crypto
