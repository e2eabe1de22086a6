#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <csignal>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "domain/state.hpp"
#include "harness/pg_cluster.hpp"
#include "harness/receiver.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "util/sha256.hpp"
#include "util/time.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using json = nlohmann::json;

std::vector<std::string> with_suffix(const fs::path& dir, const std::string& suffix) {
    std::vector<std::string> out;
    for (const std::string& name : list_dir(dir)) {
        if (name.size() >= suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            out.push_back(name);
        }
    }
    return out;
}

// The Prometheus text exposition format, line by line: HELP and TYPE
// comments, then samples `name{label="value",...} number`.
std::vector<std::string> prometheus_format_problems(const std::string& body) {
    static const std::regex help(R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*)");
    static const std::regex type(
        R"(# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped))");
    static const std::regex sample(
        R"re([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|NaN|[+-]Inf))re");
    std::vector<std::string> problems;
    std::istringstream lines(body);
    std::string line;
    std::set<std::string> typed;
    while (std::getline(lines, line)) {
        if (std::regex_match(line, type)) {
            typed.insert(line.substr(7, line.find(' ', 7) - 7));
        } else if (!std::regex_match(line, help) && !std::regex_match(line, sample)) {
            problems.push_back(line);
        } else if (line[0] != '#' && !typed.count(line.substr(0, line.find_first_of("{ ")))) {
            problems.push_back("no TYPE before: " + line);
        }
    }
    return problems;
}

class ServiceTest : public ScratchDirTest {
  protected:
    ServiceTest() : ScratchDirTest("service") {}
    static void SetUpTestSuite() {
        PgCluster& c = PgCluster::instance();
        c.create_database("svc");
        c.exec("svc",
               "CREATE TABLE users(id int, telegram_user_id bigint); "
               "INSERT INTO users SELECT g, g FROM generate_series(1, 100) g;");
        c.create_database("svcbig");
        c.exec("svcbig",
               "CREATE TABLE payload(id int, a text); "
               "INSERT INTO payload SELECT g, md5(random()::text) || md5(random()::text) "
               "FROM generate_series(1, 700000) g;");
    }

    Env env(const std::string& db, Env extra = {}) const {
        return pg_env(db, dir_, std::move(extra));
    }

    std::optional<ServiceState> state(const std::string& db) const {
        fs::path path = dir_ / state_file_name(db);
        if (!fs::exists(path)) {
            return std::nullopt;
        }
        try {
            return state_from_json(slurp(path), path.string());
        } catch (...) {
            return std::nullopt;
        }
    }

    bool wait_state(const std::string& db, const std::function<bool(const ServiceState&)>& check,
                    std::chrono::milliseconds timeout) {
        return eventually(
            [&] {
                auto s = state(db);
                return s && check(*s);
            },
            timeout);
    }
};

TEST_F(ServiceTest, ClockJumpsNameBackupsByTheClockAndRankFutureDatedOnesOldest) {
    // pgward's wall clock, moved by rewriting one file (tests/shims/fakeclock.c).
    fs::path offset = dir_ / "clock-offset";
    write_text(offset, "0", 0644);
    const char* asan = std::getenv("ASAN_OPTIONS");
    BackgroundPgward service(
        {"run"}, env("svc", {{"POSTGRES_BACKUP_INTERVAL_SECONDS", "1"},
                             {"POSTGRES_BACKUP_RETENTION_COUNT", "3"},
                             {"LD_PRELOAD", PGWARD_FAKECLOCK_LIB},
                             {"PGWARD_FAKECLOCK_FILE", offset.string()},
                             {"ASAN_OPTIONS",
                              std::string(asan ? asan : "") + ":verify_asan_link_order=0"}}));
    uint64_t seen = 0;
    // Waits for two more successful cycles; returns the newest backup's name.
    auto two_more_cycles = [&]() -> std::string {
        uint64_t target = seen + 2;
        EXPECT_TRUE(wait_state(
            "svc", [&](const ServiceState& s) { return s.successes_total >= target; }, 60s));
        auto s = state("svc");
        seen = s ? s->successes_total : target;
        return s && s->last_success_file ? fs::path(*s->last_success_file).filename().string()
                                         : std::string();
    };
    std::vector<std::string> newest;
    newest.push_back(two_more_cycles());
    for (const char* jump : {"-86400", "172800", "0"}) {  // a day back, a day ahead, back to now
        write_text(offset, jump, 0644);
        newest.push_back(two_more_cycles());
    }
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0) << r->err;
    // Names follow the clock, never the newest name: one future-dated file
    // cannot drag every later name into the future.
    for (const std::string& name : newest) {
        ASSERT_FALSE(name.empty());
    }
    EXPECT_LT(newest[1], newest[0]);  // a day back
    EXPECT_GT(newest[2], newest[1]);  // a day ahead
    EXPECT_LT(newest[3], newest[2]);  // back to now: the day-ahead ones are future-dated
    EXPECT_TRUE(fs::exists(dir_ / newest.back()));
    EXPECT_EQ(with_suffix(dir_, ".dump").size(), 3u);
    EXPECT_TRUE(with_suffix(dir_, ".tmp").empty());
    // `latest` is the newest backup taken by the clock, not the future-dated one.
    RunResult latest = run_pgward({"verify", "latest"}, env("svc"));
    EXPECT_EQ(latest.exit_code, 0) << latest.err;
    EXPECT_TRUE(contains(latest.out, newest.back())) << latest.out;
    RunResult verify = run_pgward({"verify", "all", "--deep"}, env("svc"));
    EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;
}

