// Encryption at rest: the master key and per-tenant data keys (envelope encryption).
//
// The master key (32 random bytes) lives outside the database: in a file (64 hex characters,
// mode 0600; default <data_dir>/master.key) or in the environment variable YUNZHI_MASTER_KEY
// (64 hex characters), which wins when set. Each tenant has its own random 32-byte data key,
// stored in the `tenant_keys` table sealed ("wrapped") with the master key; the associated data
// is the tenant id and the key's version, so a wrapped key cannot be moved to another tenant.
// Documents and extracted text are sealed with the tenant's data key (crypto::DataCipher).
//
// A check value (a known string sealed with the master key) is stored in the database at first
// start. Opening with another key fails with "master key does not match this data dir (...)"
// before anything is written; a missing key file while the database has a check value fails too
// (a new key is never generated then: it would make every tenant's data unreadable).
//
// Crypto-shredding: DestroyTenantKey deletes the tenant's wrapped key; every ciphertext sealed
// with it is unreadable from then on, also for this process (the cached cipher is dropped).
//
// Master key rotation (RotateMaster) rewraps every tenant key in one transaction and replaces
// the key file in steps that a crash at any point leaves openable:
//   1. the new key is written to <file>.new (temp file, fsync, rename, fsync dir);
//   2. the database transaction rewraps the tenant keys and the check value;
//   3. <file> is renamed to <file>.prev, <file>.new to <file>, the directory fsynced;
//   4. <file>.prev is removed.
// Open tries <file>, then <file>.new, then <file>.prev, takes the one that opens the check value,
// and when that is not <file> puts it in place (step 3-4 again). The data keys themselves never
// change, so rotation does not touch any sealed document.
// Rotation must not run while another process (a server) holds the keyring open: that process
// would keep wrapping new tenant keys with the old master key. `yunzhi keys rotate-master`
// refuses while the server lock is held.
//
// Thread safety: Keyring is safe from many threads. Several processes may open a fresh data dir
// at once (the key file is created exclusively: one generates it, the others read it) and share
// it for ForTenant/DestroyTenantKey (creation is one write transaction that re-reads the row),
// but not for RotateMaster (see above). A key destroyed by another process stays usable in this
// process's cache until it restarts: delete tenants through the server while one runs.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "yunzhi/base/clock.h"
#include "yunzhi/base/crypto.h"
#include "yunzhi/base/status.h"
#include "yunzhi/store/database.h"

namespace yunzhi::platform {

inline constexpr std::string_view kMasterKeyEnvVar = "YUNZHI_MASTER_KEY";

struct KeyringOptions {
  // The master key file. Required unless `master_key_hex` is set.
  std::filesystem::path master_key_file;
  // The value of YUNZHI_MASTER_KEY when set (64 hex characters); it wins over the file, and is
  // never written anywhere.
  std::optional<std::string> master_key_hex;
};

class Keyring {
 public:
  // Loads (or, on a fresh data dir, generates) the master key and checks it against the
  // database. `db` and `clock` must outlive the keyring; the platform schema must be migrated.
  // Generating writes the key file (mode 0600) and logs a warning to back it up.
  // Errors: kFailedPrecondition "master key does not match this data dir (...)" for a wrong key,
  // and for a missing key file when the database already holds keys (nothing is written in
  // either case); kInvalidArgument for a malformed key (file or env var); kUnavailable when the
  // key file cannot be read or written; store errors.
  static Result<std::unique_ptr<Keyring>> Open(store::Database& db, const KeyringOptions& options,
                                               const Clock& clock = *Clock::System());

  // The cipher of `tenant_id`'s data key, creating the key on first use (exactly one key even
  // when several threads or processes ask at once). Cached: later calls do not touch the
  // database. The tenant's existence is not checked. Errors: kInvalidArgument for an empty
  // tenant id; kInternal when the stored key cannot be unwrapped (corrupt row); store errors.
  Result<std::shared_ptr<const crypto::DataCipher>> ForTenant(std::string_view tenant_id);

  // Deletes `tenant_id`'s data key (crypto-shredding) and drops it from the cache; a later
  // ForTenant creates a NEW key, so ciphertext sealed before stays unreadable. Ciphers already
  // handed out keep working for their holders: do not keep them beyond one operation.
  // Succeeds when the tenant has no key. Errors: kInvalidArgument for an empty id; store errors.
  Status DestroyTenantKey(std::string_view tenant_id);

  // Rewraps every tenant key under `new_key` (32 raw bytes) and replaces the key file (steps
  // above). Errors: kInvalidArgument for a key of the wrong length;
  // kFailedPrecondition when the master key came from YUNZHI_MASTER_KEY (rotate by hand: the
  // environment is not ours to change); kUnavailable for file errors; store errors. On error
  // the old key stays in force (unless the error came after the database commit, in which case
  // the new key is in force and the next Open completes the file steps).
  Status RotateMaster(std::string_view new_key);

  // 32 random bytes from the OS CSPRNG.
  static std::string GenerateMasterKey();

  // True when Open generated a new master key file.
  bool generated_master_key() const { return generated_; }
  // Where the master key came from: the file path, or "YUNZHI_MASTER_KEY".
  std::string master_key_source() const;

  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;

 private:
  Keyring(store::Database& db, const KeyringOptions& options, const Clock& clock)
      : db_(db), options_(options), clock_(clock) {}

  Result<std::shared_ptr<const crypto::DataCipher>> LoadOrCreate(const std::string& tenant_id);

  store::Database& db_;
  const KeyringOptions options_;
  const Clock& clock_;
  bool generated_ = false;
  std::mutex mu_;  // guards master_ and cache_, and serialises key creation and rotation
  std::unique_ptr<crypto::DataCipher> master_;
  std::map<std::string, std::shared_ptr<const crypto::DataCipher>, std::less<>> cache_;
};

}  // namespace yunzhi::platform
