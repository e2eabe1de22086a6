// The version matrix's own cases: a client that does not match the server, a
// pg_restore that cannot read an archive, and upgrade rehearsals into a newer
// major. Most need a client or a server of another major than Debian 12's; the
// default suite runs what it can and says why it skips the rest, and `make
// test-matrix` (tests/matrix/matrix.sh) runs every cell.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "pg/tools.hpp"
#include "util/files.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kFixtures = PGWARD_FIXTURES_DIR;
const fs::path kMigrations = fs::path(PGWARD_SOURCE_DIR) / "examples/quiz_arena/migrations";

// The upgrade rehearsal's targets: PGWARD_TEST_PG_CACHE is the cache of
// scripts/pg-clients.sh, whose pg-N/bin folders hold server N and a client.
std::optional<fs::path> rehearsal_bin(int major) {
    const char* cache = std::getenv("PGWARD_TEST_PG_CACHE");
    if (cache == nullptr || *cache == '\0') {
        return std::nullopt;
    }
    fs::path bin = fs::path(cache) / fmt::format("pg-{}", major) / "bin";
    if (::access((bin / "initdb").c_str(), X_OK) != 0 ||
        ::access((bin / "pg_restore").c_str(), X_OK) != 0) {
        return std::nullopt;
    }
    return bin;
}

class VersionTest : public ScratchDirTest {
  protected:
    VersionTest() : ScratchDirTest("versions") {}
    void SetUp() override {
        ScratchDirTest::SetUp();
        PgCluster& c = PgCluster::instance();
        c.create_database("shop");
        c.exec("shop",
               "CREATE TABLE orders(id serial PRIMARY KEY, item text); "
               "INSERT INTO orders(item) SELECT 'item ' || g FROM generate_series(1, 300) g;");
    }
    Env env(const std::string& db) const { return pg_env(db, dir_ / "backups"); }
    static json report_in(const fs::path& dir) {
        std::vector<std::string> names = list_dir(dir);
        if (names.size() != 1) {
            ADD_FAILURE() << "expected one report in " << dir << ", found " << names.size();
            return json::object();
        }
        return json::parse(read_file(dir / names.front()));
    }
};

TEST_F(VersionTest, AnOlderPgDumpIsRefusedNamingBothVersionsAndWritesNothing) {
    PgCluster& c = PgCluster::instance();
    if (c.client_major() >= c.server_major()) {
        GTEST_SKIP() << "client " << c.client_major() << " is not older than server "
                     << c.server_major() << " (the matrix's refused cells run this)";
    }
    std::string server = c.query_value("shop", "SHOW server_version");
    server = server.substr(0, server.find(' '));
    std::string install = fmt::format("install postgresql-client-{}", c.server_major());

    RunResult backup = run_pgward({"backup"}, env("shop"));
    EXPECT_EQ(backup.exit_code, 1) << backup.err;
    EXPECT_TRUE(contains(backup.err, fmt::format("is version {}.", c.client_major())))
        << backup.err;
    EXPECT_TRUE(contains(backup.err, "but the server is PostgreSQL " + server)) << backup.err;
    EXPECT_TRUE(contains(backup.err, install)) << backup.err;
    std::vector<std::string> left =
        fs::exists(dir_ / "backups") ? list_dir(dir_ / "backups") : std::vector<std::string>{};
    EXPECT_TRUE(left.empty()) << left.front();

    // The drill refuses before it makes its scratch database.
    c.drop_database("shop_restore_drill");
    RunResult drill = run_pgward({"drill", "--migrations", kMigrations.string(), "--report-dir",
                                  (dir_ / "reports").string()},
                                 env("shop"));
    EXPECT_EQ(drill.exit_code, 1) << drill.err;
    EXPECT_TRUE(contains(drill.err, "but the server is PostgreSQL " + server)) << drill.err;
    EXPECT_EQ(
        c.query_value("postgres",
                      "SELECT count(*) FROM pg_database WHERE datname = 'shop_restore_drill'"),
        "0");
}