TEST_F(ServiceTest, CyclesKeepExactlyTheRetentionCountWithGlobalsAndJsonLogs) {
    BackgroundPgward service({"run"}, env("svc", {{"POSTGRES_BACKUP_INTERVAL_SECONDS", "1"},
                                                  {"POSTGRES_BACKUP_RETENTION_COUNT", "3"},
                                                  {"PGWARD_LOG_FORMAT", "json"}}));
    ASSERT_TRUE(wait_state(
        "svc", [](const ServiceState& s) { return s.successes_total >= 5; }, 60s));
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0) << r->err;
    EXPECT_EQ(with_suffix(dir_, ".dump").size(), 3u) << r->out;
    EXPECT_EQ(with_suffix(dir_, ".globals.sql").size(), 3u);
    EXPECT_EQ(with_suffix(dir_, ".json").size(), 3u + 1u);  // + the state file
    EXPECT_TRUE(with_suffix(dir_, ".tmp").empty());
    // Each dump has its own globals file.
    for (const std::string& dump : with_suffix(dir_, ".dump")) {
        std::string stem = dump.substr(0, dump.size() - 5);
        EXPECT_TRUE(fs::exists(dir_ / (stem + ".globals.sql"))) << stem;
        EXPECT_TRUE(contains(slurp(dir_ / (stem + ".globals.sql")), "CREATE ROLE")) << stem;
    }
    // Logs: one JSON object per line on stdout, begin/end with file, bytes, seconds.
    std::istringstream lines(r->out);
    std::string line;
    int begins = 0, ends = 0;
    while (std::getline(lines, line)) {
        json event = json::parse(line, nullptr, false);
        ASSERT_FALSE(event.is_discarded()) << line;
        ASSERT_TRUE(event.contains("ts") && event.contains("level") && event.contains("msg"))
            << line;
        EXPECT_EQ(event["ts"].get<std::string>().back(), 'Z');
        if (event["msg"] == "backup begin") {
            ++begins;
        }
        if (event["msg"] == "backup end") {
            ++ends;
            EXPECT_TRUE(event.contains("file") && event.contains("bytes") &&
                        event.contains("seconds"));
        }
    }
    EXPECT_GE(begins, 5);
    EXPECT_GE(ends, 5);
    // status and healthcheck read the same state.
    RunResult health = run_pgward({"healthcheck"}, env("svc"));
    EXPECT_EQ(health.exit_code, 0) << health.out << health.err;
    EXPECT_TRUE(contains(health.out, "healthy: the newest backup finished")) << health.out;
    RunResult status = run_pgward({"status", "--json"}, env("svc"));
    ASSERT_EQ(status.exit_code, 0) << status.err;
    json doc = json::parse(status.out);
    EXPECT_EQ(doc["backups"], 3);
    EXPECT_GE(doc["state"]["successes_total"].get<int>(), 5);
    EXPECT_EQ(doc["state"]["running"], false);
}

