#include "domain/backup_job.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <atomic>
#include <chrono>
#include <exception>
#include <set>
#include <string_view>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "archive/summary.hpp"
#include "domain/repository.hpp"
#include "domain/retention.hpp"
#include "domain/smoke.hpp"
#include "domain/watchdog.hpp"
#include "pg/catalog.hpp"
#include "pg/environment.hpp"
#include "pg/tools.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/process.hpp"
#include "util/sha256.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace pgward {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr auto kProgressInterval = std::chrono::seconds(10);

// The connection that exports the dump's snapshot and, while pg_dump runs,
// counts in that same snapshot exactly the rows pg_dump writes of every table
// (pg/catalog.hpp), on a thread of its own.
class SnapshotSession {
  public:
    explicit SnapshotSession(pg::Connection conn) : conn_(std::move(conn)) {}
    SnapshotSession(const SnapshotSession&) = delete;
    SnapshotSession& operator=(const SnapshotSession&) = delete;

    ~SnapshotSession() {
        if (worker_.joinable()) {
            cancel();  // interrupted: stop a long count(*) instead of waiting for it
            worker_.join();
        }
    }

    std::string begin(std::optional<std::chrono::seconds> lock_wait,
                      const std::optional<std::string>& restore_point_name) {
        conn_.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
        if (lock_wait) {
            conn_.exec(fmt::format("SET LOCAL lock_timeout = {}", lock_wait->count() * 1000));
        }
        // As pg_dump runs: a table whose policies would hide rows from this
        // role is an error for both, never a smaller count.
        conn_.exec("SET LOCAL row_security = off");
        if (restore_point_name) {
            // At the snapshot (this first query takes it): the counters a
            // table written before the restore point changes.
            counters_at_snapshot_ = read_write_counters();
        }
        snapshot_at_ = std::chrono::steady_clock::now();
        std::string snapshot = conn_.query_value("SELECT pg_catalog.pg_export_snapshot()").value();
        if (restore_point_name) {
            create_restore_point(*restore_point_name);
        }
        dumped_ = pg::list_dumped_tables(conn_);
        for (const pg::DumpedTable& t : dumped_) {
            tables_.push_back(
                TableEntry{t.schema, t.name, std::nullopt, std::nullopt, t.extension});
        }
        auto version_table =
            conn_.query_value("SELECT pg_catalog.to_regclass('alembic_version') IS NOT NULL");
        if (version_table == "t") {
            schema_version_ = conn_.query_value(
                "SELECT pg_catalog.string_agg(version_num::text, ',' ORDER BY version_num) "
                "FROM alembic_version");
        }
        return snapshot;
    }

    void start_counting() {
        worker_ = std::thread([this] {
            try {
                if (restore_point_ && counters_at_snapshot_) {
                    find_tables_written_around_restore_point();
                }
                // In savepoints (pg/catalog.hpp): no lock kept beside pg_dump's.
                std::vector<uint64_t> rows = pg::count_dumped_rows(conn_, dumped_);
                for (size_t i = 0; i < rows.size(); ++i) {
                    tables_[i].rows = rows[i];
                }
                large_objects_ = std::stoull(conn_
                                                 .query_value("SELECT pg_catalog.count(*) FROM "
                                                              "pg_catalog.pg_largeobject_metadata")
                                                 .value_or("0"));
                conn_.exec("SAVEPOINT pgward_count");
                conditions_ = find_preexisting_conditions(conn_);
                conn_.exec("ROLLBACK TO SAVEPOINT pgward_count");
            } catch (...) {
                error_ = std::current_exception();
            }
            done_ = true;
        });
    }

