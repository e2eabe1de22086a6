#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

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
PgRestoreRun run_pg_restore(const pg::Tool& pg_restore, pg::Connection& conn,
                            const std::filesystem::path& archive, const PgRestoreFlags& flags,
                            const WatchdogLimits& limits = {});

struct RestoreRequest {
    pg::ConnectionOptions target;  // its dbname is the target database
    std::filesystem::path archive;
    std::filesystem::path backup_dir;  // where the safety dump goes
    std::optional<std::filesystem::path> pg_bin;
    PgRestoreFlags flags;
    bool create = false;
    bool consent = false;  // --yes
    // Asked when consent is needed and not given (the command types it on a TTY).
    std::function<bool(const std::string& database)> ask_consent;
    bool safety_backup = true;
    bool terminate_sessions = false;
    WatchdogLimits limits;  // the safety dump's and pg_restore's
};

struct RestoreResult {
    bool success = false;
    std::string target_database;
    std::string archive_version;
    std::optional<std::filesystem::path> safety_backup;
    std::vector<std::string> errors;
    size_t benign_notices = 0;
    double duration_seconds = 0;
};

// `pgward restore`: preflight (archive checks, pg_restore version, target
// reachable), guard rails (non-empty target needs --clean and consent; a
// safety dump first; other sessions listed or ended), then pg_restore.
// Refusals throw before anything changed; a restore that ran and failed
// returns success = false with the errors.
RestoreResult run_restore_job(const RestoreRequest& request);

}  // namespace pgward
