// The command layer's own answers: version, help, a missing or unknown
// command, connection strings given as --dbname, and prune's refusals.
#include <gtest/gtest.h>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;

class CliTest : public ScratchDirTest {
  protected:
    CliTest() : ScratchDirTest("cli") {}
    void touch(const std::string& name) { write_text(dir_ / name, "", 0600); }
};

TEST_F(CliTest, VersionNamesTheToolsItWillUseOrWhyNot) {
    const fs::path bin = PgCluster::instance().client_bin_dir();
    RunResult r = run_pgward({"version", "--pg-bin", bin.string()});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind("pgward ", 0), 0U) << r.out;
    for (const char* tool : {"pg_dump", "pg_restore", "pg_dumpall"}) {
        EXPECT_TRUE(contains(r.out, std::string(tool) + ": ")) << r.out;
        EXPECT_TRUE(contains(r.out, "(" + (bin / tool).string() + ")")) << r.out;
    }
    RunResult none = run_pgward({"version"}, {{"PGWARD_PG_BIN", (dir_ / "empty").string()}});
    EXPECT_EQ(none.exit_code, 0) << none.err;
    EXPECT_TRUE(contains(none.out, "pg_dump: not available: ")) << none.out;
    EXPECT_TRUE(contains(none.out, (dir_ / "empty").string())) << none.out;
}

TEST_F(CliTest, HelpAndAMissingOrUnknownCommand) {
    RunResult help = run_pgward({"--help"});
    EXPECT_EQ(help.exit_code, 0);
    for (const char* command : {"backup", "run", "list", "prune", "verify", "restore", "drill"}) {
        EXPECT_TRUE(contains(help.out, command)) << help.out;
    }
    RunResult all = run_pgward({"--help-all"});
    EXPECT_EQ(all.exit_code, 0);
    EXPECT_TRUE(contains(all.out, "--retention")) << all.out;
    RunResult missing = run_pgward({});
    EXPECT_EQ(missing.exit_code, 2);
    EXPECT_EQ(missing.err, "pgward: A subcommand is required (hint: see `pgward --help`)\n");
    RunResult unknown = run_pgward({"bakup", "--dir", dir_.string()});
    EXPECT_EQ(unknown.exit_code, 2);
    EXPECT_EQ(unknown.err.rfind("pgward: unknown command \"bakup\" (hint: the commands are ", 0),
              0U)
        << unknown.err;
    EXPECT_TRUE(contains(unknown.err, "backup, ")) << unknown.err;
    EXPECT_EQ(std::count(unknown.err.begin(), unknown.err.end(), '\n'), 1) << unknown.err;
    RunResult bad_flag = run_pgward({"backup", "--no-such-flag"});
    EXPECT_EQ(bad_flag.exit_code, 2);
    EXPECT_TRUE(contains(bad_flag.err, "--no-such-flag")) << bad_flag.err;
    EXPECT_TRUE(contains(bad_flag.err, "(hint: see `pgward --help`)")) << bad_flag.err;
}

TEST_F(CliTest, PruneNamesItsDatabaseFromAConnectionStringOrRefuses) {
    RunResult no_keep = run_pgward({"prune", "--dir", dir_.string()});
    EXPECT_EQ(no_keep.exit_code, 2);
    EXPECT_EQ(no_keep.err,
              "pgward: prune needs --keep N (or POSTGRES_BACKUP_RETENTION_COUNT) (hint: say how "
              "many of the newest backups to keep)\n");
    RunResult empty = run_pgward({"prune", "--keep", "1", "--dir", dir_.string()});
    EXPECT_EQ(empty.exit_code, 1);
    EXPECT_EQ(empty.err, "pgward: no backups in " + dir_.string() +
                             " (hint: check --dir / POSTGRES_BACKUP_DIR)\n");

    for (const char* name :
         {"app_20260101T000000Z.dump", "app_20260101T000000Z.json", "app_20260102T000000Z.dump",
          "app_20260102T000000Z.json", "other_20260103T000000Z.dump"}) {
        touch(name);
    }
    RunResult two = run_pgward({"prune", "--keep", "1", "--dir", dir_.string()});
    EXPECT_EQ(two.exit_code, 2);
    EXPECT_EQ(two.err, "pgward: " + dir_.string() +
                           " holds backups of 2 databases; name one (hint: pass --dbname (or "
                           "set POSTGRES_DB))\n");

    RunResult bad = run_pgward(
        {"prune", "--keep", "1", "--dir", dir_.string(), "--dbname", "host=localhost dbname"});
    EXPECT_EQ(bad.exit_code, 2);
    EXPECT_TRUE(contains(bad.err, "pgward: invalid connection string in --dbname: ")) << bad.err;
    EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;

    // The database named inside a URI; --dry-run deletes nothing.
    RunResult plan = run_pgward({"prune", "--keep", "1", "--dir", dir_.string(), "--dbname",
                                 "postgresql://localhost:5432/app?sslmode=disable", "--dry-run"});
    EXPECT_EQ(plan.exit_code, 0) << plan.err;
    EXPECT_TRUE(contains(plan.err, "prune plan")) << plan.err;
    EXPECT_TRUE(contains(plan.err, "would_delete=1")) << plan.err;
    EXPECT_TRUE(fs::exists(dir_ / "app_20260101T000000Z.dump"));

    RunResult done = run_pgward(
        {"prune", "--keep", "1", "--dir", dir_.string(), "--dbname", "host=localhost dbname=app"});
    EXPECT_EQ(done.exit_code, 0) << done.err;
    EXPECT_EQ(list_dir(dir_), (std::vector<std::string>{
                                  ".pgward-app.lock", "app_20260102T000000Z.dump",
                                  "app_20260102T000000Z.json", "other_20260103T000000Z.dump"}));
}

}  // namespace
}  // namespace pgward::test
