// Issue 22: point-in-time recovery. `pgward wal stream` keeps the server's
// WAL (pg_receivewal on a slot), `pgward basebackup` takes a verified
// physical copy, and `pgward restore --pitr` lays out a data directory that
// a real server recovers to the chosen moment.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "domain/wal_archive.hpp"
#include "harness/data_dir_server.hpp"
#include "harness/json_schema.hpp"
#include "harness/pg_cluster.hpp"
#include "harness/receiver.hpp"
#include "harness/runner.hpp"
#include "harness/s3_server.hpp"
#include "harness/scratch.hpp"
#include "pg/connection.hpp"
#include "pg/wal.hpp"
#include "util/error.hpp"
#include "util/lock.hpp"
#include "util/sha256.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path kSource = PGWARD_SOURCE_DIR;

std::string quote_ident(const std::string& name) {
    std::string quoted = "\"";
    for (char c : name) {
        quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
    }
    return quoted + "\"";
}

class PitrTest : public ScratchDirTest {
  protected:
    PitrTest() : ScratchDirTest("pitr") {}

    void SetUp() override {
        ScratchDirTest::SetUp();
        PgCluster::instance().create_database("pitr_app");
        PgCluster::instance().exec("pitr_app",
                                   "CREATE TABLE marks(id int PRIMARY KEY, at timestamptz NOT NULL "
                                   "DEFAULT clock_timestamp())");
        backups_ = dir_ / "backups";
    }

