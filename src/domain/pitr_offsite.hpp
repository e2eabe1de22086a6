#pragma once

// The offsite copy of what point-in-time recovery needs: a server's WAL
// archive and base backups, beside its dumps in the remote store, as
// wal/<system>/<file> and base/<system>/<name>/<file>. As with dumps,
// nothing there counts until it is proven: a WAL file only once a sums file
// (wal/<system>/sums-<its batch's last file>.json, uploaded after the batch
// was proven) names its size and SHA-256; a base backup only once its
// base.json, uploaded last with every file's SHA-256, is there. Recovery
// from the store fetches only what the sums and base.json vouch for, checked
// as it streams. With encryption keys set, every file goes up encrypted to
// them (age, as <name>.age); locally they stay as PostgreSQL wrote them.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "domain/base_backup.hpp"
#include "domain/encryption.hpp"
#include "domain/offsite.hpp"
#include "domain/pitr.hpp"
#include "storage/store.hpp"

namespace pgward {

// What a stored file must be: the object's name, size and SHA-256; when it
// went up encrypted (<name>.age), also the SHA-256 of what decrypts from it.
struct StoredDigest {
    std::string object;
    uint64_t size = 0;
    std::string sha256;
    std::optional<std::string> plain_sha256;
};

// The stores under a remote store's prefix holding one server's WAL and
// base backups.
storage::S3Store wal_store_of(const storage::S3Store& remote, uint64_t system);
storage::S3Store base_store_of(const storage::S3Store& remote, uint64_t system,
                               const std::string& name = {});

// The WAL files the sums in `wal_store` vouch for, by name.
std::map<std::string, StoredDigest> read_wal_sums(const storage::Store& wal_store);

struct WalOffsiteResult {
    std::vector<std::string> uploaded;  // WAL files uploaded and proven, oldest first
    uint64_t bytes = 0;
    std::optional<std::string> newest;  // the newest segment proven offsite
    bool busy = false;                  // another pgward was copying this archive: nothing done
};

// Copies a server's completed WAL files (segments and history files; never
// the .partial being written) the store lacks, oldest first, each checked
// before it goes up and proven after (read back and hashed, or its size),
// then names them in a sums file. Remembers what is proven between calls:
// the service's uploader calls copy() every check interval.
class WalOffsiteCopier {
  public:
    WalOffsiteCopier(std::filesystem::path backup_dir, uint64_t system,
                     const storage::S3Store& remote, RemoteProof proof, EncryptionKeys keys);
    WalOffsiteResult copy();

  private:
    std::filesystem::path backup_dir_;
    uint64_t system_;
    storage::S3Store store_;
    RemoteProof proof_;
    EncryptionKeys keys_;
    std::optional<std::set<std::string>> proven_;  // read from the sums at first use
};

// The base backups of `system` complete in the store (their base.json is
// there), oldest first; `path` is the folder's location in the store.
std::vector<BaseBackup> list_stored_base_backups(const storage::S3Store& remote, uint64_t system);
// The systems with base backups in the store.
std::vector<uint64_t> stored_base_systems(const storage::S3Store& remote);
// `system`, else the only one with base backups in the store (a failure
// when there is none, a usage error naming them when there are several).
uint64_t stored_system(const storage::S3Store& remote, std::optional<uint64_t> system);
// The manifest file of the newest complete backup of `database` in the
// store that made a restore point on `system`'s WAL (drill --pitr
// --remote's target when none is given).
std::optional<std::string> newest_stored_dump_with_restore_point(const storage::S3Store& remote,
                                                                 const std::string& database,
                                                                 uint64_t system);

struct BaseOffsiteResult {
    std::vector<std::string> uploaded;  // base backups uploaded and proven
    std::vector<std::string> pruned;    // removed from the store by retention
    // Unfinished uploads removed (files without base.json, no local base backup).
    std::vector<std::string> swept;
    size_t pruned_wal = 0;
    uint64_t bytes = 0;
    bool busy = false;  // another pgward was copying them: nothing done
};

// Copies every local base backup of `system` the store lacks (its files
// proven, then base.json with their SHA-256 last); with `keep`, then keeps
// the newest `keep` there and removes the WAL only the removed ones needed
// (never a segment a kept base backup needs).
BaseOffsiteResult copy_base_backups_offsite(const std::filesystem::path& backup_dir,
                                            uint64_t system, const storage::S3Store& remote,
                                            RemoteProof proof, std::optional<size_t> keep,
                                            const EncryptionKeys& keys);

// What point-in-time recovery from the store needs, fetched into a private
// directory (0700) under `parent` laid out as a backup directory: the dumps'
// manifests (their restore points), the base backup the target needs, and
// the WAL from its start on, each file checked against its SHA-256 as it
// streams (a mismatch throws naming the object, leaving nothing), an
// encrypted one decrypted with `keys`. The directory goes with the object.
class FetchedPitrArchive {
  public:
    // `target_text` as --to takes it (a backup's file name: its restore
    // point). `system`: needed when the store holds several servers.
    FetchedPitrArchive(const storage::S3Store& remote, std::optional<uint64_t> system,
                       const std::string& target_text, const std::filesystem::path& parent,
                       const DecryptionKeys& keys);
    ~FetchedPitrArchive();
    FetchedPitrArchive(const FetchedPitrArchive&) = delete;
    FetchedPitrArchive& operator=(const FetchedPitrArchive&) = delete;

    const std::filesystem::path& dir() const { return dir_; }
    uint64_t system() const { return system_; }
    const RecoveryTarget& target() const { return target_; }
    // The store's WAL folder, as messages name it.
    const std::string& wal_location() const { return wal_location_; }

  private:
    std::filesystem::path dir_;
    uint64_t system_ = 0;
    RecoveryTarget target_;
    std::string wal_location_;
};

}  // namespace pgward
