#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "domain/encryption.hpp"
#include "domain/manifest.hpp"
#include "domain/smoke.hpp"
#include "domain/watchdog.hpp"
#include "pg/connection.hpp"

namespace pgward {

inline constexpr const char* kDrillReportFormat = "pgward-drill-report/1";

struct DrillRequest {
    pg::ConnectionOptions server;  // the server; its dbname is the source, never touched
    std::string source_database;
    std::string drill_db;
    std::filesystem::path report_dir = "reports";
    std::optional<std::filesystem::path> pg_bin;
    std::optional<VersionTable> version_table;
    bool keep_drill_db = false;

    // The seed's drill: migrate a scratch database, seed, dump, drop, restore.
    std::optional<std::filesystem::path> migrations_dir;
    std::optional<std::string> migrate_cmd;
    std::optional<std::filesystem::path> seed_sql;

    // The drill of an existing backup, optionally into a private sandbox cluster.
    std::optional<std::filesystem::path> backup;
    // Where `backup` came from when it was fetched (its s3:// URL); the
    // report's dump_source, else the backup's path.
    std::optional<std::string> backup_source;
    bool sandbox = false;

    // The point-in-time recovery drill (drill --pitr): the base backup and
    // WAL in `backup_dir` recovered in a sandbox to `pitr_target` (as
    // restore --pitr --to takes it; default: the restore point of the newest
    // dump of source_database that made one), then proven: the recovery
    // reached its target, amcheck finds nothing, and each table's rows and
    // fp1 equal that dump's manifest.
    bool pitr = false;
    std::filesystem::path backup_dir;
    std::optional<std::string> pitr_target;
    std::optional<uint64_t> system;

    WatchdogLimits limits;  // the drill's pg_dump and pg_restore
    // What opens an encrypted backup (decrypted as it is read; a sandbox's
    // pg_restore --jobs gets a private 0600 copy, removed afterwards).
    DecryptionKeys keys;
};

// The newest dump of `database` in `dir` that made a restore point on
// `system`'s WAL, with its manifest.
std::optional<Manifest> newest_dump_with_restore_point(const std::filesystem::path& dir,
                                                       const std::string& database,
                                                       uint64_t system);

struct DrillOutcome {
    bool success = false;
    std::filesystem::path report_path;
    nlohmann::ordered_json report;
};

// Refuses (usage error) a drill database that is the source or does not look
// like a drill database: the word "drill" must be one of its `_`-separated parts.
void check_drill_database(const std::string& drill_db, const std::string& source_database);

// Runs every step it can, records each with its time and error, writes the
// report atomically, and returns it. Only a refusal before the first step
// throws.
DrillOutcome run_drill(const DrillRequest& request);

}  // namespace pgward