    void TearDown() override {
        if (HasFailure() && streamer_) {
            // What the streamer said explains most failures here.
            RunResult said = stop_streaming();
            std::cerr << "streamer's stdout:\n" << said.out << "streamer's stderr:\n" << said.err;
        }
        streamer_.reset();
        // A slot nobody reads keeps WAL on the server for ever.
        eventually(
            [] {
                return PgCluster::instance().query_value(
                           "postgres", "SELECT count(*) FROM pg_replication_slots WHERE active") ==
                       "0";
            },
            10s);
        PgCluster::instance().exec(
            "postgres",
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = 'pgward' AND NOT active");
        ScratchDirTest::TearDown();
    }

    Env env(Env extra = {}) const {
        Env e = extra_env_;
        e.insert(e.end(), extra.begin(), extra.end());
        return pg_env("pitr_app", backups_, std::move(e));
    }

    // `pgward run --wal` as the streamer, looking at it every second, a
    // streamer stopped 2 s a problem, alerts to `receiver`; then `extra`.
    void start_service(const Receiver& receiver, const Env& extra) {
        Env settings = {{"POSTGRES_BACKUP_WAL", "true"},
                        {"POSTGRES_BACKUP_WAL_CHECK_SECONDS", "1"},
                        {"POSTGRES_BACKUP_WAL_STOPPED_SECONDS", "2"},
                        {"PGWARD_NOTIFY_URL", receiver.url("/hook")}};
        settings.insert(settings.end(), extra.begin(), extra.end());
        streamer_ =
            std::make_unique<BackgroundPgward>(std::vector<std::string>{"run"}, env(settings));
    }

    void start_streaming() {
        streamer_ =
            std::make_unique<BackgroundPgward>(std::vector<std::string>{"wal", "stream"}, env());
        // Streaming once the slot is in use.
        ASSERT_TRUE(eventually(
            [] {
                return PgCluster::instance().query_value(
                           "postgres",
                           "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgward' "
                           "AND active") == "1";
            },
            30s));
    }

    // Waits until the streamer has written everything the server has (what a
    // client saw committed is in the archive's files).
    [[nodiscard]] bool wait_streamed() {
        const std::string lsn =
            PgCluster::instance().query_value("postgres", "SELECT pg_current_wal_lsn()::text");
        const bool streamed = eventually(
            [&] {
                return PgCluster::instance().query_value(
                           "postgres",
                           "SELECT count(*) > 0 FROM pg_stat_replication WHERE "
                           "application_name = 'pgward_wal' AND write_lsn >= '" +
                               lsn + "'::pg_lsn") == "t";
            },
            60s);
        if (!streamed) {
            // What the streamer said explains it.
            RunResult said = stop_streaming();
            ADD_FAILURE() << "the streamer did not write up to " << lsn << " in 60 s; it said:\n"
                          << said.out << said.err;
        }
        return streamed;
    }

    // The streamer's pg_receivewal stopped (SIGSTOP) and its connection cut
    // (its walsender terminated, the slot inactive): nothing streams until
    // it is thawed. The connection is cut at once, while the socket holds
    // little: a walsender terminated later, when the socket it writes to is
    // full, can be stuck for ever, and a CHECKPOINT that invalidates its
    // slot waits for it (a suite hung so in CI).
    class FrozenReceiver {
      public:
        explicit FrozenReceiver(pid_t pid) : pid_(pid) {}
        FrozenReceiver(const FrozenReceiver&) = delete;
        FrozenReceiver& operator=(const FrozenReceiver&) = delete;
        ~FrozenReceiver() { thaw(); }
        [[nodiscard]] pid_t pid() const { return pid_; }
        void thaw() {
            if (pid_ != 0) {
                ::kill(std::exchange(pid_, 0), SIGCONT);
            }
        }

      private:
        pid_t pid_;
    };

    // The pid of the streamer's pg_receivewal once it runs exactly one, and
    // that one is not `other`; 0 when it did not within `wait`.
    [[nodiscard]] pid_t receiver_pid(std::chrono::seconds wait, pid_t other = 0) const {
        pid_t found = 0;
        eventually(
            [&] {
                const std::vector<pid_t> receivers =
                    children_named(streamer_->pid(), "pg_receivewal");
                found = receivers.size() == 1 && receivers[0] != other ? receivers[0] : 0;
                return found != 0;
            },
            wait);
        return found;
    }

    // Freezes the streamer's pg_receivewal as above; pid() is 0 when the
    // streamer did not run exactly one within 10 s or its slot stayed active.
    [[nodiscard]] std::unique_ptr<FrozenReceiver> freeze_receiver() const {
        const pid_t receiver = receiver_pid(10s);
        if (receiver == 0) {
            return std::make_unique<FrozenReceiver>(0);
        }
        ::kill(receiver, SIGSTOP);
        auto frozen = std::make_unique<FrozenReceiver>(receiver);
        PgCluster::instance().exec(
            "postgres",
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = "
            "'pgward'");
        if (!eventually(
                [] {
                    return PgCluster::instance().query_value(
                               "postgres",
                               "SELECT count(*) FROM pg_replication_slots WHERE "
                               "slot_name = 'pgward' AND NOT active") == "1";
                },
                10s)) {
            frozen->thaw();
        }
        return frozen;
    }

    RunResult stop_streaming() {
        if (!streamer_) {
            return RunResult{};
        }
        ::kill(streamer_->pid(), SIGTERM);
        auto r = streamer_->wait(30s);
        streamer_.reset();
        return r ? *r : RunResult{};
    }

    // The archive's completed segments (24-character names), oldest first.
    std::vector<std::string> archive_segments() const {
        std::vector<std::string> segments;
        for (const std::string& file : list_dir(archive())) {
            if (file.size() == 24) {
                segments.push_back(file);
            }
        }
        return segments;  // list_dir sorts
    }

    // The manifest of the newest dump of pitr_app in the backup directory
    // (empty when there is none).
    fs::path newest_dump_manifest() const {
        fs::path newest;
        for (const std::string& file : list_dir(backups_)) {
            if (file.ends_with(".json") && file.starts_with("pitr_app_")) {
                newest = backups_ / file;
            }
        }
        return newest;
    }

    void mark(int id) const {
        PgCluster::instance().exec("pitr_app",
                                   "INSERT INTO marks(id) VALUES (" + std::to_string(id) + ")");
    }

    // mark(first), the server's time a second later, mark(second) a second
    // after that: a moment between the two.
    std::string time_between_marks(int first, int second) const {
        mark(first);
        std::this_thread::sleep_for(1100ms);
        const std::string between = server_time();
        std::this_thread::sleep_for(1100ms);
        mark(second);
        return between;
    }

    std::string server_time() const {
        return PgCluster::instance().query_value(
            "postgres",
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
    }

    fs::path archive() const {
        const std::string system = PgCluster::instance().query_value(
            "postgres", "SELECT system_identifier::text FROM pg_control_system()");
        return backups_ / "wal" / system;
    }

    // Recovers into a new folder and reads the markers there ("" if none).
    // `binary` (default: the suite's pgward) runs the restore.
    std::string recovered_marks(const std::vector<std::string>& restore_args,
                                const std::string& folder, const std::string& binary = {}) {
        const fs::path pgdata = dir_ / folder;
        std::vector<std::string> args = {"restore", "--pitr", "--pgdata", pgdata.string()};
        args.insert(args.end(), restore_args.begin(), restore_args.end());
        RunResult r;
        if (binary.empty()) {
            r = run_pgward(args, env());
        } else {
            Command command = pgward_command(args, env());
            command.argv[0] = binary;
            CapturedRun run = run_captured(command, std::chrono::seconds(300));
            r = RunResult{run.status.code, run.out, run.err};
        }
        EXPECT_EQ(r.exit_code, 0) << r.err;
        if (r.exit_code != 0) {
            return "restore failed";
        }
        EXPECT_EQ(r.out, pgdata.string() + "\n");
        DataDirServer server(pgdata);
        EXPECT_TRUE(server.start()) << server.log();
        EXPECT_TRUE(contains(server.log(), "archive recovery complete")) << server.log();
        return server.query_value("pitr_app",
                                  "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') "
                                  "FROM marks");
    }

    // Base backups published (base.json written last, inside the rename).
    size_t published_base_backups() const {
        size_t count = 0;
        std::error_code ec;
        for (const auto& system : fs::directory_iterator(backups_ / "base", ec)) {
            for (const auto& backup : fs::directory_iterator(system.path(), ec)) {
                count += !backup.path().filename().string().starts_with(".") &&
                         fs::exists(backup.path() / "base.json");
            }
        }
        return count;
    }

    fs::path backups_;
    std::unique_ptr<BackgroundPgward> streamer_;
    Env extra_env_;  // what every pgward this test runs gets
};

TEST_F(PitrTest, RecoversToATimeBetweenTwoMarkersAndToTheLastStreamedWrite) {
    start_streaming();
    RunResult base = run_pgward({"basebackup"}, env());
    ASSERT_EQ(base.exit_code, 0) << base.err;
    const fs::path base_dir = base.out.substr(0, base.out.find('\n'));
    EXPECT_TRUE(contains(base.err, "verified_by=\"pg_verifybackup")) << base.err;
    for (const char* file : {"base.tar", "pg_wal.tar", "backup_manifest", "base.json"}) {
        struct stat st {};
        ASSERT_EQ(::stat((base_dir / file).c_str(), &st), 0) << file;
        EXPECT_EQ(st.st_mode & 0777, 0600U) << file;
    }
    const auto info = nlohmann::json::parse(slurp(base_dir / "base.json"));
    EXPECT_EQ(info.at("system_identifier"), archive().filename().string());
    EXPECT_EQ(info.at("bootstrap_superuser"), PgCluster::instance().superuser());
    EXPECT_EQ(list_dir(base_dir.parent_path()), std::vector<std::string>{base_dir.filename()})
        << "no partial folder is left";

    const std::string between = time_between_marks(1, 2);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    mark(3);  // only in the segment being streamed (.partial)
    ASSERT_TRUE(wait_streamed());
    RunResult streamed = stop_streaming();
    EXPECT_EQ(streamed.exit_code, 0) << streamed.err;
    EXPECT_TRUE(contains(streamed.err, "msg=\"WAL segment archived\"")) << streamed.err;
    EXPECT_TRUE(contains(streamed.err, "msg=\"WAL streaming stopped\" signal=SIGTERM"))
        << streamed.err;
    EXPECT_FALSE(contains(streamed.err, "level=error")) << streamed.err;

    EXPECT_EQ(recovered_marks({"--to", between}, "to-time"), "1");
    EXPECT_EQ(recovered_marks({}, "to-latest"), "1,2,3");
    struct stat st {};
    ASSERT_EQ(::stat((dir_ / "to-latest").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700U);

    // A target outside the archive is refused up front, naming the window;
    // nothing is laid out.
    RunResult early = run_pgward({"restore", "--pitr", "--to", "2001-01-01 00:00:00+00", "--pgdata",
                                  (dir_ / "early").string()},
                                 env());
    EXPECT_EQ(early.exit_code, 1);
    EXPECT_TRUE(contains(early.err,
                         "2001-01-01 00:00:00.000000+00 is before every base backup: "
                         "the archive can reach from "))
        << early.err;
    RunResult late = run_pgward(
        {"restore", "--pitr", "--to", "2099-01-01T00:00:00Z", "--pgdata", (dir_ / "late").string()},
        env());
    EXPECT_EQ(late.exit_code, 1);
    EXPECT_TRUE(contains(late.err, "is past the end of the archived WAL")) << late.err;
    EXPECT_FALSE(fs::exists(dir_ / "early"));
    EXPECT_FALSE(fs::exists(dir_ / "late"));
    if (running_as_root()) {
        RunResult owner = run_pgward(
            {"restore", "--pitr", "--owner", "no-such-user", "--pgdata", (dir_ / "owner").string()},
            env());
        EXPECT_EQ(owner.exit_code, 2);
        EXPECT_TRUE(contains(owner.err, "--owner: there is no user \"no-such-user\"")) << owner.err;
        EXPECT_FALSE(fs::exists(dir_ / "owner"));
    }
}

// The two proofs prove each other: a dump records the restore point it made
// right after its snapshot, and recovering to that point gives every table
// with the rows the dump's manifest counted, whatever was written after.
TEST_F(PitrTest, RecoveryToADumpsRestorePointGivesTheTablesAsDumped) {
    start_streaming();
    ASSERT_EQ(run_pgward({"basebackup"}, env()).exit_code, 0);
    PgCluster::instance().exec(
        "pitr_app",
        "CREATE TABLE items(id int, note text); "
        "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 500) g; "
        "CREATE TABLE \"Odd Name\"(x int); "
        "INSERT INTO \"Odd Name\" VALUES (1), (2), (3)");
    mark(1);
    RunResult dump = run_pgward({"backup"}, env());
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    EXPECT_FALSE(contains(dump.err, "no restore point")) << dump.err;
    const fs::path manifest_path = newest_dump_manifest();
    ASSERT_FALSE(manifest_path.empty());
    const auto manifest = nlohmann::json::parse(slurp(manifest_path));
    ASSERT_TRUE(manifest.contains("restore_point")) << manifest.dump(2);
    const std::string name = manifest.at("restore_point").at("name");
    EXPECT_TRUE(name.starts_with("pgward pitr_app_")) << name;
    EXPECT_TRUE(pg::Lsn::parse(manifest.at("restore_point").at("lsn").get<std::string>()));

    mark(2);
    PgCluster::instance().exec(
        "pitr_app",
        "INSERT INTO items SELECT g, 'later' FROM generate_series(1, 100) g; "
        "DELETE FROM \"Odd Name\"");
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);

    const fs::path pgdata = dir_ / "at-dump";
    RunResult r =
        run_pgward({"restore", "--pitr", "--to", name, "--pgdata", pgdata.string()}, env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    DataDirServer server(pgdata);
    ASSERT_TRUE(server.start()) << server.log();
    EXPECT_TRUE(contains(server.log(), "recovery stopping at restore point \"" + name + "\""))
        << server.log();
    size_t compared = 0;
    for (const auto& table : manifest.at("tables")) {
        const std::string schema = table.at("schema");
        const std::string table_name = table.at("name");
        EXPECT_EQ(server.query_value("pitr_app", "SELECT count(*) FROM " + quote_ident(schema) +
                                                     "." + quote_ident(table_name)),
                  std::to_string(table.at("rows").get<uint64_t>()))
            << schema << "." << table_name;
        ++compared;
    }
    EXPECT_EQ(compared, 3U);
    EXPECT_EQ(server.query_value("pitr_app", "SELECT string_agg(id::text, ',') FROM marks"), "1");

    // A role that may not make restore points still backs up, and says what
    // the manifest lacks.
    PgCluster::instance().exec("postgres",
                               "DROP ROLE IF EXISTS pitr_reader; "
                               "CREATE ROLE pitr_reader LOGIN PASSWORD 'pw'");
    if (PgCluster::instance().server_major() >= 14) {
        PgCluster::instance().exec("postgres", "GRANT pg_read_all_data TO pitr_reader");
    } else {
        PgCluster::instance().exec("pitr_app",
                                   "GRANT SELECT ON ALL TABLES IN SCHEMA public TO pitr_reader");
    }
    Env reader = env();
    reader.emplace_back("POSTGRES_USER", "pitr_reader");
    reader.emplace_back("POSTGRES_PASSWORD", "pw");
    reader.emplace_back("PGWARD_GLOBALS", "false");
    RunResult plain = run_pgward({"backup"}, reader);
    EXPECT_EQ(plain.exit_code, 0) << plain.err;
    EXPECT_TRUE(contains(plain.err,
                         "level=warn msg=\"no restore point for this backup: "
                         "point-in-time recovery cannot be proven against it\""))
        << plain.err;
    EXPECT_TRUE(contains(plain.err, "permission denied for function pg_create_restore_point"))
        << plain.err;
    std::vector<std::string> without;
    for (const std::string& file : list_dir(backups_)) {
        if (file.ends_with(".json") && backups_ / file != manifest_path) {
            EXPECT_FALSE(nlohmann::json::parse(slurp(backups_ / file)).contains("restore_point"));
            without.push_back(file);
        }
    }
    ASSERT_EQ(without.size(), 1U);

    // A backup's file is a target too: the restore point it made.
    const std::string dump_file = manifest.at("file");
    RunResult by_file = run_pgward(
        {"restore", "--pitr", "--to", dump_file, "--pgdata", (dir_ / "by-file").string()}, env());
    ASSERT_EQ(by_file.exit_code, 0) << by_file.err;
    EXPECT_TRUE(contains(slurp(dir_ / "by-file" / "postgresql.auto.conf"),
                         "recovery_target_name = '" + name + "'"));
    RunResult no_point = run_pgward(
        {"restore", "--pitr", "--to", without[0], "--pgdata", (dir_ / "no-point").string()}, env());
    EXPECT_EQ(no_point.exit_code, 1);
    EXPECT_TRUE(
        contains(no_point.err, "--to " + without[0] + ": that backup made no restore point"))
        << no_point.err;
    EXPECT_FALSE(fs::exists(dir_ / "no-point"));
    PgCluster::instance().exec("pitr_app", "DROP OWNED BY pitr_reader");
    PgCluster::instance().exec("postgres", "DROP ROLE pitr_reader");
}

// `run --wal`: the service streams beside its schedule, takes the first base
// backup at once, and shows the streamer's state; a streamer that stops is
// alerted once, and its return too.
TEST_F(PitrTest, TheServiceStreamsWalBesideItsBackupsAndAlertsWhenStreamingStops) {
    Receiver receiver;
    start_service(receiver,
                  {{"POSTGRES_BACKUP_INTERVAL_SECONDS", "86400"}, {"PGWARD_GLOBALS", "false"}});
    const fs::path state_path = backups_ / ".pgward-pitr_app.state.json";
    auto wal_state = [&]() -> std::optional<nlohmann::json> {
        try {
            auto doc = nlohmann::json::parse(slurp(state_path));
            if (doc.at("wal").is_object()) {
                return doc.at("wal");
            }
        } catch (...) {
        }
        return std::nullopt;
    };
    ASSERT_TRUE(eventually(
        [&] {
            auto w = wal_state();
            return w && w->at("streaming") == true && w->at("lag_bytes").is_number();
        },
        30s));
    // The first base backup at start, and the dump with its restore point.
    ASSERT_TRUE(eventually(
        [&] {
            return published_base_backups() == 1 &&
                   nlohmann::json::parse(slurp(state_path)).at("successes_total") == 1;
        },
        60s));
    bool with_point = false;
    for (const std::string& file : list_dir(backups_)) {
        if (file.ends_with(".json") && !file.starts_with(".")) {
            with_point = nlohmann::json::parse(slurp(backups_ / file)).contains("restore_point");
        }
    }
    EXPECT_TRUE(with_point) << "the service's dump made a restore point";
    RunResult status = run_pgward({"status"}, env());
    EXPECT_TRUE(contains(status.out, "WAL streaming:   yes since ")) << status.out;
    EXPECT_TRUE(contains(status.out, "WAL lag:         ")) << status.out;

    // pg_receivewal frozen, its connection cut: nothing streams.
    const auto frozen = freeze_receiver();
    ASSERT_NE(frozen->pid(), 0) << "the streamer's pg_receivewal was not frozen";
    ASSERT_TRUE(eventually([&] { return receiver.first_event("wal_failing").has_value(); }, 30s));
    const auto failing = *receiver.first_event("wal_failing");
    EXPECT_TRUE(
        contains(failing.at("reason").get<std::string>(), "WAL has not been streamed since "))
        << failing.dump();
    RunResult health = run_pgward({"healthcheck"}, env());
    EXPECT_EQ(health.exit_code, 1) << health.out << health.err;
    EXPECT_TRUE(contains(health.out + health.err, "WAL has not been streamed since"))
        << health.out << health.err;

    frozen->thaw();
    ASSERT_TRUE(eventually([&] { return receiver.first_event("wal_recovered").has_value(); }, 30s));
    auto w = wal_state();
    ASSERT_TRUE(w);
    EXPECT_EQ(w->at("streaming"), true);
    EXPECT_EQ(w->at("alerts_total"), 1);
    EXPECT_TRUE(w->at("problem").is_null());

    RunResult stopped = stop_streaming();
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_TRUE(contains(stopped.out, "msg=\"WAL streaming is failing\"")) << stopped.out;
    EXPECT_TRUE(contains(stopped.out, "msg=\"WAL streaming works again\"")) << stopped.out;
    EXPECT_TRUE(contains(stopped.out, "msg=\"WAL streaming stopped\" signal=SIGTERM"))
        << stopped.out;
    EXPECT_TRUE(contains(stopped.out, "msg=\"service stopped\"")) << stopped.out;

    // --wal's own options need --wal; --wal cannot run --once.
    RunResult alone = run_pgward({"run", "--wal-slot", "x"}, env());
    EXPECT_EQ(alone.exit_code, 2);
    EXPECT_TRUE(contains(alone.err, "--wal-slot goes with --wal")) << alone.err;
    RunResult once = run_pgward({"run", "--wal", "--wal-synchronous", "--once"}, env());
    EXPECT_EQ(once.exit_code, 2);
    EXPECT_TRUE(contains(once.err, "--wal streams beside the schedule and cannot run with --once"))
        << once.err;
    RunResult stall_alone = run_pgward({"run", "--wal-stall-timeout", "5"}, env());
    EXPECT_EQ(stall_alone.exit_code, 2);
    EXPECT_TRUE(contains(stall_alone.err, "--wal-stall-timeout goes with --wal"))
        << stall_alone.err;
    // A bad stall timeout is refused by name before anything starts.
    RunResult bad_stall = run_pgward({"run"}, env({{"POSTGRES_BACKUP_WAL", "true"},
                                                   {"POSTGRES_BACKUP_WAL_STALL_SECONDS", "5m"}}));
    EXPECT_EQ(bad_stall.exit_code, 2);
    EXPECT_TRUE(contains(bad_stall.err,
                         "invalid value \"5m\" for POSTGRES_BACKUP_WAL_STALL_SECONDS: expected a "
                         "whole number from 0 to 316224000"))
        << bad_stall.err;
    RunResult bad_stream_stall = run_pgward({"wal", "stream", "--stall-timeout", "-1"}, env());
    EXPECT_EQ(bad_stream_stall.exit_code, 2);
    EXPECT_TRUE(contains(bad_stream_stall.err, "invalid value \"-1\" for --stall-timeout"))
        << bad_stream_stall.err;
}

// drill --pitr: the newest base backup and the WAL recovered in a sandbox to
// the newest dump's restore point; the log says the target was reached,
// amcheck finds nothing, and every table's rows and fp1 equal the dump's.
TEST_F(PitrTest, ThePitrDrillProvesTheRecoveryAgainstTheNewestDumpTableByTable) {
    start_streaming();
    // A server that logs in German: its copy does too, unless told not to.
    PgCluster::instance().exec("postgres", "ALTER SYSTEM SET lc_messages = 'de_DE.UTF-8'");
    PgCluster::instance().exec("postgres", "SELECT pg_reload_conf()");
    RunResult base = run_pgward({"basebackup"}, env());
    PgCluster::instance().exec("postgres", "ALTER SYSTEM RESET lc_messages");
    PgCluster::instance().exec("postgres", "SELECT pg_reload_conf()");
    ASSERT_EQ(base.exit_code, 0) << base.err;
    PgCluster::instance().exec(
        "pitr_app",
        "CREATE TABLE items(id int PRIMARY KEY, note text); "
        "INSERT INTO items SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 300) g; "
        "CREATE INDEX items_note ON items(note); "
        "CREATE UNLOGGED TABLE scratch(x int); INSERT INTO scratch VALUES (1), (2); "
        // Shaped like production: partitions, an odd name, a large object.
        "CREATE TABLE events(at date NOT NULL, what text) PARTITION BY RANGE (at); "
        "CREATE TABLE \"Events 2026\" PARTITION OF events FOR VALUES FROM ('2026-01-01') TO "
        "('2027-01-01'); "
        "INSERT INTO events SELECT '2026-06-01'::date + g % 100, 'e' || g "
        "FROM generate_series(1, 250) g; "
        "SELECT lo_from_bytea(0, 'a large object')");
    mark(1);
    RunResult dump = run_pgward({"backup"}, env());
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    mark(2);
    PgCluster::instance().exec("pitr_app", "DELETE FROM items WHERE id <= 10");
    ASSERT_TRUE(wait_streamed());

    const fs::path reports = dir_ / "reports";
    // A temp dir of its own: the other shards' drills run beside this one.
    const fs::path tmp = shared_subdir("tmp");
    Env drill_env = env();
    drill_env.emplace_back("TMPDIR", tmp.string());
    RunResult drill = run_pgward({"drill", "--pitr", "--report-dir", reports.string()}, drill_env);
    ASSERT_EQ(drill.exit_code, 0) << drill.err;
    const auto report = nlohmann::json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))));
    EXPECT_TRUE(schema_problems(
                    nlohmann::json::parse(slurp(kSource / "docs/drill-report.schema.json")), report)
                    .empty());
    EXPECT_EQ(report.at("kind"), "pitr");
    EXPECT_EQ(report.at("mode"), "pitr-sandbox");
    EXPECT_EQ(report.at("restore_success"), true);
    std::set<std::string> passed;
    for (const auto& check : report.at("checks")) {
        if (check.at("passed") == true) {
            passed.insert(check.at("name").get<std::string>());
        }
    }
    for (const char* name :
         {"recovery_reached_target", "recovery_without_errors", "amcheck_clean",
          "table_row_counts_match", "table_fingerprints_match", "large_objects_match"}) {
        EXPECT_EQ(passed.count(name), 1U) << name << ": " << report.at("checks").dump(2);
    }
    std::map<std::string, uint64_t> rows;
    for (const auto& table : report.at("tables")) {
        rows[table.at("name").get<std::string>()] = table.at("rows_after").get<uint64_t>();
        EXPECT_EQ(table.at("fingerprint_after"), table.at("fingerprint_before")) << table.dump();
    }
    EXPECT_EQ(rows["items"], 300U) << "as dumped, before the delete";
    EXPECT_EQ(rows["Events 2026"], 250U);
    EXPECT_EQ(rows["marks"], 1U);
    EXPECT_EQ(rows.count("scratch"), 0U);
    EXPECT_TRUE(contains(report.at("warnings").dump(), "unlogged table public.scratch"))
        << report.at("warnings").dump();
    EXPECT_TRUE(report.at("pitr").at("restore_point").get<std::string>().starts_with("pgward "));
    EXPECT_TRUE(contains(report.at("pitr").at("server_log_stop_line").get<std::string>(),
                         "recovery stopping at restore point"));
    EXPECT_EQ(list_dir(tmp), std::vector<std::string>{}) << "the sandbox is removed";

    // A dump whose manifest says otherwise fails the drill, naming the table.
    fs::path manifest_path;
    for (const std::string& file : list_dir(backups_)) {
        if (file.ends_with(".json") && !file.starts_with(".")) {
            manifest_path = backups_ / file;
        }
    }
    auto manifest = nlohmann::json::parse(slurp(manifest_path));
    for (auto& table : manifest.at("tables")) {
        if (table.at("name") == "items") {
            table["rows"] = 299;
        }
    }
    manifest["large_objects"] = 2;
    write_text(manifest_path, manifest.dump(2), 0600);
    RunResult wrong = run_pgward({"drill", "--pitr", "--report-dir", reports.string()}, drill_env);
    EXPECT_EQ(wrong.exit_code, 1);
    EXPECT_TRUE(contains(wrong.err,
                         "restore drill failed: table_row_counts_match: mismatch: "
                         "public.items (299 before, 300 after)"))
        << wrong.err;
    EXPECT_TRUE(contains(wrong.err, "large_objects_match: 1 (")) << wrong.err;

    // Any other target recovers and is checked, without a dump to compare.
    RunResult latest = run_pgward(
        {"drill", "--pitr", "--to", "latest", "--report-dir", reports.string()}, drill_env);
    EXPECT_EQ(latest.exit_code, 0) << latest.err;
    EXPECT_TRUE(contains(latest.err, "latest is not a dump's restore point")) << latest.err;
    RunResult misplaced = run_pgward({"drill", "--to", "latest"}, env());
    EXPECT_EQ(misplaced.exit_code, 2);
    EXPECT_TRUE(contains(misplaced.err, "--to and --system go with --pitr")) << misplaced.err;
    ASSERT_EQ(stop_streaming().exit_code, 0);
}

