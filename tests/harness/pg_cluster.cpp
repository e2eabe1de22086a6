#include "harness/pg_cluster.hpp"

#include <unistd.h>

#include <cstdlib>
#include <random>

#include <fmt/format.h>

#include "harness/runner.hpp"

namespace pgward::test {

bool running_as_root() {
    return ::geteuid() == 0;
}

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
}

void PgCluster::destroy(bool keep_files) {
    if (!sandbox_) {
        return;
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
}

std::vector<std::pair<std::string, std::string>> PgCluster::env(const std::string& dbname) const {
    return {{"POSTGRES_HOST", "127.0.0.1"}, {"POSTGRES_PORT", std::to_string(port_)},
            {"POSTGRES_USER", superuser()}, {"POSTGRES_PASSWORD", password_},
            {"POSTGRES_DB", dbname},        {"PGWARD_PG_BIN", ""}};
}

}  // namespace pgward::test