TEST_F(VersionTest, PgRestore15IsToldWhichMajorReadsAFormat116Archive) {
    const fs::path pg15 = "/usr/lib/postgresql/15/bin";
    if (::access((pg15 / "pg_restore").c_str(), X_OK) != 0) {
        GTEST_SKIP() << "no pg_restore 15 in " << pg15;
    }
    if (!fs::exists(kFixtures / "pg17_gzip.dump")) {
        GTEST_SKIP() << "no shared fixtures in " << kFixtures;
    }
    fs::create_directories(dir_ / "backups");
    fs::copy_file(kFixtures / "pg17_gzip.dump", dir_ / "backups/pg17_gzip.dump");
    const std::string archive = (dir_ / "backups/pg17_gzip.dump").string();
    PgCluster& c = PgCluster::instance();
    c.drop_database("from17");
    const std::string refusal = "archive format 1.16 (gzip), which pg_restore 15.";  // .minor
    const std::string needs = "it needs pg_restore 17 or newer";

    RunResult restore = run_pgward(
        {"restore", archive, "--dbname", "from17", "--create", "--pg-bin", pg15.string()},
        env("shop"));
    EXPECT_EQ(restore.exit_code, 1) << restore.err;
    EXPECT_TRUE(contains(restore.err, refusal)) << restore.err;
    EXPECT_TRUE(contains(restore.err, needs)) << restore.err;
    EXPECT_TRUE(contains(restore.err, "install postgresql-client-17")) << restore.err;
    EXPECT_EQ(
        c.query_value("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'from17'"),
        "0");
    // A zstd archive (pg_dump 17 --compress=zstd) is refused the same way,
    // naming its compression.
    fs::copy_file(kFixtures / "pg17_zstd.dump", dir_ / "backups/pg17_zstd.dump");
    RunResult zstd = run_pgward({"restore", (dir_ / "backups/pg17_zstd.dump").string(), "--dbname",
                                 "from17", "--create", "--pg-bin", pg15.string()},
                                env("shop"));
    EXPECT_EQ(zstd.exit_code, 1) << zstd.err;
    EXPECT_TRUE(contains(zstd.err, "archive format 1.16 (zstd), which pg_restore 15.")) << zstd.err;
    EXPECT_TRUE(contains(zstd.err, needs)) << zstd.err;

    fs::path reports = shared_subdir("reports");
    RunResult drill =
        run_pgward({"drill", "--backup", archive, "--sandbox", "--pg-bin", pg15.string(),
                    "--report-dir", reports.string()},
                   pg_env("shop", dir_ / "backups", {{"TMPDIR", shared_subdir("tmp").string()}}));
    EXPECT_EQ(drill.exit_code, 1) << drill.err;
    EXPECT_TRUE(contains(drill.err, needs)) << drill.err;
    json rep = report_in(reports);
    EXPECT_EQ(rep["restore_success"], false);
    EXPECT_EQ(rep["steps"][0]["name"], "verify_archive");
    EXPECT_TRUE(contains(rep["steps"][0]["error"].get<std::string>(), needs)) << rep.dump(2);
    EXPECT_TRUE(list_dir(dir_ / "tmp").empty());  // no sandbox left behind
}

TEST_F(VersionTest, ANewerPgRestoreRestoresIntoAnOlderServerButNotInOneTransaction) {
    PgCluster& c = PgCluster::instance();
    if (c.client_major() < 17 || c.server_major() >= 17) {
        GTEST_SKIP() << "needs pg_restore 17+ and a server older than 17 (client "
                     << c.client_major() << ", server " << c.server_major() << ")";
    }
    RunResult backup = run_pgward({"backup"}, env("shop"));
    ASSERT_EQ(backup.exit_code, 0) << backup.err;
    c.drop_database("shop_copy");

    RunResult single = run_pgward({"restore", "latest", "--from-db", "shop", "--dbname",
                                   "shop_copy", "--create", "--single-transaction"},
                                  env("shop"));
    EXPECT_EQ(single.exit_code, 1) << single.err;
    EXPECT_TRUE(contains(single.err, "in a single transaction: it sends SET transaction_timeout"))
        << single.err;
    EXPECT_TRUE(contains(single.err, "nothing was changed")) << single.err;
    EXPECT_EQ(
        c.query_value("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'shop_copy'"),
        "0");

    RunResult plain =
        run_pgward({"restore", "latest", "--from-db", "shop", "--dbname", "shop_copy", "--create"},
                   env("shop"));
    EXPECT_EQ(plain.exit_code, 0) << plain.err;
    EXPECT_TRUE(contains(plain.err, "sets transaction_timeout, which PostgreSQL")) << plain.err;
    EXPECT_FALSE(contains(plain.err, "level=error")) << plain.err;
    EXPECT_EQ(c.query_value("shop_copy", "SELECT count(*) FROM orders"), "300");
    c.drop_database("shop_copy");
}

