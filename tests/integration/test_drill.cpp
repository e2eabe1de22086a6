#include <gtest/gtest.h>
#include <sys/stat.h>

#include <csignal>
#include <regex>

#include <nlohmann/json.hpp>

#include "harness/json_schema.hpp"
#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using json = nlohmann::json;

const fs::path kSource = PGWARD_SOURCE_DIR;
const fs::path kMigrations = kSource / "examples/quiz_arena/migrations";

class DrillTest : public ScratchDirTest {
  protected:
    DrillTest() : ScratchDirTest("drill") {}
    static void SetUpTestSuite() {
        PgCluster& c = PgCluster::instance();
        c.create_database("quiz");
        for (const auto& name : {"0001_initial.sql", "0002_quizzes.sql", "0003_answers.sql"}) {
            c.exec("quiz", slurp(kMigrations / name));
        }
        c.exec("quiz",
               "CREATE TABLE alembic_version(version_num varchar(32) PRIMARY KEY); "
               "INSERT INTO alembic_version VALUES ('0003_answers');");
        c.exec("quiz", slurp(kSource / "examples/quiz_arena/sample_data.sql"));
    }

    void SetUp() override {
        ScratchDirTest::SetUp();
        tmp_ = shared_subdir("tmp");
    }

    Env env(Env extra = {}) const {
        extra.insert(extra.begin(), {"TMPDIR", tmp_.string()});
        return pg_env("quiz", dir_ / "backups", std::move(extra));
    }

    json report(const RunResult& r) const {
        std::string path = r.out.substr(0, r.out.find('\n'));
        EXPECT_TRUE(fs::exists(path)) << r.out << r.err;
        return json::parse(slurp(path));
    }

    // A bin dir with the real tools but `tool` replaced by `script`; with the
    // test cluster's initdb and postgres, so a sandbox is of the cluster's major.
    fs::path fake_bin(const std::string& tool, const std::string& script) const {
        fs::path bin = dir_ / ("bin-" + tool);
        fs::create_directories(bin);
        for (const char* real : {"pg_dump", "pg_restore", "pg_dumpall", "psql"}) {
            if (real != tool) {
                fs::create_symlink(PgCluster::instance().client_bin_dir() / real, bin / real);
            }
        }
        for (const char* server : {"initdb", "postgres", "pg_ctl"}) {
            fs::create_symlink(PgCluster::instance().bin_dir() / server, bin / server);
        }
        write_text(bin / tool, script, 0755);
        return bin;
    }

    std::string real(const std::string& tool) const {
        return (PgCluster::instance().client_bin_dir() / tool).string();
    }

    fs::path tmp_;
};