// Faults from the server's side: a restart, and the slot dropped by someone
// else. Each is named (logged, alerted) and the archive has no silent gap:
// it recovers every write made across them.
TEST_F(PitrTest, AServerRestartAndASlotDroppedBySomeoneElseAreNamedAndLeaveNoGap) {
    Receiver receiver;
    start_service(receiver, {{"POSTGRES_BACKUP_ON_START", "false"}});
    ASSERT_TRUE(eventually([&] { return published_base_backups() == 1; }, 60s));
    mark(1);
    ASSERT_TRUE(wait_streamed());

    // The server restarts: pg_receivewal loses its connection and is
    // started again once the server is back.
    PgCluster::instance().stop_fast();
    PgCluster::instance().start();
    mark(2);
    ASSERT_TRUE(wait_streamed());

    // The slot dropped while nothing streams on it: named at once.
    const auto frozen = freeze_receiver();
    ASSERT_NE(frozen->pid(), 0) << "the streamer's pg_receivewal was not frozen";
    PgCluster::instance().exec("postgres", "SELECT pg_drop_replication_slot('pgward')");
    mark(3);
    ASSERT_TRUE(eventually(
        [&] {
            auto failing = receiver.first_event("wal_failing");
            return failing && contains(failing->at("reason").get<std::string>(),
                                       "the replication slot \"pgward\" does not exist");
        },
        30s));
    frozen->thaw();
    ASSERT_TRUE(eventually([&] { return receiver.first_event("wal_recovered").has_value(); }, 30s));
    mark(4);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    RunResult stopped = stop_streaming();
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_TRUE(contains(stopped.out, "msg=\"pg_receivewal stopped; WAL is not being streamed\""))
        << stopped.out;
    EXPECT_FALSE(contains(stopped.out, "WAL gap")) << stopped.out;
    EXPECT_EQ(recovered_marks({}, "across"), "1,2,3,4");
}

TEST_F(PitrTest, AMissingOrDamagedSegmentIsNamedAndNothingIsLaidOut) {
    start_streaming();
    ASSERT_EQ(run_pgward({"basebackup"}, env()).exit_code, 0);
    for (int i = 1; i <= 3; ++i) {
        mark(i);
        PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    }
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);

    const std::vector<std::string> segments = archive_segments();
    ASSERT_GE(segments.size(), 4U);
    const std::string victim = segments[segments.size() - 2];

    // Damaged: one page header's address changed.
    const std::string saved = slurp(archive() / victim);
    {
        std::fstream f(archive() / victim, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(8192 + 8);
        f.put('\x7f');
    }
    const fs::path empty = dir_ / "empty";
    fs::create_directory(empty);
    RunResult damaged = run_pgward({"restore", "--pitr", "--pgdata", empty.string()}, env());
    EXPECT_EQ(damaged.exit_code, 1);
    EXPECT_TRUE(contains(damaged.err, "WAL segment " + victim + " in " + archive().string() +
                                          " is damaged: the page at "))
        << damaged.err;
    EXPECT_TRUE(fs::is_empty(empty)) << "a folder given empty is left empty";

    // Missing: refused before anything is laid out, the segment named.
    fs::remove(archive() / victim);
    RunResult missing =
        run_pgward({"restore", "--pitr", "--pgdata", (dir_ / "missing").string()}, env());
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_TRUE(
        contains(missing.err, "WAL segment " + victim + " is missing from " + archive().string()))
        << missing.err;
    EXPECT_FALSE(fs::exists(dir_ / "missing"));

    // Put back, the whole archive recovers.
    write_text(archive() / victim, saved, 0600);
    EXPECT_EQ(recovered_marks({}, "whole"), "1,2,3");
}

TEST_F(PitrTest, RetentionKeepsTheNewestBaseBackupAndTheWalItNeedsAndItRecovers) {
    start_streaming();
    ASSERT_EQ(run_pgward({"basebackup"}, env()).exit_code, 0);
    mark(7);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    RunResult second = run_pgward({"basebackup", "--retention", "1"}, env());
    ASSERT_EQ(second.exit_code, 0) << second.err;
    const fs::path kept = second.out.substr(0, second.out.find('\n'));
    EXPECT_EQ(list_dir(kept.parent_path()), std::vector<std::string>{kept.filename()});
    EXPECT_TRUE(contains(second.err, "msg=\"base backup removed by retention\"")) << second.err;
    EXPECT_TRUE(contains(second.err, "msg=\"WAL removed by retention\"")) << second.err;
    const auto info = nlohmann::json::parse(slurp(kept / "base.json"));
    const std::string start_segment = pg::WalFileName::segment_name(
        1, pg::segment_of(*pg::Lsn::parse(info.at("start_lsn").get<std::string>()), 16U << 20),
        16U << 20);
    for (const std::string& file : list_dir(archive())) {
        EXPECT_GE(file.substr(8, 16), start_segment.substr(8, 16)) << file << " outlived retention";
    }
    mark(8);
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);
    // The server runs restore_command as itself (postgres, when the tests
    // run as root): a pgward and an archive it can reach. Refused up front
    // when it cannot, nothing laid out.
    std::string binary;
    if (running_as_root()) {
        fs::create_directories(dir_ / "private");
        fs::permissions(dir_ / "private", fs::perms::owner_all);
        fs::copy_file(pgward_binary(), dir_ / "private" / "pgward");
        Command hidden = pgward_command(
            {"restore", "--pitr", "--fetch-wal", "--pgdata", (dir_ / "refused").string()}, env());
        hidden.argv[0] = (dir_ / "private" / "pgward").string();
        CapturedRun refused = run_captured(hidden, std::chrono::seconds(120));
        EXPECT_EQ(refused.status.code, 1);
        EXPECT_TRUE(contains(refused.err, "with --fetch-wal the server's user postgres must run " +
                                              (dir_ / "private" / "pgward").string() +
                                              ", and cannot"))
            << refused.err;
        EXPECT_FALSE(fs::exists(dir_ / "refused"));
        fs::create_directories(dir_ / "bin");
        fs::copy_file(pgward_binary(), dir_ / "bin" / "pgward");
        binary = (dir_ / "bin" / "pgward").string();
        for (fs::path p = archive(); p != dir_.parent_path(); p = p.parent_path()) {
            fs::permissions(p, fs::perms::others_read | fs::perms::others_exec,
                            fs::perm_options::add);
        }
        for (const auto& entry : fs::directory_iterator(archive())) {
            fs::permissions(entry.path(), fs::perms::others_read, fs::perm_options::add);
        }
    }
    EXPECT_EQ(recovered_marks({"--fetch-wal"}, "fetched", binary), "7,8");
    EXPECT_TRUE(contains(slurp(dir_ / "fetched" / "postgresql.auto.conf"),
                         "wal fetch --archive ''" + archive().string() + "'' %f %p"));

    // restore_command's answers: a file it has, one it has not (exit 1, which
    // PostgreSQL takes for "not archived"), a name that is no WAL file (2).
    const fs::path out = dir_ / "out";
    RunResult got = run_pgward({"wal", "fetch", "--archive", archive().string(),
                                list_dir(archive()).front(), out.string()});
    EXPECT_EQ(got.exit_code, 0) << got.err;
    EXPECT_EQ(fs::file_size(out), 16U << 20);
    RunResult absent = run_pgward(
        {"wal", "fetch", "--archive", archive().string(), "00000009.history", out.string()});
    EXPECT_EQ(absent.exit_code, 1);
    EXPECT_TRUE(contains(absent.err, "not in the WAL archive")) << absent.err;
    RunResult bad =
        run_pgward({"wal", "fetch", "--archive", archive().string(), "../x", out.string()});
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_TRUE(contains(bad.err, "\"../x\" is not the name of a WAL segment")) << bad.err;
}

