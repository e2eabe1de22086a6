#include <gtest/gtest.h>

#include <fstream>
#include <utility>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "util/error.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class RestoreTest : public ScratchDirTest {
  protected:
    RestoreTest() : ScratchDirTest("restore") {}
    void SetUp() override {
        ScratchDirTest::SetUp();
        PgCluster& c = PgCluster::instance();
        c.create_database("shop");
        c.exec("shop",
               "CREATE TABLE orders(id serial PRIMARY KEY, item text); "
               "INSERT INTO orders(item) SELECT 'item ' || g FROM generate_series(1, 300) g; "
               "CREATE TABLE alembic_version(version_num varchar(32) PRIMARY KEY); "
               "INSERT INTO alembic_version VALUES ('v7');");
        RunResult b = run_pgward({"backup"}, env("shop"));
        ASSERT_EQ(b.exit_code, 0) << b.err;
        dump_ = b.out.substr(0, b.out.find('\n'));
    }
    Env env(const std::string& db) const { return pg_env(db, dir_); }
    std::string orders(const std::string& db) const {
        return PgCluster::instance().query_value(db, "SELECT count(*) FROM orders");
    }
    size_t dumps() const {
        size_t n = 0;
        for (const auto& name : list_dir(dir_)) {
            n += name.size() > 5 && name.substr(name.size() - 5) == ".dump";
        }
        return n;
    }

    std::string dump_;
};

TEST_F(RestoreTest, NonEmptyTargetWithoutConsentIsRefusedAndUntouched) {
    PgCluster::instance().exec("shop", "DELETE FROM orders WHERE id > 100");
    RunResult plain = run_pgward({"restore", "latest", "--dbname", "shop"}, env("shop"));
    EXPECT_EQ(plain.exit_code, 1);
    EXPECT_TRUE(contains(plain.err, "target database \"shop\" is not empty")) << plain.err;
    EXPECT_TRUE(contains(plain.err, "nothing was changed")) << plain.err;
    RunResult no_yes = run_pgward(
        {"restore", "latest", "--dbname", "shop", "--clean", "--if-exists"}, env("shop"));
    EXPECT_EQ(no_yes.exit_code, 1);
    EXPECT_TRUE(contains(no_yes.err, "needs consent")) << no_yes.err;
    EXPECT_EQ(orders("shop"), "100");
    EXPECT_EQ(dumps(), 1u) << "no safety dump before consent";
}

