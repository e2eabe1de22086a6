#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "archive/summary.hpp"
#include "domain/smoke.hpp"
#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "pg/fingerprint.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Every kind of data must give equal fp1 in the source (the manifest's,
// taken from pg_dump's stream), the archive on disk, and the database it was
// restored into (a sandbox cluster): the drill checks all three per table.
constexpr const char* kAwkwardSchema = R"SQL(
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE kinds (
  id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  n numeric(30, 10), f4 float4, f8 float8, ts timestamptz, iv interval, b bytea, j jsonb,
  arr text[], r int4range, tr tstzrange, m mood, d positive, c pair, t text, nothing text,
  twice int GENERATED ALWAYS AS (id * 2) STORED
);
INSERT INTO kinds (n, f4, f8, ts, iv, b, j, arr, r, tr, m, d, c, t, nothing) VALUES
  (12345678901234567890.0123456789, 'NaN', 'Infinity', '2026-03-29 00:59:59+00', '1 year 2 mons 3 days 04:05:06.789',
   '\x00ff10', '{"k": [1, 2.5, null, "ü"]}', ARRAY['a', NULL, 'b c'], '[1,10)', '[2026-10-25 00:30+00,2026-10-25 02:30+00)',
   'happy', 7, ROW(1, 'x')::pair, E'tab\there\nnewline \\ backslash ünïcödé ✓', NULL),
  (-0.5, '-Infinity', '-0', '2026-10-25 01:30:00+00', '-3 hours', '', '[]', '{}', 'empty', NULL,
   'sad', 1, NULL, '', NULL),
  (0, 1.5e-30, 3.141592653589793, '1999-12-31 23:59:59.999999+00', '0', '\x5c', '"str"', NULL, NULL, NULL,
   NULL, NULL, ROW(NULL, NULL)::pair, repeat('long ', 2000), 'x');
CREATE TABLE "Mixed ""Case"" Name" ("Odd Col" text);
INSERT INTO "Mixed ""Case"" Name" SELECT 'row ' || g FROM generate_series(1, 50) g;
CREATE TABLE no_columns ();
INSERT INTO no_columns DEFAULT VALUES;
INSERT INTO no_columns DEFAULT VALUES;
CREATE TABLE no_rows (x int);
CREATE TABLE parent (id int, v text);
CREATE TABLE child (extra int) INHERITS (parent);
INSERT INTO parent VALUES (1, 'p');
INSERT INTO child VALUES (2, 'c', 3);
CREATE TABLE measurements (city int, at date) PARTITION BY RANGE (at);
CREATE TABLE m2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE m2026 PARTITION OF measurements FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO measurements SELECT g % 7, date '2025-01-01' + g FROM generate_series(0, 600) g;
CREATE UNLOGGED TABLE scratch AS SELECT g FROM generate_series(1, 10) g;
CREATE TABLE dupes AS SELECT 1 AS v FROM generate_series(1, 300);
SELECT lo_from_bytea(0, convert_to(repeat('large object ', 100), 'UTF8'));
CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY);
INSERT INTO alembic_version VALUES ('kinds1');
)SQL";

class FingerprintTest : public ScratchDirTest {
  protected:
    FingerprintTest() : ScratchDirTest("fp") {}
    void SetUp() override {
        ScratchDirTest::SetUp();
        shared_subdir("tmp");
    }
    Env env(const std::string& db) const {
        return pg_env(db, dir_ / "backups", {{"TMPDIR", (dir_ / "tmp").string()}});
    }

    void prove_round_trip(const std::string& db) {
        RunResult backup = run_pgward({"backup"}, env(db));
        ASSERT_EQ(backup.exit_code, 0) << backup.err;
        RunResult deep = run_pgward({"verify", "--deep", "latest"}, env(db));
        EXPECT_EQ(deep.exit_code, 0) << deep.out << deep.err;
        RunResult drill = run_pgward({"drill", "--backup", "latest", "--sandbox", "--report-dir",
                                      (dir_ / "reports").string()},
                                     env(db));
        ASSERT_EQ(drill.exit_code, 0) << drill.err;
        json report = json::parse(slurp(drill.out.substr(0, drill.out.find('\n'))));
        EXPECT_EQ(report["restore_success"], true);
        ASSERT_GE(report["tables"].size(), 1u);
        for (const auto& t : report["tables"]) {
            SCOPED_TRACE(t.dump());
            ASSERT_TRUE(t["fingerprint_before"].is_string());
            EXPECT_EQ(t["fingerprint_before"], t["fingerprint_archive"]);
            EXPECT_EQ(t["fingerprint_archive"], t["fingerprint_after"]);
            EXPECT_EQ(t["rows_before"], t["rows_after"]);
            EXPECT_EQ(t["match"], true);
        }
    }
};

