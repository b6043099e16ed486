#include "yunzhi/platform/keyring.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "yunzhi/base/log.h"

namespace yunzhi::platform {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kCheckPlaintext = "yunzhi keyring check value v1";
constexpr std::string_view kCheckAssociatedData = "yunzhi-keyring-check";

std::string WrapAssociatedData(std::string_view tenant_id, int64_t version) {
  return fmt::format("yunzhi-tenant-key\n{}\n{}", tenant_id, version);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> DecodeHexKey(std::string_view hex) {
  while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.back()))) hex.remove_suffix(1);
  while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.front()))) hex.remove_prefix(1);
  if (hex.size() != 2 * crypto::DataCipher::kKeyBytes) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = HexValue(hex[i]), lo = HexValue(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

Error OsError(std::string_view what, const fs::path& path) {
  return UnavailableError(fmt::format("{} {}: {}", what, path.string(), std::strerror(errno)));
}

// The key in `path`, or nullopt when the file does not exist.
Result<std::optional<std::string>> ReadKeyFile(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::optional<std::string>();
  std::ifstream in(path, std::ios::binary);
  if (!in) return OsError("cannot read master key file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto key = DecodeHexKey(ss.str());
  if (!key) {
    return InvalidArgumentError(fmt::format(
        "master key file {} must hold exactly 64 hex characters (32 bytes)", path.string()));
  }
  return std::optional<std::string>(std::move(*key));
}

Status FsyncDir(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return OsError("cannot open directory", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return OsError("cannot fsync directory", dir);
  return OkStatus();
}

// Writes `key` as hex to a new 0600 file beside `path` (a name of its own for each caller:
// threads share a pid) and fsyncs it; returns the file's name.
Result<fs::path> WriteTempKeyFile(const fs::path& path, std::string_view key) {
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  const fs::path tmp = path.string() + ".tmp." + std::to_string(::getpid()) + "." +
                       crypto::RandomAlnum(12);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return OsError("cannot create master key file", tmp);
  const std::string text = crypto::HexEncode(key) + "\n";
  bool ok = ::fchmod(fd, 0600) == 0 &&
            ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok) {
    errno = saved;
    Error e = OsError("cannot write master key file", tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  return tmp;
}

// Writes `key` as hex to `path` atomically: a 0600 temp file, fsync, rename, fsync of the dir.
Status WriteKeyFileAtomic(const fs::path& path, std::string_view key) {
  YZ_ASSIGN_OR_RETURN(const fs::path tmp, WriteTempKeyFile(path, key));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return OsError("cannot rename into", path);
  return FsyncDir(path.parent_path());
}

// Creates `path` holding `key` unless it exists already (another process generating a key at
// the same moment): the file is complete before it appears (written under a temporary name,
// then hard-linked, which fails when the name is taken). Returns whether this call created it.
Result<bool> CreateKeyFileExclusive(const fs::path& path, std::string_view key) {
  YZ_ASSIGN_OR_RETURN(const fs::path tmp, WriteTempKeyFile(path, key));
  const bool created = ::link(tmp.c_str(), path.c_str()) == 0;
  const int saved = errno;
  ::unlink(tmp.c_str());
  if (!created && saved != EEXIST) {
    errno = saved;
    return OsError("cannot create master key file", path);
  }
  YZ_RETURN_IF_ERROR(FsyncDir(path.parent_path()));
  return created;
}

fs::path WithSuffix(const fs::path& p, std::string_view suffix) {
  return fs::path(p.string() + std::string(suffix));
}

bool OpensCheck(const crypto::DataCipher& cipher, std::string_view check_value) {
  auto opened = cipher.Open(check_value, kCheckAssociatedData);
  return opened && *opened == kCheckPlaintext;
}

}  // namespace

std::string Keyring::GenerateMasterKey() { return crypto::RandomBytes(crypto::DataCipher::kKeyBytes); }

std::string Keyring::master_key_source() const {
  return options_.master_key_hex ? std::string(kMasterKeyEnvVar) : options_.master_key_file.string();
}

Result<std::unique_ptr<Keyring>> Keyring::Open(store::Database& db, const KeyringOptions& options,
                                               const Clock& clock) {
  std::unique_ptr<Keyring> kr(new Keyring(db, options, clock));
  YZ_ASSIGN_OR_RETURN(auto meta, db.QueryOne("SELECT check_value FROM keyring_meta WHERE id = 1"));
  YZ_ASSIGN_OR_RETURN(auto count_row, db.QueryOne("SELECT COUNT(*) FROM tenant_keys"));
  const int64_t n_keys = count_row ? count_row->Int(0) : 0;
  if (!meta && n_keys > 0) {
    return FailedPreconditionError(
        "the keyring of this data dir is damaged: tenant keys exist but the master key check "
        "value is missing");
  }
  const std::string check_value = meta ? meta->Text(0) : std::string();

  std::string key;
  if (options.master_key_hex) {
    auto decoded = DecodeHexKey(*options.master_key_hex);
    if (!decoded) {
      return InvalidArgumentError(
          fmt::format("{} must be exactly 64 hex characters (32 bytes)", kMasterKeyEnvVar));
    }
    key = std::move(*decoded);
    YZ_ASSIGN_OR_RETURN(auto cipher, crypto::DataCipher::Create(key));
    if (meta && !OpensCheck(*cipher, check_value)) {
      return FailedPreconditionError(fmt::format(
          "master key does not match this data dir (the key in {} is not the one its data was "
          "encrypted with)",
          kMasterKeyEnvVar));
    }
  } else {
    if (options.master_key_file.empty()) {
      return InvalidArgumentError("no master key file configured (security.master_key_file)");
    }
    const fs::path& file = options.master_key_file;
    const fs::path next = WithSuffix(file, ".new");
    const fs::path prev = WithSuffix(file, ".prev");
    YZ_ASSIGN_OR_RETURN(auto current, ReadKeyFile(file));
    if (struct stat st{}; current && ::stat(file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      log::Warn("master_key_file_readable_by_others",
                {{"file", file.string()}, {"advice", "chmod 600 it"}});
    }
    if (meta) {
      // Candidates in order: the file, then a rotation's new and previous keys (a crash during
      // RotateMaster leaves the key that matches the database in one of them).
      std::optional<std::string> found;
      fs::path found_in;
      std::vector<std::pair<fs::path, std::optional<std::string>>> candidates;
      candidates.emplace_back(file, current);
      for (const fs::path& p : {next, prev}) {
        auto k = ReadKeyFile(p);
        if (k && *k) candidates.emplace_back(p, *k);  // an unreadable leftover is skipped
      }
      bool any = false;
      for (auto& [path, k] : candidates) {
        if (!k) continue;
        any = true;
        YZ_ASSIGN_OR_RETURN(auto cipher, crypto::DataCipher::Create(*k));
        if (OpensCheck(*cipher, check_value)) {
          found = *k;
          found_in = path;
          break;
        }
      }
      if (!any) {
        return FailedPreconditionError(fmt::format(
            "master key file {} is missing, but this data dir already holds encrypted tenant "
            "keys: restore the file from your backup (or set {}); a new key would make all "
            "tenant data unreadable, so none is generated",
            file.string(), kMasterKeyEnvVar));
      }
      if (!found) {
        return FailedPreconditionError(fmt::format(
            "master key does not match this data dir (the key in {} is not the one its data was "
            "encrypted with; restore the right key file or set {})",
            file.string(), kMasterKeyEnvVar));
      }
      key = std::move(*found);
      if (found_in != file) {
        // Finish an interrupted rotation: the matching key becomes the key file.
        YZ_RETURN_IF_ERROR(WriteKeyFileAtomic(file, key));
        log::Warn("master_key_rotation_completed",
                  {{"file", file.string()}, {"from", found_in.string()}});
      }
      std::error_code ec;
      fs::remove(next, ec);
      fs::remove(prev, ec);
    } else if (current) {
      key = std::move(*current);
    } else {
      key = GenerateMasterKey();
      YZ_ASSIGN_OR_RETURN(bool created, CreateKeyFileExclusive(file, key));
      if (!created) {
        // Another process generated one first: use that.
        YZ_ASSIGN_OR_RETURN(auto theirs, ReadKeyFile(file));
        if (!theirs) return UnavailableError("master key file " + file.string() + " vanished");
        key = std::move(*theirs);
      }
      kr->generated_ = created;
      if (created) log::Warn("master_key_generated",
                {{"file", file.string()},
                 {"advice",
                  "back this file up apart from the data dir: without it no tenant's encrypted "
                  "data can ever be read again"}});
    }
  }

  YZ_ASSIGN_OR_RETURN(kr->master_, crypto::DataCipher::Create(key));
  if (!meta) {
    // First start: record the check value. Another process may race us; the loser re-checks.
    YZ_RETURN_IF_ERROR(db.Execute(
        "INSERT INTO keyring_meta (id, check_value, next_key_version, rotated_at_ms) "
        "VALUES (1, ?, 1, ?) ON CONFLICT (id) DO NOTHING",
        {store::Blob{kr->master_->Seal(kCheckPlaintext, kCheckAssociatedData)},
         clock.NowUnixMs()}));
    YZ_ASSIGN_OR_RETURN(auto stored,
                        db.QueryOne("SELECT check_value FROM keyring_meta WHERE id = 1"));
    if (!stored || !OpensCheck(*kr->master_, stored->Text(0))) {
      return FailedPreconditionError(
          "master key does not match this data dir (another process initialised it with a "
          "different key)");
    }
  }
  return kr;
}

Result<std::shared_ptr<const crypto::DataCipher>> Keyring::LoadOrCreate(
    const std::string& tenant_id) {
  std::string key;
  auto done = db_.Transact([&](store::Executor& tx) -> Status {
    YZ_ASSIGN_OR_RETURN(auto row, tx.QueryOne("SELECT version, wrapped FROM tenant_keys WHERE "
                                              "tenant_id = ?",
                                              {tenant_id}));
    if (row) {
      auto opened = master_->Open(row->Text(1), WrapAssociatedData(tenant_id, row->Int(0)));
      if (!opened) {
        return InternalError(
            fmt::format("the data key of tenant '{}' cannot be unwrapped (corrupt row)", tenant_id));
      }
      key = std::move(*opened);
      return OkStatus();
    }
    YZ_ASSIGN_OR_RETURN(auto meta,
                        tx.QueryOne("SELECT next_key_version FROM keyring_meta WHERE id = 1"));
    if (!meta) return InternalError("keyring metadata is missing");
    const int64_t version = meta->Int(0);
    YZ_RETURN_IF_ERROR(
        tx.Execute("UPDATE keyring_meta SET next_key_version = ? WHERE id = 1", {version + 1}));
    key = crypto::RandomBytes(crypto::DataCipher::kKeyBytes);
    YZ_RETURN_IF_ERROR(tx.Execute(
        "INSERT INTO tenant_keys (tenant_id, version, wrapped, created_at_ms) VALUES (?, ?, ?, ?)",
        {tenant_id, version, store::Blob{master_->Seal(key, WrapAssociatedData(tenant_id, version))},
         clock_.NowUnixMs()}));
    log::Info("tenant_key_created", {{"tenant_id", tenant_id}, {"version", version}});
    return OkStatus();
  });
  if (!done) return done.error();
  YZ_ASSIGN_OR_RETURN(auto cipher, crypto::DataCipher::Create(key));
  return std::shared_ptr<const crypto::DataCipher>(std::move(cipher));
}

Result<std::shared_ptr<const crypto::DataCipher>> Keyring::ForTenant(std::string_view tenant_id) {
  if (tenant_id.empty()) return InvalidArgumentError("tenant id must not be empty", "tenant_id");
  std::lock_guard lock(mu_);
  if (auto it = cache_.find(tenant_id); it != cache_.end()) return it->second;
  YZ_ASSIGN_OR_RETURN(auto cipher, LoadOrCreate(std::string(tenant_id)));
  cache_.emplace(std::string(tenant_id), cipher);
  return cipher;
}

Status Keyring::DestroyTenantKey(std::string_view tenant_id) {
  if (tenant_id.empty()) return InvalidArgumentError("tenant id must not be empty", "tenant_id");
  std::lock_guard lock(mu_);
  YZ_ASSIGN_OR_RETURN(int64_t n, db_.Execute("DELETE FROM tenant_keys WHERE tenant_id = ?",
                                             {std::string(tenant_id)}));
  if (auto it = cache_.find(tenant_id); it != cache_.end()) cache_.erase(it);
  if (n > 0) log::Info("tenant_key_destroyed", {{"tenant_id", std::string(tenant_id)}});
  return OkStatus();
}

Status Keyring::RotateMaster(std::string_view new_key) {
  if (new_key.size() != crypto::DataCipher::kKeyBytes) {
    return InvalidArgumentError(
        fmt::format("a master key must be {} bytes", crypto::DataCipher::kKeyBytes));
  }
  std::lock_guard lock(mu_);
  if (options_.master_key_hex) {
    return FailedPreconditionError(fmt::format(
        "the master key comes from {}: it cannot be rotated in place (unset it to use a key file)",
        kMasterKeyEnvVar));
  }
  YZ_ASSIGN_OR_RETURN(auto next_cipher, crypto::DataCipher::Create(new_key));
  const fs::path& file = options_.master_key_file;
  const fs::path next = WithSuffix(file, ".new");
  const fs::path prev = WithSuffix(file, ".prev");

  // 1. The new key is durable before the database depends on it.
  YZ_RETURN_IF_ERROR(WriteKeyFileAtomic(next, new_key));
  // 2. Rewrap every tenant key and the check value in one transaction.
  auto rewrapped = db_.Transact([&](store::Executor& tx) -> Status {
    YZ_ASSIGN_OR_RETURN(auto rows, tx.Query("SELECT tenant_id, version, wrapped FROM tenant_keys"));
    for (const auto& r : rows) {
      const std::string tenant = r.Text(0);
      const std::string ad = WrapAssociatedData(tenant, r.Int(1));
      auto key = master_->Open(r.Text(2), ad);
      if (!key) {
        return InternalError(fmt::format(
            "the data key of tenant '{}' cannot be unwrapped (corrupt row); nothing rotated",
            tenant));
      }
      YZ_RETURN_IF_ERROR(tx.Execute("UPDATE tenant_keys SET wrapped = ? WHERE tenant_id = ?",
                                    {store::Blob{next_cipher->Seal(*key, ad)}, tenant}));
    }
    YZ_RETURN_IF_ERROR(tx.Execute(
        "UPDATE keyring_meta SET check_value = ?, rotated_at_ms = ? WHERE id = 1",
        {store::Blob{next_cipher->Seal(kCheckPlaintext, kCheckAssociatedData)},
         clock_.NowUnixMs()}));
    return OkStatus();
  });
  if (!rewrapped) {
    std::error_code ec;
    fs::remove(next, ec);
    return rewrapped.error();
  }
  master_ = std::move(next_cipher);
  // 3. Swap the files; from here on a crash is repaired by the next Open.
  std::error_code ec;
  if (fs::exists(file, ec) && ::rename(file.c_str(), prev.c_str()) != 0) {
    return OsError("master key rotated in the database, but cannot move aside", file);
  }
  if (::rename(next.c_str(), file.c_str()) != 0) {
    return OsError("master key rotated in the database, but cannot install", file);
  }
  YZ_RETURN_IF_ERROR(FsyncDir(file.parent_path()));
  // 4. The old key is no longer needed.
  fs::remove(prev, ec);
  log::Info("master_key_rotated", {{"file", file.string()}});
  return OkStatus();
}

}  // namespace yunzhi::platform
