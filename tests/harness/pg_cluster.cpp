#include "harness/pg_cluster.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <random>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

#include "harness/runner.hpp"

namespace pgward::test {

bool running_as_root() {
    return ::geteuid() == 0;
}

namespace {

// One --pg-bin folder with the client tools of one major and the server of
// another, as an operator's would be: the sandbox drill then starts a server of
// the test cluster's major. World-readable, because initdb runs as postgres.
std::filesystem::path combined_bin_dir(const std::filesystem::path& server_bin,
                                       const std::filesystem::path& client_bin) {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "pgward-test-bin-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
        throw std::runtime_error("cannot create a temp dir for the test's --pg-bin");
    }
    std::filesystem::path dir = pattern;
    std::filesystem::permissions(dir, std::filesystem::perms(0755));
    for (const char* tool : {"initdb", "pg_ctl", "postgres"}) {
        std::filesystem::create_symlink(server_bin / tool, dir / tool);
    }
    for (const char* tool : {"pg_dump", "pg_restore", "pg_dumpall", "psql", "pg_receivewal",
                             "pg_basebackup", "pg_verifybackup"}) {
        if (std::filesystem::exists(client_bin / tool)) {
            std::filesystem::create_symlink(client_bin / tool, dir / tool);
        }
    }
    return dir;
}

}  // namespace

PgCluster& PgCluster::instance() {
    static PgCluster cluster;
    return cluster;
}

void PgCluster::init() {
    pg::Sandbox::Options options;
    if (const char* dir = std::getenv("PGWARD_TEST_PG_BIN"); dir != nullptr && *dir != '\0') {
        options.bin_dir = dir;
    }
    port_ = free_loopback_port();
    options.tcp_port = port_;
    // A password with a quote, a space and a backslash, so quoting bugs show.
    std::random_device rd;
    password_ = fmt::format("p@ss w'rd\\{:08x}", rd());
    options.password = password_;
    options.server_settings = {"log_min_messages=warning"};
    options.tag = "test";
    sandbox_ = std::make_unique<pg::Sandbox>(options);
    client_bin_ = sandbox_->bin_dir();
    if (const char* dir = std::getenv("PGWARD_TEST_CLIENT_BIN"); dir != nullptr && *dir != '\0') {
        client_bin_ = combined_bin_dir(sandbox_->bin_dir(), dir);
        pgward_pg_bin_ = client_bin_.string();
    }
    client_major_ = pg::ToolFinder(client_bin_).find("pg_dump").version.major();
}

void PgCluster::destroy(bool keep_files) {
    if (!sandbox_) {
        return;
    }
    if (!pgward_pg_bin_.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(client_bin_, ec);
    }
    sandbox_->keep_files(keep_files);
    if (keep_files) {
        fmt::print(stderr, "pgward tests: a test failed; the cluster is kept in {}\n",
                   sandbox_->root().string());
    }
    sandbox_.reset();
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
    if (std::find(created_.begin(), created_.end(), name) == created_.end()) {
        created_.push_back(name);
    }
}

void PgCluster::drop_created_databases() const {
    for (const std::string& name : std::exchange(created_, {})) {
        try {
            drop_database(name);
        } catch (const std::exception& e) {
            std::cerr << "cannot drop test database " << name << ": " << e.what() << "\n";
        }
    }
}

std::vector<std::pair<std::string, std::string>> PgCluster::env(const std::string& dbname) const {
    return {{"POSTGRES_HOST", "127.0.0.1"}, {"POSTGRES_PORT", std::to_string(port_)},
            {"POSTGRES_USER", superuser()}, {"POSTGRES_PASSWORD", password_},
            {"POSTGRES_DB", dbname},        {"PGWARD_PG_BIN", pgward_pg_bin_}};
}

}  // namespace pgward::test