TEST_F(PitrTest, AStreamerWhosePgReceivewalStopsSaysSoAndStartsItAgain) {
    start_streaming();
    const pid_t first = receiver_pid(10s);
    ASSERT_NE(first, 0);
    // SIGTERM: it closes its connection, so the server frees the slot at
    // once. (After a SIGKILL or a lost network the server holds the slot
    // until wal_sender_timeout, and the restarts back off meanwhile.)
    ::kill(first, SIGTERM);
    ASSERT_NE(receiver_pid(20s, first), 0) << "pg_receivewal was not started again";
    mark(1);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    RunResult r = stop_streaming();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.err,
                         "level=error msg=\"pg_receivewal stopped; WAL is not being "
                         "streamed\" status=\""))
        << r.err;
    EXPECT_TRUE(contains(r.err, "restart_in_ms=1000")) << r.err;
    EXPECT_FALSE(contains(r.err, "WAL gap")) << r.err;
}

// A pg_receivewal that hangs (here SIGSTOP, its connection left open) never
// exits, so it was never started again: streaming stopped for good, and a
// checkpoint invalidating its slot could wait on it for ever. Once it has
// written nothing for the stall timeout while the server flushed WAL, it is
// killed and started again, and nothing is lost.
TEST_F(PitrTest, AHungPgReceivewalIsKilledAndStartedAgainAndNothingIsLost) {
    extra_env_ = {{"POSTGRES_BACKUP_WAL_STALL_SECONDS", "4"}};
    start_streaming();
    RunResult base = run_pgward({"basebackup"}, env());
    ASSERT_EQ(base.exit_code, 0) << base.err;
    mark(1);
    ASSERT_TRUE(wait_streamed());
    const pid_t first = receiver_pid(10s);
    ASSERT_NE(first, 0);
    ::kill(first, SIGSTOP);
    mark(2);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    mark(3);
    const pid_t second = receiver_pid(40s, first);
    ::kill(first, SIGCONT);  // (a no-op once it was killed)
    ASSERT_NE(second, 0) << "the hung pg_receivewal was not replaced within 40 s";
    EXPECT_FALSE(fs::exists("/proc/" + std::to_string(first) + "/cmdline"))
        << "the hung pg_receivewal still runs";
    ASSERT_TRUE(wait_streamed());
    RunResult r = stop_streaming();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // Quiet for the timeout at least (counted from its last write, which
    // can come before the SIGSTOP).
    const std::string said =
        "level=error msg=\"pg_receivewal is hung; killing it\" "
        "reason=\"pg_receivewal wrote nothing for ";
    const size_t at = r.err.find(said);
    ASSERT_NE(at, std::string::npos) << r.err;
    EXPECT_GE(std::stoi(r.err.substr(at + said.size())), 4) << r.err;
    EXPECT_TRUE(contains(r.err, "(stall timeout 4 s): killed as hung, to be started again"))
        << r.err;
    EXPECT_TRUE(contains(r.err, "status=\"killed by SIGKILL\"")) << r.err;
    EXPECT_FALSE(contains(r.err, "WAL gap")) << r.err;
    EXPECT_EQ(recovered_marks({}, "after"), "1,2,3");
}

// The stall watch saw only completed segments, never a write into the
// segment being streamed: a server writing a little, too little to fill a
// segment within the stall timeout, had its pg_receivewal killed as hung
// every timeout (a default-configured service: every 5 minutes).
TEST_F(PitrTest, AStreamerWritingIntoItsSegmentSlowlyIsNotTakenForHung) {
    extra_env_ = {{"POSTGRES_BACKUP_WAL_STALL_SECONDS", "4"}};
    start_streaming();
    ASSERT_TRUE(wait_streamed());
    const pid_t receiver = receiver_pid(10s);
    ASSERT_NE(receiver, 0);
    // A write a second for three timeouts, all within one segment.
    for (int id = 1; id <= 12; ++id) {
        mark(id);
        std::this_thread::sleep_for(1s);
    }
    ASSERT_TRUE(wait_streamed());
    EXPECT_EQ(receiver_pid(1s), receiver) << "pg_receivewal was started again";
    RunResult r = stop_streaming();
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(contains(r.err, "hung")) << r.err;
    EXPECT_FALSE(contains(r.err, "pg_receivewal stopped")) << r.err;
}

// pg_receivewal killed while it fills a new segment with zeros leaves a
// shorter .partial that every later pg_receivewal refused: streaming never
// resumed (a CI run's failure). It holds no WAL and goes; nothing is lost.
TEST_F(PitrTest, AnUnfinishedPartialSegmentDoesNotStopStreamingForGood) {
    start_streaming();
    ASSERT_EQ(run_pgward({"basebackup"}, env()).exit_code, 0);
    mark(1);
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);
    std::string partial;
    for (const std::string& file : list_dir(archive())) {
        if (file.ends_with(".partial")) {
            partial = file;
        }
    }
    ASSERT_FALSE(partial.empty());
    write_text(archive() / partial, std::string(15802368, '\0'), 0600);

    start_streaming();
    mark(2);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    RunResult r = stop_streaming();
    EXPECT_TRUE(contains(r.err,
                         "msg=\"removed a partial WAL segment pg_receivewal left "
                         "unfinished (zeros only)\" file=" +
                             partial + " bytes=15802368"))
        << r.err;
    EXPECT_EQ(recovered_marks({}, "resumed"), "1,2");
}

TEST_F(PitrTest, ABaseBackupThatCannotBeTakenLeavesNothingAndSaysWhy) {
    Env wrong = env();
    wrong.emplace_back("POSTGRES_PASSWORD", "not-the-password");
    RunResult r = run_pgward({"basebackup"}, wrong);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "password authentication failed")) << r.err;
    EXPECT_FALSE(fs::exists(backups_ / "base"));

    // A role without REPLICATION: pg_basebackup is refused, nothing published.
    PgCluster::instance().exec(
        "postgres", "DROP ROLE IF EXISTS pitr_plain; CREATE ROLE pitr_plain LOGIN PASSWORD 'pw'");
    Env plain = env();
    plain.emplace_back("POSTGRES_USER", "pitr_plain");
    plain.emplace_back("POSTGRES_PASSWORD", "pw");
    RunResult refused = run_pgward({"basebackup"}, plain);
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_TRUE(contains(refused.err, "REPLICATION")) << refused.err;
    EXPECT_FALSE(fs::exists(backups_ / "base"));

    RunResult no_pgdata = run_pgward({"restore", "--pitr"}, env());
    EXPECT_EQ(no_pgdata.exit_code, 2);
    EXPECT_TRUE(contains(no_pgdata.err, "--pitr needs --pgdata")) << no_pgdata.err;
    RunResult none = run_pgward({"restore", "--pitr", "--pgdata", (dir_ / "x").string()}, env());
    EXPECT_EQ(none.exit_code, 1);
    EXPECT_TRUE(contains(none.err, "no base backups in " + (backups_ / "base").string()))
        << none.err;
    PgCluster::instance().exec("postgres", "DROP ROLE pitr_plain");
}

// How the server sees a slot: wal_status ("" when there is no such slot).
std::string slot_wal_status(const std::string& slot) {
    return PgCluster::instance().query_value(
        "postgres",
        "SELECT coalesce((SELECT coalesce(wal_status, 'none') FROM pg_replication_slots WHERE "
        "slot_name = '" +
            slot + "'), '')");
}

// Fills and switches WAL segments and checkpoints until the server has
// invalidated `slot` (max_slot_wal_keep_size set small beforehand).
bool push_wal_until_lost(const std::string& slot) {
    PgCluster::instance().exec("pitr_app", "CREATE TABLE IF NOT EXISTS filler(x text)");
    return eventually(
        [&] {
            PgCluster::instance().exec(
                "pitr_app",
                "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 3000)");
            PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
            PgCluster::instance().exec("postgres", "CHECKPOINT");
            return slot_wal_status(slot) == "lost";
        },
        60s);
}

// The server keeps only 1 MB of WAL for slots until the end of the scope.
struct SmallSlotWalKeep {
    SmallSlotWalKeep() { set("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'"); }
    ~SmallSlotWalKeep() { reset(); }
    void reset() {
        if (std::exchange(active_, false)) {
            set("ALTER SYSTEM RESET max_slot_wal_keep_size");
        }
    }
    SmallSlotWalKeep(const SmallSlotWalKeep&) = delete;
    SmallSlotWalKeep& operator=(const SmallSlotWalKeep&) = delete;

  private:
    static void set(const std::string& sql) {
        PgCluster::instance().exec("postgres", sql);
        PgCluster::instance().exec("postgres", "SELECT pg_reload_conf()");
    }
    bool active_ = true;
};

// pg_receivewal --create-slot makes a slot that holds no WAL until it first
// streams: a checkpoint in between (the base backup the service takes as it
// starts) removed the very WAL it was about to ask for, and streaming never
// resumed (a CI run's failure). The streamer's slot holds WAL from the moment
// it is made, and one the server invalidated, or one holding nothing, is
// replaced.
TEST_F(PitrTest, TheSlotHoldsWalFromItsCreationAndAnInvalidatedOneIsMadeAgain) {
    const std::string slot = "pgward_reserve_test";
    pg::Connection conn =
        pg::Connection::open(PgCluster::instance().options("postgres"), "pgward tests");
    struct DropSlot {
        pg::Connection& conn;
        std::string slot;
        ~DropSlot() {
            conn.exec(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE "
                "slot_name = $1",
                {slot});
        }
    } drop{conn, slot};

    const ReplicationSlotView made = ensure_replication_slot(conn, slot);
    ASSERT_TRUE(made.exists);
    ASSERT_TRUE(made.restart_lsn) << "WAL is held before anything streams";
    EXPECT_FALSE(made.lost);
    PgCluster::instance().exec("pitr_app", "CREATE TABLE IF NOT EXISTS filler(x text)");
    for (int i = 0; i < 3; ++i) {
        PgCluster::instance().exec("pitr_app", "INSERT INTO filler VALUES ('x')");
        PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
        PgCluster::instance().exec("postgres", "CHECKPOINT");
    }
    EXPECT_EQ(slot_wal_status(slot), "reserved");
    EXPECT_EQ(PgCluster::instance().query_value(
                  "postgres", "SELECT count(*) FROM pg_ls_waldir() WHERE name = pg_walfile_name('" +
                                  made.restart_lsn->text() + "')"),
              "1")
        << "the checkpoints kept the slot's WAL";
    EXPECT_EQ(ensure_replication_slot(conn, slot).restart_lsn, made.restart_lsn)
        << "a slot holding WAL is kept as it is";

    {
        SmallSlotWalKeep small;
        ASSERT_TRUE(push_wal_until_lost(slot));
    }
    bool was_lost = false;
    const ReplicationSlotView again = ensure_replication_slot(conn, slot, &was_lost);
    EXPECT_TRUE(was_lost);
    EXPECT_TRUE(again.restart_lsn);
    EXPECT_FALSE(again.lost);
    EXPECT_NE(slot_wal_status(slot), "lost");

    // Made the way pg_receivewal --create-slot makes one: holding nothing.
    conn.exec("SELECT pg_drop_replication_slot($1)", {slot});
    conn.exec("SELECT pg_create_physical_replication_slot($1)", {slot});
    EXPECT_EQ(slot_wal_status(slot), "none");
    was_lost = true;
    EXPECT_TRUE(ensure_replication_slot(conn, slot, &was_lost).restart_lsn);
    EXPECT_FALSE(was_lost) << "it held nothing, so nothing was lost";

    // A role without REPLICATION is told what it lacks.
    PgCluster::instance().exec(
        "postgres", "DROP ROLE IF EXISTS pitr_noslot; CREATE ROLE pitr_noslot LOGIN PASSWORD 'pw'");
    pg::ConnectionOptions plain = PgCluster::instance().options("postgres");
    plain.user = pg::ConnectionOptions::Setting{"pitr_noslot", true};
    plain.password = "pw";
    try {
        pg::Connection as_plain = pg::Connection::open(plain, "pgward tests");
        ensure_replication_slot(as_plain, "pgward_noslot");
        ADD_FAILURE() << "a role without REPLICATION made a slot";
    } catch (const Error& e) {
        EXPECT_TRUE(contains(e.what(), "cannot create the replication slot \"pgward_noslot\""))
            << e.what();
        EXPECT_TRUE(contains(e.hint(), "REPLICATION")) << e.hint();
    }
    PgCluster::instance().exec("postgres", "DROP ROLE pitr_noslot");
}

