#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "domain/naming.hpp"
#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "pg/fingerprint.hpp"
#include "util/sha256.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

size_t count_suffix(const fs::path& dir, const std::string& suffix) {
    size_t n = 0;
    for (const std::string& name : list_dir(dir)) {
        if (name.size() >= suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            ++n;
        }
    }
    return n;
}

class BackupTest : public ScratchDirTest {
  protected:
    BackupTest() : ScratchDirTest("backup") {}
    static void SetUpTestSuite() {
        PgCluster& c = PgCluster::instance();
        c.create_database("app");
        c.exec("app", R"SQL(
            CREATE TABLE users(id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                               telegram_user_id bigint UNIQUE, name text);
            INSERT INTO users(telegram_user_id, name)
              SELECT g, 'user ' || g FROM generate_series(1, 250) g;
            CREATE TABLE processed_updates(update_id bigint PRIMARY KEY);
            INSERT INTO processed_updates SELECT generate_series(1, 40);
            CREATE TABLE alembic_version(version_num varchar(32) PRIMARY KEY);
            INSERT INTO alembic_version VALUES ('0003_quiz');
            CREATE SCHEMA "Other Schema";
            CREATE TABLE "Other Schema"."Mixed ""Q"" Table"(k text);
            INSERT INTO "Other Schema"."Mixed ""Q"" Table" VALUES ('a'), ('b');
            CREATE TABLE empty_table(id int);
        )SQL");
        // Big enough that a dump takes a while: kills land mid-stream.
        c.create_database("bigdb");
        c.exec("bigdb", R"SQL(
            CREATE TABLE payload(id int, a text, b text);
            INSERT INTO payload SELECT g, md5(random()::text) || md5(random()::text),
                                          md5(random()::text)
              FROM generate_series(1, 700000) g;
        )SQL");
    }

    Env env(const std::string& db) const { return pg_env(db, dir_); }

    // Starts a backup of bigdb in the background and waits until its .tmp
    // holds at least `bytes`: the dump is mid-stream.
    std::unique_ptr<BackgroundPgward> start_big_backup(uintmax_t bytes = 256 * 1024) {
        auto run =
            std::make_unique<BackgroundPgward>(std::vector<std::string>{"backup"}, env("bigdb"));
        bool mid = eventually([&] { return find_file(dir_, ".dump.tmp", bytes).has_value(); }, 60s);
        EXPECT_TRUE(mid) << "the dump never got going";
        return run;
    }
};

