// --compress / POSTGRES_BACKUP_COMPRESSION with the pg_dump in use: auto by the
// client's major, every method it writes through backup, verify --deep and the
// sandbox drill, and a method it cannot write refused before anything runs.
// With Debian 12's client 15 this covers gzip and none; `make test` runs this
// suite again with client 17 (make test-client17) for zstd and lz4.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "util/files.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kFixtures = PGWARD_FIXTURES_DIR;

class CompressionTest : public ScratchDirTest {
  protected:
    CompressionTest() : ScratchDirTest("compression") {}
    void SetUp() override {
        ScratchDirTest::SetUp();
        PgCluster& c = PgCluster::instance();
        c.create_database("zshop");
        c.exec("zshop",
               "CREATE TABLE orders(id serial PRIMARY KEY, item text, note text); "
               "INSERT INTO orders(item, note) SELECT 'item ' || g, repeat(md5(g::text), 20) "
               "FROM generate_series(1, 5000) g;");
    }
    Env env(Env extra = {}) const { return pg_env("zshop", dir_ / "backups", std::move(extra)); }
    static int client() { return PgCluster::instance().client_major(); }
    // The methods the pg_dump in use writes.
    static std::vector<std::string> methods() {
        if (client() >= 16) {
            return {"gzip", "lz4", "zstd", "none"};
        }
        return {"gzip", "gzip:1", "none"};
    }
    json manifest_of(const std::string& dump) const {
        fs::path m = dump.substr(0, dump.size() - 5) + ".json";
        return json::parse(read_file(m));
    }
    static void flip_byte(const fs::path& file, uint64_t offset) {
        std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
        f.seekg(static_cast<std::streamoff>(offset));
        char b = 0;
        f.read(&b, 1);
        b = static_cast<char>(b ^ 0x5a);
        f.seekp(static_cast<std::streamoff>(offset));
        f.write(&b, 1);
    }
};

TEST_F(CompressionTest, AutoFollowsTheClientsMajorAndListShowsIt) {
    RunResult b = run_pgward({"backup"}, env());
    ASSERT_EQ(b.exit_code, 0) << b.err;
    const std::string expected = client() >= 16 ? "zstd" : "gzip";
    EXPECT_EQ(manifest_of(b.out.substr(0, b.out.find('\n')))["compression"], expected);
    EXPECT_TRUE(contains(b.err, fmt::format("compression={}", client() >= 16 ? "zstd:1" : "gzip")))
        << b.err;

    RunResult list = run_pgward({"list", "--dir", (dir_ / "backups").string()}, env());
    ASSERT_EQ(list.exit_code, 0) << list.err;
    EXPECT_TRUE(contains(list.out, "COMPRESSION")) << list.out;
    EXPECT_TRUE(contains(list.out, " " + expected + " ")) << list.out;
    RunResult list_json =
        run_pgward({"list", "--json", "--dir", (dir_ / "backups").string()}, env());
    ASSERT_EQ(list_json.exit_code, 0) << list_json.err;
    EXPECT_EQ(json::parse(list_json.out)[0]["compression"], expected);
}

TEST_F(CompressionTest, EveryMethodTheClientWritesIsVerifiedFingerprintedAndDrilled) {
    for (const std::string& method : methods()) {
        SCOPED_TRACE(method);
        RunResult b = run_pgward({"backup", "--compress", method}, env());
        ASSERT_EQ(b.exit_code, 0) << b.err;
        std::string dump = b.out.substr(0, b.out.find('\n'));
        json m = manifest_of(dump);
        EXPECT_EQ(m["compression"], method.substr(0, method.find(':')));
        for (const auto& t : m["tables"]) {
            EXPECT_TRUE(t["fingerprint"].is_string()) << t.dump();
        }
        RunResult v = run_pgward({"verify", dump, "--deep"}, env());
        EXPECT_EQ(v.exit_code, 0) << v.err << v.out;
        fs::path reports = shared_subdir("reports-" + method.substr(0, method.find(':')) +
                                         (method.find(':') == std::string::npos ? "" : "-level"));
        RunResult d = run_pgward({"drill", "--backup", dump, "--sandbox", "--version-table", "none",
                                  "--report-dir", reports.string()},
                                 env({{"TMPDIR", shared_subdir("tmp").string()}}));
        EXPECT_EQ(d.exit_code, 0) << d.err;
    }
}

