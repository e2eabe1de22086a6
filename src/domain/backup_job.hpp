#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "domain/compression.hpp"
#include "domain/encryption.hpp"
#include "domain/manifest.hpp"
#include "domain/naming.hpp"
#include "pg/connection.hpp"
#include "pg/tools.hpp"

namespace pgward {

struct BackupRequest {
    pg::ConnectionOptions connection;
    std::filesystem::path dir;
    std::optional<std::filesystem::path> pg_bin;
    std::optional<size_t> retention;  // prune to this many after success
    bool globals = true;              // pg_dumpall --globals-only beside the dump
    // The watchdogs: pg_dump is killed when the whole backup exceeds `timeout`
    // or when it sends no byte for `stall`.
    std::optional<std::chrono::seconds> timeout;
    std::optional<std::chrono::seconds> stall;
    // How long pg_dump (and the row count) waits for a table another session
    // holds in a conflicting lock (ACCESS EXCLUSIVE) before the backup fails.
    std::optional<std::chrono::seconds> lock_wait;
    // POSTGRES_BACKUP_COMPRESSION / --compress: auto picks by pg_dump's major.
    CompressionSetting compression;
    // A restore's safety dump of the database it replaces (named and marked
    // "pre-restore"; the older ones beyond kSafetyDumpsKept are deleted), and
    // the file that restore is about to restore.
    bool pre_restore = false;
    // A named restore point (pg_create_restore_point) right after the dump's
    // snapshot, recorded in the manifest; by default only when this server's
    // WAL is archived in `dir` (wal/<system id>/): then recovering to it
    // reproduces the dump. A role not allowed to create one gets a warning,
    // never a failed backup.
    std::optional<bool> restore_point;
    std::optional<std::string> restoring;
    // When enabled: the dump and globals written encrypted (<stem>.dump.age),
    // counted and fingerprinted on the plaintext on the way, the manifest's
    // private part sealed to the same keys.
    EncryptionKeys encryption;
};

struct BackupResult {
    BackupId id;
    std::filesystem::path dump_path;
    Manifest manifest;
    std::vector<BackupId> pruned;
    size_t retained = 0;  // this database's backups (of this server) after retention
    bool globals_written = false;
};

// One backup, as `pgward backup`, the service and the drill take it:
// preflight (connect, versions, lock), pg_dump -Fc streamed through pgward
// (hashed as it streams) into <name>.dump.tmp, the archive checked, the
// manifest published, the dump fsynced and renamed into place, and retention
// applied only after all of that succeeded. Any failure throws and leaves no
// new file behind.
BackupResult run_backup_job(const BackupRequest& request);

// Refuses a pg_dump of an older major than the server, naming both versions
// and the client package to install.
void check_client_against_server(const pg::Tool& pg_dump, const pg::Connection& conn);

}  // namespace pgward