// The server removed WAL the archive did not have yet (pg_receivewal frozen,
// the slot invalidated): streaming once stayed stuck at the archive's end for
// good. The streamer names the gap, resumes where the server still has WAL,
// the service alerts and takes a base backup at once, and recovery works on
// both sides of the gap: before it from the old base backup, after it from
// the new one; a target inside it is refused, naming the missing segment.
TEST_F(PitrTest, WalTheServerRemovedIsAGapNamedAndStreamingResumesPastItWithABaseBackup) {
    Receiver receiver;
    start_service(receiver, {{"POSTGRES_BACKUP_ON_START", "false"}});
    const fs::path state_path = backups_ / ".pgward-pitr_app.state.json";
    ASSERT_TRUE(eventually([&] { return published_base_backups() == 1; }, 60s));
    mark(1);
    ASSERT_TRUE(wait_streamed());
    const std::string before_gap = server_time();
    std::this_thread::sleep_for(10ms);
    PgCluster::instance().exec("pitr_app", "CREATE TABLE filler(x text)");  // a commit after it
    ASSERT_TRUE(wait_streamed());

    const auto frozen = freeze_receiver();
    ASSERT_NE(frozen->pid(), 0) << "the streamer's pg_receivewal was not frozen";
    mark(2);
    {
        SmallSlotWalKeep small;
        ASSERT_TRUE(push_wal_until_lost("pgward")) << slot_wal_status("pgward");
        // Whole segments go too (nothing holds WAL now).
        for (int i = 0; i < 2; ++i) {
            PgCluster::instance().exec("pitr_app", "INSERT INTO filler VALUES ('x')");
            PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
            PgCluster::instance().exec("postgres", "CHECKPOINT");
        }
    }
    frozen->thaw();

    ASSERT_TRUE(eventually(
        [&] {
            auto failing = receiver.last_event("wal_failing");
            return failing && contains(failing->at("reason").get<std::string>(),
                                       "WAL gap: the server no longer has the WAL from segment");
        },
        60s))
        << slurp(state_path);
    ASSERT_TRUE(eventually([&] { return published_base_backups() == 2; }, 60s));
    ASSERT_TRUE(eventually(
        [&] {
            auto w = nlohmann::json::parse(slurp(state_path)).at("wal");
            return w.at("streaming") == true && w.at("problem").is_null() && w.at("gap").is_null();
        },
        30s))
        << slurp(state_path);
    // (Sent just after the state is written.)
    ASSERT_TRUE(eventually([&] { return receiver.last_event("wal_recovered").has_value(); }, 10s));
    mark(3);
    ASSERT_TRUE(wait_streamed());
    RunResult stopped = stop_streaming();
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_TRUE(contains(stopped.out, "WAL gap: the server no longer has the WAL from segment"))
        << stopped.out;
    EXPECT_TRUE(contains(stopped.out, "streaming resumes at")) << stopped.out;

    EXPECT_EQ(recovered_marks({}, "after"), "1,2,3");
    EXPECT_EQ(recovered_marks({"--to", before_gap}, "before"), "1");

    // The segment streaming stopped in stays, followed by the gap.
    std::vector<std::string> files = list_dir(archive());
    std::sort(files.begin(), files.end());
    std::optional<pg::WalFileName> stopped_in;
    for (size_t i = 0; i + 1 < files.size(); ++i) {
        if (files[i].ends_with(".partial")) {
            stopped_in = pg::WalFileName::parse(files[i]);
        }
    }
    ASSERT_TRUE(stopped_in) << "no .partial before the gap";
    const uint64_t size = pg::kDefaultSegmentSize;
    const uint64_t removed = stopped_in->segment_number(size) + 1;
    ASSERT_FALSE(fs::exists(archive() / pg::WalFileName::segment_name(1, removed, size)));
    pg::Lsn in_gap = pg::segment_start(removed, size);
    in_gap.value += 0x100;
    const fs::path inside = dir_ / "inside";
    fs::create_directory(inside);
    RunResult refused = run_pgward(
        {"restore", "--pitr", "--pgdata", inside.string(), "--to", in_gap.text()}, env());
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_TRUE(contains(refused.err, "ends where streaming stopped, and the WAL after it up to "))
        << refused.err;
    EXPECT_TRUE(contains(refused.err, "was removed by the server before it was streamed"))
        << refused.err;
    EXPECT_TRUE(fs::is_empty(inside));
}

// A full disk under wal/ (a small tmpfs on the archive's folder): pg_receivewal
// cannot write, the stop is alerted with its reason, the slot keeps the WAL
// on the server meanwhile, and once there is room again streaming resumes
// with no gap: recovery has every mark.
TEST_F(PitrTest, AFullDiskUnderTheArchiveIsAlertedWithItsReasonAndLosesNothing) {
    if (::geteuid() != 0) {
        GTEST_SKIP() << "mounting a small file system needs root";
    }
    fs::create_directories(archive());
    if (::mount("tmpfs", archive().c_str(), "tmpfs", 0, "size=48m,mode=0700") != 0) {
        GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    }
    struct Unmount {
        fs::path at;
        ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
    } unmount{archive()};

    Receiver receiver;
    start_service(receiver, {{"POSTGRES_BACKUP_ON_START", "false"}});
    ASSERT_TRUE(eventually([&] { return published_base_backups() == 1; }, 60s));
    mark(1);
    ASSERT_TRUE(wait_streamed());

    // More WAL than the archive's disk holds (48 MB): the stop is alerted.
    PgCluster::instance().exec("pitr_app", "CREATE TABLE filler(x text)");
    for (int i = 0; i < 4; ++i) {
        PgCluster::instance().exec(
            "pitr_app",
            "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 3000)");
        PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    }
    ASSERT_TRUE(eventually(
        [&] {
            auto failing = receiver.last_event("wal_failing");
            return failing &&
                   contains(failing->at("reason").get<std::string>(), "No space left on device");
        },
        30s))
        << (receiver.last_event("wal_failing") ? receiver.last_event("wal_failing")->dump() : "");
    const std::string reason = receiver.last_event("wal_failing")->at("reason");
    EXPECT_TRUE(contains(reason, "WAL has not been streamed since ")) << reason;
    EXPECT_TRUE(contains(reason, "pg_receivewal said: ")) << reason;
    mark(2);
    EXPECT_NE(slot_wal_status("pgward"), "lost");

    // Room again.
    ASSERT_EQ(::mount(nullptr, archive().c_str(), nullptr, MS_REMOUNT, "size=2g,mode=0700"), 0)
        << std::strerror(errno);
    ASSERT_TRUE(eventually([&] { return receiver.last_event("wal_recovered").has_value(); }, 60s));
    mark(3);
    ASSERT_TRUE(wait_streamed());
    RunResult stopped = stop_streaming();
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_FALSE(contains(stopped.out, "WAL gap")) << stopped.out;
    EXPECT_EQ(recovered_marks({}, "after_full"), "1,2,3");
}

// A gap outlives a restart: a service started again with a gap in its state
// file (the last run was stopped before its base backup after the gap) takes
// that base backup at once, not a base interval later, and then clears it.
TEST_F(PitrTest, AGapInTheStateFileGetsItsBaseBackupAtOnceAfterARestart) {
    Receiver receiver;
    start_service(receiver, {{"POSTGRES_BACKUP_ON_START", "false"}});
    ASSERT_TRUE(eventually([&] { return published_base_backups() == 1; }, 60s));
    ASSERT_EQ(stop_streaming().exit_code, 0);

    const fs::path state_path = backups_ / ".pgward-pitr_app.state.json";
    nlohmann::json state = nlohmann::json::parse(slurp(state_path));
    state["wal"]["gap"] = "WAL gap: the server no longer has the WAL from segment A up to B";
    state["wal"]["gap_at"] = "2026-01-01T00:00:00Z";
    write_text(state_path, state.dump(), 0600);
    // A second apart: base backups are named by the second they start.
    std::this_thread::sleep_for(1100ms);

    start_service(receiver, {{"POSTGRES_BACKUP_ON_START", "false"}});
    ASSERT_TRUE(eventually([&] { return published_base_backups() == 2; }, 60s));
    ASSERT_TRUE(eventually(
        [&] {
            auto w = nlohmann::json::parse(slurp(state_path)).at("wal");
            return w.at("gap").is_null() && w.at("problem").is_null();
        },
        30s))
        << slurp(state_path);
    RunResult stopped = stop_streaming();
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_TRUE(contains(stopped.out, "msg=\"base backup done\"")) << stopped.out;
}

