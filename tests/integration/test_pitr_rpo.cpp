// Issue 22's recovery point: clients insert and record every commit the
// server acknowledged while pgward streams the WAL; the server is killed
// (SIGKILL, its processes at once, as a lost host) and its data directory
// deleted; recovered to `latest` from the base backup and the archive, every
// acknowledged commit must be there with `wal stream --synchronous` listed in
// synchronous_standby_names, and without it the loss is measured and printed.
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "harness/data_dir_server.hpp"
#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "pg/sandbox.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// The processes of a server: the postmaster (its pid file's first line) and
// every process whose parent it is.
std::vector<pid_t> server_processes(const fs::path& data_dir) {
    std::ifstream pid_file(data_dir / "postmaster.pid");
    pid_t postmaster = 0;
    pid_file >> postmaster;
    std::vector<pid_t> pids;
    if (postmaster <= 0) {
        return pids;
    }
    for (const ProcessEntry& process : list_processes()) {
        if (process.parent == postmaster) {
            pids.push_back(process.pid);
        }
    }
    pids.push_back(postmaster);
    return pids;
}

struct Loss {
    size_t acknowledged = 0;
    size_t lost = 0;
    double lost_seconds = 0;  // from the newest commit recovered to the newest acknowledged
    double seconds = 0;       // how long the load ran
};

class RecoveryPointTest : public ScratchDirTest {
  protected:
    RecoveryPointTest() : ScratchDirTest("rpo") {}

    // What the streamer said (it is stopped for it): for a failure's message.
    static std::string streamer_output(BackgroundPgward& streamer) {
        ::kill(streamer.pid(), SIGTERM);
        auto said = streamer.wait(30s);
        return said ? said->out + said->err : std::string("(no output)");
    }

