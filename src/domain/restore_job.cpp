#include "domain/restore_job.hpp"

#include <unistd.h>

#include <chrono>
#include <fstream>

#include <fmt/format.h>

#include "domain/backup_job.hpp"
#include "domain/verify.hpp"
#include "util/error.hpp"
#include "util/log.hpp"
#include "util/process.hpp"

namespace pgward {
namespace {

struct Session {
    std::string pid, user, application, client, state;
};

std::vector<Session> other_sessions(pg::Connection& conn, const std::string& database) {
    pg::Result r = conn.exec(
        "SELECT pid::text, coalesce(usename, ''), coalesce(application_name, ''), "
        "coalesce(client_addr::text, 'local'), coalesce(state, '') "
        "FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> "
        "pg_catalog.pg_backend_pid()",
        {database});
    std::vector<Session> out;
    out.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
        out.push_back({r.get(i, 0), r.get(i, 1), r.get(i, 2), r.get(i, 3), r.get(i, 4)});
    }
    return out;
}

std::string describe(const std::vector<Session>& sessions) {
    std::string out;
    for (const Session& s : sessions) {
        out += fmt::format("{}pid {} ({}, {}, {})", out.empty() ? "" : "; ", s.pid, s.user,
                           s.application.empty() ? "no application name" : s.application, s.client);
    }
    return out;
}

void terminate(pg::Connection& admin, const std::string& database) {
    for (const Session& s : other_sessions(admin, database)) {
        admin.exec("SELECT pg_catalog.pg_terminate_backend($1::int)", {s.pid});
        log::warn("ended a session on the restore target", {{"pid", s.pid}, {"user", s.user}});
    }
}

uint64_t user_tables(pg::Connection& conn) {
    return std::stoull(
        conn.query_value("SELECT count(*) FROM pg_catalog.pg_class c JOIN "
                         "pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND "
                         "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'")
            .value_or("0"));
}

// In one transaction pg_restore stops at its first error, and pg_restore 17+
// makes one on every server older than 17 before restoring anything.
void check_single_transaction(const pg::Tool& pg_restore, const pg::Connection& server,
                              const PgRestoreFlags& flags) {
    if (!flags.single_transaction ||
        !sets_unknown_transaction_timeout(pg_restore, server.server_version_num())) {
        return;
    }
    throw failure(
        fmt::format("pg_restore {} cannot restore into PostgreSQL {} in a single transaction: it "
                    "sends SET transaction_timeout, which {} does not have, and that error would "
                    "abort the restore; nothing was changed",
                    pg_restore.version.text(), server.server_version_text(),
                    server.server_version_text()),
        "restore without --single-transaction (pgward then ignores that one error), or with a "
        "pg_restore of the server's major when it reads the archive");
}

}  // namespace

void RestoreMessages::add(std::string_view line) {
    if (line.empty()) {
        return;
    }
    std::string text(line);
    if (text.find("does not exist, skipping") != std::string::npos) {
        benign.push_back(text);
        in_error_ = false;
        return;
    }
    if (text.rfind("pg_restore: error:", 0) == 0) {
        errors.push_back(text.substr(19));
        in_error_ = true;
        return;
    }
    if (in_error_ &&
        (text.rfind("Command was:", 0) == 0 || text.rfind("pg_restore: detail:", 0) == 0)) {
        errors.back() += " | " + text;
        return;
    }
    in_error_ = false;
}

bool sets_unknown_transaction_timeout(const pg::Tool& pg_restore, int server_version_num) {
    return pg_restore.version.major() >= 17 && server_version_num < 170000;
}

size_t RestoreMessages::tolerate(std::string_view marker) {
    size_t moved = 0;
    std::vector<std::string> kept;
    for (std::string& e : errors) {
        if (e.find(marker) != std::string::npos) {
            benign.push_back(std::move(e));
            ++moved;
        } else {
            kept.push_back(std::move(e));
        }
    }
    errors = std::move(kept);
    return moved;
}

namespace {

// Bytes read by a process and its descendants (pg_restore --jobs forks
// workers): what grows while pg_restore works through the archive.
uint64_t bytes_read_by_tree(pid_t pid) {
    uint64_t total = 0;
    std::ifstream io("/proc/" + std::to_string(pid) + "/io");
    std::string key;
    uint64_t value = 0;
    while (io >> key >> value) {
        if (key == "rchar:") {
            total += value;
        }
    }
    std::error_code ec;
    for (const auto& task :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
        std::ifstream children(task.path() / "children");
        pid_t child = 0;
        while (children >> child) {
            total += bytes_read_by_tree(child);
        }
    }
    return total;
}

}  // namespace