// run --wal with a drill interval: each scheduled drill also proves
// point-in-time recovery (the newest base backup and the WAL recovered to the
// newest dump's restore point, table by table); a PITR drill that fails
// fails the scheduled drill, named; POSTGRES_DRILL_PITR=false leaves it out.
TEST_F(PitrTest, TheScheduledDrillAlsoProvesPointInTimeRecovery) {
    fs::create_directories(archive());  // the first dump makes a restore point
    PgCluster::instance().exec("pitr_app",
                               "CREATE TABLE items(id int PRIMARY KEY); "
                               "INSERT INTO items SELECT generate_series(1, 200)");
    const fs::path reports = dir_ / "reports";
    const fs::path tmp = shared_subdir("tmp");  // beside the other shards' sandboxes
    Receiver receiver;
    start_service(receiver, {{"POSTGRES_DRILL_INTERVAL_SECONDS", "4"},
                             {"PGWARD_REPORT_DIR", reports.string()},
                             {"TMPDIR", tmp.string()}});
    const fs::path state_path = backups_ / ".pgward-pitr_app.state.json";
    ASSERT_TRUE(eventually(
        [&] {
            try {
                return nlohmann::json::parse(slurp(state_path))
                           .value("drills_succeeded_total", 0) >= 1;
            } catch (...) {
                return false;
            }
        },
        120s))
        << slurp(state_path);
    RunResult stopped = stop_streaming();
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_TRUE(contains(stopped.out,
                         "msg=\"scheduled point-in-time recovery drill finished\" "
                         "database=pitr_app success=true"))
        << stopped.out;
    // The first base backup before the first dump (both due at start): the
    // dump's restore point can be recovered to (it could not when the dump
    // went first: every drill failed until the next day's dump).
    const size_t base_done = stopped.out.find("msg=\"base backup done\"");
    const size_t dump_begin = stopped.out.find("msg=\"backup begin\"");
    ASSERT_NE(base_done, std::string::npos) << stopped.out;
    ASSERT_NE(dump_begin, std::string::npos) << stopped.out;
    EXPECT_LT(base_done, dump_begin) << stopped.out;
    size_t pitr_reports = 0;
    for (const std::string& file : list_dir(reports)) {
        const auto report = nlohmann::json::parse(slurp(reports / file));
        if (report.value("kind", "") == "pitr") {
            ++pitr_reports;
            EXPECT_EQ(report.at("restore_success"), true) << report.dump(2);
        }
    }
    EXPECT_GE(pitr_reports, 1U);

    // The WAL the recovery needs damaged: the PITR drill fails, and so does
    // the scheduled drill, saying which part failed.
    const std::vector<std::string> segments = archive_segments();
    ASSERT_FALSE(segments.empty());
    for (const std::string& segment : segments) {
        std::fstream f(archive() / segment, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(8192 + 8);
        f.put('\x7f');
    }
    start_service(receiver, {{"POSTGRES_DRILL_INTERVAL_SECONDS", "4"},
                             {"POSTGRES_BACKUP_ON_START", "false"},
                             {"PGWARD_REPORT_DIR", reports.string()},
                             {"TMPDIR", tmp.string()}});
    ASSERT_TRUE(eventually(
        [&] {
            auto failed = receiver.last_event("drill_failed");
            return failed.has_value();
        },
        120s))
        << slurp(state_path);
    const auto failed = *receiver.last_event("drill_failed");
    EXPECT_TRUE(contains(failed.dump(), "point-in-time recovery drill: ")) << failed.dump();
    EXPECT_TRUE(contains(failed.dump(), "is damaged")) << failed.dump();
    ASSERT_EQ(stop_streaming().exit_code, 0);

    // Left out when asked.
    RunResult alone = run_pgward({"run", "--drill-pitr"}, env());
    EXPECT_EQ(alone.exit_code, 2);
    EXPECT_TRUE(contains(alone.err, "--drill-pitr goes with --wal")) << alone.err;
}

// A scheduled base backup that fails is alerted once, shown in healthcheck
// and status, retried with the service's backoff, and its recovery alerted.
TEST_F(PitrTest, AFailingScheduledBaseBackupIsAlertedAndItsRecoveryToo) {
    fs::create_directories(backups_);
    write_text(backups_ / "base", "in the way");  // base/ cannot be made
    Receiver receiver;
    start_service(receiver, {{"POSTGRES_BACKUP_RETRY_SECONDS", "1"},
                             {"POSTGRES_BACKUP_RETRY_MAX_SECONDS", "2"}});
    ASSERT_TRUE(
        eventually([&] { return receiver.last_event("base_backup_failed").has_value(); }, 60s));
    const auto failed = *receiver.last_event("base_backup_failed");
    EXPECT_EQ(failed.at("consecutive_failures"), 1) << failed.dump();
    EXPECT_TRUE(contains(failed.at("reason").get<std::string>(), (backups_ / "base").string()))
        << failed.dump();
    RunResult health = run_pgward({"healthcheck"}, env());
    EXPECT_EQ(health.exit_code, 1);
    EXPECT_TRUE(contains(health.out, "scheduled base backup(s) failed")) << health.out;
    RunResult status = run_pgward({"status"}, env());
    EXPECT_TRUE(contains(status.out, "base backup failure: ")) << status.out;

    fs::remove(backups_ / "base");
    ASSERT_TRUE(
        eventually([&] { return receiver.last_event("base_backup_recovered").has_value(); }, 60s));
    // One alert for the run of failures, however many retries it took.
    size_t failed_alerts = 0;
    for (const auto& request : receiver.requests()) {
        failed_alerts += contains(request.body, "\"base_backup_failed\"");
    }
    EXPECT_EQ(failed_alerts, 1U);
    RunResult stopped = stop_streaming();
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;
    EXPECT_EQ(published_base_backups(), 1U);
    const auto state = nlohmann::json::parse(slurp(backups_ / ".pgward-pitr_app.state.json"));
    EXPECT_TRUE(state.at("wal").at("base_failure").is_null()) << state.dump(2);
    EXPECT_TRUE(state.at("wal").at("last_base_backup_at").is_string()) << state.dump(2);
}

// A timeline switch: the server recovered to a moment in the past and
// promoted (timeline 2), then streamed into the same archive. The streamer
// follows it (the old timeline's WAL past the fork set aside and kept), and
// recovery to latest from the old base backup follows it too.
TEST_F(PitrTest, ATimelineSwitchIsFollowedByTheStreamerAndByRecovery) {
    start_streaming();
    ASSERT_EQ(run_pgward({"basebackup"}, env()).exit_code, 0);
    const std::string between = time_between_marks(1, 2);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    mark(20);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);

    // The operator goes back to `between` (a bad migration after it): timeline 2.
    EXPECT_EQ(recovered_marks({"--to", between}, "promoted"), "1");
    DataDirServer promoted(dir_ / "promoted");
    ASSERT_TRUE(promoted.start()) << promoted.log();
    ASSERT_EQ(promoted.query_value("postgres",
                                   "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)"),
              "00000002");
    promoted.query_value("pitr_app", "INSERT INTO marks(id) VALUES (3) RETURNING id");
    promoted.query_value("postgres", "SELECT pg_switch_wal()");
    promoted.query_value("pitr_app", "INSERT INTO marks(id) VALUES (4) RETURNING id");
    const std::string promoted_lsn =
        promoted.query_value("postgres", "SELECT pg_current_wal_lsn()::text");

    // The service streams the promoted server into the same archive.
    Receiver receiver;
    Env promoted_settings = promoted.env();
    promoted_settings.insert(promoted_settings.end(),
                             {{"POSTGRES_BACKUP_WAL", "true"},
                              {"POSTGRES_BACKUP_WAL_CHECK_SECONDS", "1"},
                              {"POSTGRES_BACKUP_ON_START", "false"},
                              {"PGWARD_NOTIFY_URL", receiver.url("/hook")}});
    streamer_ =
        std::make_unique<BackgroundPgward>(std::vector<std::string>{"run"}, env(promoted_settings));
    ASSERT_TRUE(eventually(
        [&] {
            return promoted.query_value(
                       "postgres",
                       "SELECT count(*) > 0 FROM pg_stat_replication WHERE application_name = "
                       "'pgward_wal' AND write_lsn >= '" +
                           promoted_lsn + "'::pg_lsn") == "t";
        },
        60s))
        << stop_streaming().err;
    RunResult streamed = stop_streaming();
    EXPECT_EQ(streamed.exit_code, 0) << streamed.err;
    // The service logs to stdout.
    EXPECT_TRUE(contains(streamed.out, "the server moved to timeline 2, which left timeline 1 at "))
        << streamed.out;
    EXPECT_FALSE(contains(streamed.out, "level=error")) << streamed.out;
    // Alerted (not a failure), and in the state `status` shows.
    const auto switched = receiver.last_event("wal_timeline_switched");
    ASSERT_TRUE(switched.has_value()) << streamed.out;
    EXPECT_TRUE(contains(switched->at("detail").get<std::string>(),
                         "the server moved to timeline 2, which left timeline 1 at "))
        << switched->dump();
    EXPECT_TRUE(contains(switched->at("detail").get<std::string>(), "forked-timeline-1"))
        << switched->dump();
    EXPECT_EQ(switched->at("healthy"), true);
    RunResult status = run_pgward({"status"}, env());
    EXPECT_TRUE(contains(status.out, "timeline switch: ")) << status.out;
    EXPECT_TRUE(fs::exists(archive() / "00000002.history"));
    // The old timeline's WAL past the fork (marks 2 and 20) is kept aside.
    ASSERT_TRUE(fs::is_directory(archive() / "forked-timeline-1"));
    EXPECT_FALSE(list_dir(archive() / "forked-timeline-1").empty());

    // A base backup of the old timeline taken after the fork (the nightly
    // one, before anyone noticed): recovery along timeline 2 cannot start
    // from it, so it starts from the one before the fork.
    RunResult late_base = run_pgward({"basebackup"}, env());
    ASSERT_EQ(late_base.exit_code, 0) << late_base.err;
    // Recovery to latest from the timeline 1 base backup follows timeline 2.
    EXPECT_EQ(recovered_marks({}, "to-latest"), "1,3,4");
    EXPECT_EQ(recovered_marks({"--to", between}, "to-between"), "1");
}

// A dump's restore point comes a moment after its snapshot: what commits in
// between is in the recovery and not in the dump. The server's write
// counters, read at the snapshot and again after the restore point, name
// such tables in the manifest, and the PITR drill warns about them instead
// of failing; every other table must still match.
TEST_F(PitrTest, ATableWrittenBetweenTheSnapshotAndTheRestorePointIsNamedNotFailed) {
    start_streaming();
    ASSERT_EQ(run_pgward({"basebackup"}, env()).exit_code, 0);
    PgCluster::instance().exec("pitr_app",
                               "CREATE TABLE items(id int PRIMARY KEY); "
                               "INSERT INTO items SELECT generate_series(1, 100); "
                               "CREATE TABLE hot(id bigserial PRIMARY KEY, at timestamptz "
                               "DEFAULT clock_timestamp())");
    // A client committing one row at a time for the whole backup.
    std::atomic<bool> writing{true};
    std::atomic<uint64_t> written{0};
    std::thread writer([&] {
        pg::Connection conn = PgCluster::instance().connect("pitr_app");
        while (writing) {
            conn.exec("INSERT INTO hot DEFAULT VALUES");
            ++written;
        }
    });
    RunResult dump = run_pgward({"backup"}, env());
    writing = false;
    writer.join();
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    EXPECT_GT(written.load(), 0U);
    const fs::path manifest_path = newest_dump_manifest();
    ASSERT_FALSE(manifest_path.empty());
    auto manifest = nlohmann::json::parse(slurp(manifest_path));
    const auto& point = manifest.at("restore_point");
    EXPECT_GE(point.at("gap_ms").get<double>(), 0.0) << point.dump();
    EXPECT_GE(point.at("counters_window_ms").get<double>(), 1500.0) << point.dump();
    std::set<std::string> written_around;
    for (const auto& t : manifest.at("written_around_restore_point")) {
        written_around.insert(t.at("schema").get<std::string>() + "." +
                              t.at("name").get<std::string>());
    }
    EXPECT_EQ(written_around.count("public.hot"), 1U) << manifest.dump(2);
    EXPECT_EQ(written_around.count("public.items"), 0U) << manifest.dump(2);

    // Wider than any real gap, to be sure the recovery differs there: more
    // rows in hot, then a restore point of our own in the manifest's place.
    PgCluster::instance().exec("pitr_app", "INSERT INTO hot DEFAULT VALUES");
    auto point_at = [&](const std::string& name) {
        manifest["restore_point"]["name"] = name;
        manifest["restore_point"]["lsn"] = PgCluster::instance().query_value(
            "postgres", "SELECT pg_create_restore_point('" + name + "')::text");
        write_text(manifest_path, manifest.dump(2));
    };
    point_at("later");
    ASSERT_TRUE(wait_streamed());
    const fs::path reports = dir_ / "reports";
    Env drill_env = env({{"TMPDIR", shared_subdir("tmp").string()}});
    RunResult drill = run_pgward({"drill", "--pitr", "--report-dir", reports.string()}, drill_env);
    ASSERT_EQ(drill.exit_code, 0) << drill.err;
    auto report = nlohmann::json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))));
    EXPECT_TRUE(schema_problems(
                    nlohmann::json::parse(slurp(kSource / "docs/drill-report.schema.json")), report)
                    .empty());
    ASSERT_EQ(report.at("pitr").at("written_between").size(), 1U) << report.dump(2);
    const auto& hot = report.at("pitr").at("written_between").at(0);
    EXPECT_EQ(hot.at("name"), "hot");
    EXPECT_GT(hot.at("rows_recovered").get<uint64_t>(), hot.at("rows_dump").get<uint64_t>());
    EXPECT_TRUE(contains(report.at("warnings").dump(),
                         "table public.hot was written between the dump's snapshot and its "
                         "restore point"))
        << report.at("warnings").dump();

    // A table the counters did not see written is still compared: a row gone
    // from items fails the drill, naming it.
    PgCluster::instance().exec("pitr_app", "DELETE FROM items WHERE id = 7");
    point_at("later2");
    ASSERT_TRUE(wait_streamed());
    RunResult failed = run_pgward({"drill", "--pitr", "--report-dir", reports.string()}, drill_env);
    EXPECT_EQ(failed.exit_code, 1);
    report = nlohmann::json::parse(slurp(failed.out.substr(0, failed.out.find('\n'))));
    bool items_named = false;
    for (const auto& check : report.at("checks")) {
        if (check.at("name") == "table_row_counts_match") {
            EXPECT_EQ(check.at("passed"), false);
            items_named = contains(check.at("actual").get<std::string>(),
                                   "public.items (100 before, 99 after)");
        }
    }
    EXPECT_TRUE(items_named) << report.at("checks").dump(2);
}