TEST_F(VersionTest, ASandboxOfAnOlderMajorThanTheBackupIsRefusedBeforeItStarts) {
    PgCluster& c = PgCluster::instance();
    RunResult backup = run_pgward({"backup"}, env("shop"));
    ASSERT_EQ(backup.exit_code, 0) << backup.err;
    // A --pg-bin whose server is one major older than the backup's: postgres
    // answers --version only, and initdb must never run.
    const std::string older = std::to_string(c.server_major() - 1);
    fs::path bin = dir_ / "older-server";
    fs::create_directory(bin);
    fs::permissions(dir_, fs::perms(0755));
    fs::permissions(bin, fs::perms(0755));
    write_text(bin / "postgres", "#!/bin/sh\necho 'postgres (PostgreSQL) " + older + ".4'\n", 0755);
    write_text(bin / "initdb", "#!/bin/sh\ntouch '" + (dir_ / "initdb-ran").string() + "'\n", 0755);
    fs::create_symlink(c.client_bin_dir() / "pg_restore", bin / "pg_restore");
    fs::path reports = shared_subdir("reports");
    RunResult drill =
        run_pgward({"drill", "--backup", "latest", "--sandbox", "--pg-bin", bin.string(),
                    "--version-table", "none", "--report-dir", reports.string()},
                   pg_env("shop", dir_ / "backups", {{"TMPDIR", shared_subdir("tmp").string()}}));
    EXPECT_EQ(drill.exit_code, 1) << drill.err;
    EXPECT_TRUE(contains(drill.err, "the sandbox server is PostgreSQL " + older + ".4"))
        << drill.err;
    EXPECT_TRUE(contains(drill.err, "a dump restores only into its own major or a newer one"))
        << drill.err;
    EXPECT_FALSE(fs::exists(dir_ / "initdb-ran"));
    EXPECT_TRUE(list_dir(dir_ / "tmp").empty());
    json rep = report_in(reports);
    EXPECT_EQ(rep["restore_success"], false);
}

// A schema that PostgreSQL 15 accepts and later majors do not:
// force_parallel_mode was renamed debug_parallel_query in 16, and
// pg_stat_bgwriter lost buffers_backend in 17.
constexpr const char* kChangedAcrossMajors =
    "CREATE FUNCTION parallel_probe() RETURNS int LANGUAGE sql "
    "SET force_parallel_mode = off AS 'SELECT 1'; "
    "CREATE VIEW backend_writes AS SELECT buffers_backend FROM pg_stat_bgwriter;";

class UpgradeRehearsalTest : public VersionTest {
  protected:
    void SetUp() override {
        VersionTest::SetUp();
        if (PgCluster::instance().server_major() != 15) {
            GTEST_SKIP() << "rehearsals start from a 15 server (this one is "
                         << PgCluster::instance().server_major() << ")";
        }
        if (!rehearsal_bin(16) && !rehearsal_bin(17) && !rehearsal_bin(18)) {
            GTEST_SKIP() << "no pg-16/17/18 in PGWARD_TEST_PG_CACHE (make test-matrix sets it "
                            "after scripts/pg-clients.sh)";
        }
    }

