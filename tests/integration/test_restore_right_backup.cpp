// Issue 18, restore and retention: `latest` is one named source database's,
// safety dumps are never latest nor retained, new connections are kept out
// during a --clean restore, any user object needs consent, and backups of one
// database name from two servers are told apart.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "util/error.hpp"
#include "util/process.hpp"
#include "util/time.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

class RightBackupTest : public ScratchDirTest {
  protected:
    RightBackupTest() : ScratchDirTest("right-backup") {}
    void SetUp() override {
        ScratchDirTest::SetUp();
        PgCluster& c = PgCluster::instance();
        c.create_database("shop");
        c.exec("shop",
               "CREATE TABLE orders(id serial PRIMARY KEY, item text); "
               "INSERT INTO orders(item) SELECT 'item ' || g FROM generate_series(1, 300) g;");
    }
    Env env(const std::string& db) const { return pg_env(db, dir_); }
    // The environment of another login role.
    Env env_as(const std::string& db, const std::string& user, const std::string& password) const {
        Env e = env(db);
        for (auto& [name, value] : e) {
            if (name == "POSTGRES_USER") {
                value = user;
            } else if (name == "POSTGRES_PASSWORD") {
                value = password;
            }
        }
        return e;
    }
    std::string backup(const std::string& db) { return backup_with(env(db)); }
    std::string backup_with(const Env& e) {
        RunResult b = run_pgward({"backup"}, e);
        EXPECT_EQ(b.exit_code, 0) << b.err;
        return b.out.substr(0, b.out.find('\n'));
    }
    // A table `slow` whose index build sleeps 0.25 s a row: pg_restore is
    // busy for rows/4 seconds on any machine (CI once restored a million
    // plain rows before the restore's first look at the door).
    static std::string slow_table_sql(int rows) {
        return fmt::format(
            "CREATE FUNCTION public.slow_id(integer) RETURNS integer LANGUAGE plpgsql "
            "IMMUTABLE AS $$BEGIN PERFORM pg_catalog.pg_sleep(0.25); RETURN $1; END$$; "
            "CREATE TABLE slow AS SELECT g AS id FROM generate_series(1, {}) g; "
            "CREATE INDEX ON slow (public.slow_id(id))",
            rows);
    }
    std::string orders(const std::string& db) const {
        return PgCluster::instance().query_value(db, "SELECT count(*) FROM orders");
    }
    std::vector<std::string> files_ending(const std::string& suffix) const {
        std::vector<std::string> out;
        for (const std::string& name : list_dir(dir_)) {
            if (name.size() > suffix.size() &&
                name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
                out.push_back(name);
            }
        }
        return out;
    }
    // A backup that the directory says came from another server: a copy of
    // `dump` one hour later, its manifest naming another system identifier.
    std::string copy_as_other_server(const std::string& dump, const std::string& system) {
        fs::path from = dump;
        std::string stem = from.stem().string();  // shop_YYYYMMDDTHHMMSSZ
        std::string stamp = stem.substr(stem.size() - 16);
        std::string later = format_compact_utc(*parse_compact_utc(stamp) + std::chrono::hours(1));
        std::string other_stem = stem.substr(0, stem.size() - 16) + later;
        fs::copy_file(from, dir_ / (other_stem + ".dump"));
        json manifest = json::parse(slurp(dir_ / (stem + ".json")));
        manifest["file"] = other_stem + ".dump";
        manifest["system_identifier"] = system;
        write_text(dir_ / (other_stem + ".json"), manifest.dump(2), 0600);
        return (dir_ / (other_stem + ".dump")).string();
    }
};