// The offsite copy of the WAL and base backups, against a real S3 server
// (Ceph RGW): what a recovery needs when the host and its backup volume are
// gone.
class PitrOffsiteTest : public PitrTest {
  protected:
    void SetUp() override {
        PitrTest::SetUp();
        s3_ = S3Server::instance();
        if (s3_ == nullptr) {
            GTEST_SKIP() << S3Server::skip_reason();
        }
        std::string name =
            std::string("pitr-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
        for (char& c : name) {
            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        bucket_ = s3_->make_bucket(name.substr(0, 50));
        extra_env_ = s3_->credentials_env();
        extra_env_.emplace_back("AWS_ENDPOINT_URL", s3_->endpoint());
        extra_env_.emplace_back("POSTGRES_BACKUP_REMOTE", remote());
    }

    std::string remote() const { return "s3://" + bucket_ + "/prod"; }
    std::vector<std::string> keys(const std::string& under) const {
        std::vector<std::string> out;
        for (const auto& [key, size] : s3_->list(bucket_, "prod/" + under)) {
            out.push_back(key.substr(std::string("prod/").size()));
        }
        return out;
    }
    std::string system() const { return archive().filename().string(); }

    S3Server* s3_ = nullptr;
    std::string bucket_;
};

TEST_F(PitrOffsiteTest, TheWalAndBaseBackupsArePushedProvenAndRecoveredFromTheBucketAlone) {
    start_streaming();
    RunResult base = run_pgward({"basebackup"}, env());
    ASSERT_EQ(base.exit_code, 0) << base.err;
    const fs::path base_dir = base.out.substr(0, base.out.find('\n'));
    mark(1);
    // A dump with its restore point: what drill --pitr --remote proves against.
    RunResult dump = run_pgward({"backup"}, env());
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    std::this_thread::sleep_for(1100ms);
    const std::string between = server_time();
    std::this_thread::sleep_for(1100ms);
    mark(2);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    mark(3);
    // Only completed segments go up: the one holding mark 3 is completed too.
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);

    RunResult push = run_pgward({"push"}, env());
    ASSERT_EQ(push.exit_code, 0) << push.err;
    const std::string base_key = "base/" + system() + "/" + base_dir.filename().string();
    EXPECT_TRUE(contains(push.out, base_key + "\n")) << push.out;
    EXPECT_TRUE(contains(push.out, "wal/" + system() + "/")) << push.out;
    // Every file in the bucket is the local one (read by an independent client).
    size_t segments = 0;
    for (const std::string& file : list_dir(archive())) {
        if (file.size() != 24) {
            continue;
        }
        ++segments;
        EXPECT_EQ(s3_->sha256(bucket_, "prod/wal/" + system() + "/" + file),
                  sha256_file_hex(archive() / file))
            << file;
    }
    EXPECT_GE(segments, 2U);
    for (const char* file : {"base.tar", "pg_wal.tar", "backup_manifest"}) {
        EXPECT_EQ(s3_->sha256(bucket_, "prod/" + base_key + "/" + file),
                  sha256_file_hex(base_dir / file))
            << file;
    }
    const std::vector<std::string> sums = keys("wal/" + system() + "/sums-");
    ASSERT_FALSE(sums.empty());
    // Nothing twice.
    RunResult again = run_pgward({"push"}, env());
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out, "");

    // The host is gone with its backup volume.
    fs::rename(backups_, dir_ / "lost");
    fs::create_directories(backups_);
    EXPECT_EQ(recovered_marks({"--remote", "--to", between}, "to-time"), "1");
    EXPECT_EQ(recovered_marks({"--remote"}, "to-latest"), "1,2,3");
    for (const std::string& name : list_dir(dir_)) {
        EXPECT_FALSE(name.starts_with(".pgward-fetch-")) << name;
    }
    // The PITR drill from the bucket alone: recovered to the dump's restore
    // point, table by table as the dump's manifest says.
    const fs::path reports = dir_ / "reports";
    RunResult drill = run_pgward({"drill", "--pitr", "--remote", "--report-dir", reports.string()},
                                 env({{"TMPDIR", shared_subdir("tmp").string()}}));
    ASSERT_EQ(drill.exit_code, 0) << drill.err;
    const auto report = nlohmann::json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))));
    EXPECT_EQ(report.at("kind"), "pitr");
    EXPECT_EQ(report.at("restore_success"), true) << report.dump(2);
    EXPECT_TRUE(list_dir(backups_).empty());

    // A target before every stored base backup is refused before anything is fetched.
    RunResult early = run_pgward({"restore", "--pitr", "--remote", "--to", "2001-01-01T00:00:00Z",
                                  "--pgdata", (dir_ / "early").string()},
                                 env());
    EXPECT_EQ(early.exit_code, 1);
    EXPECT_TRUE(contains(early.err, "is before every base backup in " + remote() + "/base/" +
                                        system() + "/: the oldest, "))
        << early.err;
    EXPECT_FALSE(fs::exists(dir_ / "early"));

    // A segment changed in the bucket: refused by name, nothing laid out or left.
    std::string newest;
    for (const std::string& file : list_dir(dir_ / "lost" / "wal" / system())) {
        newest = file.size() == 24 ? file : newest;
    }
    std::string bytes = slurp(dir_ / "lost" / "wal" / system() / newest);
    bytes[bytes.size() - 100] = static_cast<char>(bytes[bytes.size() - 100] ^ 0x01);
    write_text(dir_ / "changed", bytes);
    s3_->put(bucket_, "prod/wal/" + system() + "/" + newest, dir_ / "changed");
    RunResult changed = run_pgward(
        {"restore", "--pitr", "--remote", "--pgdata", (dir_ / "changed-wal").string()}, env());
    EXPECT_EQ(changed.exit_code, 1);
    EXPECT_TRUE(contains(changed.err, remote() + "/wal/" + system() + "/" + newest +
                                          " is not the file that was uploaded and proven"))
        << changed.err;
    EXPECT_FALSE(fs::exists(dir_ / "changed-wal"));
    for (const std::string& name : list_dir(dir_)) {
        EXPECT_FALSE(name.starts_with(".pgward-fetch-")) << name;
    }
    RunResult fetch_wal = run_pgward(
        {"restore", "--pitr", "--remote", "--fetch-wal", "--pgdata", (dir_ / "fetch-wal").string()},
        env());
    EXPECT_EQ(fetch_wal.exit_code, 2);
    EXPECT_TRUE(contains(fetch_wal.err, "--fetch-wal does not go with --remote")) << fetch_wal.err;
}

// The whole way with a role that is not a superuser, as docs/pitr.md sets
// it up (REPLICATION, pg_read_all_data for the dumps, EXECUTE on
// pg_create_restore_point): streaming, a base backup, a dump with its
// restore point, the copy to the bucket, and the PITR drill from the bucket.
TEST_F(PitrOffsiteTest, ARoleThatIsNotASuperuserStreamsBacksUpAndProvesFromTheBucket) {
    const PgCluster& cluster = PgCluster::instance();
    cluster.exec("postgres", "DROP ROLE IF EXISTS pitr_operator");
    cluster.exec("postgres",
                 "CREATE ROLE pitr_operator LOGIN REPLICATION PASSWORD 'op w''rd 1'; "
                 "GRANT pg_read_all_data TO pitr_operator");
    // In the database pgward dumps: a function's rights are per database.
    cluster.exec("pitr_app",
                 "GRANT EXECUTE ON FUNCTION pg_catalog.pg_create_restore_point(text) TO "
                 "pitr_operator");
    struct DropRole {
        ~DropRole() {
            try {
                PgCluster::instance().exec(
                    "pitr_app",
                    "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_create_restore_point(text) FROM "
                    "pitr_operator");
                PgCluster::instance().exec("postgres", "DROP ROLE pitr_operator");
            } catch (const std::exception& e) {
                std::cerr << "cannot drop pitr_operator: " << e.what() << "\n";
            }
        }
    } drop_role;
    ASSERT_EQ(cluster.query_value("postgres",
                                  "SELECT rolsuper FROM pg_roles WHERE rolname = 'pitr_operator'"),
              "f");
    extra_env_.emplace_back("POSTGRES_USER", "pitr_operator");
    extra_env_.emplace_back("POSTGRES_PASSWORD", "op w'rd 1");

    start_streaming();
    RunResult base = run_pgward({"basebackup"}, env());
    ASSERT_EQ(base.exit_code, 0) << base.err;
    mark(1);
    RunResult dump = run_pgward({"backup"}, env());
    ASSERT_EQ(dump.exit_code, 0) << dump.err;
    EXPECT_FALSE(contains(dump.err, "level=warn")) << dump.err;
    const fs::path manifest_path = newest_dump_manifest();
    ASSERT_FALSE(manifest_path.empty());
    EXPECT_TRUE(nlohmann::json::parse(slurp(manifest_path)).at("restore_point").is_object());
    mark(2);
    cluster.exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);

    RunResult push = run_pgward({"push"}, env());
    ASSERT_EQ(push.exit_code, 0) << push.err;
    fs::rename(backups_, dir_ / "lost");
    fs::create_directories(backups_);
    const fs::path reports = dir_ / "reports";
    RunResult drill = run_pgward({"drill", "--pitr", "--remote", "--report-dir", reports.string()},
                                 env({{"TMPDIR", shared_subdir("tmp").string()}}));
    ASSERT_EQ(drill.exit_code, 0) << drill.err;
    const auto report = nlohmann::json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))));
    EXPECT_EQ(report.at("restore_success"), true) << report.dump(2);
    EXPECT_EQ(recovered_marks({"--remote"}, "to-latest"), "1,2");
}

TEST_F(PitrOffsiteTest, TheServiceCopiesWalAsItStreamsAndAlertsWhileTheStoreFails) {
    fs::create_directories(archive());
    Receiver receiver;
    // A bucket that is not there yet: every copy fails until it is made.
    const std::string later = bucket_ + "-later";
    start_service(receiver, {{"POSTGRES_BACKUP_REMOTE", "s3://" + later + "/prod"},
                             {"POSTGRES_BACKUP_BASE_RETENTION_COUNT", "1"}});
    const fs::path state_path = backups_ / ".pgward-pitr_app.state.json";
    auto wal_state = [&] {
        try {
            return nlohmann::json::parse(slurp(state_path)).at("wal");
        } catch (...) {
            return nlohmann::json::object();
        }
    };
    ASSERT_TRUE(eventually([&] { return wal_state().value("offsite_failures", 0) >= 1; }, 60s))
        << slurp(state_path);
    std::optional<nlohmann::json> failed;
    ASSERT_TRUE(eventually(
        [&] {
            for (const auto& request : receiver.requests()) {
                if (contains(request.body, "wal_offsite_failed") &&
                    contains(request.body, "copying the WAL and base backups to s3://" + later)) {
                    failed = nlohmann::json::parse(request.body);
                }
            }
            return failed.has_value();
        },
        30s));
    EXPECT_TRUE(contains(failed->at("reason").get<std::string>(), "NoSuchBucket"))
        << failed->dump();
    RunResult health = run_pgward({"healthcheck"}, env());
    EXPECT_EQ(health.exit_code, 1);
    EXPECT_TRUE(contains(health.out + health.err,
                         "unhealthy: the last 1 offsite cop(y/ies) of the WAL and base backups "
                         "failed"))
        << health.out << health.err;
    RunResult failing = run_pgward({"status"}, env());
    EXPECT_TRUE(contains(failing.out, "WAL offsite failure: ")) << failing.out;

    s3_->make_bucket(later);
    mark(1);
    // (The segment holding the switch record: the one it completed.)
    const std::string switched =
        PgCluster::instance().query_value("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    ASSERT_TRUE(eventually(
        [&] {
            const auto newest = wal_state().value("offsite_newest", nlohmann::json());
            return newest.is_string() && newest.get<std::string>() >= switched;
        },
        90s))
        << slurp(state_path);
    ASSERT_TRUE(
        eventually([&] { return receiver.last_event("wal_offsite_recovered").has_value(); }, 30s));
    EXPECT_EQ(wal_state().value("offsite_failures", 99), 0) << slurp(state_path);
    // The service's first base backup (slow on a loaded machine) goes up
    // on a pass after it is published.
    const bool base_there = eventually(
        [&] {
            for (const auto& [key, size] : s3_->list(later, "prod/base/")) {
                if (key.ends_with("/base.json")) {
                    return true;
                }
            }
            return false;
        },
        60s);
    RunResult status = run_pgward({"status"}, env());
    EXPECT_TRUE(contains(status.out, "WAL offsite:     newest segment ")) << status.out;
    EXPECT_FALSE(contains(status.out, "WAL offsite failure")) << status.out;
    RunResult stopped = stop_streaming();
    EXPECT_EQ(stopped.exit_code, 0) << stopped.err;

    // The base backup went up once the bucket was there (the next one is a
    // week away: it went up on the retry after its first copy failed).
    EXPECT_TRUE(base_there) << stopped.out;
    EXPECT_TRUE(s3_->list(later, "prod/wal/" + system() + "/" + switched).size() == 1) << switched;
}