PgRestoreRun run_pg_restore(const pg::Tool& pg_restore, pg::Connection& conn,
                            const std::filesystem::path& archive, const PgRestoreFlags& flags,
                            const WatchdogLimits& limits) {
    Command command;
    command.argv = {pg_restore.path.string(), "--no-password", "--dbname=" + conn.child_conninfo()};
    if (flags.clean) {
        command.argv.push_back("--clean");
    }
    if (flags.if_exists) {
        command.argv.push_back("--if-exists");
    }
    if (flags.single_transaction) {
        command.argv.push_back("--single-transaction");
    }
    if (flags.no_owner) {
        command.argv.push_back("--no-owner");
    }
    if (flags.no_privileges) {
        command.argv.push_back("--no-privileges");
    }
    if (flags.jobs > 1) {
        command.argv.push_back("--jobs=" + std::to_string(flags.jobs));
    }
    command.argv.push_back(archive.string());
    // Its sessions carry a name of their own: the stall watchdog looks for
    // them working on the server (a long CREATE INDEX reads nothing more).
    const std::string application_name = fmt::format("pgward-pg_restore-{}", ::getpid());
    for (const auto& [name, value] : conn.child_environment()) {
        if (name != "PGAPPNAME" && name != "PGPASSWORD") {
            command.set_env.emplace_back(name, value);
        }
    }
    command.set_env.emplace_back("PGAPPNAME", application_name);
    if (auto password = conn.password_used()) {
        command.set_env.emplace_back("PGPASSWORD", *password);
    }
    // Its stderr is parsed ("pg_restore: error:", "Command was:"): untranslated.
    command.set_env.emplace_back("LC_MESSAGES", "C");
    command.unset_env = {"POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE", "LC_ALL"};

    const bool tolerate_timeout =
        sets_unknown_transaction_timeout(pg_restore, conn.server_version_num());
    PgRestoreRun run;
    Watchdog watchdog(limits, {fmt::format("restore into \"{}\"", conn.database()), "pg_restore",
                               fmt::format("pg_restore into \"{}\"", conn.database()),
                               "no bytes read and no statement running"});
    Child child = Child::spawn(command);
    uint64_t last_read = 0;
    PumpHandlers handlers;
    handlers.on_tick = [&] {
        uint64_t read = bytes_read_by_tree(child.pid());
        bool working = read != last_read;
        last_read = read;
        if (!working && limits.stall) {
            auto active = conn.query_value(
                "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity "
                "WHERE application_name = $1 AND state = 'active' "
                "AND wait_event_type IS DISTINCT FROM 'Lock'",
                {application_name});
            working = active && *active != "0";
        }
        if (working) {
            watchdog.progress();
        }
        watchdog.check();
    };
    handlers.on_stderr_line = [&](std::string_view line) {
        run.messages.add(line);
        if (line.rfind("pg_restore: error:", 0) == 0 &&
            !(tolerate_timeout && line.find(kTransactionTimeoutError) != std::string_view::npos)) {
            log::error("pg_restore", {{"line", std::string(line)}});
        }
    };
    ExitStatus status = pump(child, handlers);
    run.status = status.describe();
    size_t tolerated = 0;
    if (tolerate_timeout) {
        tolerated = run.messages.tolerate(kTransactionTimeoutError);
        if (tolerated > 0) {
            log::warn(fmt::format("pg_restore {} sets transaction_timeout, which PostgreSQL {} "
                                  "does not have; that error only skips a timeout and is ignored",
                                  pg_restore.version.text(), conn.server_version_text()),
                      {{"ignored", std::to_string(tolerated)}});
        }
    }
    // pg_restore exits 1 when it ignored errors; when every one was tolerated
    // above, everything was restored.
    bool exited_ok = status.ok() || (tolerated > 0 && status.signal == 0 && status.code == 1);
    run.ok = exited_ok && run.messages.errors.empty();
    if (!exited_ok && run.messages.errors.empty()) {
        run.messages.errors.push_back("pg_restore " + run.status);
    }
    return run;
}