TEST_F(ServiceTest, SigtermDuringALongDumpExitsZeroWithinTenSeconds) {
    BackgroundPgward service({"run"}, env("svcbig"));
    ASSERT_TRUE(
        eventually([&] { return find_file(dir_, ".dump.tmp", 256 * 1024).has_value(); }, 60s));
    auto dumps = children_named(service.pid(), "pg_dump");
    auto sent = std::chrono::steady_clock::now();
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
    ASSERT_TRUE(r);
    std::fprintf(stderr, "measured: SIGTERM to exit during a dump: %.3f s\n", took);
    EXPECT_EQ(r->exit_code, 0) << r->out;
    EXPECT_LT(took, 10.0);
    EXPECT_TRUE(with_suffix(dir_, ".tmp").empty()) << testing::PrintToString(list_dir(dir_));
    EXPECT_TRUE(with_suffix(dir_, ".dump").empty());
    for (pid_t pid : dumps) {
        EXPECT_NE(::kill(pid, 0), 0) << "pg_dump survived";
    }
    EXPECT_TRUE(contains(r->out, "msg=\"service stopped\" signal=SIGTERM")) << r->out;
    auto s = state("svcbig");
    ASSERT_TRUE(s);
    EXPECT_FALSE(s->running);
}

TEST_F(ServiceTest, ServerDownIsCountedAlertedAndRecovers) {
    Receiver receiver;
    int http_port = free_loopback_port();
    std::string http = "http://127.0.0.1:" + std::to_string(http_port);
    BackgroundPgward service(
        {"run"}, env("svc", {{"POSTGRES_BACKUP_INTERVAL_SECONDS", "2"},
                             {"POSTGRES_BACKUP_RETENTION_COUNT", "2"},
                             {"POSTGRES_BACKUP_RETRY_SECONDS", "1"},
                             {"PGWARD_HEALTH_GRACE_SECONDS", "5"},
                             {"PGWARD_HTTP_ADDR", "127.0.0.1:" + std::to_string(http_port)},
                             {"PGWARD_NOTIFY_URL", receiver.url("/hook")},
                             {"PGWARD_PING_URL", receiver.url("/ping/abc")}}));
    ASSERT_TRUE(wait_state(
        "svc", [](const ServiceState& s) { return s.successes_total >= 2; }, 60s));
    httplib::Client client("127.0.0.1", http_port);
    auto ok = client.Get("/healthz");
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200) << ok->body;
    auto dumps_before = with_suffix(dir_, ".dump");
    ASSERT_EQ(dumps_before.size(), 2u);

    PgCluster::instance().stop_fast();
    bool failed = wait_state(
        "svc", [](const ServiceState& s) { return s.consecutive_failures >= 2; }, 60s);
    auto down = client.Get("/healthz");
    auto metrics = client.Get("/metrics");
    auto dumps_during = with_suffix(dir_, ".dump");
    PgCluster::instance().start();
    ASSERT_TRUE(failed);
    ASSERT_TRUE(down);
    EXPECT_EQ(down->status, 503) << down->body;
    json health = json::parse(down->body);
    EXPECT_EQ(health["healthy"], false);
    EXPECT_EQ(health["status"], "failing");
    EXPECT_TRUE(contains(health["reason"], "cannot connect")) << down->body;
    EXPECT_EQ(dumps_during, dumps_before) << "a failure must prune nothing";
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metrics->get_header_value("Content-Type"), "text/plain; version=0.0.4");
    EXPECT_TRUE(prometheus_format_problems(metrics->body).empty())
        << testing::PrintToString(prometheus_format_problems(metrics->body));
    for (const char* name :
         {"pgward_last_success_timestamp_seconds", "pgward_last_backup_duration_seconds",
          "pgward_last_backup_size_bytes", "pgward_backups_retained", "pgward_backups_total",
          "pgward_backup_running"}) {
        EXPECT_TRUE(contains(metrics->body, std::string("# TYPE ") + name)) << name;
    }
    EXPECT_TRUE(contains(metrics->body, "pgward_healthy{database=\"svc\"} 0")) << metrics->body;
    EXPECT_TRUE(
        contains(metrics->body, "pgward_backups_total{database=\"svc\",result=\"failure\"}"));
    ASSERT_TRUE(eventually([&] { return receiver.first_event("backup_failed").has_value(); }, 15s));
    json alert = *receiver.first_event("backup_failed");
    EXPECT_EQ(alert["database"], "svc");
    EXPECT_TRUE(contains(alert["reason"], "cannot connect")) << alert.dump();
    EXPECT_FALSE(contains(alert.dump(), PgCluster::instance().password()));

    // The server is back: the next attempt succeeds and health recovers.
    ASSERT_TRUE(wait_state(
        "svc", [](const ServiceState& s) { return s.consecutive_failures == 0; }, 60s));
    auto recovered = client.Get("/healthz");
    ASSERT_TRUE(recovered);
    EXPECT_EQ(recovered->status, 200) << recovered->body;
    ASSERT_TRUE(
        eventually([&] { return receiver.first_event("backup_recovered").has_value(); }, 15s));
    // Pings: GET on success, /fail on failure.
    bool ping_ok = false, ping_fail = false;
    for (const auto& r : receiver.requests()) {
        ping_ok = ping_ok || (r.method == "GET" && r.path == "/ping/abc");
        ping_fail = ping_fail || (r.method == "GET" && r.path == "/ping/abc/fail");
    }
    EXPECT_TRUE(ping_ok);
    EXPECT_TRUE(ping_fail);
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_TRUE(contains(r->out, "backup failed; nothing was pruned")) << r->out;
}

