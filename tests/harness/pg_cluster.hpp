#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "pg/connection.hpp"
#include "pg/sandbox.hpp"

namespace pgward::test {

// The integration tests' PostgreSQL: a pg::Sandbox with scram-sha-256
// password auth and a free loopback port as well as its unix socket.
// The server's binaries come from PGWARD_TEST_PG_BIN, else the local
// PostgreSQL; the client tools pgward runs (pg_dump, pg_restore) from
// PGWARD_TEST_CLIENT_BIN, else the server's folder (the version matrix sets
// both). On a test failure the directory is kept and its path printed.
class PgCluster {
  public:
    static PgCluster& instance();

    void init();
    void start() { sandbox_->start(); }
    void stop_fast() { sandbox_->stop_fast(); }
    void stop_immediate() { sandbox_->stop_immediate(); }
    void destroy(bool keep_files);

    const std::filesystem::path& bin_dir() const { return sandbox_->bin_dir(); }
    const std::filesystem::path& root() const { return sandbox_->root(); }
    // pg_dump, pg_restore, psql: what pgward is pointed at (PGWARD_PG_BIN).
    const std::filesystem::path& client_bin_dir() const { return client_bin_; }
    int client_major() const { return client_major_; }
    int port() const { return port_; }
    const std::string& password() const { return password_; }
    const std::string& superuser() const { return sandbox_->superuser(); }
    int server_major() const { return sandbox_->version().major(); }

    pg::ConnectionOptions options(const std::string& dbname) const {
        return sandbox_->options(dbname);
    }
    pg::Connection connect(const std::string& dbname = "postgres") const;
    void exec(const std::string& dbname, const std::string& sql) const;
    std::string query_value(const std::string& dbname, const std::string& sql) const;
    void create_database(const std::string& name) const;  // drops it first if it exists
    void drop_database(const std::string& name) const;
    // Drops every database create_database made since the last call (what
    // cannot be dropped stays): a suite's databases go when it ends, so the
    // cluster that later suites back up whole (base backups) stays small.
    void drop_created_databases() const;

    // POSTGRES_* variables that point pgward at this cluster.
    std::vector<std::pair<std::string, std::string>> env(const std::string& dbname) const;

  private:
    std::unique_ptr<pg::Sandbox> sandbox_;
    std::filesystem::path client_bin_;
    std::string pgward_pg_bin_;  // "" = pgward finds its tools on PATH
    int client_major_ = 0;
    int port_ = 0;
    std::string password_;
    mutable std::vector<std::string> created_;
};

// True when the tests run as root (some failure paths need a tmpfs or
// another user to be made real).
bool running_as_root();

}  // namespace pgward::test