// Item 1. Before: `restore latest --dbname other` restored shop's backup into
// "other" (the fallback to the only database in the directory).
TEST_F(RightBackupTest, LatestIsTheNamedSourceDatabasesAndTheRestoreSaysWhatItRestores) {
    PgCluster& c = PgCluster::instance();
    const std::string dump = backup("shop");
    c.create_database("other");
    c.exec("other", "CREATE TABLE keep_me(x int); INSERT INTO keep_me VALUES (1)");

    RunResult wrong = run_pgward({"restore", "latest", "--dbname", "other", "--clean",
                                  "--if-exists", "--yes", "--no-safety-backup"},
                                 env("other"));
    EXPECT_EQ(wrong.exit_code, 1);
    EXPECT_TRUE(contains(wrong.err, fmt::format("no backups of \"other\" in {}; it holds backups "
                                                "of \"shop\"",
                                                dir_.string())))
        << wrong.err;
    EXPECT_TRUE(contains(wrong.err, "--from-db")) << wrong.err;
    EXPECT_EQ(c.query_value("other", "SELECT count(*) FROM keep_me"), "1");

    c.drop_database("shop_copy");
    RunResult right = run_pgward(
        {"restore", "latest", "--dbname", "shop_copy", "--from-db", "shop", "--create", "--json"},
        env("shop"));
    ASSERT_EQ(right.exit_code, 0) << right.err;
    json doc = json::parse(right.out);
    const std::string plan = doc["restoring"].get<std::string>();
    EXPECT_TRUE(contains(plan, "restoring " + dump)) << plan;
    EXPECT_TRUE(contains(plan, "database \"shop\", taken 20")) << plan;
    EXPECT_TRUE(contains(plan, "into \"shop_copy\" on ")) << plan;
    EXPECT_EQ(doc["source_database"], "shop");
    EXPECT_TRUE(doc["taken_at"].is_string());
    const size_t logged = right.err.find("msg=\"restoring " + dump);
    ASSERT_NE(logged, std::string::npos) << "the log has the same line: " << right.err;
    EXPECT_TRUE(contains(right.err.substr(logged), "into \\\"shop_copy\\\" on ")) << right.err;
    // Said before anything changed: before the database was created.
    EXPECT_LT(logged, right.err.find("created the target database")) << right.err;
    EXPECT_EQ(orders("shop_copy"), "300");
    c.drop_database("shop_copy");
    c.drop_database("other");
}

// Item 1, the prompt: on a terminal (script(1) gives pgward one, and types
// into it), the consent prompt shows the same line before anything changes.
TEST_F(RightBackupTest, TheConsentPromptOnATerminalSaysWhatItRestoresIntoWhat) {
    if (!fs::exists("/usr/bin/script")) {
        GTEST_SKIP() << "script(1) is not installed (bsdutils): no terminal to prompt on";
    }
    PgCluster& c = PgCluster::instance();
    const std::string dump = backup("shop");
    c.exec("shop", "DELETE FROM orders WHERE id > 10");
    auto on_a_terminal = [&](const std::string& typed) {
        Command command = pgward_command({"restore", "latest", "--dbname", "shop", "--clean",
                                          "--if-exists", "--no-safety-backup"},
                                         env("shop"));
        std::string line;
        for (const std::string& arg : command.argv) {
            line += (line.empty() ? "'" : " '") + arg + "'";
        }
        command.argv = {"/usr/bin/script", "-qec", line, "/dev/null"};
        int fds[2];
        EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
        EXPECT_EQ(::write(fds[1], typed.data(), typed.size()), static_cast<ssize_t>(typed.size()));
        ::close(fds[1]);
        command.stdin_fd = fds[0];
        Child child = Child::spawn(command);
        ::close(fds[0]);
        RunResult r;
        PumpHandlers handlers;
        handlers.on_stdout = [&](const char* d, size_t n) { r.out.append(d, n); };
        r.exit_code = pump(child, handlers).code;
        return r;
    };
    RunResult refused = on_a_terminal("not-shop\n");
    EXPECT_EQ(refused.exit_code, 1) << refused.out;
    EXPECT_TRUE(contains(refused.out, "restoring " + dump + " (database \"shop\", taken 20"))
        << refused.out;
    EXPECT_TRUE(contains(refused.out, "Type its name to confirm")) << refused.out;
    EXPECT_TRUE(contains(refused.out, "needs consent; nothing was changed")) << refused.out;
    EXPECT_EQ(orders("shop"), "10");

    RunResult consented = on_a_terminal("shop\n");
    EXPECT_EQ(consented.exit_code, 0) << consented.out;
    EXPECT_EQ(orders("shop"), "300");
}