TEST_F(ServiceTest, StallWatchdogKillsAHungPgDump) {
    fs::path bin = dir_ / "hang-bin";
    fs::create_directory(bin);
    const fs::path real = PgCluster::instance().client_bin_dir();
    write_text(bin / "pg_dump",
               "#!/bin/sh\n"
               "if [ \"$1\" = --version ]; then exec '" +
                   (real / "pg_dump").string() +
                   "' --version; fi\n"
                   "exec sleep 600\n",
               0755);
    fs::create_symlink(real / "pg_restore", bin / "pg_restore");
    fs::create_symlink(real / "pg_dumpall", bin / "pg_dumpall");
    fs::path out = dir_ / "out";
    BackgroundPgward service({"run", "--pg-bin", bin.string(), "--dir", out.string()},
                             env("svc", {{"POSTGRES_BACKUP_STALL_SECONDS", "2"}}));
    ASSERT_TRUE(eventually(
        [&] {
            fs::path path = out / state_file_name("svc");
            return fs::exists(path) && state_from_json(slurp(path), "").failures_total >= 1;
        },
        30s));
    auto sleepers = children_named(service.pid(), "sleep");
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_TRUE(contains(r->out, "stalled: no bytes for 2 s; it was killed")) << r->out;
    EXPECT_TRUE(sleepers.empty()) << "the hung pg_dump is still a child";
    for (const std::string& name : list_dir(out)) {
        EXPECT_FALSE(contains(name, ".dump")) << name;
    }
}

TEST(PrometheusFormatCheck, RejectsMalformedLines) {
    EXPECT_TRUE(prometheus_format_problems("# TYPE a gauge\na{x=\"1\"} 2\n").empty());
    EXPECT_FALSE(prometheus_format_problems("a{x=\"1\"} 2\n").empty());              // no TYPE
    EXPECT_FALSE(prometheus_format_problems("# TYPE a gauge\na{x=1} 2\n").empty());  // unquoted
    EXPECT_FALSE(prometheus_format_problems("# TYPE a gauge\na 2 3 4\n").empty());
    EXPECT_FALSE(prometheus_format_problems("# TYPE a meter\n").empty());
}

TEST_F(ServiceTest, AnUndeliverableAlertNeverBlocksOrFailsABackup) {
    // Nothing listens on this port: every alert and ping fails to connect.
    std::string dead = "http://127.0.0.1:" + std::to_string(free_loopback_port());
    BackgroundPgward service({"run"}, env("svc", {{"POSTGRES_BACKUP_INTERVAL_SECONDS", "1"},
                                                  {"POSTGRES_BACKUP_RETENTION_COUNT", "2"},
                                                  {"PGWARD_NOTIFY_URL", dead + "/hook"},
                                                  {"PGWARD_NOTIFY_EVERY_SUCCESS", "true"},
                                                  {"PGWARD_PING_URL", dead + "/ping"}}));
    ASSERT_TRUE(wait_state(
        "svc", [](const ServiceState& s) { return s.successes_total >= 3; }, 60s));
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_TRUE(contains(r->out, "msg=\"alert not delivered\"")) << r->out;
    auto s = state("svc");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->failures_total, 0u);
    EXPECT_EQ(with_suffix(dir_, ".dump").size(), 2u);
}

