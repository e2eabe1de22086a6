#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "pg/environment.hpp"

namespace pgward::test {
namespace {

// A suite interrupted by SIGINT or SIGTERM (Ctrl-C, make test's runner, a CI
// timeout) stops its server instead of leaving it running; its files stay, as
// after a failure. The pid is read from postmaster.pid when the signal comes
// (tests restart the server), with async-signal-safe calls only.
char pid_file[4096] = {};

void stop_cluster_and_die(int signal) {
    int fd = pid_file[0] != '\0' ? ::open(pid_file, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        char text[32] = {};
        ssize_t n = ::read(fd, text, sizeof text - 1);
        ::close(fd);
        pid_t pid = 0;
        for (ssize_t i = 0; i < n && text[i] >= '0' && text[i] <= '9'; ++i) {
            pid = pid * 10 + (text[i] - '0');
        }
        if (pid > 0) {
            ::kill(pid, SIGQUIT);  // immediate shutdown
        }
    }
    std::signal(signal, SIG_DFL);
    ::raise(signal);
}

// Every process descended from this one, parents before their children:
// the pgward commands a test runs in the background and what they run.
std::vector<pid_t> descendants() {
    const std::vector<ProcessEntry> processes = list_processes();
    std::vector<pid_t> found{::getpid()};
    for (size_t i = 0; i < found.size(); ++i) {
        for (const ProcessEntry& process : processes) {
            if (process.parent == found[i]) {
                found.push_back(process.pid);
            }
        }
    }
    found.erase(found.begin());
    return found;
}

// A test that hangs must fail its suite, not stall make test or CI until its
// time is up: a test still running after PGWARD_TEST_TIMEOUT_SECONDS (900
// by default) is named, the processes it started are killed, the cluster is
// stopped and the binary aborts (its log then ends with the test's name).
class Watchdog : public ::testing::EmptyTestEventListener {
  public:
    Watchdog() : state_(new State) {  // never freed: the thread outlives gtest's listeners
        const char* text = std::getenv("PGWARD_TEST_TIMEOUT_SECONDS");
        state_->limit = std::chrono::seconds(text != nullptr ? std::atoi(text) : 900);
        std::thread([state = state_] { watch(*state); }).detach();
    }

    void OnTestStart(const ::testing::TestInfo& test) override {
        {
            std::lock_guard lock(state_->mutex);
            state_->name = std::string(test.test_suite_name()) + "." + test.name();
        }
        state_->started = std::chrono::steady_clock::now().time_since_epoch().count();
    }
    void OnTestEnd(const ::testing::TestInfo& /*test*/) override {
        // Once the watchdog has fired, the test it killed under may end (its
        // server gone) and the binary exit 1 before the watchdog aborts: the
        // abort is the outcome, so wait for it here.
        while (state_->fired.load()) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
        }
        state_->started = 0;
    }

  private:
    struct State {
        std::chrono::seconds limit{};
        std::mutex mutex;
        std::string name;
        std::atomic<std::chrono::steady_clock::rep> started{0};
        std::atomic<bool> fired{false};
    };

    [[noreturn]] static void watch(State& state) {
        for (;;) {
            std::this_thread::sleep_for(std::chrono::seconds(1));
            const auto started = state.started.load();
            if (started == 0 || state.limit.count() <= 0) {
                continue;
            }
            const auto running = std::chrono::steady_clock::now().time_since_epoch() -
                                 std::chrono::steady_clock::duration(started);
            if (running < state.limit) {
                continue;
            }
            state.fired = true;
            std::string name;
            {
                std::lock_guard lock(state.mutex);
                name = state.name;
            }
            std::fprintf(stderr,
                         "\n[ TIMEOUT  ] %s has run for %lld s "
                         "(PGWARD_TEST_TIMEOUT_SECONDS): killing what it started and stopping "
                         "the suite\n",
                         name.c_str(), static_cast<long long>(state.limit.count()));
            for (pid_t pid : descendants()) {
                ::kill(pid, SIGKILL);
            }
            stop_cluster_and_die(SIGABRT);
        }
    }

    State* state_;
};

// A suite's databases are dropped when it ends (kept when it failed, with
// the cluster, to be looked at).
class DropSuiteDatabases : public ::testing::EmptyTestEventListener {
    void OnTestSuiteEnd(const ::testing::TestSuite& suite) override {
        if (suite.failed_test_count() == 0) {
            PgCluster::instance().drop_created_databases();
        }
    }
};

// Test environment: one cluster per test binary: started before the first
// test, removed after the last (kept, with its path printed, if any test failed).
class ClusterEnvironment : public ::testing::Environment {
  public:
    void SetUp() override {
        PgCluster& cluster = PgCluster::instance();
        cluster.init();
        cluster.start();
        std::string path = (cluster.root() / "data" / "postmaster.pid").string();
        if (path.size() < sizeof pid_file) {
            std::copy(path.begin(), path.end(), pid_file);
        }
        std::signal(SIGINT, stop_cluster_and_die);
        std::signal(SIGTERM, stop_cluster_and_die);
    }
    void TearDown() override {
        pid_file[0] = '\0';
        bool failed = ::testing::UnitTest::GetInstance()->failed_test_count() > 0;
        PgCluster::instance().destroy(failed);
    }
};

}  // namespace
}  // namespace pgward::test

int main(int argc, char** argv) {
    // As pgward does: the harness's own server and connections never see the
    // PG* variables of the shell the tests run in (the hostile run sets them).
    pgward::pg::capture_operator_environment();
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new pgward::test::ClusterEnvironment);
    ::testing::UnitTest::GetInstance()->listeners().Append(new pgward::test::Watchdog);
    ::testing::UnitTest::GetInstance()->listeners().Append(new pgward::test::DropSuiteDatabases);
    return RUN_ALL_TESTS();
}