// Item 2. Before: the second restore picked the first one's safety dump (the
// corrupted data) as latest, and prune kept safety dumps over backups.
TEST_F(RightBackupTest, SafetyDumpsAreNeverLatestNeverRetainedAndBounded) {
    PgCluster& c = PgCluster::instance();
    backup("shop");
    std::this_thread::sleep_for(1100ms);
    const std::string newest = backup("shop");
    c.exec("shop", "UPDATE orders SET item = 'corrupted'");
    const std::vector<std::string> restore = {"restore", "latest",      "--dbname", "shop",
                                              "--clean", "--if-exists", "--yes"};
    for (int run = 0; run < 4; ++run) {
        if (run > 0) {
            std::this_thread::sleep_for(1100ms);  // one safety dump per second
        }
        RunResult r = run_pgward(restore, env("shop"));
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_TRUE(contains(r.err, "restoring " + newest)) << "run " << run << ": " << r.err;
        EXPECT_EQ(c.query_value("shop", "SELECT count(*) FROM orders WHERE item = 'corrupted'"),
                  "0")
            << "run " << run;
    }
    std::vector<std::string> safety = files_ending(".pre-restore.dump");
    ASSERT_EQ(safety.size(), 3u) << "the newest 3 safety dumps are kept";
    EXPECT_EQ(files_ending(".pre-restore.json").size(), 3u);
    json manifest =
        json::parse(slurp(dir_ / (safety.front().substr(0, safety.front().size() - 5) + ".json")));
    EXPECT_EQ(manifest["kind"], "pre-restore");
    EXPECT_EQ(manifest["restoring"], fs::path(newest).filename().string());

    RunResult list = run_pgward({"list"}, env("shop"));
    EXPECT_EQ(list.exit_code, 0) << list.out << list.err;
    size_t section = list.out.find("safety dumps (taken by restore");
    ASSERT_NE(section, std::string::npos) << list.out;
    EXPECT_GT(list.out.find(safety.front()), section) << list.out;
    EXPECT_LT(list.out.find(fs::path(newest).filename().string()), section) << list.out;

    RunResult prune = run_pgward({"prune", "--keep", "1"}, env("shop"));
    ASSERT_EQ(prune.exit_code, 0) << prune.err;
    EXPECT_EQ(files_ending(".pre-restore.dump").size(), 3u) << "retention never counts them";
    std::vector<std::string> dumps = files_ending(".dump");
    EXPECT_EQ(dumps.size(), 4u);
    EXPECT_TRUE(fs::exists(newest)) << "the newest real backup is kept";

    // A drill of latest drills the newest real backup, never a safety dump.
    const fs::path reports = dir_ / "reports";
    RunResult drill =
        run_pgward({"drill", "--backup", "latest", "--sandbox", "--report-dir", reports.string()},
                   env("shop"));
    ASSERT_EQ(drill.exit_code, 0) << drill.err;
    EXPECT_EQ(json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))))["dump_source"], newest);

    // A safety dump is still restorable when named.
    RunResult back = run_pgward({"restore", safety.front(), "--dbname", "shop", "--clean",
                                 "--if-exists", "--yes", "--no-safety-backup"},
                                env("shop"));
    EXPECT_EQ(back.exit_code, 0) << back.err;
    EXPECT_TRUE(contains(back.err, "this is a safety dump a restore took")) << back.err;
}