TEST_F(BackupTest, WritesDumpAndManifestAtomicallyWithRowCounts) {
    RunResult r = run_pgward({"backup"}, env("app"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto files = list_dir(dir_);
    ASSERT_EQ(count_suffix(dir_, ".dump"), 1u);
    ASSERT_EQ(count_suffix(dir_, ".json"), 1u);
    EXPECT_EQ(count_suffix(dir_, ".tmp"), 0u);
    fs::path dump = *find_file(dir_, ".dump");
    EXPECT_TRUE(
        std::regex_match(dump.filename().string(), std::regex(R"(app_\d{8}T\d{6}Z\.dump)")));
    EXPECT_EQ(r.out, dump.string() + "\n");
    struct stat st {};
    ASSERT_EQ(::stat(dump.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    fs::path manifest_path = dump;
    manifest_path.replace_extension(".json");
    ASSERT_EQ(::stat(manifest_path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    auto m = nlohmann::json::parse(slurp(manifest_path));
    EXPECT_EQ(m["format"], "pgward-manifest/1");
    EXPECT_EQ(m["database"], "app");
    EXPECT_EQ(m["file"], dump.filename().string());
    EXPECT_EQ(m["size_bytes"], fs::file_size(dump));
    EXPECT_EQ(m["sha256"], sha256_file_hex(dump));
    EXPECT_EQ(m["schema_version"], "0003_quiz");
    EXPECT_TRUE(contains(m["pg_dump_version"].get<std::string>(), "pg_dump (PostgreSQL)"));
    std::map<std::string, uint64_t> rows;
    for (const auto& t : m["tables"]) {
        rows[t["schema"].get<std::string>() + "." + t["name"].get<std::string>()] = t["rows"];
    }
    EXPECT_EQ(rows["public.users"], 250u);
    EXPECT_EQ(rows["public.processed_updates"], 40u);
    EXPECT_EQ(rows["public.alembic_version"], 1u);
    EXPECT_EQ(rows["Other Schema.Mixed \"Q\" Table"], 2u);
    EXPECT_EQ(rows["public.empty_table"], 0u);
    EXPECT_EQ(rows.size(), 5u);
    // fp1 of every table, from the archive, equals the live table's.
    // The archive format of the pg_dump in use: 1.14 from 12 to 15, 1.15 from
    // 16, 1.16 from 17 on.
    int client = PgCluster::instance().client_major();
    EXPECT_EQ(m["archive_version"], client >= 17 ? "1.16" : client == 16 ? "1.15" : "1.14");
    EXPECT_EQ(m["compression"], client >= 16 ? "zstd" : "gzip");  // auto
    EXPECT_EQ(m["large_objects"], 0);
    pg::Connection live = PgCluster::instance().connect("app");
    pg::set_dump_session_settings(live);
    for (const auto& t : m["tables"]) {
        ASSERT_TRUE(t["fingerprint"].is_string()) << t.dump();
        pg::DumpedTable table{t["schema"], t["name"], std::nullopt, std::nullopt};
        EXPECT_EQ(t["fingerprint"],
                  pg::fingerprint_table(live, table, pg::dumped_columns(live, table)).to_string())
            << t.dump();
    }

    // The archive restores: pg_restore lists it.
    CapturedRun list = run_captured(Command{
        {(PgCluster::instance().client_bin_dir() / "pg_restore").string(), "--list", dump.string()},
        {},
        {}});
    EXPECT_TRUE(list.status.ok()) << list.err;
    EXPECT_TRUE(contains(list.out, "TABLE DATA public users"));
    // begin/end lines
    EXPECT_TRUE(contains(r.err, "msg=\"backup begin\"")) << r.err;
    EXPECT_TRUE(contains(r.err, "msg=\"backup end\"")) << r.err;
}

TEST_F(BackupTest, WrongPasswordFailsWithoutWritingAnything) {
    Env e = env("app");
    for (auto& [k, v] : e) {
        if (k == "POSTGRES_PASSWORD") {
            v = "not-the-password";
        }
    }
    RunResult r = run_pgward({"backup"}, e);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "password authentication failed")) << r.err;
    EXPECT_TRUE(contains(r.err, "dbname=app")) << r.err;
    EXPECT_TRUE(contains(r.err, "hint: check POSTGRES_PASSWORD")) << r.err;
    EXPECT_FALSE(contains(r.err, "not-the-password"));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(BackupTest, UnreachableHostFailsWithHint) {
    Env e = env("app");
    for (auto& [k, v] : e) {
        if (k == "POSTGRES_PORT") {
            v = "1";  // nothing listens on port 1
        }
    }
    RunResult r = run_pgward({"backup"}, e);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "cannot connect to host=127.0.0.1 port=1")) << r.err;
    EXPECT_TRUE(contains(r.err, "is the server running")) << r.err;
    EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(BackupTest, MissingDatabaseFails) {
    RunResult r = run_pgward({"backup"}, env("no_such_db"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "database \"no_such_db\" does not exist")) << r.err;
    EXPECT_TRUE(contains(r.err, "hint: check the database name")) << r.err;
    EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(BackupTest, UnwritableBackupDirFails) {
    fs::path locked = dir_ / "locked";
    fs::create_directory(locked);
    ::chmod(locked.c_str(), 0555);
    Env e = env("app");
    e.emplace_back("POSTGRES_BACKUP_DIR", locked.string());
    // Root ignores permissions, so run pgward as an unprivileged user then.
    std::optional<std::string> user;
    if (running_as_root()) {
        user = "nobody";
    }
    RunResult r = run_pgward({"backup", "--dir", locked.string()}, e, user);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_TRUE(contains(r.err, "Permission denied")) << r.err;
    EXPECT_TRUE(contains(r.err, locked.string())) << r.err;
    EXPECT_TRUE(list_dir(locked).empty());
}

TEST_F(BackupTest, MissingPgDumpFails) {
    fs::path empty = dir_ / "empty-bin";
    fs::create_directory(empty);
    fs::path out = dir_ / "out";
    RunResult r =
        run_pgward({"backup", "--pg-bin", empty.string(), "--dir", out.string()}, env("app"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "pg_dump not found in " + empty.string())) << r.err;
    EXPECT_FALSE(fs::exists(out));
}

TEST_F(BackupTest, PgDumpOlderThanServerIsRefusedNamingBothVersions) {
    fs::path bin = dir_ / "old-bin";
    fs::create_directory(bin);
    // One major older than the server, whichever server the suite runs on.
    const std::string older = std::to_string(PgCluster::instance().server_major() - 1) + ".0";
    write_text(bin / "pg_dump", "#!/bin/sh\necho 'pg_dump (PostgreSQL) " + older + "'\n", 0755);
    fs::create_symlink(PgCluster::instance().client_bin_dir() / "pg_restore", bin / "pg_restore");
    fs::path out = dir_ / "out";
    RunResult r =
        run_pgward({"backup", "--pg-bin", bin.string(), "--dir", out.string()}, env("app"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "is version " + older + " but the server is PostgreSQL " +
                                    std::to_string(PgCluster::instance().server_major())))
        << r.err;
    EXPECT_TRUE(contains(
        r.err, "install postgresql-client-" + std::to_string(PgCluster::instance().server_major())))
        << r.err;
    EXPECT_TRUE(list_dir(out).empty());
}

TEST_F(BackupTest, PgDumpKilledMidDumpLeavesNothing) {
    auto run = start_big_backup();
    auto dumps = children_named(run->pid(), "pg_dump");
    ASSERT_EQ(dumps.size(), 1u);
    ::kill(dumps[0], SIGKILL);
    auto r = run->wait(30s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 1);
    EXPECT_TRUE(contains(r->err, "pg_dump of \"bigdb\" failed (killed by SIGKILL)")) << r->err;
    EXPECT_EQ(count_suffix(dir_, ".dump"), 0u);
    EXPECT_EQ(count_suffix(dir_, ".tmp"), 0u);
    EXPECT_EQ(count_suffix(dir_, ".json"), 0u);
}

TEST_F(BackupTest, PgwardKilledMidDumpLeavesOnlyAnOrphanTheNextRunRemoves) {
    auto run = start_big_backup();
    auto dumps = children_named(run->pid(), "pg_dump");
    ::kill(run->pid(), SIGKILL);
    auto r = run->wait(30s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 128 + SIGKILL);
    // pg_dump dies of SIGPIPE once its reader is gone: no orphan process.
    for (pid_t pid : dumps) {
        EXPECT_TRUE(eventually([&] { return ::kill(pid, 0) != 0; }, 30s)) << "pg_dump lingers";
    }
    EXPECT_EQ(count_suffix(dir_, ".dump"), 0u);
    EXPECT_EQ(count_suffix(dir_, ".dump.tmp"), 1u);

    RunResult next = run_pgward({"backup"}, env("bigdb"));
    ASSERT_EQ(next.exit_code, 0) << next.err;
    EXPECT_TRUE(contains(next.err, "removed leftover temp file")) << next.err;
    EXPECT_EQ(count_suffix(dir_, ".tmp"), 0u);
    EXPECT_EQ(count_suffix(dir_, ".dump"), 1u);
}

TEST_F(BackupTest, ServerStoppedMidDumpFailsCleanly) {
    auto run = start_big_backup();
    PgCluster::instance().stop_immediate();
    auto r = run->wait(60s);
    PgCluster::instance().start();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 1);
    EXPECT_TRUE(contains(r->err, "pg_dump of \"bigdb\" failed")) << r->err;
    EXPECT_EQ(count_suffix(dir_, ".dump"), 0u);
    EXPECT_EQ(count_suffix(dir_, ".tmp"), 0u);
    EXPECT_EQ(count_suffix(dir_, ".json"), 0u);
}

TEST_F(BackupTest, DiskFullFailsAndLeavesNothingPartial) {
    if (!running_as_root()) {
        GTEST_SKIP() << "needs root to mount a small tmpfs";
    }
    fs::path small = dir_ / "small";
    fs::create_directory(small);
    ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=1m,mode=0700"), 0)
        << std::strerror(errno);
    RunResult r = run_pgward({"backup", "--dir", small.string()}, env("bigdb"));
    auto left = list_dir(small);
    ::umount2(small.c_str(), MNT_DETACH);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "No space left on device")) << r.err;
    EXPECT_TRUE(contains(r.err, "hint: free space")) << r.err;
    for (const std::string& name : left) {
        EXPECT_FALSE(name.find(".dump") != std::string::npos ||
                     name.find(".tmp") != std::string::npos ||
                     name.find(".json") != std::string::npos)
            << "left behind: " << name;
    }
}

TEST_F(BackupTest, SecondConcurrentBackupIsRefused) {
    auto first = start_big_backup(1);
    RunResult second = run_pgward({"backup"}, env("bigdb"));
    EXPECT_EQ(second.exit_code, 1);
    EXPECT_TRUE(contains(second.err, "previous run still active for database \"bigdb\""))
        << second.err;
    auto r = first->wait(120s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0) << r->err;
    EXPECT_EQ(count_suffix(dir_, ".dump"), 1u);
    EXPECT_EQ(count_suffix(dir_, ".tmp"), 0u);
}

TEST_F(BackupTest, RetentionTouchesOnlyThisDatabasesDumps) {
    // Old backups of this database, with sidecars; another database's; foreign files.
    std::vector<std::string> ours = {"app_20200101T000000Z", "app_20200102T000000Z",
                                     "app_20200103T000000Z"};
    for (const auto& stem : ours) {
        write_text(dir_ / (stem + ".dump"), "PGDMP old", 0600);
        write_text(dir_ / (stem + ".json"), "{}", 0600);
        write_text(dir_ / (stem + ".globals.sql"), "--", 0600);
    }
    std::vector<std::string> foreign = {"other_20200101T000000Z.dump",
                                        "other_20200101T000000Z.json",
                                        "app_backup.dump",
                                        "notes.txt",
                                        "app_20200101T000000Z.dump.bak",
                                        "apps_20190101T000000Z.dump"};
    for (const auto& name : foreign) {
        write_text(dir_ / name, "x", 0644);
    }
    fs::create_directory(dir_ / "app_20190101T000000Z.dump");  // a directory with our name

    RunResult r = run_pgward({"backup", "--retention", "2"}, env("app"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto names = list_dir(dir_);
    // Kept: the new backup and app_20200103; deleted: 0101 and 0102 with their sidecars.
    for (const char* gone : {"app_20200101T000000Z", "app_20200102T000000Z"}) {
        for (const char* ext : {".dump", ".json", ".globals.sql"}) {
            EXPECT_FALSE(fs::exists(dir_ / (std::string(gone) + ext))) << gone << ext;
        }
    }
    for (const char* ext : {".dump", ".json", ".globals.sql"}) {
        EXPECT_TRUE(fs::exists(dir_ / (std::string("app_20200103T000000Z") + ext))) << ext;
    }
    for (const auto& name : foreign) {
        EXPECT_TRUE(fs::exists(dir_ / name)) << name;
    }
    EXPECT_TRUE(fs::is_directory(dir_ / "app_20190101T000000Z.dump"));
    // 4 foreign names end in .dump (3 files and the directory), plus the 2 kept backups.
    EXPECT_EQ(count_suffix(dir_, ".dump"), 4u + 2u);
    EXPECT_TRUE(contains(r.err, "msg=delete file=app_20200101T000000Z.dump")) << r.err;
    EXPECT_TRUE(contains(r.err, "msg=keep file=app_20200103T000000Z.dump")) << r.err;
}

TEST_F(BackupTest, FailedBackupPrunesNothing) {
    for (const char* stem : {"bigdb_20200101T000000Z", "bigdb_20200102T000000Z"}) {
        write_text(dir_ / (std::string(stem) + ".dump"), "PGDMP old", 0600);
    }
    Env e = env("bigdb");
    for (auto& [k, v] : e) {
        if (k == "POSTGRES_PASSWORD") {
            v = "wrong";
        }
    }
    RunResult r = run_pgward({"backup", "--retention", "1"}, e);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(count_suffix(dir_, ".dump"), 2u);
}

TEST_F(BackupTest, AwkwardDatabaseNamesWork) {
    const std::string name = "it's a/b ü";
    PgCluster::instance().create_database(name);
    PgCluster::instance().exec(name, "CREATE TABLE t(x int); INSERT INTO t VALUES (1), (2);");
    RunResult r = run_pgward({"backup"}, env(name));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto dump = find_file(dir_, ".dump");
    ASSERT_TRUE(dump);
    EXPECT_EQ(dump->parent_path(), dir_);  // one path component, no subdirectory
    std::string file = dump->filename().string();
    EXPECT_EQ(file.rfind(encode_db_name(name) + "_", 0), 0u) << file;
    auto parsed = parse_backup_file_name(file);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->id.database, name);
    fs::path manifest = *dump;
    manifest.replace_extension(".json");
    auto m = nlohmann::json::parse(slurp(manifest));
    EXPECT_EQ(m["database"], name);
    EXPECT_EQ(m["tables"][0]["rows"], 2);

    RunResult list = run_pgward({"list", "--json", "--dir", dir_.string()});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    auto items = nlohmann::json::parse(list.out);
    ASSERT_EQ(items.size(), 1u);
    EXPECT_EQ(items[0]["database"], name);
    PgCluster::instance().drop_database(name);
}

TEST_F(BackupTest, PasswordNeverInArgvLogsOrManifests) {
    const std::string& password = PgCluster::instance().password();
    auto run = start_big_backup(1);
    // Every process's argv while the dump runs.
    size_t scanned = 0;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
        std::string cmdline = slurp(entry.path() / "cmdline");
        if (!cmdline.empty()) {
            ++scanned;
        }
        EXPECT_FALSE(contains(cmdline, password)) << entry.path();
        EXPECT_FALSE(contains(cmdline, "PGPASSWORD")) << entry.path();
    }
    EXPECT_GT(scanned, 5u);
    auto dumps = children_named(run->pid(), "pg_dump");
    ASSERT_EQ(dumps.size(), 1u);
    EXPECT_TRUE(contains(slurp("/proc/" + std::to_string(dumps[0]) + "/cmdline"), "--snapshot="));
    auto r = run->wait(120s);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->exit_code, 0) << r->err;
    EXPECT_FALSE(contains(r->err, password));
    EXPECT_FALSE(contains(r->out, password));
    for (const std::string& name : list_dir(dir_)) {
        EXPECT_FALSE(contains(slurp(dir_ / name), password)) << name;
    }
    // A failing run's message does not carry it either.
    Env e = env("bigdb");
    e.emplace_back("POSTGRES_PORT", "1");
    RunResult failed = run_pgward({"backup", "--port", "1"}, e);
    EXPECT_FALSE(contains(failed.err, password));
}

TEST_F(BackupTest, AnArchiveMissingATablesDataIsNeverPublished) {
    // A pg_dump that silently leaves out one table's rows.
    fs::path bin =
        fake_pg_dump("partial-bin", "exec \"$REAL\" \"$@\" --exclude-table-data=public.users");
    fs::path out = dir_ / "out";
    RunResult r =
        run_pgward({"backup", "--pg-bin", bin.string(), "--dir", out.string()}, env("app"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err,
                         "the archive of \"app\" does not match the database: public.users is "
                         "missing from the archive"))
        << r.err;
    EXPECT_TRUE(contains(r.err, "nothing was published")) << r.err;
    for (const std::string& name : list_dir(out)) {
        EXPECT_TRUE(name.rfind(".pgward-", 0) == 0)
            << "left behind: " << name;  // only the lock file
    }
}

TEST_F(BackupTest, APgDumpThatWritesMegabytesOfGarbageFailsWithoutHanging) {
    // More garbage than the parser's queue holds: the parser stops at byte 8
    // and the pump must go on draining pg_dump without waiting for it.
    fs::path bin =
        fake_pg_dump("garbage-bin", "printf PGDMP\nhead -c 6000000 /dev/zero | tr '\\000' x");
    fs::path out = dir_ / "out";
    auto started = std::chrono::steady_clock::now();
    RunResult r =
        run_pgward({"backup", "--pg-bin", bin.string(), "--dir", out.string()}, env("app"));
    EXPECT_LT(std::chrono::steady_clock::now() - started, 60s);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(
        r.err, "archive damaged at byte 8 in the header: unsupported archive version 120.120"))
        << r.err;
    for (const std::string& name : list_dir(out)) {
        EXPECT_TRUE(name.rfind(".pgward-", 0) == 0) << "left behind: " << name;
    }
}