TEST_F(RestoreTest, CleanRestoreTakesASafetyDumpFirst) {
    PgCluster::instance().exec("shop", "DELETE FROM orders WHERE id > 100");
    // --jobs 2 on an archive pgward wrote through a pipe (no data offsets).
    RunResult r = run_pgward({"restore", dump_, "--dbname", "shop", "--clean", "--if-exists",
                              "--yes", "--jobs", "2", "--json"},
                             env("shop"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json result = json::parse(r.out);
    EXPECT_EQ(result["restore_success"], true);
    ASSERT_TRUE(result["safety_backup"].is_string());
    fs::path safety = result["safety_backup"].get<std::string>();
    EXPECT_TRUE(fs::exists(safety));
    EXPECT_NE(safety.string(), dump_);
    EXPECT_EQ(dumps(), 2u);
    EXPECT_EQ(orders("shop"), "300");
    // The safety dump holds the state before the restore (100 rows).
    fs::path manifest = safety;
    manifest.replace_extension(".json");
    json m = json::parse(slurp(manifest));
    EXPECT_EQ(m["tables"][1]["name"], "orders");
    EXPECT_EQ(m["tables"][1]["rows"], 100);
}

TEST_F(RestoreTest, OtherSessionsBlockTheRestoreOrAreEnded) {
    pg::Connection app = PgCluster::instance().connect("shop");
    RunResult blocked = run_pgward({"restore", "latest", "--dbname", "shop", "--clean",
                                    "--if-exists", "--yes", "--no-safety-backup"},
                                   env("shop"));
    EXPECT_EQ(blocked.exit_code, 1);
    std::string pid = std::to_string(PQbackendPID(app.raw()));
    EXPECT_TRUE(contains(blocked.err, "other session(s) use \"shop\": pid " + pid)) << blocked.err;
    EXPECT_TRUE(contains(blocked.err, "--terminate-sessions")) << blocked.err;
    EXPECT_NO_THROW(app.exec("SELECT 1"));

    RunResult ended = run_pgward({"restore", "latest", "--dbname", "shop", "--clean", "--if-exists",
                                  "--yes", "--no-safety-backup", "--terminate-sessions"},
                                 env("shop"));
    EXPECT_EQ(ended.exit_code, 0) << ended.err;
    EXPECT_TRUE(contains(ended.err, "ended a session on the restore target")) << ended.err;
    EXPECT_THROW(app.exec("SELECT 1"), Error);
}

TEST_F(RestoreTest, MissingTargetNeedsCreate) {
    PgCluster::instance().drop_database("shop_copy");
    RunResult no = run_pgward({"restore", "latest", "--dbname", "shop_copy", "--from-db", "shop"},
                              env("shop"));
    EXPECT_EQ(no.exit_code, 1);
    EXPECT_TRUE(contains(no.err, "pass --create")) << no.err;
    RunResult yes =
        run_pgward({"restore", "latest", "--dbname", "shop_copy", "--from-db", "shop", "--create"},
                   env("shop"));
    EXPECT_EQ(yes.exit_code, 0) << yes.err;
    EXPECT_EQ(orders("shop_copy"), "300");
    PgCluster::instance().drop_database("shop_copy");
}

TEST_F(RestoreTest, PreflightRefusesBadArchivesAndOldPgRestoreBeforeTouchingAnything) {
    PgCluster& c = PgCluster::instance();
    c.create_database("empty_target");
    // An archive whose byte was flipped: its SHA-256 no longer matches.
    fs::path copy = dir_ / "shop_20200101T000000Z.dump";
    fs::copy_file(dump_, copy);
    fs::path manifest = fs::path(dump_).replace_extension(".json");
    json m = json::parse(slurp(manifest));
    m["file"] = copy.filename().string();
    write_text(dir_ / "shop_20200101T000000Z.json", m.dump(), 0600);
    {
        std::fstream f(copy, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(fs::file_size(copy) / 2));
        f.put('\x5a');
    }
    RunResult tampered =
        run_pgward({"restore", copy.string(), "--dbname", "empty_target"}, env("shop"));
    EXPECT_EQ(tampered.exit_code, 1);
    EXPECT_TRUE(contains(tampered.err, "cannot be restored: sha256-mismatch")) << tampered.err;

    write_text(dir_ / "notes.dump", "hello", 0600);
    RunResult foreign = run_pgward(
        {"restore", (dir_ / "notes.dump").string(), "--dbname", "empty_target"}, env("shop"));
    EXPECT_EQ(foreign.exit_code, 1);
    EXPECT_TRUE(contains(foreign.err, "is not a pg_dump custom-format archive")) << foreign.err;
    write_text(dir_ / "empty.dump", "", 0600);
    RunResult empty = run_pgward(
        {"restore", (dir_ / "empty.dump").string(), "--dbname", "empty_target"}, env("shop"));
    EXPECT_EQ(empty.exit_code, 1);
    EXPECT_TRUE(contains(empty.err, "the file is empty")) << empty.err;

    fs::path bin = dir_ / "old-bin";
    fs::create_directory(bin);
    write_text(bin / "pg_restore", "#!/bin/sh\necho 'pg_restore (PostgreSQL) 11.22'\n", 0755);
    RunResult old = run_pgward(
        {"restore", dump_, "--dbname", "empty_target", "--pg-bin", bin.string()}, env("shop"));
    EXPECT_EQ(old.exit_code, 1);
    // What the pg_dump in use writes, and the oldest pg_restore that reads it.
    int client = c.client_major();
    auto [format, needs] = client >= 17   ? std::pair{"1.16", "17"}
                           : client == 16 ? std::pair{"1.15", "16"}
                                          : std::pair{"1.14", "12"};
    // pgward's auto compression: zstd from pg_dump 16, gzip before.
    const char* method = client >= 16 ? "zstd" : "gzip";
    EXPECT_TRUE(contains(old.err, fmt::format("archive format {} ({}), which pg_restore 11.22 "
                                              "cannot read: it needs pg_restore {} or newer",
                                              format, method, needs)))
        << old.err;
    EXPECT_EQ(
        c.query_value("empty_target", "SELECT count(*) FROM pg_class WHERE relname = 'orders'"),
        "0");
    c.drop_database("empty_target");
}

TEST_F(RestoreTest, PgRestoreErrorsFailTheRestoreAndAreListed) {
    // --clean without --if-exists: the DROPs of objects that are not there
    // (the sequence, alembic_version) are real errors.
    PgCluster& c = PgCluster::instance();
    c.create_database("conflict");
    c.exec("conflict", "CREATE TABLE orders(id int)");  // same name, different shape
    RunResult bad = run_pgward({"restore", dump_, "--dbname", "conflict", "--clean", "--yes",
                                "--no-safety-backup", "--json"},
                               env("shop"));
    EXPECT_EQ(bad.exit_code, 1) << bad.err;
    json result = json::parse(bad.out);
    EXPECT_EQ(result["restore_success"], false);
    EXPECT_FALSE(result["errors"].empty());
    EXPECT_TRUE(contains(bad.err, "restore of")) << bad.err;
    c.drop_database("conflict");
}

TEST_F(RestoreTest, VerifyChecksEveryBackup) {
    RunResult ok = run_pgward({"verify", "all"}, env("shop"));
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
    EXPECT_TRUE(contains(ok.out, "ok   shop_")) << ok.out;
    fs::path manifest = fs::path(dump_).replace_extension(".json");
    fs::remove(manifest);
    RunResult missing = run_pgward({"verify", "latest"}, env("shop"));
    EXPECT_EQ(missing.exit_code, 1);
    EXPECT_TRUE(contains(missing.out, "no manifest")) << missing.out;
}

TEST_F(RestoreTest, DeepVerifyReadsEveryBlockAndNamesTheDamagedTable) {
    RunResult ok = run_pgward({"verify", "--deep", "latest"}, env("shop"));
    ASSERT_EQ(ok.exit_code, 0) << ok.err << ok.out;
    EXPECT_TRUE(contains(ok.out,
                         "read 2 tables, 301 rows, 0 large objects; every table's rows and fp1 "
                         "equal the manifest"))
        << ok.out;

    // A copy with one flipped byte inside the orders table's data, and its manifest.
    fs::path copy = dir_ / "shop_20200101T000000Z.dump";
    fs::copy_file(dump_, copy);
    json m = json::parse(slurp(fs::path(dump_).replace_extension(".json")));
    m["file"] = copy.filename().string();
    write_text(dir_ / "shop_20200101T000000Z.json", m.dump(), 0600);
    std::string bytes = slurp(copy);
    // The last table's data: a zlib stream from pg_dump 15, a zstd frame (with
    // its checksum) from pgward's auto with pg_dump 16+.
    const bool zstd = PgCluster::instance().client_major() >= 16;
    size_t at = zstd ? bytes.rfind(std::string("\x28\xb5\x2f\xfd", 4)) : bytes.rfind("x\x9c");
    ASSERT_NE(at, std::string::npos);
    bytes[at + 12] = static_cast<char>(bytes[at + 12] ^ 0x40);
    write_text(copy, bytes, 0600);
    RunResult bad = run_pgward({"verify", "--deep", copy.string()}, env("shop"));
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_TRUE(contains(bad.out, "sha256-mismatch")) << bad.out;
    EXPECT_TRUE(contains(bad.out, "archive damaged at byte")) << bad.out;
    EXPECT_TRUE(contains(bad.out, "public.")) << bad.out;
    EXPECT_TRUE(contains(bad.err, "1 of 1 archive(s) failed verification")) << bad.err;

    // Without a manifest the damage is still found by reading.
    fs::remove(dir_ / "shop_20200101T000000Z.json");
    RunResult alone = run_pgward({"verify", "--deep", copy.string()}, env("shop"));
    EXPECT_EQ(alone.exit_code, 1);
    EXPECT_TRUE(contains(alone.out, "archive damaged at byte")) << alone.out;
    fs::remove(copy);
    RunResult clean_alone = run_pgward({"verify", "--deep", dump_}, env("shop"));
    EXPECT_EQ(clean_alone.exit_code, 0) << clean_alone.out;
}

TEST_F(RestoreTest, SmokeWarnsOnASequenceBehindItsColumnWithTheFixAndFailsOnAMissingVersionTable) {
    PgCluster& c = PgCluster::instance();
    RunResult good = run_pgward({"smoke", "--json"}, env("shop"));
    ASSERT_EQ(good.exit_code, 0) << good.err;
    json doc = json::parse(good.out);
    EXPECT_EQ(doc["schema_version"], "v7");
    EXPECT_EQ(doc["success"], true);

    // After an emergency restore there is no source to compare with: a
    // sequence behind its column (an app that inserts its own ids does that
    // on purpose) is a warning that shows the fix, not a failed smoke.
    c.exec("shop", "SELECT setval('orders_id_seq', 5)");
    RunResult behind = run_pgward({"smoke"}, env("shop"));
    EXPECT_EQ(behind.exit_code, 0) << behind.err;
    EXPECT_TRUE(contains(behind.out,
                         "warn sequence \"public\".\"orders_id_seq\" at 5 behind "
                         "\"public\".\"orders\".\"id\" max 300; fix: SELECT pg_catalog.setval("
                         "'\"public\".\"orders_id_seq\"', (SELECT max(\"id\") FROM "
                         "\"public\".\"orders\"));"))
        << behind.out;
    RunResult behind_json = run_pgward({"smoke", "--json"}, env("shop"));
    EXPECT_EQ(behind_json.exit_code, 0) << behind_json.err;
    EXPECT_EQ(json::parse(behind_json.out)["warnings"].size(), 1u) << behind_json.out;
    // The fix it shows works.
    c.exec("shop",
           "SELECT pg_catalog.setval('\"public\".\"orders_id_seq\"', "
           "(SELECT max(\"id\") FROM \"public\".\"orders\"))");
    RunResult fixed = run_pgward({"smoke", "--json"}, env("shop"));
    EXPECT_TRUE(json::parse(fixed.out)["warnings"].empty()) << fixed.out;

    c.exec("shop", "SELECT setval('orders_id_seq', 300); DROP TABLE alembic_version");
    RunResult no_version = run_pgward({"smoke"}, env("shop"));
    EXPECT_EQ(no_version.exit_code, 1);
    EXPECT_TRUE(contains(no_version.err, "schema_version: table alembic_version does not exist"))
        << no_version.err;
    RunResult none = run_pgward({"smoke", "--version-table", "none"}, env("shop"));
    EXPECT_EQ(none.exit_code, 0) << none.err;
}

}  // namespace
}  // namespace pgward::test