TEST_F(FingerprintTest, EveryKindOfDataSurvivesSourceArchiveAndRestore) {
    PgCluster& c = PgCluster::instance();
    c.create_database("kinds");
    c.exec("kinds", kAwkwardSchema);
    prove_round_trip("kinds");
    // The manifest counted the tables that hold data, partitions and children included.
    json manifest;
    for (const auto& name : list_dir(dir_ / "backups")) {
        if (name.size() > 5 && name.substr(name.size() - 5) == ".json") {
            manifest = json::parse(slurp(dir_ / "backups" / name));
        }
    }
    std::set<std::string> tables;
    for (const auto& t : manifest["tables"]) {
        tables.insert(t["name"].get<std::string>());
    }
    for (const char* name : {"kinds", "Mixed \"Case\" Name", "no_columns", "no_rows", "parent",
                             "child", "m2025", "m2026", "scratch", "dupes"}) {
        EXPECT_TRUE(tables.count(name)) << name;
    }
    EXPECT_EQ(manifest["large_objects"], 1);
}

// Every compression the pg_dump in use writes (gzip and none before 16; lz4
// and zstd too from 16), to a file and to a pipe: the reader's fp1 of each
// table equals the live table's.
TEST_F(FingerprintTest, ArchivesOfEveryCompressionToAFileAndToAPipeMatchTheLiveTables) {
    PgCluster& c = PgCluster::instance();
    c.create_database("zlevels");
    c.exec("zlevels", kAwkwardSchema);
    pg::Connection live = c.connect("zlevels");
    pg::set_dump_session_settings(live);
    std::map<std::string, std::string> expected;
    for (const TableCount& t : count_tables(live)) {
        expected[t.schema + "." + t.name] =
            pg::fingerprint_table(live, t.dumped(), pg::dumped_columns(live, t.dumped()))
                .to_string();
    }
    std::string pg_dump = (c.client_bin_dir() / "pg_dump").string();
    Env env = {{"PGPASSWORD", c.password()}, {"PGTZ", "UTC"}};
    std::vector<std::string> conn = {"-h", "127.0.0.1",   "-p", std::to_string(c.port()),
                                     "-U", c.superuser(), "-d", "zlevels",
                                     "-Fc"};
    std::vector<std::string> levels = {"-Z0", "-Z9"};
    if (c.client_major() >= 16) {
        levels = {"--compress=none", "--compress=gzip:9", "--compress=lz4", "--compress=zstd"};
    }
    for (const std::string& level : levels) {
        for (bool pipe : {false, true}) {
            SCOPED_TRACE(level + (pipe ? " pipe" : " file"));
            std::string label = level.substr(level.find_first_not_of("-Zcompress="));
            fs::path out = dir_ / ("z_" + label + (pipe ? "_pipe" : "_file") + ".dump");
            std::vector<std::string> argv = {pg_dump};
            argv.insert(argv.end(), conn.begin(), conn.end());
            argv.push_back(level);
            if (!pipe) {
                argv.push_back("-f");
                argv.push_back(out.string());
            }
            CapturedRun run = run_captured(Command{argv, env, {}});
            ASSERT_TRUE(run.status.ok()) << run.err;
            if (pipe) {
                write_text(out, run.out, 0600);  // what pg_dump wrote to its stdout pipe
            }
            archive::ArchiveSummary summary = archive::summarize_file(out);
            EXPECT_EQ(summary.large_objects, 1u);
            ASSERT_EQ(summary.tables.size(), expected.size());
            for (const auto& t : summary.tables) {
                EXPECT_EQ(t.fingerprint, expected[t.schema + "." + t.name])
                    << t.schema << "." << t.name;
            }
        }
    }
}

TEST_F(FingerprintTest, ALatin1DatabaseKeepsItsBytes) {
    PgCluster& c = PgCluster::instance();
    c.drop_database("latin");
    c.exec(
        "postgres",
        "CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
    c.exec("latin",
           "CREATE TABLE words (w text); INSERT INTO words VALUES ('caf' || chr(233)), ('na' || "
           "chr(239) || 've')");
    prove_round_trip("latin");
}

}  // namespace
}  // namespace pgward::test
