#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "domain/naming.hpp"
#include "domain/retention.hpp"
#include "util/lock.hpp"

namespace pgward {

struct BackupEntry {
    BackupId id;
    std::filesystem::path dump_path;
    uint64_t size_bytes = 0;
    bool has_manifest = false;
};

// The backup directory: which files are backups (strictly named, regular
// files; anything else is foreign and never touched), the per-database lock,
// cleanup of leftovers, and deletion of a backup with its sidecars.
class BackupRepository {
  public:
    explicit BackupRepository(std::filesystem::path dir) : dir_(std::move(dir)) {}

    const std::filesystem::path& dir() const { return dir_; }
    std::filesystem::path path_of(const std::string& file_name) const { return dir_ / file_name; }

    // Newest first. With a database, only that database's dumps. Backups, or
    // the safety dumps restores took (id.pre_restore).
    enum class Kind { Backups, SafetyDumps };
    std::vector<BackupEntry> list(const std::optional<std::string>& database = {},
                                  Kind kind = Kind::Backups) const;
    // The same backups' ids only, newest first: no stat per file where the
    // directory listing already says what each name is (retention, prune).
    // Backups only: safety dumps are never `latest` and never retained.
    std::vector<BackupId> ids(const std::string& database) const;
    // The safety dumps of a database (`restore` takes them), newest first.
    std::vector<BackupId> safety_ids(const std::string& database) const;
    // The databases that have backups (safety dumps aside).
    std::vector<std::string> databases() const;

    // The system identifier of the server a backup was taken from, from its
    // manifest; nullopt when the manifest is missing, unreadable or older
    // than the field.
    std::optional<std::string> system_of(const BackupId& id) const;
    // `ids` of one server: those whose manifest names `system` or no server
    // at all (manifests written before the field). With no system, all.
    std::vector<BackupId> ids_of_server(const std::string& database,
                                        const std::optional<std::string>& system) const;
    // The servers this database's backups came from (as their manifests say).
    std::set<std::string> systems_of(const std::string& database) const;

    // Keeps the newest `keep` safety dumps of the database and deletes the
    // rest; returns the deleted.
    std::vector<BackupId> bound_safety_dumps(const std::string& database, size_t keep) const;

    // Throws "previous run still active" when another pgward holds it.
    FileLock lock(const std::string& database) const;

    // Removes `.tmp` files of this database left by a crashed or killed run,
    // and sidecars whose dump is gone. Call only under the lock. Returns the
    // names removed.
    std::vector<std::string> remove_leftovers(const std::string& database) const;

    // Existing files that belong to a backup: its dump and its sidecars.
    std::vector<std::filesystem::path> files_of(const BackupId& id) const;

    // Deletes the dump first, then its sidecars, so a crash in between never
    // leaves a dump without its manifest.
    void remove_backup(const BackupId& id) const;

    // Applies a retention plan; returns the deleted backups.
    std::vector<BackupId> apply(const std::vector<RetentionDecision>& plan, bool dry_run) const;

  private:
    struct Listed {
        std::string name;
        ParsedFileName parsed;
        std::filesystem::file_type type;  // from the directory entry; unknown on some filesystems
    };
    std::vector<Listed> scan() const;
    bool is_dump(const Listed& f) const;  // a finished dump that is a regular file

    std::filesystem::path dir_;
};

}  // namespace pgward
