#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>

#include <gtest/gtest.h>

#include "harness/pg_cluster.hpp"
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
    return RUN_ALL_TESTS();
}