// Item 4. Before: a target holding only a function, a type, a schema or a
// large object was replaced without consent and without a safety dump.
TEST_F(RightBackupTest, AnyUserObjectMakesTheTargetNonEmpty) {
    PgCluster& c = PgCluster::instance();
    const std::string dump = backup("shop");
    const std::vector<std::pair<std::string, std::string>> kinds = {
        {"CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "1 functions"},
        {"CREATE TYPE mood AS ENUM ('ok')", "1 types"},
        {"CREATE SCHEMA lonely", "1 schemas"},
        {"SELECT lo_from_bytea(0, 'x')", "1 large objects"},
    };
    for (const auto& [sql, said] : kinds) {
        c.drop_database("target");
        c.create_database("target");
        RunResult empty =
            run_pgward({"restore", dump, "--dbname", "target", "--json"}, env("target"));
        ASSERT_EQ(empty.exit_code, 0) << "an empty database needs nothing: " << empty.err;
        c.drop_database("target");
        c.create_database("target");
        c.exec("target", sql);
        RunResult plain = run_pgward({"restore", dump, "--dbname", "target"}, env("target"));
        EXPECT_EQ(plain.exit_code, 1) << sql;
        EXPECT_TRUE(contains(plain.err, "target database \"target\" is not empty (" + said + ")"))
            << plain.err;
        RunResult no_yes =
            run_pgward({"restore", dump, "--dbname", "target", "--clean"}, env("target"));
        EXPECT_EQ(no_yes.exit_code, 1) << sql;
        EXPECT_TRUE(contains(no_yes.err, "needs consent")) << no_yes.err;
        EXPECT_TRUE(files_ending(".pre-restore.dump").empty()) << "nothing before consent";
        RunResult yes = run_pgward(
            {"restore", dump, "--dbname", "target", "--clean", "--if-exists", "--yes", "--json"},
            env("target"));
        ASSERT_EQ(yes.exit_code, 0) << yes.err;
        EXPECT_TRUE(json::parse(yes.out)["safety_backup"].is_string()) << sql;
        for (const std::string& name : list_dir(dir_)) {
            if (contains(name, ".pre-restore.")) {
                fs::remove(dir_ / name);
            }
        }
    }
    c.drop_database("target");
}

// Item 3. Before: nothing kept a reconnecting pool out of a --clean restore.
TEST_F(RightBackupTest, NewConnectionsAreKeptOutDuringACleanRestoreAndLetInAfter) {
    PgCluster& c = PgCluster::instance();
    c.exec("shop", slow_table_sql(12));  // a 3 s restore
    const std::string dump = backup("shop");
    const std::vector<std::string> args = {
        "restore", dump,          "--dbname", "shop",
        "--clean", "--if-exists", "--yes",    "--no-safety-backup"};
    auto allowed = [&] {
        return c.query_value("postgres",
                             "SELECT datallowconn::text FROM pg_database WHERE datname = 'shop'");
    };
    {
        BackgroundPgward restore(args, env("shop"));
        ASSERT_TRUE(eventually([&] { return allowed() == "false"; }, 60s))
            << "the restore never blocked new connections";
        EXPECT_TRUE(fs::exists(dir_ / ".pgward-shop.restore-block.json"));
        try {
            c.connect("shop");
            ADD_FAILURE() << "a new session got in during the restore";
        } catch (const Error& e) {
            EXPECT_TRUE(contains(e.what(), "not currently accepting connections")) << e.what();
        }
        std::optional<RunResult> done = restore.wait(120s);
        ASSERT_TRUE(done);
        EXPECT_EQ(done->exit_code, 0) << done->err;
        EXPECT_TRUE(contains(done->err, "new connections to the target are allowed again"))
            << done->err;
    }
    EXPECT_EQ(allowed(), "true");
    EXPECT_FALSE(fs::exists(dir_ / ".pgward-shop.restore-block.json"));
    EXPECT_NO_THROW(c.connect("shop"));

    // Stopped mid-restore (SIGTERM: the restore fails): the setting is put
    // back before pgward exits.
    {
        BackgroundPgward restore(args, env("shop"));
        ASSERT_TRUE(eventually([&] { return allowed() == "false"; }, 60s));
        ::kill(restore.pid(), SIGTERM);
        std::optional<RunResult> stopped = restore.wait(60s);
        ASSERT_TRUE(stopped);
        EXPECT_NE(stopped->exit_code, 0);
        EXPECT_TRUE(contains(stopped->err, "new connections to the target are allowed again"))
            << stopped->err;
    }
    EXPECT_EQ(allowed(), "true");
    EXPECT_FALSE(fs::exists(dir_ / ".pgward-shop.restore-block.json"));

    // Killed mid-restore: the block stays, status says how to undo it, and
    // the next restore puts the setting back itself.
    {
        BackgroundPgward restore(args, env("shop"));
        ASSERT_TRUE(eventually([&] { return allowed() == "false"; }, 60s));
        ::kill(restore.pid(), SIGKILL);
        ASSERT_TRUE(restore.wait(30s));
    }
    ASSERT_TRUE(eventually(
        [&] {
            return c.query_value("postgres",
                                 "SELECT count(*) FROM pg_stat_activity "
                                 "WHERE datname = 'shop'") == "0";
        },
        30s));
    EXPECT_EQ(allowed(), "false");
    RunResult status = run_pgward({"status", "--dbname", "shop"}, env("shop"));
    EXPECT_TRUE(contains(status.out, "left new connections to \"shop\" blocked")) << status.out;
    EXPECT_TRUE(
        contains(status.out, "ALTER DATABASE \"shop\" ALLOW_CONNECTIONS true CONNECTION LIMIT -1"))
        << status.out;
    RunResult again = run_pgward(args, env("shop"));
    EXPECT_EQ(again.exit_code, 0) << again.err;
    EXPECT_TRUE(contains(again.err, "putting the setting back")) << again.err;
    EXPECT_EQ(allowed(), "true");
    EXPECT_EQ(c.query_value("shop", "SELECT count(*) FROM slow"), "12");
}

// Item 3 as the database's owner who is not a superuser (an app's own role):
// ALTER DATABASE is the owner's to run, and with --jobs the limit leaves room
// for pg_restore's own sessions, which a non-superuser's limit binds.
TEST_F(RightBackupTest, AnOwnerWhoIsNotASuperuserKeepsConnectionsOutToo) {
    PgCluster& c = PgCluster::instance();
    c.exec("postgres",
           "DROP ROLE IF EXISTS shop_owner; "
           "CREATE ROLE shop_owner LOGIN NOSUPERUSER PASSWORD 'owner-pw'");
    c.drop_database("owned");
    c.create_database("owned");
    c.exec("postgres", "ALTER DATABASE owned OWNER TO shop_owner");
    c.exec("owned", "SET ROLE shop_owner; " + slow_table_sql(8));
    const Env e = env_as("owned", "shop_owner", "owner-pw");
    const std::string dump = backup_with(e);
    auto settings = [&] {
        return c.query_value("postgres",
                             "SELECT datallowconn::text || ' ' || datconnlimit "
                             "FROM pg_database WHERE datname = 'owned'");
    };
    for (const char* jobs : {"1", "2"}) {
        RunResult r = run_pgward({"restore", dump, "--dbname", "owned", "--clean", "--if-exists",
                                  "--yes", "--no-safety-backup", "--jobs", jobs},
                                 e);
        ASSERT_EQ(r.exit_code, 0) << jobs << ": " << r.err;
        EXPECT_TRUE(contains(r.err, std::string(jobs) == "1" ? "how=\"ALLOW_CONNECTIONS false\""
                                                             : "how=\"CONNECTION LIMIT 3\""))
            << jobs << ": " << r.err;
        EXPECT_FALSE(contains(r.err, "could not block")) << r.err;
        EXPECT_EQ(settings(), "true -1") << jobs;
        EXPECT_EQ(c.query_value("owned", "SELECT count(*) FROM slow"), "8");
    }
    c.drop_database("owned");
    c.exec("postgres", "DROP ROLE shop_owner");
}

// Item 3 for a role that owns the schema but not the database (an app's
// role in a database an admin made): the server refuses ALTER DATABASE, the
// restore goes on, says so in the log and in --json, and ends newcomers.
TEST_F(RightBackupTest, ARoleThatCannotCloseTheDoorSaysSoAndStillRestores) {
    PgCluster& c = PgCluster::instance();
    c.exec("postgres",
           "DROP ROLE IF EXISTS shop_app; "
           "CREATE ROLE shop_app LOGIN NOSUPERUSER PASSWORD 'app-pw'");
    c.drop_database("notmine");
    c.create_database("notmine");
    c.exec("notmine",
           "ALTER SCHEMA public OWNER TO shop_app; SET ROLE shop_app; " + slow_table_sql(8));
    const Env e = env_as("notmine", "shop_app", "app-pw");
    const std::string dump = backup_with(e);
    c.exec("notmine", "DELETE FROM slow WHERE id > 3");
    RunResult r = run_pgward({"restore", dump, "--dbname", "notmine", "--clean", "--if-exists",
                              "--yes", "--no-safety-backup", "--json"},
                             e);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "could not block new connections to the target")) << r.err;
    EXPECT_TRUE(contains(r.err, "must be owner of database notmine")) << r.err;
    json out = json::parse(r.out);
    const std::string blocked = out["connections_blocked"];
    EXPECT_EQ(blocked.rfind("not blocked (the server refused: ", 0), 0U) << blocked;
    EXPECT_TRUE(contains(blocked,
                         "ERROR: must be owner of database notmine); sessions that "
                         "connected were ended"))
        << blocked;
    EXPECT_EQ(c.query_value("postgres",
                            "SELECT datallowconn::text || ' ' || datconnlimit FROM pg_database "
                            "WHERE datname = 'notmine'"),
              "true -1");
    EXPECT_TRUE(files_ending(".restore-block.json").empty());
    EXPECT_EQ(c.query_value("notmine", "SELECT count(*) FROM slow"), "8");
    c.drop_database("notmine");
    c.exec("postgres", "DROP ROLE shop_app");
}