// A damaged segment is not uploaded and is named, the ones after it still
// go up; and a push while another copier holds the archive leaves it be.
TEST_F(PitrOffsiteTest, ADamagedSegmentIsNamedAndTheLaterOnesStillGoUp) {
    start_streaming();
    for (int i = 1; i <= 3; ++i) {
        mark(i);
        PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    }
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);
    const std::vector<std::string> segments = archive_segments();
    ASSERT_GE(segments.size(), 3U);
    const std::string damaged = segments[segments.size() - 2];
    {
        std::fstream f(archive() / damaged, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(8192 + 8);
        f.put('\x7f');
    }

    {
        const std::optional<FileLock> held =
            FileLock::try_acquire(backups_ / (".pgward-offsite-wal-" + system() + ".lock"));
        ASSERT_TRUE(held);
        RunResult busy = run_pgward({"push"}, env());
        EXPECT_EQ(busy.exit_code, 0) << busy.err;
        EXPECT_TRUE(contains(busy.err, "another pgward is copying this WAL offsite now"))
            << busy.err;
        EXPECT_TRUE(keys("wal/").empty());
    }

    RunResult push = run_pgward({"push"}, env());
    EXPECT_EQ(push.exit_code, 1);
    EXPECT_TRUE(contains(push.err, "1 WAL segment(s) not copied: WAL segment " + damaged))
        << push.err;
    EXPECT_TRUE(keys("wal/" + system() + "/" + damaged).empty());
    EXPECT_EQ(keys("wal/" + system() + "/" + segments.back()).size(), 1U) << push.err;
    EXPECT_FALSE(keys("wal/" + system() + "/sums-").empty()) << "what went up is vouched for";
}

// Encrypting a file for its upload writes its ciphertext beside the WAL
// first: on a volume without room for it and 256 MiB more (a small tmpfs
// under the backup directory here), the copy is refused by name and
// nothing fills the volume pg_receivewal writes to.
TEST_F(PitrOffsiteTest, NoRoomToEncryptIsRefusedByNameAndFillsNothing) {
    if (::geteuid() != 0) {
        GTEST_SKIP() << "mounting a small file system needs root";
    }
    fs::create_directories(backups_);
    if (::mount("tmpfs", backups_.c_str(), "tmpfs", 0, "size=200m,mode=0700") != 0) {
        GTEST_SKIP() << "cannot mount a tmpfs here: " << std::strerror(errno);
    }
    struct Unmount {
        fs::path at;
        ~Unmount() { ::umount2(at.c_str(), MNT_DETACH); }
    } unmount{backups_};
    RunResult k = run_pgward({"keygen", "-o", (shared_subdir("keys") / "key.txt").string()});
    ASSERT_EQ(k.exit_code, 0) << k.err;
    const std::string recipient = k.out.substr(0, k.out.find('\n'));

    start_streaming();
    mark(1);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    mark(2);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);
    const std::vector<std::string> before = list_dir(archive());

    RunResult push = run_pgward({"push"}, env({{"POSTGRES_BACKUP_ENCRYPT_RECIPIENTS", recipient}}));
    EXPECT_EQ(push.exit_code, 1) << push.err;
    EXPECT_TRUE(contains(push.err, "not enough room in " + backups_.string())) << push.err;
    EXPECT_TRUE(contains(push.err, "with 256 MiB left for the WAL")) << push.err;
    EXPECT_TRUE(keys("wal/").empty()) << push.err;
    EXPECT_EQ(list_dir(archive()), before);
    for (const std::string& name : list_dir(backups_)) {
        EXPECT_FALSE(name.starts_with(".pgward-upload-")) << name;
    }
}

// An upload that stopped half-way (a crash, a full volume) leaves files
// without base.json in the bucket: of a base backup still here, the next
// push uploads it again whole; of one gone from here, the files are removed.
TEST_F(PitrOffsiteTest, AnUnfinishedBaseBackupUploadIsRedoneOrSwept) {
    start_streaming();
    RunResult base = run_pgward({"basebackup"}, env());
    ASSERT_EQ(base.exit_code, 0) << base.err;
    const fs::path base_dir = base.out.substr(0, base.out.find('\n'));
    const std::string local = base_dir.filename().string();
    ASSERT_EQ(stop_streaming().exit_code, 0);
    write_text(dir_ / "half", "the first bytes of a base.tar");
    const std::string stores = "prod/base/" + system() + "/";
    s3_->put(bucket_, stores + local + "/base.tar", dir_ / "half");
    s3_->put(bucket_, stores + "20250101T000000Z/base.tar", dir_ / "half");
    s3_->put(bucket_, stores + "20250101T000000Z/pg_wal.tar", dir_ / "half");

    RunResult push = run_pgward({"push"}, env());
    ASSERT_EQ(push.exit_code, 0) << push.err;
    EXPECT_TRUE(contains(push.out, "base/" + system() + "/" + local + "\n")) << push.out;
    EXPECT_EQ(s3_->sha256(bucket_, stores + local + "/base.tar"),
              sha256_file_hex(base_dir / "base.tar"));
    EXPECT_EQ(keys("base/" + system() + "/" + local + "/base.json").size(), 1U);
    EXPECT_TRUE(keys("base/" + system() + "/20250101T000000Z/").empty()) << push.err;
    EXPECT_TRUE(contains(push.err,
                         "an unfinished base backup upload (files without base.json) "
                         "was removed from the store"))
        << push.err;
    EXPECT_TRUE(contains(push.err, "name=20250101T000000Z")) << push.err;
}

TEST_F(PitrOffsiteTest, EncryptedOnTheWayUpAndOpenedOnlyWithItsIdentity) {
    const fs::path keys_dir = shared_subdir("keys");
    std::vector<std::string> recipients;
    for (const char* name : {"right.txt", "wrong.txt"}) {
        RunResult k = run_pgward({"keygen", "-o", (keys_dir / name).string()});
        ASSERT_EQ(k.exit_code, 0) << k.err;
        recipients.push_back(k.out.substr(0, k.out.find('\n')));
    }
    start_streaming();
    RunResult base = run_pgward({"basebackup"}, env());
    ASSERT_EQ(base.exit_code, 0) << base.err;
    const fs::path base_dir = base.out.substr(0, base.out.find('\n'));
    mark(1);
    mark(2);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);

    RunResult push =
        run_pgward({"push"}, env({{"POSTGRES_BACKUP_ENCRYPT_RECIPIENTS", recipients[0]}}));
    ASSERT_EQ(push.exit_code, 0) << push.err;
    // Only ciphertext in the bucket, and the reference age opens it to the local file.
    size_t sealed = 0;
    for (const std::string& key : keys("")) {
        if (contains(key, "/sums-") || key.ends_with("/base.json")) {
            continue;
        }
        EXPECT_TRUE(key.ends_with(".age")) << key;
        ++sealed;
    }
    EXPECT_GE(sealed, 5U);  // 3 base backup files and at least 2 WAL segments
    std::string segment;
    for (const std::string& file : list_dir(archive())) {
        segment = file.size() == 24 ? file : segment;
    }
    ASSERT_FALSE(segment.empty());
    s3_->get(bucket_, "prod/wal/" + system() + "/" + segment + ".age", dir_ / "sealed");
    Command age{{"/usr/bin/age", "-d", "-i", (keys_dir / "right.txt").string(), "-o",
                 (dir_ / "opened").string(), (dir_ / "sealed").string()},
                {},
                {}};
    CapturedRun opened = run_captured(age, std::chrono::seconds(60));
    ASSERT_EQ(opened.status.code, 0) << opened.err;
    EXPECT_EQ(sha256_file_hex(dir_ / "opened"), sha256_file_hex(archive() / segment));
    for (const std::string& name : list_dir(backups_)) {
        EXPECT_FALSE(name.starts_with(".pgward-upload-")) << name;
    }

    fs::rename(backups_, dir_ / "lost");
    fs::create_directories(backups_);
    // Without a key, and with the wrong one: refused, nothing laid out.
    RunResult no_key = run_pgward(
        {"restore", "--pitr", "--remote", "--pgdata", (dir_ / "no-key").string()}, env());
    EXPECT_EQ(no_key.exit_code, 2);
    EXPECT_TRUE(contains(no_key.err, ".age is encrypted, and no key to open it was given"))
        << no_key.err;
    RunResult wrong =
        run_pgward({"restore", "--pitr", "--remote", "--identity",
                    (keys_dir / "wrong.txt").string(), "--pgdata", (dir_ / "wrong-key").string()},
                   env());
    EXPECT_EQ(wrong.exit_code, 1);
    EXPECT_TRUE(contains(wrong.err, "they are not the keys it was encrypted to")) << wrong.err;
    EXPECT_FALSE(fs::exists(dir_ / "no-key"));
    EXPECT_FALSE(fs::exists(dir_ / "wrong-key"));
    EXPECT_EQ(
        recovered_marks({"--remote", "--identity", (keys_dir / "right.txt").string()}, "to-latest"),
        "1,2");
    for (const std::string& name : list_dir(dir_)) {
        EXPECT_FALSE(name.starts_with(".pgward-fetch-")) << name;
    }
}

TEST_F(PitrOffsiteTest, RetentionInTheBucketKeepsTheNewestBaseBackupsAndTheWalTheyNeed) {
    // Encrypted: what retention removes are the .age objects.
    const fs::path key = shared_subdir("keys") / "key.txt";
    RunResult k = run_pgward({"keygen", "-o", key.string()});
    ASSERT_EQ(k.exit_code, 0) << k.err;
    extra_env_.emplace_back("POSTGRES_BACKUP_ENCRYPT_RECIPIENTS",
                            k.out.substr(0, k.out.find('\n')));
    start_streaming();
    RunResult first = run_pgward({"basebackup"}, env());
    ASSERT_EQ(first.exit_code, 0) << first.err;
    mark(1);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(run_pgward({"push"}, env()).exit_code, 0);
    const std::string first_name = fs::path(first.out.substr(0, first.out.find('\n'))).filename();
    std::vector<std::string> old_wal = keys("wal/" + system() + "/0");
    ASSERT_FALSE(old_wal.empty());

    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    RunResult second = run_pgward({"basebackup", "--retention", "1"}, env());
    ASSERT_EQ(second.exit_code, 0) << second.err;
    const std::string second_name =
        fs::path(second.out.substr(0, second.out.find('\n'))).filename();
    mark(2);
    PgCluster::instance().exec("postgres", "SELECT pg_switch_wal()");
    ASSERT_TRUE(wait_streamed());
    ASSERT_EQ(stop_streaming().exit_code, 0);

    // The service finds the new base backup, copies it, then keeps one there.
    Receiver receiver;
    start_service(receiver, {{"POSTGRES_BACKUP_BASE_RETENTION_COUNT", "1"},
                             {"POSTGRES_BACKUP_ON_START", "false"}});
    const std::string base_prefix = "base/" + system() + "/";
    ASSERT_TRUE(eventually(
        [&] {
            // (The WAL goes after the base backup it was kept for.)
            return !keys(base_prefix + second_name + "/base.json").empty() &&
                   keys(base_prefix + first_name + "/").empty() && keys(old_wal.front()).empty();
        },
        60s))
        << stop_streaming().out;
    RunResult stopped = stop_streaming();
    EXPECT_TRUE(
        contains(stopped.out, "msg=\"stored base backup removed by retention\" name=" + first_name))
        << stopped.out;
    // The WAL before the kept base backup's start went with the old one; the
    // rest, and the sums that vouch for it, stay.
    const auto info =
        nlohmann::json::parse(slurp(backups_ / base_prefix / second_name / "base.json"));
    const uint64_t segment_size = info.at("wal_segment_size").get<uint64_t>();
    const uint64_t kept_from =
        pg::segment_of(*pg::Lsn::parse(info.at("start_lsn").get<std::string>()), segment_size);
    size_t removed = 0;
    for (const std::string& object : old_wal) {
        ASSERT_TRUE(object.ends_with(".age")) << object;
        const std::string file = fs::path(object).stem().string();
        const auto name = pg::WalFileName::parse(file);
        if (name && name->kind == pg::WalFileName::Kind::Segment &&
            name->segment_number(segment_size) < kept_from) {
            EXPECT_TRUE(keys(object).empty()) << object;
            EXPECT_TRUE(
                keys(fs::path(object).parent_path().string() + "/sums-" + file + ".json").empty())
                << object;
            ++removed;
        }
    }
    EXPECT_GE(removed, 1U);
    fs::rename(backups_, dir_ / "lost");
    fs::create_directories(backups_);
    EXPECT_EQ(recovered_marks({"--remote", "--identity", key.string()}, "to-latest"), "1,2");
}

}  // namespace
}  // namespace pgward::test
