#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"

#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "pg/tools.hpp"
#include "util/error.hpp"
#include "util/process.hpp"

namespace pgward::test {
namespace {

std::filesystem::path find_bin_dir() {
    if (const char* dir = std::getenv("PGWARD_TEST_PG_BIN"); dir != nullptr && *dir != '\0') {
        return dir;
    }
    // The newest local server.
    std::filesystem::path best;
    int best_major = 0;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
        int major = std::atoi(entry.path().filename().c_str());
        if (major > best_major && std::filesystem::exists(entry.path() / "bin/initdb")) {
            best_major = major;
            best = entry.path() / "bin";
        }
    }
    if (best.empty()) {
        throw std::runtime_error(
            "no PostgreSQL server found: install postgresql or set PGWARD_TEST_PG_BIN");
    }
    return best;
}

void run_checked(const std::vector<std::string>& argv) {
    CapturedRun run =
        run_captured(Command{argv, {{"LC_ALL", "C.UTF-8"}}, {}}, std::chrono::seconds(120));
    if (!run.status.ok()) {
        throw std::runtime_error(
            fmt::format("{} failed ({}): {}{}", argv[0], run.status.describe(), run.out, run.err));
    }
}

std::string random_suffix() {
    std::random_device rd;
    return fmt::format("{:08x}", rd());
}

}  // namespace

bool running_as_root() {
    return ::geteuid() == 0;
}

PgCluster& PgCluster::instance() {
    static PgCluster cluster;
    return cluster;
}

std::vector<std::string> PgCluster::as_server_user(std::vector<std::string> argv) const {
    if (!as_postgres_) {
        return argv;
    }
    // setpriv execs the server in place (no extra process), so signals sent
    // to the pid we hold reach postgres itself.
    std::vector<std::string> wrapped = {"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres",
                                        "--init-groups", "--"};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
}

void PgCluster::init() {
    bin_dir_ = find_bin_dir();
    as_postgres_ = running_as_root();
    char pattern[] = "/tmp/pgward-test-XXXXXX";
    root_ = ::mkdtemp(pattern);
    data_dir_ = root_ / "data";
    socket_dir_ = root_ / "sock";
    std::filesystem::create_directory(socket_dir_);
    // A password with a quote, a space and a backslash, so quoting bugs show.
    password_ = "p@ss w'rd\\" + random_suffix();
    std::filesystem::path pwfile = root_ / "pwfile";
    {
        std::ofstream out(pwfile);
        out << password_ << "\n";
    }
    if (as_postgres_) {
        passwd* pw = ::getpwnam("postgres");
        if (pw == nullptr) {
            throw std::runtime_error("running as root but there is no postgres user");
        }
        for (const auto& p : {root_, socket_dir_, pwfile}) {
            if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
                throw std::runtime_error("cannot chown " + p.string());
            }
        }
        std::filesystem::permissions(root_, std::filesystem::perms::owner_all |
                                                std::filesystem::perms::group_exec |
                                                std::filesystem::perms::others_exec);
    }
    run_checked(as_server_user({(bin_dir_ / "initdb").string(), "-D", data_dir_.string(), "-U",
                                superuser_, "--auth=scram-sha-256", "--pwfile=" + pwfile.string(),
                                "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"}));
    std::filesystem::remove(pwfile);
    port_ = free_loopback_port();
    CapturedRun version =
        run_captured(Command{{(bin_dir_ / "postgres").string(), "--version"}, {}, {}});
    server_major_ = pg::parse_tool_version(version.out).value_or(pg::Version{0}).major();
}

void PgCluster::start() {
    std::vector<std::string> argv = as_server_user(
        {(bin_dir_ / "postgres").string(), "-D", data_dir_.string(), "-p", std::to_string(port_),
         "-k", socket_dir_.string(), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c",
         "max_connections=50", "-c", "log_min_messages=warning"});
    Child child = Child::spawn(Command{argv, {{"LC_ALL", "C.UTF-8"}}, {}});
    server_pid_ = child.pid();
    // A thread drains the server's output into server.log and reaps it when
    // it exits, so stop_*() only has to signal and wait.
    std::thread([c = std::move(child), log_path = root_ / "server.log"]() mutable {
        std::ofstream log(log_path, std::ios::app);
        PumpHandlers handlers;
        handlers.on_stderr_line = [&](std::string_view line) { log << line << "\n"; };
        try {
            pump(c, handlers);
        } catch (...) {
        }
    }).detach();
    wait_ready();
}

void PgCluster::wait_ready() const {
    auto options = this->options("postgres");
    std::string conninfo =
        fmt::format("host=127.0.0.1 port={} dbname=postgres user={}", port_, superuser_);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        if (PQping(conninfo.c_str()) == PQPING_OK) {
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("the test server did not become ready; see " + root_.string());
}

void PgCluster::stop_fast() {
    if (server_pid_ > 0) {
        ::kill(server_pid_, SIGINT);
        while (::kill(server_pid_, 0) == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        server_pid_ = -1;
    }
}

void PgCluster::stop_immediate() {
    if (server_pid_ > 0) {
        ::kill(server_pid_, SIGQUIT);
        while (::kill(server_pid_, 0) == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        server_pid_ = -1;
    }
}

void PgCluster::destroy(bool keep_files) {
    stop_fast();
    if (root_.empty()) {
        return;
    }
    if (keep_files) {
        fmt::print(stderr, "pgward tests: a test failed; the cluster is kept in {}\n",
                   root_.string());
    } else {
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
    }
}

pg::ConnectionOptions PgCluster::options(const std::string& dbname) const {
    pg::ConnectionOptions o;
    o.host = pg::ConnectionOptions::Setting{"127.0.0.1", true};
    o.port = pg::ConnectionOptions::Setting{std::to_string(port_), true};
    o.user = pg::ConnectionOptions::Setting{superuser_, true};
    o.dbname = pg::ConnectionOptions::Setting{"dbname=" + pg::quote_conninfo_value(dbname), true};
    o.password = password_;
    return o;
}

pg::Connection PgCluster::connect(const std::string& dbname) const {
    return pg::Connection::open(options(dbname), "pgward tests");
}

void PgCluster::exec(const std::string& dbname, const std::string& sql) const {
    connect(dbname).exec(sql);
}

std::string PgCluster::query_value(const std::string& dbname, const std::string& sql) const {
    return connect(dbname).query_value(sql).value_or("");
}

void PgCluster::drop_database(const std::string& name) const {
    exec("postgres", "DROP DATABASE IF EXISTS " + pg::quote_identifier(name) + " WITH (FORCE)");
}

void PgCluster::create_database(const std::string& name) const {
    drop_database(name);
    exec("postgres", "CREATE DATABASE " + pg::quote_identifier(name));
}

std::vector<std::pair<std::string, std::string>> PgCluster::env(const std::string& dbname) const {
    return {{"POSTGRES_HOST", "127.0.0.1"}, {"POSTGRES_PORT", std::to_string(port_)},
            {"POSTGRES_USER", superuser_},  {"POSTGRES_PASSWORD", password_},
            {"POSTGRES_DB", dbname},        {"PGWARD_PG_BIN", ""}};
}

}  // namespace pgward::test