// Found by make test on a fresh machine: an autovacuum worker busy on the
// target right after a big load was counted as another session, and the
// restore refused ("pid N (, no application name, local)").
TEST_F(RightBackupTest, AnAutovacuumWorkerOnTheTargetIsNotASession) {
    PgCluster& c = PgCluster::instance();
    const std::string dump = backup("shop");
    // A vacuum that crawls (cost limit 1) over many dead rows, started within a second.
    c.exec("postgres", "ALTER SYSTEM SET autovacuum_naptime = 1");
    c.exec("postgres", "SELECT pg_reload_conf()");
    c.exec(
        "shop",
        "CREATE TABLE churn WITH (autovacuum_vacuum_cost_delay = 100, "
        "autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_threshold = 0, "
        "autovacuum_vacuum_scale_factor = 0) AS SELECT g AS id FROM generate_series(1, 300000) g; "
        "DELETE FROM churn");
    std::string workers = "0";
    for (int i = 0; i < 300 && workers == "0"; ++i) {
        std::this_thread::sleep_for(100ms);
        workers = c.query_value("postgres",
                                "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' "
                                "AND backend_type = 'autovacuum worker'");
    }
    c.exec("postgres", "ALTER SYSTEM RESET autovacuum_naptime");
    c.exec("postgres", "SELECT pg_reload_conf()");
    ASSERT_NE(workers, "0") << "no autovacuum worker came to shop within 30 s";
    RunResult r = run_pgward({"restore", dump, "--dbname", "shop", "--clean", "--if-exists",
                              "--yes", "--no-safety-backup"},
                             env("shop"));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(contains(r.err, "other session(s)")) << r.err;
    EXPECT_EQ(orders("shop"), "300");
}