    // Call after pg_dump exited: the exported snapshot is valid only while
    // this transaction is open, and pg_dump may import it late. wait() waits
    // for the counts under the operation's watchdog; finish() commits.
    void wait(const Watchdog& watchdog) const {
        while (!done_) {
            watchdog.check();
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
    std::vector<TableEntry> finish() {
        worker_.join();
        if (error_) {
            std::rethrow_exception(error_);
        }
        conn_.exec("COMMIT");
        return tables_;
    }

    const std::optional<std::string>& schema_version() const { return schema_version_; }
    const std::optional<Manifest::RestorePoint>& restore_point() const { return restore_point_; }
    const std::optional<std::vector<std::pair<std::string, std::string>>>& written_around() const {
        return written_around_;
    }
    uint64_t large_objects() const { return large_objects_; }
    const SmokeFindings& conditions() const { return conditions_; }

  private:
    // Statistics reach pg_stat_all_tables when a backend's transaction ends,
    // at most once a second: read again this long after the restore point,
    // they have the writes committed between it and the snapshot.
    static constexpr std::chrono::milliseconds kCountersSettle{1500};

    // Best effort (in a savepoint): without the counters every table is
    // compared, as before.
    std::optional<std::map<std::pair<std::string, std::string>, uint64_t>> read_write_counters() {
        conn_.exec("SAVEPOINT pgward_counters");
        try {
            auto counters = pg::table_write_counters(conn_);
            conn_.exec("RELEASE SAVEPOINT pgward_counters");
            return counters;
        } catch (const Error& e) {
            conn_.exec("ROLLBACK TO SAVEPOINT pgward_counters");
            log::warn("cannot read the tables' write counters", {{"error", e.what()}});
            return std::nullopt;
        }
    }

    void find_tables_written_around_restore_point() {
        const auto settled = restore_point_at_ + kCountersSettle;
        while (std::chrono::steady_clock::now() < settled && pending_interrupt() == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        auto later = read_write_counters();
        if (!later) {
            return;
        }
        restore_point_->counters_window_ms = std::chrono::duration<double, std::milli>(
                                                 std::chrono::steady_clock::now() - snapshot_at_)
                                                 .count();
        written_around_.emplace();
        for (const auto& [table, count] : *later) {
            auto before = counters_at_snapshot_->find(table);
            if (before == counters_at_snapshot_->end() || before->second != count) {
                written_around_->push_back(table);
            }
        }
    }

    // In a savepoint: a refusal (a role without EXECUTE on the function, a
    // server with wal_level=minimal) leaves the snapshot's transaction usable.
    void create_restore_point(const std::string& name) {
        conn_.exec("SAVEPOINT pgward_restore_point");
        try {
            auto lsn =
                conn_.query_value("SELECT pg_catalog.pg_create_restore_point($1)::text", {name});
            conn_.exec("RELEASE SAVEPOINT pgward_restore_point");
            restore_point_at_ = std::chrono::steady_clock::now();
            restore_point_ =
                Manifest::RestorePoint{name, lsn.value_or(""), std::nullopt, std::nullopt};
            restore_point_->gap_ms =
                std::chrono::duration<double, std::milli>(restore_point_at_ - snapshot_at_).count();
        } catch (const Error& e) {
            conn_.exec("ROLLBACK TO SAVEPOINT pgward_restore_point");
            log::warn(
                "no restore point for this backup: point-in-time recovery cannot be proven "
                "against it",
                {{"error", e.what()},
                 {"fix",
                  "GRANT EXECUTE ON FUNCTION pg_catalog.pg_create_restore_point(text) TO "
                  "the backup role, connected to this database (docs/pitr.md)"}});
        }
    }

    void cancel() {
        if (PGcancel* cancel = PQgetCancel(conn_.raw())) {
            char buffer[256];
            PQcancel(cancel, buffer, sizeof buffer);
            PQfreeCancel(cancel);
        }
    }

    pg::Connection conn_;
    std::vector<pg::DumpedTable> dumped_;
    std::vector<TableEntry> tables_;
    std::optional<std::string> schema_version_;
    std::optional<Manifest::RestorePoint> restore_point_;
    std::chrono::steady_clock::time_point snapshot_at_;
    std::chrono::steady_clock::time_point restore_point_at_;
    std::optional<std::map<std::pair<std::string, std::string>, uint64_t>> counters_at_snapshot_;
    std::optional<std::vector<std::pair<std::string, std::string>>> written_around_;
    uint64_t large_objects_ = 0;
    SmokeFindings conditions_;
    std::thread worker_;
    std::atomic<bool> done_{false};
    std::exception_ptr error_;
};

// pg_dump's stderr, re-logged line by line at the level its text names.
class DumpStderr {
  public:
    void relay(std::string_view line) {
        if (line.empty()) {
            return;
        }
        std::string_view text = line;
        if (text.rfind("pg_dump: ", 0) == 0) {
            text.remove_prefix(9);
        }
        if (text.rfind("error: ", 0) == 0) {
            level_ = log::Level::Error;
            last_error_ = std::string(text.substr(7));
        } else if (text.rfind("warning: ", 0) == 0) {
            level_ = log::Level::Warn;
        } else if (text.rfind("detail: ", 0) == 0 || text.rfind("hint: ", 0) == 0) {
            // continues the previous line at its level
            if (level_ == log::Level::Error) {
                last_error_ += "; " + std::string(text);
            }
        } else {
            level_ = log::Level::Info;
        }
        log::write(level_, "pg_dump", {{"line", std::string(line)}});
    }

    const std::string& last_error() const { return last_error_; }

  private:
    log::Level level_ = log::Level::Info;
    std::string last_error_;
};

// Parses the archive on a thread of its own while pg_dump's bytes stream to
// disk: one pass, and the second core does the parsing.
class StreamingSummary {
  public:
    StreamingSummary() {
        worker_ = std::thread([this] {
            try {
                summary_ = archive::summarize(queue_);
                // The reader stops at the last block it needs; whatever follows
                // must still be taken, or the pump would wait on a full queue.
                std::vector<char> rest(1 << 16);
                while (queue_.read(rest.data(), rest.size()) > 0) {
                }
            } catch (...) {
                error_ = std::current_exception();
                queue_.abort();  // the pump must never wait for a reader that stopped
            }
        });
    }
    ~StreamingSummary() {
        if (worker_.joinable()) {
            queue_.abort();
            worker_.join();
        }
    }
    StreamingSummary(const StreamingSummary&) = delete;
    StreamingSummary& operator=(const StreamingSummary&) = delete;

    // Waits while the reader is behind, under the operation's watchdog.
    void feed(const char* data, size_t size, const Watchdog& watchdog) {
        queue_.push(data, size, [&] { watchdog.check(); });
    }

    archive::ArchiveSummary finish() {
        queue_.close();
        worker_.join();
        if (error_) {
            std::rethrow_exception(error_);
        }
        return summary_;
    }

  private:
    archive::QueueSource queue_;
    archive::ArchiveSummary summary_;
    std::exception_ptr error_;
    std::thread worker_;
};

// The server writes a restore point into its WAL buffers only; the WAL is
// streamed as far as it is flushed, which on a quiet server may wait for the
// next checkpoint. A transaction that commits (a transaction id taken)
// flushes it now. Best effort: the restore point stays recorded either way.
void flush_wal(const pg::ConnectionOptions& connection) {
    try {
        pg::Connection conn = pg::Connection::open(connection, "pgward backup");
        conn.exec("SELECT pg_catalog.txid_current()");
    } catch (const Error& e) {
        log::warn("cannot flush the server's WAL after the restore point", {{"error", e.what()}});
    }
}

// "pgward <stem>" (at most 63 bytes: PostgreSQL's limit; a long database
// name gives way to a hash of it), when the backup is to have one.
std::optional<std::string> restore_point_name(const BackupRequest& request, const BackupId& id,
                                              const std::optional<std::string>& system) {
    bool wanted = false;
    if (request.restore_point) {
        wanted = *request.restore_point;
    } else if (system) {
        std::error_code ec;
        wanted = std::filesystem::is_directory(request.dir / "wal" / *system, ec);
    }
    if (!wanted || request.pre_restore) {
        return std::nullopt;
    }
    std::string name = "pgward " + id.stem();
    if (name.size() > 63) {
        BackupId hashed = id;
        hashed.database = sha256_hex(id.database).substr(0, 16);
        name = "pgward " + hashed.stem();
    }
    return name;
}

// The archive must hold every table the snapshot counted, with the same
// number of rows, and no other.
void check_rows(std::vector<TableEntry>& tables, const archive::ArchiveSummary& summary,
                const std::string& database) {
    std::vector<std::string> problems;
    const archive::TableLookup archived(summary.tables);
    for (TableEntry& t : tables) {
        const archive::TableSummary* a = archived.find(t.schema, t.name);
        if (a == nullptr) {
            problems.push_back(fmt::format("{}.{} is missing from the archive", t.schema, t.name));
            continue;
        }
        t.fingerprint = a->fingerprint;
        if (t.rows && *t.rows != a->rows) {
            problems.push_back(
                fmt::format("{}.{} has {} rows in the snapshot but {} in the archive", t.schema,
                            t.name, *t.rows, a->rows));
        }
    }
    std::set<std::pair<std::string_view, std::string_view>> counted;
    for (const TableEntry& t : tables) {
        counted.emplace(t.schema, t.name);
    }
    for (const archive::TableSummary& a : summary.tables) {
        if (counted.count({a.schema, a.name}) == 0) {
            problems.push_back(
                fmt::format("{}.{} is in the archive but was not counted", a.schema, a.name));
        }
    }
    if (!problems.empty()) {
        std::string text;
        for (const std::string& p : problems) {
            text += (text.empty() ? "" : "; ") + p;
        }
        throw failure(
            fmt::format("the archive of \"{}\" does not match the database: {}", database, text),
            "nothing was published; report this with the pg_dump version");
    }
}

// What pg_dump and pg_dumpall run with: the operator's libpq variables (the
// server is theirs), the password libpq used, and the output settings that
// make the dump the same whatever the operator's PGOPTIONS say (pg_dump pins
// DateStyle and the like itself; not bytea_output or TimeZone).
pg::Variables dump_environment(const pg::Variables& operator_env,
                               const std::optional<std::string>& password) {
    pg::Variables env;
    std::string options;
    for (const auto& [name, value] : operator_env) {
        if (name == "PGOPTIONS") {
            options = value;
        } else if (name != "PGTZ" && name != "PGPASSWORD") {
            env.emplace_back(name, value);
        }
    }
    env.emplace_back("PGTZ", "UTC");
    // Their stderr is read ("error: ", "permission denied"): untranslated.
    env.emplace_back("LC_MESSAGES", "C");
    env.emplace_back("PGOPTIONS", (options.empty() ? "" : options + " ") +
                                      "-c bytea_output=hex -c TimeZone=UTC");
    if (password) {
        env.emplace_back("PGPASSWORD", *password);
    }
    return env;
}

// A name no other backup has: the UTC second the dump starts. A backup of
// this database that already took that second makes this one wait for the
// next; names never run ahead of the clock, so one future-dated file (a
// clock that jumped, a file copied in) cannot drag every later name into the
// future. `latest` and retention rank such a file as the oldest.
BackupId choose_backup_id(const BackupRepository& repo, const std::string& database,
                          bool pre_restore, bool encrypted) {
    for (;;) {
        BackupId id{database, now_seconds(), pre_restore, encrypted};
        bool taken = false;
        for (const std::string& name : {id.dump_file(), id.manifest_file()}) {
            std::error_code ec;
            taken = taken || std::filesystem::symlink_status(repo.path_of(name), ec).type() !=
                                 std::filesystem::file_type::not_found;
        }
        if (!taken) {
            return id;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
}

// A pg_dump (or row count) that gave up at --lock-wait-timeout: say so, and
// who to look for, instead of relaying a bare "canceling statement".
void throw_if_lock_wait_ended(const BackupRequest& request, const std::string& database,
                              const std::string& reason) {
    // pg_dump bounds its LOCK TABLE with a statement timeout; the row count
    // session with lock_timeout.
    bool lock_timed_out = reason.find("lock timeout") != std::string::npos ||
                          (reason.find("statement timeout") != std::string::npos &&
                           reason.find("LOCK TABLE") != std::string::npos);
    if (request.lock_wait && lock_timed_out) {
        throw failure(fmt::format("backup of \"{}\" gave up after waiting {} s for a table "
                                  "another session holds locked: {}",
                                  database, request.lock_wait->count(), reason),
                      "find the holder in pg_locks / pg_stat_activity; --lock-wait-timeout "
                      "(POSTGRES_BACKUP_LOCK_WAIT_SECONDS) sets the wait");
    }
}

void check_magic(const std::filesystem::path& tmp, const std::string& magic) {
    if (magic != "PGDMP") {
        throw failure(fmt::format("pg_dump exited 0 but {} is not a custom-format archive (it "
                                  "does not start with PGDMP)",
                                  tmp.string()),
                      "check the pg_dump in use (--pg-bin / PGWARD_PG_BIN)");
    }
}

void check_list_run(const CapturedRun& run) {
    if (!run.status.ok()) {
        std::string first = run.err.substr(0, run.err.find('\n'));
        throw failure(fmt::format("the new archive does not pass pg_restore --list ({}): {}",
                                  run.status.describe(), first),
                      "the dump is damaged; nothing was published");
    }
}

// `pg_restore --list` reading the plaintext as it streams, for an encrypted
// dump (the backup host holds only public keys: the file cannot be read back).
// Its output is drained on a thread; what it does not read (it may stop after
// the table of contents) is not sent.
class StreamedListCheck {
  public:
    explicit StreamedListCheck(const pg::Tool& pg_restore) {
        int fds[2];
        if (::pipe2(fds, O_CLOEXEC) != 0) {
            throw failure(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
        }
        Command command = pg::list_archive_command(pg_restore, {});
        command.stdin_fd = fds[0];
        try {
            child_.emplace(Child::spawn(command));
        } catch (...) {
            ::close(fds[0]);
            ::close(fds[1]);
            throw;
        }
        ::close(fds[0]);
        write_fd_ = fds[1];
        worker_ = std::thread([this] {
            try {
                PumpHandlers handlers;
                handlers.on_stdout = [](const char*, size_t) {};
                handlers.on_stderr_line = [this](std::string_view line) {
                    if (err_.size() < 4096) {
                        err_ += std::string(line) + "\n";
                    }
                };
                handlers.stop_on_interrupt = false;
                status_ = pump(*child_, handlers);
            } catch (...) {
                error_ = std::current_exception();
            }
        });
    }
    ~StreamedListCheck() {
        close_input();
        if (worker_.joinable()) {
            child_->signal(SIGKILL);
            worker_.join();
        }
    }
    StreamedListCheck(const StreamedListCheck&) = delete;
    StreamedListCheck& operator=(const StreamedListCheck&) = delete;

    void feed(const char* data, size_t size) {
        while (size > 0 && write_fd_ >= 0) {
            ssize_t n = ::write(write_fd_, data, size);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                close_input();  // EPIPE: it read what it needed
                return;
            }
            data += n;
            size -= static_cast<size_t>(n);
        }
    }

    void finish() {
        close_input();
        worker_.join();
        if (error_) {
            std::rethrow_exception(error_);
        }
        check_list_run(CapturedRun{status_, {}, err_});
    }

  private:
    void close_input() {
        if (write_fd_ >= 0) {
            ::close(write_fd_);
            write_fd_ = -1;
        }
    }

    std::optional<Child> child_;
    int write_fd_ = -1;
    std::thread worker_;
    ExitStatus status_;
    std::string err_;
    std::exception_ptr error_;
};

std::optional<std::filesystem::path> run_dumpall(
    const pg::Tool& tool, const std::filesystem::path& path, const std::string& conninfo,
    const std::vector<std::pair<std::string, std::string>>& env,
    const std::vector<std::string>& unset_env, bool no_role_passwords,
    const EncryptionKeys& encryption, std::string* error) {
    Command command;
    command.argv = {tool.path.string(), "--globals-only", "--no-password", "--dbname=" + conninfo};
    if (no_role_passwords) {
        command.argv.push_back("--no-role-passwords");
    }
    command.set_env = env;
    command.unset_env = unset_env;
    AtomicFile file(path, AtomicFile::Publish::NoReplace);
    HeadTailText last_error;  // its first and last 64 KiB
    std::unique_ptr<crypto::AgeEncryptor> encryptor;
    if (encryption.enabled()) {
        encryptor =
            encryption.encryptor([&](const char* data, size_t size) { file.write(data, size); });
    }
    Child child = Child::spawn(command);
    PumpHandlers handlers;
    handlers.on_stdout = [&](const char* data, size_t size) {
        if (encryptor) {
            encryptor->write(data, size);
        } else {
            file.write(data, size);
        }
    };
    handlers.on_stderr_line = [&](std::string_view line) {
        if (!line.empty()) {
            last_error.append(last_error.empty() ? "" : "; ");
            last_error.append(line);
        }
    };
    ExitStatus status = pump(child, handlers);
    if (!status.ok()) {
        *error = fmt::format("{}: {}", status.describe(), last_error.str());
        return std::nullopt;
    }
    if (encryptor) {
        encryptor->finish();
    }
    file.commit();
    return path;
}

std::optional<std::filesystem::path> write_globals(
    const pg::ToolFinder& finder, const std::filesystem::path& path, const std::string& conninfo,
    const std::vector<std::pair<std::string, std::string>>& env,
    const std::vector<std::string>& unset_env, const EncryptionKeys& encryption) {
    try {
        pg::Tool tool = finder.find("pg_dumpall");
        std::string error;
        if (auto written =
                run_dumpall(tool, path, conninfo, env, unset_env, false, encryption, &error)) {
            return written;
        }
        if (error.find("permission denied") == std::string::npos) {
            log::warn("globals not written; the backup goes on without them", {{"reason", error}});
            return std::nullopt;
        }
        // Reading role passwords needs a superuser; everything else does not.
        // Said once per process: the service would repeat it every cycle.
        static std::atomic<bool> said{false};
        if (!said.exchange(true)) {
            log::warn(
                "no privilege to read role passwords; globals are written with "
                "--no-role-passwords",
                {{"reason", error}});
        }
        if (auto written =
                run_dumpall(tool, path, conninfo, env, unset_env, true, encryption, &error)) {
            return written;
        }
        log::warn("globals not written; the backup goes on without them", {{"reason", error}});
    } catch (const Error& e) {
        log::warn("globals not written; the backup goes on without them", {{"reason", e.what()}});
    }
    return std::nullopt;
}

}  // namespace

void check_client_against_server(const pg::Tool& pg_dump, const pg::Connection& conn) {
    pg::Version server{conn.server_version_num()};
    if (pg_dump.version.major_key() < server.major_key()) {
        throw failure(
            fmt::format("{} is version {} but the server is PostgreSQL {}: pg_dump cannot dump a "
                        "server newer than itself",
                        pg_dump.path.string(), pg_dump.version.text(), conn.server_version_text()),
            fmt::format("install postgresql-client-{} (or newer) and point --pg-bin / "
                        "PGWARD_PG_BIN at its bin directory",
                        server.major_text()));
    }
}

BackupResult run_backup_job(const BackupRequest& request) {
    auto clock_start = SteadyClock::now();
    pg::ToolFinder finder(request.pg_bin);
    pg::Tool pg_dump = finder.find("pg_dump");
    pg::Tool pg_restore = finder.find("pg_restore");
    // A method this pg_dump cannot write is refused before anything is made.
    const CompressionChoice compression = choose_compression(request.compression, pg_dump.version);

    ensure_directory(request.dir);
    BackupRepository repo(request.dir);

    pg::Connection conn = pg::Connection::open(request.connection, "pgward backup");
    check_client_against_server(pg_dump, conn);
    const std::string database = conn.database();
    const std::string target = conn.target();
    const std::string child_conninfo = conn.child_conninfo();
    const std::optional<std::string> password = conn.password_used();
    const pg::Variables snapshot_env = conn.child_environment();
    const std::string server_version = conn.server_version_text();
    // Read before the snapshot's transaction, which a refused call would end.
    const std::optional<std::string> system = pg::system_identifier(conn);

    FileLock lock = repo.lock(database);
    repo.remove_leftovers(database);

    const bool encrypted = request.encryption.enabled();
    BackupId id = choose_backup_id(repo, database, request.pre_restore, encrypted);
    TimePoint started = now_seconds();
    std::filesystem::path dump_path = repo.path_of(id.dump_file());

    SnapshotSession snapshot(std::move(conn));
    std::string snapshot_id =
        snapshot.begin(request.lock_wait, restore_point_name(request, id, system));
    if (snapshot.restore_point()) {
        flush_wal(request.connection);
    }

    Command command;
    command.argv = {pg_dump.path.string(), "--format=custom", "--no-password",
                    "--snapshot=" + snapshot_id, "--dbname=" + child_conninfo};
    command.argv.insert(command.argv.end(), compression.pg_dump_args.begin(),
                        compression.pg_dump_args.end());
    if (request.lock_wait) {
        command.argv.push_back(
            fmt::format("--lock-wait-timeout={}", request.lock_wait->count() * 1000));
    }
    command.set_env = dump_environment(snapshot_env, password);
    command.unset_env = {"POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE", "LC_ALL"};

    log::info("backup begin",
              {{"database", database},
               {"file", dump_path.string()},
               {"server_version", server_version},
               {"pg_dump", pg_dump.version.text()},
               {"compression", compression.text()},
               {"encrypted_to",
                encrypted ? fmt::format("{}", fmt::join(request.encryption.fingerprints(), ", "))
                          : std::string("not encrypted")},
               {"target", target}});

    AtomicFile dump(dump_path, AtomicFile::Publish::NoReplace);
    Sha256 hash;  // of the file as written: the ciphertext when encrypted
    // Encrypted: pg_dump's plaintext goes to the reader (counts, fp1) and to
    // pg_restore --list as it streams, and only ciphertext reaches the disk.
    std::unique_ptr<crypto::AgeEncryptor> encryptor;
    std::optional<StreamedListCheck> list_check;
    if (encrypted) {
        encryptor = request.encryption.encryptor([&](const char* data, size_t size) {
            hash.update(data, size);
            dump.write(data, size);
        });
        list_check.emplace(pg_restore);
    }
    std::string magic;
    DumpStderr dump_stderr;
    auto last_progress = SteadyClock::now();
    Watchdog watchdog({request.timeout, request.stall},
                      {fmt::format("backup of \"{}\"", database), "pg_dump",
                       fmt::format("pg_dump of \"{}\"", database), "no bytes"});

    StreamingSummary parsed;
    Child child = Child::spawn(command);
    snapshot.start_counting();
    PumpHandlers handlers;
    handlers.on_stdout = [&](const char* data, size_t size) {
        if (magic.size() < 5) {
            magic.append(data, std::min(size, 5 - magic.size()));
        }
        watchdog.progress();
        if (encryptor) {
            encryptor->write(data, size);
            list_check->feed(data, size);
        } else {
            hash.update(data, size);
            dump.write(data, size);
        }
        parsed.feed(data, size, watchdog);
    };
    handlers.on_stderr_line = [&](std::string_view line) { dump_stderr.relay(line); };
    handlers.on_tick = [&] {
        watchdog.check();
        auto now = SteadyClock::now();
        if (now - last_progress >= kProgressInterval) {
            last_progress = now;
            double seconds = std::chrono::duration<double>(now - clock_start).count();
            log::info("backup in progress",
                      {{"file", dump_path.filename().string()},
                       {"bytes", std::to_string(dump.bytes_written())},
                       {"seconds", fmt::format("{:.0f}", seconds)},
                       {"mib_per_second",
                        fmt::format("{:.1f}", static_cast<double>(dump.bytes_written()) /
                                                  1048576.0 / std::max(seconds, 0.001))}});
        }
    };
    ExitStatus status = pump(child, handlers);
    if (encryptor && status.ok()) {
        encryptor->finish();
    }
    if (!status.ok()) {
        std::string reason =
            dump_stderr.last_error().empty() ? "no error message" : dump_stderr.last_error();
        throw_if_lock_wait_ended(request, database, reason);
        throw failure(fmt::format("pg_dump of \"{}\" failed ({}) after {} bytes: {}", database,
                                  status.describe(), dump.bytes_written(), reason),
                      "nothing was published; see pg_dump's messages above");
    }
    snapshot.wait(watchdog);
    std::vector<TableEntry> tables = [&] {
        try {
            return snapshot.finish();
        } catch (const Error& e) {
            throw_if_lock_wait_ended(request, database, e.what());
            throw failure(
                fmt::format("backup of \"{}\" lost its snapshot session: {}", database, e.what()),
                "nothing was published; if the server restarted, its log says why");
        }
    }();

    // pgward's own reader first (its verdict names the byte and the table),
    // then pg_restore's, as a second opinion.
    archive::ArchiveSummary summary = [&] {
        try {
            return parsed.finish();
        } catch (const Error& e) {
            throw failure(fmt::format("pg_dump of \"{}\" exited 0, but {}", database, e.what()),
                          "nothing was published; check the pg_dump in use and its disk");
        }
    }();
    check_rows(tables, summary, database);
    if (summary.large_objects != snapshot.large_objects()) {
        throw failure(fmt::format("the archive of \"{}\" holds {} large objects but the snapshot "
                                  "has {}",
                                  database, summary.large_objects, snapshot.large_objects()),
                      "nothing was published; report this with the pg_dump version");
    }
    dump.flush();
    check_magic(dump.temp_path(), magic);
    if (list_check) {
        list_check->finish();
    } else {
        check_list_run(run_captured(pg::list_archive_command(pg_restore, dump.temp_path())));
    }

    // Globals (roles, tablespaces) never fail the backup: they are a help for
    // a restore onto a new server, and the dump is complete without them.
    std::optional<std::filesystem::path> globals_path;
    if (request.globals) {
        globals_path = write_globals(finder, repo.path_of(id.globals_file()), child_conninfo,
                                     command.set_env, command.unset_env, request.encryption);
    }
    // If anything below fails, the globals file must not outlive its dump.
    struct RemoveOnFailure {
        std::optional<std::filesystem::path> path;
        bool armed = true;
        ~RemoveOnFailure() {
            if (armed && path) {
                remove_file_or_warn(*path);
            }
        }
    } globals_guard{globals_path};

    auto finished = now_seconds();
    Manifest manifest;
    manifest.database = database;
    manifest.kind = request.pre_restore ? kKindPreRestore : kKindBackup;
    manifest.restoring = request.restoring;
    manifest.system_identifier = system;
    manifest.file = id.dump_file();
    manifest.size_bytes = dump.bytes_written();
    manifest.sha256 = hash.hex_digest();
    manifest.started_at = format_iso_utc(started);
    manifest.finished_at = format_iso_utc(finished);
    manifest.duration_seconds =
        std::round(std::chrono::duration<double>(SteadyClock::now() - clock_start).count() * 1000) /
        1000;
    manifest.server_version = server_version;
    manifest.pg_dump_version = pg_dump.version_line;
    manifest.schema_version = snapshot.schema_version();
    manifest.pgward_version = PGWARD_VERSION;
    manifest.archive_version = summary.header.version_text();
    manifest.compression = archive::to_string(summary.header.compression);
    manifest.large_objects = summary.large_objects;
    manifest.restore_point = snapshot.restore_point();
    manifest.written_around_restore_point = snapshot.written_around();
    manifest.large_objects_fingerprint = summary.large_objects_fingerprint();
    manifest.sequences_behind = snapshot.conditions().sequences_behind;
    manifest.invalid_indexes = snapshot.conditions().invalid_indexes;
    manifest.tables = std::move(tables);
    if (encrypted) {
        seal_manifest(manifest, request.encryption);
    }

    // The manifest is published first: a crash between the two renames leaves
    // a manifest without a dump (removed by the next run), never a dump
    // without its manifest.
    const std::filesystem::path manifest_path = repo.path_of(id.manifest_file());
    write_file_atomically(manifest_path, manifest_to_json(manifest).dump(2) + "\n",
                          AtomicFile::Publish::NoReplace);
    try {
        dump.commit();
    } catch (const Error&) {
        // The dump was not published: its manifest must not stay behind
        // looking like half of a backup.
        remove_file_or_warn(manifest_path);
        throw;
    }
    globals_guard.armed = false;

    log::info("backup end", {{"database", database},
                             {"file", dump_path.string()},
                             {"bytes", std::to_string(manifest.size_bytes)},
                             {"seconds", fmt::format("{:.3f}", manifest.duration_seconds)},
                             {"tables", std::to_string(manifest.tables.size())},
                             {"sha256", manifest.sha256}});

    BackupResult result{id, dump_path, std::move(manifest), {}, 0, globals_path.has_value()};
    // Retention counts this server's backups only: another cluster's backups
    // of a database with the same name are not ours to prune.
    // (Each backup's server is read from its manifest: once.)
    std::vector<BackupId> ours = repo.ids_of_server(database, system);
    result.retained = ours.size();
    if (request.retention) {
        result.pruned = repo.apply(plan_retention(std::move(ours), *request.retention), false);
        result.retained -= result.pruned.size();
    }
    if (request.pre_restore) {
        result.pruned = repo.bound_safety_dumps(database, kSafetyDumpsKept);
    }
    return result;
}

}  // namespace pgward