    // Backs up `db` with the cluster's client and rehearses it on `major`.
    json rehearse(const std::string& db, int major, int expect_exit) {
        fs::path reports = shared_subdir(fmt::format("reports-{}-{}", db, major));
        RunResult drill = run_pgward(
            {"drill", "--backup", "latest", "--sandbox", "--pg-bin", rehearsal_bin(major)->string(),
             "--version-table", "none", "--report-dir", reports.string()},
            pg_env(db, dir_ / "backups", {{"TMPDIR", shared_subdir("tmp").string()}}));
        EXPECT_EQ(drill.exit_code, expect_exit) << drill.err;
        return report_in(reports);
    }
};

TEST_F(UpgradeRehearsalTest, TheExampleSchemaRestoresOnEveryNewerMajor) {
    PgCluster& c = PgCluster::instance();
    c.create_database("quiz");
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(kMigrations)) {
        files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
        c.exec("quiz", read_file(f));
    }
    c.exec("quiz", "INSERT INTO users(telegram_user_id) SELECT g FROM generate_series(1, 50) g");
    RunResult backup = run_pgward({"backup"}, env("quiz"));
    ASSERT_EQ(backup.exit_code, 0) << backup.err;
    std::string source = c.query_value("quiz", "SHOW server_version");
    for (int major : {16, 17, 18}) {
        if (!rehearsal_bin(major)) {
            ADD_FAILURE() << "pg-" << major << " missing from PGWARD_TEST_PG_CACHE";
            continue;
        }
        SCOPED_TRACE(fmt::format("target {}", major));
        json rep = rehearse("quiz", major, 0);
        EXPECT_EQ(rep["restore_success"], true) << rep.dump(2);
        EXPECT_EQ(rep["server_version"], source);
        EXPECT_TRUE(rep["target_server_version"].get<std::string>().rfind(
                        std::to_string(major) + ".", 0) == 0)
            << rep["target_server_version"];
        EXPECT_TRUE(rep["pg_restore_version"].is_string());
        EXPECT_TRUE(rep["restore_errors"].empty()) << rep["restore_errors"];
        for (const auto& t : rep["tables"]) {
            EXPECT_EQ(t["match"], true) << t.dump();
        }
    }
    EXPECT_TRUE(list_dir(dir_ / "tmp").empty());  // every sandbox removed
}

TEST_F(UpgradeRehearsalTest, ARemovedFeatureIsReportedWithItsFailedStatement) {
    PgCluster& c = PgCluster::instance();
    c.exec("shop", kChangedAcrossMajors);
    RunResult backup = run_pgward({"backup"}, env("shop"));
    ASSERT_EQ(backup.exit_code, 0) << backup.err;
    // 16 rejects the renamed setting; 17 and 18 the dropped column as well.
    const std::map<int, std::vector<std::string>> expected = {
        {16, {"unrecognized configuration parameter \"force_parallel_mode\""}},
        {17,
         {"unrecognized configuration parameter \"force_parallel_mode\"",
          "buffers_backend does not exist"}},
        {18,
         {"unrecognized configuration parameter \"force_parallel_mode\"",
          "buffers_backend does not exist"}}};
    for (const auto& [major, errors] : expected) {
        if (!rehearsal_bin(major)) {
            ADD_FAILURE() << "pg-" << major << " missing from PGWARD_TEST_PG_CACHE";
            continue;
        }
        SCOPED_TRACE(fmt::format("target {}", major));
        json rep = rehearse("shop", major, 1);
        EXPECT_EQ(rep["restore_success"], false);
        ASSERT_EQ(rep["restore_errors"].size(), errors.size()) << rep["restore_errors"];
        for (size_t i = 0; i < errors.size(); ++i) {
            bool found = false;
            for (const auto& e : rep["restore_errors"]) {
                found = found || contains(e.get<std::string>(), errors[i]);
            }
            EXPECT_TRUE(found) << errors[i] << " not in " << rep["restore_errors"];
        }
        // The data itself came across: the table's content proof still holds.
        for (const auto& t : rep["tables"]) {
            if (t["name"] == "orders") {
                EXPECT_EQ(t["match"], true) << t.dump();
            }
        }
    }
}

}  // namespace
}  // namespace pgward::test