// Item 5. Before: retention pruned the other server's backups and latest
// took the other server's newer one.
// Item 9. The sandbox a drill restores into is private while it runs (0700,
// owned by the server's user, which is never `nobody`), and one a drill
// killed outright leaves is stopped and removed by the next drill.
TEST_F(RightBackupTest, TheSandboxIsPrivateAndAKilledDrillsSandboxGoesWithTheNext) {
    PgCluster& c = PgCluster::instance();
    c.exec("shop", slow_table_sql(20));  // a 5 s restore
    backup("shop");
    const fs::path tmp = dir_ / "tmp";
    fs::create_directories(tmp);
    ::chmod(tmp.c_str(), 0777);  // the sandbox's user makes its files in it
    Env e = env("shop");
    e.emplace_back("TMPDIR", tmp.string());
    const fs::path reports = dir_ / "reports";
    auto sandboxes = [&] {
        std::vector<fs::path> out;
        for (const std::string& name : list_dir(tmp)) {
            if (name.rfind("pgward-sandbox-", 0) == 0) {
                out.push_back(tmp / name);
            }
        }
        return out;
    };
    fs::path killed;
    pid_t server = 0;
    {
        BackgroundPgward drill(
            {"drill", "--backup", "latest", "--sandbox", "--report-dir", reports.string()}, e);
        // Its server runs once postmaster.pid names it (the file is written
        // in steps: read until its first line is a pid).
        ASSERT_TRUE(eventually(
            [&] {
                std::vector<fs::path> now = sandboxes();
                if (now.size() != 1) {
                    return false;
                }
                std::ifstream pid_file(now.front() / "data" / "postmaster.pid");
                pid_t pid = 0;
                if (!(pid_file >> pid) || pid <= 0) {
                    return false;
                }
                killed = now.front();
                server = pid;
                return true;
            },
            60s));
        struct stat st {};
        ASSERT_EQ(::stat(killed.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0700U);
        if (running_as_root()) {
            struct passwd* owner = ::getpwuid(st.st_uid);
            ASSERT_NE(owner, nullptr);
            EXPECT_STREQ(owner->pw_name, "postgres");
        } else {
            EXPECT_EQ(st.st_uid, ::getuid());
        }
        ::kill(drill.pid(), SIGKILL);
        ASSERT_TRUE(drill.wait(30s));
    }
    ASSERT_TRUE(fs::exists(killed)) << "a drill killed outright cleans up nothing";

    RunResult next = run_pgward(
        {"drill", "--backup", "latest", "--sandbox", "--report-dir", reports.string()}, e);
    EXPECT_EQ(next.exit_code, 0) << next.err;
    EXPECT_TRUE(contains(next.err, "removed a sandbox a previous drill left")) << next.err;
    EXPECT_FALSE(fs::exists(killed));
    EXPECT_TRUE(::kill(server, 0) != 0 && errno == ESRCH) << "its server was stopped";
    EXPECT_TRUE(sandboxes().empty());
}

TEST_F(RightBackupTest, BackupsOfOneNameFromTwoServersAreKeptApart) {
    PgCluster& c = PgCluster::instance();
    const std::string ours = backup("shop");
    json manifest = json::parse(slurp(fs::path(ours).replace_extension(".json")));
    const std::string system =
        c.query_value("postgres", "SELECT system_identifier::text FROM pg_control_system()");
    EXPECT_EQ(manifest["system_identifier"], system);
    const std::string theirs = copy_as_other_server(ours, "1234567890123456789");

    // latest on this server is this server's, though theirs is newer.
    c.exec("shop", "DELETE FROM orders WHERE id > 10");
    RunResult r = run_pgward({"restore", "latest", "--dbname", "shop", "--clean", "--if-exists",
                              "--yes", "--no-safety-backup"},
                             env("shop"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "restoring " + ours)) << r.err;

    // Retention of this server's backups leaves theirs alone.
    std::this_thread::sleep_for(1100ms);
    RunResult keep1 = run_pgward({"backup", "--retention", "1"}, env("shop"));
    ASSERT_EQ(keep1.exit_code, 0) << keep1.err;
    EXPECT_FALSE(fs::exists(ours)) << "our older backup is pruned";
    EXPECT_TRUE(fs::exists(theirs)) << "theirs is not ours to prune";

    RunResult list = run_pgward({"list"}, env("shop"));
    EXPECT_TRUE(contains(list.out, "note: the backups of \"shop\" come from 2 servers"))
        << list.out;
    RunResult status = run_pgward({"status", "--dbname", "shop"}, env("shop"));
    EXPECT_TRUE(contains(status.out, "servers:         2 (")) << status.out;

    // A drill of latest drills this server's newest, though theirs is newer.
    const std::string newest_ours = keep1.out.substr(0, keep1.out.find('\n'));
    const fs::path reports = dir_ / "reports";
    RunResult drill =
        run_pgward({"drill", "--backup", "latest", "--sandbox", "--report-dir", reports.string()},
                   env("shop"));
    ASSERT_EQ(drill.exit_code, 0) << drill.err;
    json report = json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))));
    EXPECT_EQ(report["dump_source"], newest_ours) << report.dump(2);

    // prune keeps N per server: ours and theirs newest stay, their older goes.
    const std::string theirs_newer = copy_as_other_server(newest_ours, "1234567890123456789");
    RunResult prune = run_pgward({"prune", "--keep", "1"}, env("shop"));
    ASSERT_EQ(prune.exit_code, 0) << prune.err;
    EXPECT_TRUE(fs::exists(newest_ours)) << prune.err;
    EXPECT_TRUE(fs::exists(theirs_newer)) << prune.err;
    EXPECT_FALSE(fs::exists(theirs)) << prune.err;

    // This server gone: nothing to go by, so two servers are ambiguous.
    Env gone = env("shop");
    for (auto& [name, value] : gone) {
        if (name == "POSTGRES_PORT") {
            value = "1";
        }
    }
    RunResult verify = run_pgward({"drill", "--backup", "latest", "--sandbox"}, gone);
    EXPECT_EQ(verify.exit_code, 1) << verify.err;
    EXPECT_TRUE(contains(verify.err, "\"latest\" is ambiguous")) << verify.err;
    EXPECT_TRUE(contains(verify.err, "server 1234567890123456789")) << verify.err;
}

}  // namespace
}  // namespace pgward::test
