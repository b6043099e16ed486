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

namespace {
constexpr unsigned char kSealVersion = 1;
constexpr size_t kNonceBytes = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
static_assert(kNonceBytes == 24 && crypto_aead_xchacha20poly1305_ietf_ABYTES == 16 &&
              crypto_aead_xchacha20poly1305_ietf_KEYBYTES == DataCipher::kKeyBytes);
const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}
}  // namespace

Result<std::unique_ptr<DataCipher>> DataCipher::Create(std::string_view key) {
  if (key.size() != kKeyBytes) {
    return InvalidArgumentError("a data key must be exactly 32 bytes");
  }
  EnsureInit();
  return std::unique_ptr<DataCipher>(new DataCipher(key));
}

DataCipher::DataCipher(std::string_view key) { std::copy(key.begin(), key.end(), key_); }

DataCipher::~DataCipher() { sodium_memzero(key_, sizeof key_); }

std::string DataCipher::Seal(std::string_view plaintext, std::string_view associated_data) const {
  std::string out(kOverheadBytes + plaintext.size(), '\0');
  auto* o = reinterpret_cast<unsigned char*>(out.data());
  o[0] = kSealVersion;
  randombytes_buf(o + 1, kNonceBytes);
  unsigned long long n_cipher = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(o + 1 + kNonceBytes, &n_cipher, Bytes(plaintext),
                                             plaintext.size(), Bytes(associated_data),
                                             associated_data.size(), nullptr, o + 1, key_);
  return out;
}

Result<std::string> DataCipher::Open(std::string_view sealed,
                                     std::string_view associated_data) const {
  if (sealed.size() < kOverheadBytes || static_cast<unsigned char>(sealed[0]) != kSealVersion) {
    return InternalError("sealed data is truncated or of an unknown version");
  }
  std::string out(sealed.size() - kOverheadBytes, '\0');
  unsigned long long n_plain = 0;
  const unsigned char* s = Bytes(sealed);
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(out.data()), &n_plain, nullptr, s + 1 + kNonceBytes,
          sealed.size() - 1 - kNonceBytes, Bytes(associated_data), associated_data.size(), s + 1,
          key_) != 0) {
    return InternalError(
        "sealed data failed authentication (wrong key, or the bytes were altered)");
  }
  out.resize(n_plain);
  return out;
}

std::string DataCipher::DeriveKey(std::string_view purpose) const {
  // The label's NUL keeps "a" + "b\0c" and "a\0b" + "c" apart from any purpose text.
  static constexpr std::string_view kLabel{"yunzhi derived key v1\0", 22};
  std::string message;
  message.reserve(kLabel.size() + purpose.size());
  message.append(kLabel).append(purpose);
  std::string out(kKeyBytes, '\0');
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(), Bytes(message),
                     message.size(), key_, sizeof key_);
  return out;
}

Result<std::unique_ptr<TermHasher>> TermHasher::Create(std::string_view key) {
  if (key.size() != kKeyBytes) {
    return InvalidArgumentError("a term hashing key must be exactly 32 bytes");
  }
  EnsureInit();
  return std::unique_ptr<TermHasher>(new TermHasher(key));
}

TermHasher::TermHasher(std::string_view key) { std::copy(key.begin(), key.end(), key_); }

TermHasher::~TermHasher() { sodium_memzero(key_, sizeof key_); }

std::string TermHasher::Token(std::string_view term) const {
  std::string out;
  AppendToken(term, &out);
  return out;
}

void TermHasher::AppendToken(std::string_view term, std::string* out) const {
  static_assert(crypto_generichash_BYTES_MIN == 16 && kTokenChars * 5 == 80);
  static constexpr char kBase32[] = "abcdefghijklmnopqrstuvwxyz234567";
  // BLAKE2b's shortest output is 16 bytes; the first 10 (80 bits) become 16 base32 characters.
  unsigned char digest[crypto_generichash_BYTES_MIN];
  crypto_generichash(digest, sizeof digest, Bytes(term), term.size(), key_, sizeof key_);
  const size_t at = out->size();
  out->resize(at + kTokenChars);
  char* o = out->data() + at;
  for (size_t group = 0; group < 2; ++group) {  // two 40-bit groups of 5 bytes -> 8 chars each
    uint64_t bits = 0;
    for (size_t i = 0; i < 5; ++i) bits = (bits << 8) | digest[group * 5 + i];
    for (size_t i = 0; i < 8; ++i) o[group * 8 + i] = kBase32[(bits >> (35 - 5 * i)) & 31];
  }
}

}  // namespace yunzhi::crypto