TEST_F(ServiceTest, HardTimeoutKillsABackupThatRunsTooLong) {
    // A pg_dump that keeps sending bytes (so the stall watchdog stays quiet)
    // but never finishes.
    fs::path bin = dir_ / "slow-bin";
    fs::create_directory(bin);
    const fs::path real = PgCluster::instance().client_bin_dir();
    write_text(bin / "pg_dump",
               "#!/bin/bash\n"
               "if [ \"$1\" = --version ]; then exec '" +
                   (real / "pg_dump").string() +
                   "' --version; fi\n"
                   "printf PGDMP; while true; do printf x; sleep 0.2; done\n",
               0755);
    fs::create_symlink(real / "pg_restore", bin / "pg_restore");
    fs::create_symlink(real / "pg_dumpall", bin / "pg_dumpall");
    fs::path out = dir_ / "out";
    BackgroundPgward service({"run", "--pg-bin", bin.string(), "--dir", out.string()},
                             env("svc", {{"POSTGRES_BACKUP_TIMEOUT_SECONDS", "2"},
                                         {"POSTGRES_BACKUP_STALL_SECONDS", "60"}}));
    ASSERT_TRUE(eventually(
        [&] {
            fs::path path = out / state_file_name("svc");
            return fs::exists(path) && state_from_json(slurp(path), "").failures_total >= 1;
        },
        30s));
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0);
    EXPECT_TRUE(contains(r->out, "timed out after 2 s; pg_dump was killed")) << r->out;
    for (const std::string& name : list_dir(out)) {
        EXPECT_FALSE(contains(name, ".dump")) << name;
    }
}

TEST_F(ServiceTest, SigkillOfTheServiceNeverLeavesAnIncompleteDump) {
    {
        BackgroundPgward service({"run"}, env("svcbig"));
        ASSERT_TRUE(
            eventually([&] { return find_file(dir_, ".dump.tmp", 256 * 1024).has_value(); }, 60s));
        ::kill(service.pid(), SIGKILL);
        ASSERT_TRUE(service.wait(15s));
    }
    EXPECT_TRUE(with_suffix(dir_, ".dump").empty());
    EXPECT_EQ(with_suffix(dir_, ".dump.tmp").size(), 1u);
    // A restarted service cleans up and completes a backup that matches its manifest.
    BackgroundPgward again({"run"}, env("svcbig"));
    ASSERT_TRUE(wait_state(
        "svcbig", [](const ServiceState& s) { return s.successes_total >= 1; }, 120s));
    ::kill(again.pid(), SIGTERM);
    ASSERT_TRUE(again.wait(15s));
    EXPECT_TRUE(with_suffix(dir_, ".tmp").empty());
    auto dumps = with_suffix(dir_, ".dump");
    ASSERT_EQ(dumps.size(), 1u);
    std::string stem = dumps[0].substr(0, dumps[0].size() - 5);
    json manifest = json::parse(slurp(dir_ / (stem + ".json")));
    EXPECT_EQ(manifest["sha256"], sha256_file_hex(dir_ / dumps[0]));
}

TEST_F(ServiceTest, GlobalsFallBackToNoRolePasswordsWithoutSuperuser) {
    PgCluster& c = PgCluster::instance();
    c.exec("postgres",
           "DROP ROLE IF EXISTS app_owner; CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw';");
    c.create_database("owned");
    c.exec("postgres", "ALTER DATABASE owned OWNER TO app_owner");
    Env e = env("owned");
    for (auto& [k, v] : e) {
        if (k == "POSTGRES_USER") {
            v = "app_owner";
        }
        if (k == "POSTGRES_PASSWORD") {
            v = "owner-pw";
        }
    }
    RunResult r = run_pgward({"backup"}, e);
    c.drop_database("owned");
    c.exec("postgres", "DROP ROLE app_owner");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(contains(r.err, "no privilege to read role passwords")) << r.err;
    auto globals = with_suffix(dir_, ".globals.sql");
    ASSERT_EQ(globals.size(), 1u);
    EXPECT_TRUE(contains(slurp(dir_ / globals[0]), "CREATE ROLE app_owner"));
    EXPECT_FALSE(contains(slurp(dir_ / globals[0]), "SCRAM-SHA-256"));
}