TEST_F(DrillTest, PassesOnTheExampleSchemaAndTheReportMeetsTheSeedCriteria) {
    RunResult r = run_pgward({"drill", "--migrations", kMigrations.string(), "--report-dir",
                              (dir_ / "reports").string()},
                             env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json rep = report(r);
    auto problems =
        schema_problems(json::parse(slurp(kSource / "docs/drill-report.schema.json")), rep);
    EXPECT_TRUE(problems.empty()) << testing::PrintToString(problems);
    // The seed's section 4, one by one.
    EXPECT_EQ(rep["restore_success"], true);
    EXPECT_EQ(rep["alembic_version_before"], "0003_answers");
    EXPECT_EQ(rep["alembic_version_after"], rep["alembic_version_before"]);
    EXPECT_EQ(rep["users_count_before"], rep["users_count_after"]);
    EXPECT_EQ(rep["processed_updates_count_before"], rep["processed_updates_count_after"]);
    EXPECT_GE(rep["users_count_before"].get<int>(), 1);
    EXPECT_TRUE(rep["seeded_telegram_user_id"].is_number_integer());
    EXPECT_TRUE(rep["seeded_update_id"].is_number_integer());
    std::map<std::string, bool> checks;
    for (const auto& c : rep["checks"]) {
        checks[c["name"]] = c["passed"];
    }
    for (const char* name : {"restore_completed", "alembic_version_matches", "users_count_matches",
                             "processed_updates_count_matches", "seeded_telegram_user_id_present",
                             "seeded_update_id_present", "table_row_counts_match",
                             "smoke_sequences", "smoke_indexes_valid", "smoke_accepts_write"}) {
        EXPECT_TRUE(checks.count(name) && checks[name]) << name;
    }
    EXPECT_EQ(rep["steps"].size(), 7u);
    EXPECT_EQ(rep["drill_db"], "quiz_restore_drill");
    fs::path report_path = r.out.substr(0, r.out.find('\n'));
    EXPECT_TRUE(std::regex_match(report_path.filename().string(),
                                 std::regex(R"(restore_drill_result_\d{8}T\d{6}Z\.json)")));
    struct stat st {};
    ::stat(report_path.c_str(), &st);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    // The drill database is gone, the source untouched, no temp files left.
    EXPECT_EQ(
        PgCluster::instance().query_value(
            "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'quiz_restore_drill'"),
        "0");
    EXPECT_TRUE(list_dir(tmp_).empty()) << testing::PrintToString(list_dir(tmp_));
}

TEST_F(DrillTest, APgRestoreThatRestoresNothingFailsTheDrill) {
    fs::path bin = fake_bin("pg_restore", "#!/bin/sh\ncase \"$1\" in --version|--list) exec '" +
                                              real("pg_restore") + "' \"$@\";; esac\nexit 0\n");
    RunResult r = run_pgward({"drill", "--migrations", kMigrations.string(), "--pg-bin",
                              bin.string(), "--report-dir", (dir_ / "reports").string()},
                             env());
    EXPECT_EQ(r.exit_code, 1);
    json rep = report(r);
    EXPECT_EQ(rep["restore_success"], false);
    EXPECT_TRUE(contains(r.err, "restore drill failed: alembic_version_matches")) << r.err;
    EXPECT_TRUE(contains(r.err, "table_row_counts_match: mismatch")) << r.err;
}

TEST_F(DrillTest, APgRestoreThatDropsAMarkerRowFailsTheDrill) {
    // The real pg_restore, then the seeded user deleted behind its back.
    std::string script =
        "#!/bin/bash\n"
        "case \"$1\" in --version|--list) exec '" +
        real("pg_restore") +
        "' \"$@\";; esac\n"
        "'" +
        real("pg_restore") +
        "' \"$@\"; rc=$?\n"
        "for a in \"$@\"; do [[ $a == --dbname=* ]] && conn=${a#--dbname=}; done\n"
        "'" +
        real("psql") +
        "' -q -d \"$conn\" -c "
        "'DELETE FROM users WHERE telegram_user_id >= 9000000000000' || exit 99\n"
        "exit $rc\n";
    fs::path bin = fake_bin("pg_restore", script);
    RunResult r = run_pgward({"drill", "--migrations", kMigrations.string(), "--pg-bin",
                              bin.string(), "--report-dir", (dir_ / "reports").string()},
                             env());
    EXPECT_EQ(r.exit_code, 1) << r.err;
    json rep = report(r);
    EXPECT_EQ(rep["restore_success"], false);
    EXPECT_TRUE(contains(r.err, "seeded_telegram_user_id_present: absent")) << r.err;
    EXPECT_TRUE(contains(r.err, "users_count_matches")) << r.err;
    // The content proof sees it too, and names the table.
    EXPECT_TRUE(contains(r.err, "table_fingerprints_match: mismatch: public.users (before fp1:"))
        << r.err;
    for (const auto& t : rep["tables"]) {
        EXPECT_EQ(t["match"], t["name"] != "users") << t.dump();
    }
}

TEST_F(DrillTest, AFailingMigrationFailsTheMigrateStep) {
    fs::path migrations = dir_ / "migrations";
    fs::create_directory(migrations);
    fs::copy_file(kMigrations / "0001_initial.sql", migrations / "0001_initial.sql");
    write_text(migrations / "0002_broken.sql",
               "CREATE TABLE broken (id int REFERENCES nowhere(id));");
    RunResult r = run_pgward(
        {"drill", "--migrations", migrations.string(), "--report-dir", (dir_ / "reports").string()},
        env());
    EXPECT_EQ(r.exit_code, 1);
    json rep = report(r);
    EXPECT_EQ(rep["restore_success"], false);
    EXPECT_EQ(rep["steps"][1]["name"], "migrate");
    EXPECT_EQ(rep["steps"][1]["ok"], false);
    EXPECT_TRUE(contains(rep["steps"][1]["error"], "migration 0002_broken.sql failed"))
        << rep.dump(2);
    EXPECT_TRUE(contains(rep["steps"][2]["error"], "skipped"));
    EXPECT_TRUE(contains(r.err, "step_migrate")) << r.err;
}

TEST_F(DrillTest, AFailingMigrateCommandFailsTheMigrateStep) {
    RunResult r = run_pgward({"drill", "--migrate-cmd", "echo migrating $PGDATABASE; exit 3",
                              "--report-dir", (dir_ / "reports").string()},
                             env());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "line=\"migrating quiz_restore_drill\"")) << r.err;
    EXPECT_TRUE(contains(r.err, "the migrate command failed (exit code 3)")) << r.err;
}

