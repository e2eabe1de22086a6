#include "domain/restore_job.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "domain/backup_job.hpp"
#include "domain/inspect.hpp"
#include "domain/manifest.hpp"
#include "domain/naming.hpp"
#include "domain/verify.hpp"
#include "pg/catalog.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/process.hpp"
#include "util/time.hpp"

namespace pgward {
namespace {

struct Session {
    std::string pid, user, application, client, state;
};

// Client sessions only: an autovacuum worker busy on the target (usual right
// after a big load) is no one to ask, and gives way to pg_restore's locks.
std::vector<Session> other_sessions(pg::Connection& conn, const std::string& database) {
    pg::Result r = conn.exec(
        "SELECT pid::text, coalesce(usename, ''), coalesce(application_name, ''), "
        "coalesce(client_addr::text, 'local'), coalesce(state, '') "
        "FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND pid <> "
        "pg_catalog.pg_backend_pid() AND backend_type = 'client backend'",
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

// The newest kinds first in the message: what an operator recognises.
constexpr const char* kUserObjectsSql = R"sql(
WITH ext AS (SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'),
tmp AS (SELECT oid FROM pg_catalog.pg_namespace
        WHERE nspname LIKE 'pg\_temp\_%' OR nspname LIKE 'pg\_toast\_temp\_%')
SELECT 'relations', count(*) FROM pg_catalog.pg_class o
 WHERE o.oid >= 16384 AND o.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND o.relpersistence <> 't'
   AND (o.tableoid, o.oid) NOT IN (SELECT * FROM ext)
UNION ALL SELECT 'functions', count(*) FROM pg_catalog.pg_proc o
 WHERE o.oid >= 16384 AND (o.tableoid, o.oid) NOT IN (SELECT * FROM ext)
UNION ALL SELECT 'types', count(*) FROM pg_catalog.pg_type o
 WHERE o.oid >= 16384 AND o.typrelid = 0 AND o.typnamespace NOT IN (SELECT oid FROM tmp)
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type e WHERE e.typarray = o.oid)
   AND (o.tableoid, o.oid) NOT IN (SELECT * FROM ext)
UNION ALL SELECT 'schemas', count(*) FROM pg_catalog.pg_namespace o
 WHERE o.oid >= 16384 AND o.oid NOT IN (SELECT oid FROM tmp)
   AND (o.tableoid, o.oid) NOT IN (SELECT * FROM ext)
UNION ALL SELECT 'large objects', count(*) FROM pg_catalog.pg_largeobject_metadata
UNION ALL SELECT 'extensions', count(*) FROM pg_catalog.pg_extension o WHERE o.oid >= 16384
UNION ALL SELECT 'other objects', (SELECT count(*) FROM (
   SELECT tableoid, oid FROM pg_catalog.pg_collation UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_conversion UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_operator UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_opfamily UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_cast UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_ts_config UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_ts_dict UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_event_trigger UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_foreign_data_wrapper UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_foreign_server UNION ALL
   SELECT tableoid, oid FROM pg_catalog.pg_publication) o
 WHERE o.oid >= 16384 AND (o.tableoid, o.oid) NOT IN (SELECT * FROM ext))
 + (SELECT count(*) FROM pg_catalog.pg_default_acl)
)sql";

std::string describe_objects(const std::vector<std::pair<std::string, uint64_t>>& objects) {
    std::string out;
    for (const auto& [kind, count] : objects) {
        out += fmt::format("{}{} {}", out.empty() ? "" : ", ", count, kind);
    }
    return out;
}

// "restoring app_20261202T101500Z.dump (database "app", taken
// 2026-12-02T10:15:07Z, 52.3 MiB) into "app" on host=db port=5432": the one
// line that says, before anything changes, what replaces what.
std::string plan_line(const RestoreResult& r, uint64_t size, const std::string& target_text) {
    std::string source = r.source_database
                             ? fmt::format("database \"{}\", taken {}", *r.source_database,
                                           r.taken_at.value_or("at an unknown time"))
                             : std::string("no manifest: source database and time unknown");
    return fmt::format("restoring {} ({}, {:.1f} MiB) into \"{}\" on {}", r.archive.string(),
                       source, static_cast<double>(size) / 1048576.0, r.target_database,
                       target_text);
}

// The statement that gives a database these connection settings back.
std::string connection_setting_sql(const std::string& database, bool allow, int limit) {
    return fmt::format("ALTER DATABASE {} ALLOW_CONNECTIONS {} CONNECTION LIMIT {}",
                       pg::quote_identifier(database), allow ? "true" : "false", limit);
}

// What a restore changed about who may connect to its target, and puts back.
// The record file is written before the change and removed after the undo,
// so a restore killed in between leaves it for status and the next restore.
class ConnectionBlock {
  public:
    // `admin`: a session on another database of the server (PostgreSQL
    // refuses ALLOW_CONNECTIONS false for the database a session is in).
    ConnectionBlock(pg::Connection& conn, std::optional<pg::Connection> admin,
                    std::filesystem::path record, int jobs)
        : conn_(conn),
          admin_(std::move(admin)),
          record_(std::move(record)),
          database_(conn.database()) {
        pg::Result r = conn_.exec(
            "SELECT datallowconn::text, datconnlimit::text, "
            "pg_catalog.current_setting('is_superuser') FROM pg_catalog.pg_database "
            "WHERE datname = pg_catalog.current_database()");
        allow_ = r.get(0, 0) == "true";
        limit_ = std::stoi(r.get(0, 1));
        superuser_ = r.get(0, 2) == "on";
        // One pg_restore session can be let in before the door closes for
        // everyone (ALLOW_CONNECTIONS false binds superusers too). With
        // --jobs, pg_restore connects again and again (its workers, then its
        // leader anew), so only a connection limit can be used: 0 keeps out
        // every role but superusers, which it does not bind; a non-superuser
        // restore leaves its own sessions room.
        if (jobs > 1 || !admin_) {
            mode_ = Mode::Limit;
            new_limit_ = superuser_ ? 0 : jobs + 1;
        }
    }
    ConnectionBlock(const ConnectionBlock&) = delete;
    ConnectionBlock& operator=(const ConnectionBlock&) = delete;
    ~ConnectionBlock() {
        try {
            undo();
        } catch (const Error& e) {
            log::error("could not put back who may connect to the restored database",
                       {{"database", database_}, {"reason", e.what()}, {"undo", undo_sql()}});
        }
    }

    // The limit goes on before pg_restore starts; ALLOW_CONNECTIONS false
    // once pg_restore's session is in.
    void before_pg_restore() {
        if (mode_ == Mode::Limit) {
            apply(fmt::format("CONNECTION LIMIT {}", new_limit_));
        }
    }
    // On each tick: close the door once pg_restore is in, and end any session
    // that is neither pgward's nor pg_restore's (a pool that reconnected).
    void tick(const std::string& application_name) {
        if (mode_ == Mode::AllowConnections && !applied_ && !refused_) {
            auto in = conn_.query_value(
                "SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity "
                "WHERE datname = pg_catalog.current_database() AND application_name = $1",
                {application_name});
            if (in && *in != "0") {
                apply("ALLOW_CONNECTIONS false");
            }
        }
        pg::Result r = conn_.exec(
            "SELECT pid::text, coalesce(usename, '') FROM pg_catalog.pg_stat_activity "
            "WHERE datname = pg_catalog.current_database() AND pid <> pg_catalog.pg_backend_pid() "
            "AND backend_type = 'client backend' AND application_name IS DISTINCT FROM $1",
            {application_name});
        for (int i = 0; i < r.rows(); ++i) {
            try {
                conn_.exec("SELECT pg_catalog.pg_terminate_backend($1::int)", {r.get(i, 0)});
                log::warn("ended a session that connected to the target during the restore",
                          {{"pid", r.get(i, 0)}, {"user", r.get(i, 1)}});
            } catch (const Error& e) {
                log::warn(
                    "a session connected to the target during the restore and could not "
                    "be ended",
                    {{"pid", r.get(i, 0)}, {"reason", e.what()}});
            }
        }
    }
    std::string describe() const {
        if (refused_) {
            return "not blocked (the server refused: " + refusal_ +
                   "); sessions that connected were ended";
        }
        if (mode_ == Mode::Limit) {
            return fmt::format("CONNECTION LIMIT {}{} during the restore", new_limit_,
                               superuser_ ? " (superusers are not bound by it)" : "");
        }
        if (!ever_applied_) {
            return "not blocked: pg_restore finished before the first check; sessions that "
                   "connected were ended";
        }
        return "ALLOW_CONNECTIONS false once pg_restore connected";
    }
    void undo() {
        if (!applied_) {
            return;
        }
        (admin_ ? *admin_ : conn_).exec(undo_sql());
        applied_ = false;
        log::info("new connections to the target are allowed again", {{"database", database_}});
        if (::unlink(record_.c_str()) != 0 && errno != ENOENT) {
            throw os_error("cannot remove", record_.string(), errno);
        }
    }

  private:
    enum class Mode { AllowConnections, Limit };
    std::string undo_sql() const { return connection_setting_sql(database_, allow_, limit_); }
    void apply(const std::string& setting) {
        nlohmann::ordered_json doc;
        doc["database"] = database_;
        doc["allow_connections"] = allow_;
        doc["connection_limit"] = limit_;
        doc["since"] = format_iso_utc(now_seconds());
        doc["pid"] = ::getpid();
        doc["undo"] = undo_sql();
        write_file_atomically(record_, doc.dump(2) + "\n", AtomicFile::Publish::Replace);
        applied_ = true;
        try {
            pg::Connection& server = admin_ ? *admin_ : conn_;
            server.exec(
                fmt::format("ALTER DATABASE {} {}", server.escape_identifier(database_), setting));
        } catch (const Error& e) {
            applied_ = false;
            remove_file_or_warn(record_);
            log::warn(
                "could not block new connections to the target; sessions that connect "
                "during the restore are ended as they appear",
                {{"database", database_}, {"reason", e.what()}});
            refused_ = true;  // not tried again
            refusal_ = e.what();
            return;
        }
        ever_applied_ = true;
        log::info("new connections to the target are blocked for the restore",
                  {{"database", database_}, {"how", setting}});
    }

    pg::Connection& conn_;
    std::optional<pg::Connection> admin_;
    std::filesystem::path record_;
    std::string database_;
    bool allow_ = true;
    int limit_ = -1;
    bool superuser_ = false;
    Mode mode_ = Mode::AllowConnections;
    int new_limit_ = -1;
    bool applied_ = false;
    bool ever_applied_ = false;
    bool refused_ = false;  // the server said no: sessions are ended instead
    std::string refusal_;
};

// A record left by a killed restore: put the setting back through another
// database of the server (the target itself may refuse connections).
void undo_left_block(const RestoreRequest& request, const std::string& database) {
    for (const LeftConnectionBlock& left : left_connection_blocks(request.backup_dir)) {
        if (left.database != database) {
            continue;
        }
        log::warn(
            "a restore of this database was interrupted and left new connections blocked; "
            "putting the setting back",
            {{"database", database}, {"since", left.since}, {"undo", left.undo_sql}});
        pg::Connection admin = pg::Connection::open(
            request.target.with_dbname(database == "postgres" ? "template1" : "postgres"),
            "pgward restore");
        admin.exec(left.undo_sql);
        std::filesystem::path record = request.backup_dir / connection_block_file_name(database);
        if (::unlink(record.c_str()) != 0 && errno != ENOENT) {
            throw os_error("cannot remove", record.string(), errno);
        }
    }
}

}  // namespace

std::string connection_block_file_name(std::string_view database) {
    return ".pgward-" + encode_db_name(database) + ".restore-block.json";
}

std::vector<LeftConnectionBlock> left_connection_blocks(const std::filesystem::path& dir) {
    std::vector<LeftConnectionBlock> out;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        std::string name = entry.path().filename().string();
        constexpr std::string_view kSuffix = ".restore-block.json";
        if (name.rfind(".pgward-", 0) != 0 || name.size() <= kSuffix.size() + 8 ||
            name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
            continue;
        }
        nlohmann::json doc = nlohmann::json::parse(read_file(entry.path()), nullptr, false);
        if (!doc.is_object()) {
            continue;
        }
        LeftConnectionBlock left;
        left.database = doc.value("database", "");
        left.allow_connections = doc.value("allow_connections", true);
        left.connection_limit = doc.value("connection_limit", -1);
        left.since = doc.value("since", "");
        left.undo_sql =
            connection_setting_sql(left.database, left.allow_connections, left.connection_limit);
        if (connection_block_file_name(left.database) == name) {
            out.push_back(std::move(left));
        }
    }
    return out;
}

std::vector<std::pair<std::string, uint64_t>> user_objects(pg::Connection& conn) {
    pg::Result r = conn.exec(kUserObjectsSql);
    std::vector<std::pair<std::string, uint64_t>> out;
    for (int i = 0; i < r.rows(); ++i) {
        uint64_t count = std::stoull(r.get(i, 1));
        if (count > 0) {
            out.emplace_back(r.get(i, 0), count);
        }
    }
    return out;
}

std::string pg_restore_application_name() {
    return fmt::format("pgward-pg_restore-{}", ::getpid());
}

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
                            const WatchdogLimits& limits, const std::function<void()>& on_tick,
                            const DecryptionKeys& keys) {
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
    // Declared before the child: destroyed after it.
    std::optional<DecryptingPipe> pipe;
    std::optional<DecryptedCopy> copy;
    if (is_encrypted_file(archive) && flags.jobs > 1) {
        copy.emplace(archive, keys, manifest_beside(archive));
        command.argv.push_back(copy->path().string());
    } else if (is_encrypted_file(archive)) {
        pipe.emplace(archive, keys, manifest_beside(archive));
        command.stdin_fd = pipe->child_stdin();
    } else {
        command.argv.push_back(archive.string());
    }
    // Its sessions carry a name of their own: the stall watchdog looks for
    // them working on the server (a long CREATE INDEX reads nothing more).
    const std::string application_name = pg_restore_application_name();
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
    if (pipe) {
        pipe->start();
    }
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
        if (on_tick) {
            on_tick();
        }
    };
    // The door closes at the first tick that sees pg_restore's session: a
    // fifth of a second, not the default second, so a short restore is not
    // over before it (the tick is two catalogue reads).
    handlers.tick_every = std::chrono::milliseconds(200);
    handlers.on_stderr_line = [&](std::string_view line) {
        run.messages.add(line);
        if (line.rfind("pg_restore: error:", 0) == 0 &&
            !(tolerate_timeout && line.find(kTransactionTimeoutError) != std::string_view::npos)) {
            log::error("pg_restore", {{"line", std::string(line)}});
        }
    };
    ExitStatus status = pump(child, handlers);
    run.status = status.describe();
    if (pipe) {
        try {
            pipe->finish();
        } catch (const Error& e) {
            // What pg_restore said next (an archive cut short) follows from this.
            run.messages.errors.insert(run.messages.errors.begin(), e.what());
        }
    }
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
    RestoreResult result;

    // A restore that was killed while it kept connections out: put that back
    // first (the target may refuse every connection until then).
    const std::string named_target = pg::resolve_database_name(request.target);
    undo_left_block(request, named_target);

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
    std::optional<pg::Connection> admin;
    if (!target) {
        admin.emplace(
            pg::Connection::open(request.target.with_dbname("postgres"), "pgward restore"));
    }
    pg::Connection& server = target ? *target : *admin;
    const std::string database = target ? target->database() : named_target;
    result.target_database = database;

    // Which backup: `latest` is the newest of one named source database from
    // this server (or, restoring onto a new server, from the only one).
    result.archive =
        resolve_backup(request.backup, request.backup_dir, request.from_db.value_or(database),
                       pg::system_identifier(server));

    // Preflight: nothing is touched before all of it passes.
    require_keys_for(result.archive, request.keys);
    VerifyReport verify = verify_archive(result.archive, pg_restore, true, request.keys);
    if (!verify.ok) {
        throw failure(
            fmt::format("{} cannot be restored: {}", result.archive.string(), verify.problem),
            verify.hint.empty() ? "pick another backup (`pgward list --verify`)" : verify.hint);
    }
    if (verify.checksum.state == ChecksumState::NoManifest) {
        log::warn("no manifest beside the archive: its checksum was not checked",
                  {{"file", result.archive.string()}});
    }
    result.archive_version = verify.version->text();
    if (const std::optional<Manifest>& m = verify.checksum.manifest) {
        result.source_database = m->database;
        result.taken_at = m->finished_at;
        result.source_system_identifier = m->system_identifier;
        if (m->kind == kKindPreRestore) {
            log::info("this is a safety dump a restore took",
                      {{"file", result.archive.filename().string()},
                       {"it_preceded_restoring", m->restoring.value_or("?")}});
        }
    }
    std::error_code size_error;
    uint64_t size = std::filesystem::file_size(result.archive, size_error);
    result.plan = plan_line(result, size_error ? 0 : size, server.target());
    log::info(result.plan);
    if (request.on_plan) {
        request.on_plan(result.plan);
    }
    check_single_transaction(pg_restore, server, request.flags);

    if (!target) {
        admin->exec("CREATE DATABASE " + admin->escape_identifier(database) +
                    " TEMPLATE template0");
        log::info("created the target database", {{"database", database}});
        target.emplace(
            pg::Connection::open(request.target.with_dbname(database), "pgward restore"));
        admin.reset();
    }

    // Anything the owner made counts, not only tables: functions, types,
    // schemas, large objects, extensions.
    std::vector<std::pair<std::string, uint64_t>> objects = user_objects(*target);
    if (!objects.empty()) {
        if (!request.flags.clean) {
            throw failure(fmt::format("target database \"{}\" is not empty ({}); nothing was "
                                      "changed",
                                      database, describe_objects(objects)),
                          "to replace its contents pass --clean --if-exists and --yes");
        }
        if (!request.consent &&
            !(request.ask_consent && request.ask_consent(database, result.plan))) {
            throw failure(fmt::format("restoring over the non-empty database \"{}\" ({}) needs "
                                      "consent; nothing was changed",
                                      database, describe_objects(objects)),
                          "pass --yes, or run on a terminal and type the database name");
        }
    }
    auto sessions = other_sessions(*target, database);
    if (!sessions.empty() && !request.terminate_sessions) {
        throw failure(fmt::format("{} other session(s) use \"{}\": {}; nothing was changed",
                                  sessions.size(), database, describe(sessions)),
                      "stop the application first, or pass --terminate-sessions");
    }
    if (!objects.empty() && request.safety_backup) {
        log::info("taking a safety dump of the target before replacing it",
                  {{"database", database}});
        BackupRequest safety;
        safety.connection = request.target;
        safety.dir = request.backup_dir;
        safety.pg_bin = request.pg_bin;
        safety.globals = false;
        safety.timeout = request.limits.timeout;
        safety.stall = request.limits.stall;
        safety.pre_restore = true;
        safety.encryption = request.safety_encryption;
        safety.restoring = result.archive.filename().string();
        BackupResult backup = run_backup_job(safety);
        result.safety_backup = backup.dump_path;
        log::info("safety dump written", {{"file", backup.dump_path.string()}});
    }
    if (request.terminate_sessions) {
        terminate(*target, database);
    }

    std::optional<pg::Connection> block_admin;
    try {
        block_admin.emplace(pg::Connection::open(
            request.target.with_dbname(database == "postgres" ? "template1" : "postgres"),
            "pgward restore"));
    } catch (const Error& e) {
        log::warn(
            "no session on the database \"postgres\" to close the target's door from; a "
            "connection limit is used instead",
            {{"reason", e.what()}});
    }
    ConnectionBlock block(*target, std::move(block_admin),
                          request.backup_dir / connection_block_file_name(database),
                          request.flags.jobs);
    block.before_pg_restore();
    const std::string application_name = pg_restore_application_name();

    log::info("restore begin", {{"database", database},
                                {"file", result.archive.string()},
                                {"archive_version", result.archive_version},
                                {"pg_restore", pg_restore.version.text()}});
    PgRestoreRun run = run_pg_restore(
        pg_restore, *target, result.archive, request.flags, request.limits,
        [&] { block.tick(application_name); }, request.keys);
    block.undo();
    result.connections_blocked = block.describe();  // what happened, not what was planned
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