TEST_F(ServiceTest, ScheduledSandboxDrillReportsItsResult) {
    BackgroundPgward service({"run"}, env("svc", {{"POSTGRES_DRILL_INTERVAL_SECONDS", "2"},
                                                  {"PGWARD_HEALTH_GRACE_SECONDS", "5"}}));
    ASSERT_TRUE(wait_state(
        "svc", [](const ServiceState& s) { return s.drills_succeeded_total >= 1; }, 90s));
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(30s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0);
    auto s = state("svc");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->last_drill_success, true);
    ASSERT_TRUE(s->last_drill_report);
    json report = json::parse(slurp(*s->last_drill_report));
    EXPECT_EQ(report["restore_success"], true);
    EXPECT_EQ(report["mode"], "backup-sandbox");
    EXPECT_EQ(report["users_count_after"], 100);
    RunResult status = run_pgward({"status"}, env("svc"));
    EXPECT_TRUE(contains(status.out, "healthy")) << status.out;
}

// Issue 18, item 5: the scheduled drill drills this server's newest backup,
// not a newer one of the same name from another server (here one whose
// manifest does not match it: drilling it would fail).
TEST_F(ServiceTest, TheScheduledDrillDrillsThisServersBackupNotAnothers) {
    RunResult ours = run_pgward({"backup"}, env("svc"));
    ASSERT_EQ(ours.exit_code, 0) << ours.err;
    const fs::path dump = ours.out.substr(0, ours.out.find('\n'));
    const std::string stem = dump.stem().string();
    const std::string other =
        stem.substr(0, stem.size() - 16) +
        format_compact_utc(*parse_compact_utc(stem.substr(stem.size() - 16)) +
                           std::chrono::minutes(2));  // newer, not future-dated
    fs::copy_file(dump, dir_ / (other + ".dump"));
    json manifest = json::parse(slurp(dir_ / (stem + ".json")));
    manifest["file"] = other + ".dump";
    manifest["system_identifier"] = "1234567890123456789";
    manifest["sha256"] = std::string(64, '0');
    write_text(dir_ / (other + ".json"), manifest.dump(2), 0600);

    BackgroundPgward service({"run"}, env("svc", {{"POSTGRES_DRILL_INTERVAL_SECONDS", "2"},
                                                  {"POSTGRES_BACKUP_ON_START", "false"}}));
    ASSERT_TRUE(wait_state(
        "svc",
        [](const ServiceState& s) { return s.drills_succeeded_total + s.drills_failed_total >= 1; },
        90s));
    ::kill(service.pid(), SIGTERM);
    ASSERT_TRUE(service.wait(30s));
    auto s = state("svc");
    ASSERT_TRUE(s);
    EXPECT_EQ(s->last_drill_success, true);
    ASSERT_TRUE(s->last_drill_report);
    json report = json::parse(slurp(*s->last_drill_report));
    EXPECT_EQ(report["dump_source"], dump.string());
}