TEST_F(CompressionTest, AMethodTheClientCannotWriteIsExitTwoBeforeAnythingRuns) {
    // A pg_dump 15 by its --version: nothing else of it may run.
    fs::path bin = dir_ / "pg15";
    fs::create_directory(bin);
    write_text(
        bin / "pg_dump",
        "#!/bin/sh\n[ \"$1\" = --version ] && { echo 'pg_dump (PostgreSQL) 15.18'; exit 0; }\n"
        "touch '" +
            (dir_ / "pg_dump-ran").string() + "'\nexit 1\n",
        0755);
    fs::create_symlink(PgCluster::instance().client_bin_dir() / "pg_restore", bin / "pg_restore");
    for (const char* method : {"zstd", "lz4:4"}) {
        SCOPED_TRACE(method);
        RunResult b = run_pgward({"backup", "--compress", method, "--pg-bin", bin.string()}, env());
        EXPECT_EQ(b.exit_code, 2) << b.err;
        std::string name = std::string(method).substr(0, std::string(method).find(':'));
        EXPECT_TRUE(contains(b.err, "pg_dump 15.18 cannot write " + name + " archives: " + name +
                                        " needs pg_dump 16 or newer"))
            << b.err;
        EXPECT_TRUE(contains(b.err, "with pg_dump 15 use auto, gzip[:1-9] or none")) << b.err;
        EXPECT_FALSE(fs::exists(dir_ / "backups"));

        RunResult run = run_pgward({"run", "--pg-bin", bin.string()},
                                   env({{"POSTGRES_BACKUP_COMPRESSION", method}}));
        EXPECT_EQ(run.exit_code, 2) << run.err;
        EXPECT_TRUE(contains(run.err, "cannot write " + name + " archives")) << run.err;
    }
    EXPECT_FALSE(fs::exists(dir_ / "pg_dump-ran"));
    // Debian 12's own pg_dump 15, when it is here, is refused the same way.
    const fs::path debian15 = "/usr/lib/postgresql/15/bin";
    if (fs::exists(debian15 / "pg_dump")) {
        RunResult real =
            run_pgward({"backup", "--compress", "zstd", "--pg-bin", debian15.string()}, env());
        EXPECT_EQ(real.exit_code, 2) << real.err;
        EXPECT_TRUE(
            contains(real.err, "cannot write zstd archives: zstd needs pg_dump 16 or newer"))
            << real.err;
        EXPECT_FALSE(fs::exists(dir_ / "backups"));
    }
    RunResult bad = run_pgward({"backup", "--compress", "zstd:0"}, env());
    EXPECT_EQ(bad.exit_code, 2) << bad.err;
    EXPECT_TRUE(contains(bad.err,
                         "--compress: compression \"zstd:0\" is not valid: zstd levels go "
                         "from 1 to 22"))
        << bad.err;
}

TEST_F(CompressionTest, AFlippedByteInAZstdOrLz4ArchiveIsFoundByTheManifestAndNeverPassedSilently) {
    if (client() < 16) {
        GTEST_SKIP() << "pg_dump " << client()
                     << " writes neither zstd nor lz4 (make test-client17 runs this)";
    }
    for (const char* method : {"zstd", "lz4"}) {
        SCOPED_TRACE(method);
        RunResult b = run_pgward({"backup", "--compress", method}, env());
        ASSERT_EQ(b.exit_code, 0) << b.err;
        fs::path dump = b.out.substr(0, b.out.find('\n'));
        // Without the manifest: a copy under another name, damaged in its data.
        fs::path loose = dir_ / (std::string("loose-") + method + ".dump");
        fs::copy_file(dump, loose);
        uint64_t size = fs::file_size(dump);
        flip_byte(dump, size * 3 / 4);
        flip_byte(loose, size * 3 / 4);

        RunResult with = run_pgward({"verify", dump.string(), "--deep"}, env());
        EXPECT_EQ(with.exit_code, 1) << with.out << with.err;
        EXPECT_TRUE(contains(with.out, "FAIL " + dump.filename().string())) << with.out;
        EXPECT_TRUE(contains(with.out, "sha256")) << with.out;
        // pg_dump writes its zstd and lz4 frames without a checksum (frame
        // flags 0x00 and 0x40): a changed byte in a literal run decodes
        // cleanly, one in the coded data usually does not. So without the
        // manifest verify either finds the damage or says it cannot vouch
        // for the content, never a bare "ok".
        RunResult without = run_pgward({"verify", loose.string(), "--deep"}, env());
        if (without.exit_code == 1) {
            EXPECT_TRUE(contains(without.out, "FAIL " + loose.filename().string()))
                << without.out << without.err;
        } else {
            EXPECT_EQ(without.exit_code, 0) << without.err;
            EXPECT_TRUE(contains(without.out, std::string("its ") + method +
                                                  " data carries no checksum: a changed byte in "
                                                  "it cannot be seen without the manifest"))
                << without.out << without.err;
        }
    }
}

}  // namespace
}  // namespace pgward::test