RestoreResult run_restore_job(const RestoreRequest& request) {
    auto started = std::chrono::steady_clock::now();
    pg::ToolFinder finder(request.pg_bin);
    pg::Tool pg_restore = finder.find("pg_restore");

    // Preflight: nothing is touched before all of it passes.
    VerifyReport verify = verify_archive(request.archive, pg_restore, true);
    if (!verify.ok) {
        throw failure(
            fmt::format("{} cannot be restored: {}", request.archive.string(), verify.problem),
            verify.hint.empty() ? "pick another backup (`pgward list --verify`)" : verify.hint);
    }
    if (verify.checksum.state == ChecksumState::NoManifest) {
        log::warn("no manifest beside the archive: its checksum was not checked",
                  {{"file", request.archive.string()}});
    }
    RestoreResult result;
    result.archive_version = verify.version->text();

    std::optional<pg::Connection> target;
    try {
        target.emplace(pg::Connection::open(request.target, "pgward restore"));
    } catch (const Error& e) {
        bool missing = std::string(e.what()).find("does not exist") != std::string::npos;
        if (!missing) {
            throw;
        }
        if (!request.create) {
            throw failure(std::string(e.what()), "pass --create to create the target database");
        }
    }
    std::string database = target ? target->database() : pg::resolve_database_name(request.target);
    if (target) {
        check_single_transaction(pg_restore, *target, request.flags);
    } else {
        pg::Connection admin =
            pg::Connection::open(request.target.with_dbname("postgres"), "pgward restore");
        check_single_transaction(pg_restore, admin, request.flags);
        admin.exec("CREATE DATABASE " + pg::quote_identifier(database) + " TEMPLATE template0");
        log::info("created the target database", {{"database", database}});
        target.emplace(
            pg::Connection::open(request.target.with_dbname(database), "pgward restore"));
    }
    result.target_database = database;

    uint64_t tables = user_tables(*target);
    if (tables > 0) {
        if (!request.flags.clean) {
            throw failure(fmt::format("target database \"{}\" is not empty ({} user relations); "
                                      "nothing was changed",
                                      database, tables),
                          "to replace its contents pass --clean --if-exists and --yes");
        }
        if (!request.consent && !(request.ask_consent && request.ask_consent(database))) {
            throw failure(fmt::format("restoring over the non-empty database \"{}\" needs consent; "
                                      "nothing was changed",
                                      database),
                          "pass --yes, or run on a terminal and type the database name");
        }
    }
    auto sessions = other_sessions(*target, database);
    if (!sessions.empty() && !request.terminate_sessions) {
        throw failure(fmt::format("{} other session(s) use \"{}\": {}; nothing was changed",
                                  sessions.size(), database, describe(sessions)),
                      "stop the application first, or pass --terminate-sessions");
    }
    if (tables > 0 && request.safety_backup) {
        log::info("taking a safety backup of the target before replacing it",
                  {{"database", database}});
        BackupRequest safety;
        safety.connection = request.target;
        safety.dir = request.backup_dir;
        safety.pg_bin = request.pg_bin;
        safety.globals = false;
        safety.timeout = request.limits.timeout;
        safety.stall = request.limits.stall;
        BackupResult backup = run_backup_job(safety);
        result.safety_backup = backup.dump_path;
        log::info("safety backup written", {{"file", backup.dump_path.string()}});
    }
    if (request.terminate_sessions) {
        terminate(*target, database);
    }

    log::info("restore begin", {{"database", database},
                                {"file", request.archive.string()},
                                {"archive_version", result.archive_version},
                                {"pg_restore", pg_restore.version.text()}});
    PgRestoreRun run =
        run_pg_restore(pg_restore, *target, request.archive, request.flags, request.limits);
    result.success = run.ok;
    result.errors = run.messages.errors;
    result.benign_notices = run.messages.benign.size();
    result.duration_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    log::write(run.ok ? log::Level::Info : log::Level::Error, "restore end",
               {{"database", database},
                {"ok", run.ok ? "true" : "false"},
                {"errors", std::to_string(run.messages.errors.size())},
                {"benign_notices", std::to_string(run.messages.benign.size())},
                {"seconds", fmt::format("{:.3f}", result.duration_seconds)}});
    return result;
}

}  // namespace pgward