struct BadValue {
    std::vector<std::string> args;
    Env env;
    std::string named;
};

TEST_F(BackupTest, BadNumericValuesExitTwoNamingThem) {
    std::vector<BadValue> cases = {
        {{"backup", "--retention", "abc"}, {}, "--retention"},
        {{"backup", "--retention", "0"}, {}, "--retention"},
        {{"backup", "--retention", "-3"}, {}, "--retention"},
        {{"backup"},
         {{"POSTGRES_BACKUP_RETENTION_COUNT", "seven"}},
         "POSTGRES_BACKUP_RETENTION_COUNT"},
        {{"backup"},
         {{"POSTGRES_BACKUP_RETENTION_COUNT", "-1"}},
         "POSTGRES_BACKUP_RETENTION_COUNT"},
        {{"backup", "--port", "x"}, {}, "--port"},
        {{"backup", "--port", "70000"}, {}, "--port"},
        {{"backup"}, {{"POSTGRES_PORT", "0"}}, "POSTGRES_PORT"},
        {{"backup"}, {{"POSTGRES_PORT", "5432x"}}, "POSTGRES_PORT"},
        {{"prune", "--keep", "0"}, {}, "--keep"},
        {{"prune", "--keep", "many"}, {}, "--keep"},
        {{"prune"},
         {{"POSTGRES_BACKUP_RETENTION_COUNT", "1.5"}},
         "POSTGRES_BACKUP_RETENTION_COUNT"},
    };
    for (const auto& c : cases) {
        Env e = c.env;
        e.emplace_back("POSTGRES_BACKUP_DIR", (dir_ / "never").string());
        RunResult r = run_pgward(c.args, e);
        EXPECT_EQ(r.exit_code, 2) << c.named << ": " << r.err;
        EXPECT_TRUE(contains(r.err, "for " + c.named + ":")) << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
    EXPECT_FALSE(fs::exists(dir_ / "never"));
    RunResult unknown = run_pgward({"backup", "--no-such-flag"});
    EXPECT_EQ(unknown.exit_code, 2);
    EXPECT_TRUE(contains(unknown.err, "--no-such-flag")) << unknown.err;
}

}  // namespace
}  // namespace pgward::test
