#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "domain/encryption.hpp"
#include "domain/watchdog.hpp"
#include "pg/connection.hpp"
#include "pg/tools.hpp"

namespace pgward {

// pg_restore's stderr, sorted: real errors fail a restore; notices that
// --clean --if-exists produce for objects not there yet are benign.
struct RestoreMessages {
    std::vector<std::string> errors;
    std::vector<std::string> benign;
    void add(std::string_view line);
    // Moves the errors that contain `marker` to benign; returns how many.
    size_t tolerate(std::string_view marker);

  private:
    bool in_error_ = false;
};

struct PgRestoreRun {
    bool ok = false;
    std::string status;  // pg_restore's exit, described
    RestoreMessages messages;
};

struct PgRestoreFlags {
    bool clean = false;
    bool if_exists = false;
    bool single_transaction = false;
    bool no_owner = false;
    bool no_privileges = false;
    int jobs = 1;
};

// pg_restore 17 and newer open every restore with SET transaction_timeout = 0;
// a server older than 17 rejects it ("unrecognized configuration parameter").
// Outside a single transaction that one error only skips a timeout. Matched by
// the parameter's name, which no server translates.
inline constexpr std::string_view kTransactionTimeoutError = "transaction_timeout";
bool sets_unknown_transaction_timeout(const pg::Tool& pg_restore, int server_version_num);

// Runs pg_restore into the database `conn` is connected to (the password,
// if any, through pg_restore's own environment).
// Under `limits`: the whole run, and progress (bytes pg_restore's processes
// read, or one of its sessions running a statement not waiting on a lock),
// checked on `conn` about once a second.
// `on_tick`, when given, runs on every watchdog tick while pg_restore runs.
// An encrypted archive (.dump.age) is decrypted with `keys` on the way: into
// pg_restore's stdin, or, for --jobs (which needs a seekable file), into a
// private 0600 copy removed afterwards.
PgRestoreRun run_pg_restore(const pg::Tool& pg_restore, pg::Connection& conn,
                            const std::filesystem::path& archive, const PgRestoreFlags& flags,
                            const WatchdogLimits& limits = {},
                            const std::function<void()>& on_tick = {},
                            const DecryptionKeys& keys = {});
// The application_name pg_restore's sessions carry (this process's).
std::string pg_restore_application_name();

struct RestoreRequest {
    pg::ConnectionOptions target;  // its dbname is the target database
    // A .dump file, its name in backup_dir, or "latest": the newest backup of
    // `from_db` (default: the target's name) from the target's server.
    std::string backup = "latest";
    std::optional<std::string> from_db;
    std::filesystem::path backup_dir;  // where latest is found and the safety dump goes
    std::optional<std::filesystem::path> pg_bin;
    PgRestoreFlags flags;
    bool create = false;
    bool consent = false;  // --yes
    // Asked when consent is needed and not given (the command types it on a
    // TTY), with the one line that says what will be restored into what.
    std::function<bool(const std::string& database, const std::string& plan)> ask_consent;
    // Said once the backup is chosen, before anything is changed.
    std::function<void(const std::string& plan)> on_plan;
    bool safety_backup = true;
    bool terminate_sessions = false;
    WatchdogLimits limits;  // the safety dump's and pg_restore's
    // What opens an encrypted backup, and what the safety dump is encrypted
    // to (the backups' own setting: a safety dump holds the same rows).
    DecryptionKeys keys;
    EncryptionKeys safety_encryption;
};

struct RestoreResult {
    bool success = false;
    std::filesystem::path archive;
    // From the archive's manifest, when it has one.
    std::optional<std::string> source_database;
    std::optional<std::string> taken_at;  // the dump's finished_at
    std::optional<std::string> source_system_identifier;
    // One line: which file, which source database, taken when, into which
    // target: the consent prompt, the log and --json all show it.
    std::string plan;
    // How new connections were kept out during the restore.
    std::string connections_blocked;
    std::string target_database;
    std::string archive_version;
    std::optional<std::filesystem::path> safety_backup;
    std::vector<std::string> errors;
    size_t benign_notices = 0;
    double duration_seconds = 0;
};

// The user objects of the connected database, by kind ("relations",
// "functions", "types", "schemas", "large objects", "extensions", "other
// objects"): what the database's owner made, not what initdb did or an
// extension brought. Empty when the database holds none.
std::vector<std::pair<std::string, uint64_t>> user_objects(pg::Connection& conn);

// A restore blocks new connections to its target and puts the setting back
// afterwards; this file in the backup directory records the setting while it
// is changed, so that a restore that was killed is noticed.
std::string connection_block_file_name(std::string_view database);
struct LeftConnectionBlock {
    std::string database;
    bool allow_connections = true;
    int connection_limit = -1;
    std::string since;
    std::string undo_sql;  // the statement that puts the setting back
};
// Every record of a killed restore in `dir` (status and restore report them).
std::vector<LeftConnectionBlock> left_connection_blocks(const std::filesystem::path& dir);

// `pgward restore`: preflight (archive checks, pg_restore version, target
// reachable), guard rails (a target with any user object needs --clean and
// consent; a safety dump first; other sessions listed or ended; new
// connections blocked for the restore), then pg_restore.
// Refusals throw before anything changed; a restore that ran and failed
// returns success = false with the errors.
RestoreResult run_restore_job(const RestoreRequest& request);

}  // namespace pgward