    // One run: a server of its own, streamed, loaded, killed, recovered.
    Loss run_once(bool synchronous, int run) {
        pg::Sandbox::Options options;
        options.bin_dir = PgCluster::instance().bin_dir();
        options.tcp_port = free_loopback_port();
        options.password = PgCluster::instance().password();
        options.tag = "rpo";
        options.server_settings = {"log_min_messages=warning"};
        auto server = std::make_unique<pg::Sandbox>(options);
        server->start();
        const fs::path backups = dir_ / fmt::format("backups-{}", run);
        Env env = {{"POSTGRES_HOST", "127.0.0.1"},
                   {"POSTGRES_PORT", std::to_string(*options.tcp_port)},
                   {"POSTGRES_USER", server->superuser()},
                   {"POSTGRES_PASSWORD", *options.password},
                   {"POSTGRES_DB", "postgres"},
                   {"POSTGRES_BACKUP_DIR", backups.string()}};
        for (const auto& [name, value] : PgCluster::instance().env("postgres")) {
            if (name == "PGWARD_PG_BIN") {
                env.emplace_back(name, value);
            }
        }
        pg::Connection admin = pg::Connection::open(server->options("postgres"), "rpo test");
        admin.exec("CREATE TABLE acked(client int, n bigint, PRIMARY KEY (client, n))");

        std::vector<std::string> stream = {"wal", "stream"};
        if (synchronous) {
            stream.emplace_back("--synchronous");
        }
        BackgroundPgward streamer(stream, env);
        EXPECT_TRUE(eventually(
            [&] {
                return admin.query_value(
                           "SELECT count(*) FROM pg_stat_replication WHERE "
                           "application_name = 'pgward_wal' AND state = 'streaming'") == "1";
            },
            30s));
        if (HasFailure()) {
            std::cout << "streamer: " << streamer_output(streamer) << "\n";
            return {};
        }
        if (synchronous) {
            // Listed once it streams: every commit from now on waits for it.
            admin.exec("ALTER SYSTEM SET synchronous_standby_names = 'pgward_wal'");
            admin.exec("SELECT pg_reload_conf()");
            // (A row, not a value: the streamer may be between two connections.)
            EXPECT_TRUE(eventually(
                [&] {
                    pg::Result state = admin.exec(
                        "SELECT sync_state FROM pg_stat_replication WHERE application_name = "
                        "'pgward_wal'");
                    return state.rows() == 1 && state.get(0, 0) == "sync";
                },
                30s));
        }
        RunResult base = run_pgward({"basebackup"}, env);
        EXPECT_EQ(base.exit_code, 0) << base.err;

        // The clients: each commit the server acknowledged is recorded.
        constexpr int kClients = 4;
        std::atomic<bool> stop{false};
        std::mutex mutex;
        std::map<std::pair<int, int64_t>, SteadyClock::time_point> acknowledged;
        std::vector<std::thread> clients;
        const auto load_start = SteadyClock::now();
        for (int c = 0; c < kClients; ++c) {
            clients.emplace_back([&, c] {
                try {
                    pg::Connection conn =
                        pg::Connection::open(server->options("postgres"), "rpo client");
                    for (int64_t n = 1; !stop; ++n) {
                        conn.exec("INSERT INTO acked VALUES ($1, $2)",
                                  {std::to_string(c), std::to_string(n)});
                        std::lock_guard lock(mutex);
                        acknowledged[{c, n}] = SteadyClock::now();
                    }
                } catch (const std::exception&) {
                    // the server is gone: what was acknowledged is recorded
                }
            });
        }
        std::this_thread::sleep_for(3s);
        // A lost host: the postmaster stopped (no new children), then every
        // process of the server killed at once.
        const fs::path data_dir = server->root() / "data";
        std::vector<pid_t> pids = server_processes(data_dir);
        EXPECT_GT(pids.size(), 3U);
        ::kill(pids.back(), SIGSTOP);
        for (pid_t pid : server_processes(data_dir)) {
            ::kill(pid, SIGKILL);
        }
        const auto killed = SteadyClock::now();
        stop = true;
        for (std::thread& t : clients) {
            t.join();
        }
        server->keep_files(false);
        server.reset();  // its data directory is deleted with it

        ::kill(streamer.pid(), SIGTERM);
        auto streamed = streamer.wait(30s);
        EXPECT_TRUE(streamed);

        const fs::path pgdata = dir_ / fmt::format("recovered-{}", run);
        RunResult restored = run_pgward({"restore", "--pitr", "--pgdata", pgdata.string()}, env);
        EXPECT_EQ(restored.exit_code, 0) << restored.err;
        DataDirServer recovered(pgdata);
        EXPECT_TRUE(recovered.start()) << recovered.log();
        pg::Connection conn = pg::Connection::open(recovered.options("postgres"), "rpo test");
        pg::Result rows = conn.exec("SELECT client, n FROM acked");
        std::set<std::pair<int, int64_t>> present;
        for (int r = 0; r < rows.rows(); ++r) {
            present.insert({std::stoi(rows.get(r, 0)), std::stoll(rows.get(r, 1))});
        }
        Loss loss;
        loss.acknowledged = acknowledged.size();
        loss.seconds = std::chrono::duration<double>(killed - load_start).count();
        SteadyClock::time_point newest_acknowledged{}, newest_present{};
        for (const auto& [key, at] : acknowledged) {
            newest_acknowledged = std::max(newest_acknowledged, at);
            if (present.count(key) == 0) {
                ++loss.lost;
            } else {
                newest_present = std::max(newest_present, at);
            }
        }
        loss.lost_seconds =
            loss.lost == 0
                ? 0
                : std::chrono::duration<double>(newest_acknowledged - newest_present).count();
        std::cout << fmt::format(
            "recovery point ({}): {} commits acknowledged in {:.1f} s ({:.0f} tps), {} lost, "
            "the newest lost {:.2f} ms after the newest kept\n",
            synchronous ? "wal stream --synchronous, in synchronous_standby_names"
                        : "wal stream, asynchronous",
            loss.acknowledged, loss.seconds, static_cast<double>(loss.acknowledged) / loss.seconds,
            loss.lost, loss.lost_seconds * 1000);
        return loss;
    }
};

TEST_F(RecoveryPointTest, SynchronousStreamingLosesNoAcknowledgedCommitWhenTheHostIsLost) {
    const char* runs_text = std::getenv("PGWARD_RPO_RUNS");
    const int runs = runs_text != nullptr ? std::max(1, std::atoi(runs_text)) : 1;
    size_t lost = 0;
    for (int run = 0; run < runs; ++run) {
        Loss loss = run_once(true, run);
        EXPECT_GT(loss.acknowledged, 100U);
        lost += loss.lost;
    }
    EXPECT_EQ(lost, 0U) << "in " << runs << " runs";
}

TEST_F(RecoveryPointTest, AsynchronousStreamingLossIsMeasured) {
    Loss loss = run_once(false, 0);
    EXPECT_GT(loss.acknowledged, 100U);
    // What is lost is at most what the server flushed and had not sent yet:
    // well under a second here.
    EXPECT_LT(loss.lost_seconds, 1.0);
}

}  // namespace
}  // namespace pgward::test