TEST_F(ServiceTest, AFailingScheduledDrillTurnsHealthRedAndAlerts) {
    Receiver receiver;
    int http_port = free_loopback_port();
    fs::path bin = dir_ / "bad-restore-bin";
    fs::create_directory(bin);
    const fs::path real = PgCluster::instance().client_bin_dir();
    for (const char* tool : {"pg_dump", "pg_dumpall"}) {
        fs::create_symlink(real / tool, bin / tool);
    }
    write_text(bin / "pg_restore",
               "#!/bin/sh\ncase \"$1\" in --version|--list) exec '" +
                   (real / "pg_restore").string() +
                   "' \"$@\";; esac\necho 'pg_restore: error: simulated' >&2\nexit 1\n",
               0755);
    BackgroundPgward service(
        {"run", "--pg-bin", bin.string()},
        env("svc", {{"POSTGRES_DRILL_INTERVAL_SECONDS", "2"},
                    {"PGWARD_HTTP_ADDR", "127.0.0.1:" + std::to_string(http_port)},
                    {"PGWARD_NOTIFY_URL", receiver.url("/hook")}}));
    ASSERT_TRUE(wait_state(
        "svc", [](const ServiceState& s) { return s.drills_failed_total >= 1; }, 90s));
    httplib::Client client("127.0.0.1", http_port);
    auto health = client.Get("/healthz");
    auto metrics = client.Get("/metrics");
    ::kill(service.pid(), SIGTERM);
    ASSERT_TRUE(service.wait(30s));
    ASSERT_TRUE(health);
    EXPECT_EQ(health->status, 503) << health->body;
    EXPECT_TRUE(contains(health->body, "drill-failing")) << health->body;
    ASSERT_TRUE(metrics);
    EXPECT_TRUE(contains(metrics->body, "pgward_last_drill_success{database=\"svc\"} 0"))
        << metrics->body;
    EXPECT_TRUE(
        contains(metrics->body, "pgward_drills_total{database=\"svc\",result=\"failure\"} 1"))
        << metrics->body;
    ASSERT_TRUE(eventually([&] { return receiver.first_event("drill_failed").has_value(); }, 15s));
    EXPECT_TRUE(contains(receiver.first_event("drill_failed")->dump(), "simulated"));
    RunResult check = run_pgward({"healthcheck"}, env("svc"));
    EXPECT_EQ(check.exit_code, 1);
    EXPECT_TRUE(contains(check.out, "unhealthy: the last restore drill of a backup failed"))
        << check.out;
}

TEST_F(ServiceTest, EveryBadValueIsExitTwoNamingTheVariable) {
    std::vector<std::pair<std::string, std::string>> cases = {
        {"POSTGRES_BACKUP_INTERVAL_SECONDS", "0"},
        {"POSTGRES_BACKUP_INTERVAL_SECONDS", "abc"},
        {"POSTGRES_BACKUP_RETENTION_COUNT", "-1"},
        {"POSTGRES_BACKUP_ON_START", "maybe"},
        {"POSTGRES_BACKUP_TIMEOUT_SECONDS", "0"},
        {"POSTGRES_BACKUP_STALL_SECONDS", "1h"},
        {"POSTGRES_BACKUP_RETRY_SECONDS", "0"},
        {"POSTGRES_BACKUP_RETRY_MAX_SECONDS", "x"},
        {"PGWARD_HTTP_ADDR", "nonsense"},
        {"PGWARD_HTTP_ADDR", "127.0.0.1:99999"},
        {"PGWARD_NOTIFY_URL", "ftp://example"},
        {"PGWARD_PING_URL", "hc-ping"},
        {"PGWARD_NOTIFY_EVERY_SUCCESS", "sometimes"},
        {"PGWARD_HEALTH_GRACE_SECONDS", "-5"},
        {"PGWARD_HEALTH_MAX_AGE_SECONDS", "0"},
        {"PGWARD_GLOBALS", "perhaps"},
        {"POSTGRES_BACKUP_COMPRESSION", "zstd:99"},
        {"POSTGRES_BACKUP_COMPRESSION", "brotli"},
        {"POSTGRES_DRILL_INTERVAL_SECONDS", "0"},
        {"PGWARD_LOG_FORMAT", "xml"},
        {"POSTGRES_PORT", "abc"},
        {"POSTGRES_PASSWORD_FILE", "/nonexistent/secret"},
    };
    for (const auto& [name, value] : cases) {
        Env e = env("svc", {{name, value}});
        if (name == "POSTGRES_PASSWORD_FILE") {
            std::erase_if(e, [](const auto& kv) { return kv.first == "POSTGRES_PASSWORD"; });
        }
        auto started = std::chrono::steady_clock::now();
        RunResult r = run_pgward({"run"}, e);
        EXPECT_EQ(r.exit_code, 2) << name << "=" << value << ": " << r.err << r.out;
        EXPECT_TRUE(contains(r.err, name)) << name << ": " << r.err;
        EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
    }
    EXPECT_TRUE(with_suffix(dir_, ".dump").empty());
}

}  // namespace
}  // namespace pgward::test