// The migrate command's DATABASE_URL works as it is given: psql migrates
// through it, with the test cluster's password (a quote, a space and a
// backslash) percent-encoded in it.
TEST_F(DrillTest, AMigrateCommandMigratesThroughDatabaseUrl) {
    const std::string command =
        "for f in '" + kMigrations.string() + "'/*.sql; do '" + real("psql") +
        "' \"$DATABASE_URL\" -v ON_ERROR_STOP=1 -q -f \"$f\" || exit 1; done";
    RunResult r = run_pgward({"drill", "--migrate-cmd", command, "--version-table", "none",
                              "--report-dir", (dir_ / "reports").string()},
                             env());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json rep = report(r);
    EXPECT_EQ(rep["restore_success"], true) << rep.dump(2);
}

TEST_F(DrillTest, AFailingDumpStepFailsTheDrill) {
    fs::path bin =
        fake_bin("pg_dump", "#!/bin/sh\n[ \"$1\" = --version ] && exec '" + real("pg_dump") +
                                "' --version\necho 'pg_dump: error: simulated' >&2\nexit 1\n");
    RunResult r = run_pgward({"drill", "--migrations", kMigrations.string(), "--pg-bin",
                              bin.string(), "--report-dir", (dir_ / "reports").string()},
                             env());
    EXPECT_EQ(r.exit_code, 1);
    json rep = report(r);
    EXPECT_EQ(rep["restore_success"], false);
    EXPECT_EQ(rep["steps"][3]["name"], "backup");
    EXPECT_TRUE(contains(rep["steps"][3]["error"], "simulated")) << rep.dump(2);
}

TEST_F(DrillTest, RefusesADrillDatabaseThatIsTheSourceOrLooksLikeProduction) {
    RunResult same =
        run_pgward({"drill", "--migrations", kMigrations.string(), "--drill-db", "quiz"}, env());
    EXPECT_EQ(same.exit_code, 2);
    EXPECT_TRUE(contains(same.err, "is the source database; refusing to drop it")) << same.err;
    RunResult prod = run_pgward({"drill", "--migrations", kMigrations.string()},
                                env({{"DRILL_DB", "quiz_production"}}));
    EXPECT_EQ(prod.exit_code, 2);
    EXPECT_TRUE(contains(prod.err, "does not look like a drill database")) << prod.err;
    EXPECT_EQ(PgCluster::instance().query_value("quiz", "SELECT count(*) FROM users"), "2000");
}

TEST_F(DrillTest, SandboxDrillOfARealBackupProvesItAndLeavesNothing) {
    RunResult b = run_pgward({"backup"}, env());
    ASSERT_EQ(b.exit_code, 0) << b.err;
    RunResult r = run_pgward(
        {"drill", "--backup", "latest", "--sandbox", "--report-dir", (dir_ / "reports").string()},
        env());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    json rep = report(r);
    EXPECT_EQ(rep["mode"], "backup-sandbox");
    EXPECT_EQ(rep["users_count_before"], 2000);
    EXPECT_EQ(rep["users_count_after"], 2000);
    EXPECT_EQ(rep["alembic_version_after"], "0003_answers");
    for (const auto& t : rep["tables"]) {
        EXPECT_EQ(t["match"], true) << t.dump();
    }
    EXPECT_TRUE(list_dir(tmp_).empty())
        << "sandbox left: " << testing::PrintToString(list_dir(tmp_));
    auto problems =
        schema_problems(json::parse(slurp(kSource / "docs/drill-report.schema.json")), rep);
    EXPECT_TRUE(problems.empty()) << testing::PrintToString(problems);
}

TEST_F(DrillTest, SandboxIsRemovedAfterAFailure) {
    ASSERT_EQ(run_pgward({"backup"}, env()).exit_code, 0);
    fs::path bin = fake_bin(
        "pg_restore", "#!/bin/sh\ncase \"$1\" in --version|--list) exec '" + real("pg_restore") +
                          "' \"$@\";; esac\n"
                          "echo 'pg_restore: error: simulated failure' >&2\nexit 1\n");
    RunResult r = run_pgward({"drill", "--backup", "latest", "--sandbox", "--pg-bin", bin.string(),
                              "--report-dir", (dir_ / "reports").string()},
                             env());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "restore_completed: 1 error(s), first: simulated failure"))
        << r.err;
    EXPECT_TRUE(list_dir(tmp_).empty())
        << "sandbox left: " << testing::PrintToString(list_dir(tmp_));
}

TEST_F(DrillTest, SandboxIsRemovedOnSigterm) {
    ASSERT_EQ(run_pgward({"backup"}, env()).exit_code, 0);
    // A pg_restore that takes its time, so SIGTERM lands mid-restore.
    fs::path bin =
        fake_bin("pg_restore", "#!/bin/sh\ncase \"$1\" in --version|--list) exec '" +
                                   real("pg_restore") + "' \"$@\";; esac\nexec sleep 60\n");
    BackgroundPgward drill({"drill", "--backup", "latest", "--sandbox", "--pg-bin", bin.string(),
                            "--report-dir", (dir_ / "reports").string()},
                           env());
    ASSERT_TRUE(eventually([&] { return !children_named(drill.pid(), "sleep").empty(); }, 60s));
    ASSERT_FALSE(list_dir(tmp_).empty());
    ::kill(drill.pid(), SIGTERM);
    auto r = drill.wait(30s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 1);
    EXPECT_TRUE(contains(r->err, "interrupted by SIGTERM")) << r->err;
    EXPECT_TRUE(list_dir(tmp_).empty())
        << "sandbox left: " << testing::PrintToString(list_dir(tmp_));
}

TEST_F(DrillTest, TheSeedScriptRunsToolsInTheContainerThroughDockerExec) {
    fs::path bin = dir_ / "fake-docker";
    fs::create_directories(bin);
    fs::path log = dir_ / "docker.log";
    // A fake docker: records the call, then runs the tool here (the
    // "container" is this machine), reading the archive from stdin.
    write_text(bin / "docker",
               "#!/bin/bash\n"
               "echo \"$*\" >> '" +
                   log.string() +
                   "'\n"
                   "[ \"$1\" = exec ] || exit 64\nshift\n"
                   "while [[ $1 == -* ]]; do [[ $1 == -e ]] && shift; shift; done\n"
                   "shift\n"  // the container
                   "tool=$1; shift\n"
                   "exec '" +
                   PgCluster::instance().client_bin_dir().string() + "'/$tool \"$@\"\n",
               0755);
    Env e = env({{"PATH", bin.string() + ":/usr/bin:/bin"},
                 {"POSTGRES_CONTAINER", "quiz_arena_postgres"},
                 {"POSTGRES_CONTAINER_PORT", std::to_string(PgCluster::instance().port())},
                 {"DRILL_DB", "quiz_arena_restore_drill"},
                 {"POSTGRES_HOST", "127.0.0.1"},
                 {"REPORT_DIR", (dir_ / "reports").string()},
                 {"PGWARD", PGWARD_BINARY}});
    CapturedRun run = run_captured(
        Command{{"/bin/bash", (kSource / "scripts/restore_drill_local.sh").string()}, e, {}},
        std::chrono::seconds(120));
    ASSERT_TRUE(run.status.ok()) << run.err;
    std::string calls = slurp(log);
    EXPECT_TRUE(contains(calls, "exec -i -e PGPASSWORD quiz_arena_postgres pg_dump")) << calls;
    EXPECT_TRUE(contains(calls, "exec -i -e PGPASSWORD quiz_arena_postgres pg_restore")) << calls;
    EXPECT_FALSE(contains(calls, PgCluster::instance().password()));
    json rep = json::parse(slurp(run.out.substr(0, run.out.find('\n'))));
    EXPECT_EQ(rep["restore_success"], true);
    EXPECT_EQ(rep["drill_db"], "quiz_arena_restore_drill");
    EXPECT_TRUE(list_dir(tmp_).empty())
        << "wrappers left: " << testing::PrintToString(list_dir(tmp_));
}

}  // namespace
}  // namespace pgward::test
