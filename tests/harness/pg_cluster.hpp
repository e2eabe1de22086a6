#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "pg/connection.hpp"

namespace pgward::test {

// A throwaway PostgreSQL cluster for the integration tests: initdb into a
// temp dir, scram-sha-256 password auth, a free loopback port plus a unix
// socket dir; started as the `postgres` user when the tests run as root.
// Binaries come from PGWARD_TEST_PG_BIN, else the local PostgreSQL. On a test
// failure the directory is kept and its path printed.
class PgCluster {
  public:
    static PgCluster& instance();

    void init();
    void start();
    void stop_fast();
    void stop_immediate();  // like a crash: no checkpoint, connections cut
    bool running() const { return server_pid_ > 0; }
    void destroy(bool keep_files);

    const std::filesystem::path& bin_dir() const { return bin_dir_; }
    const std::filesystem::path& root() const { return root_; }
    int port() const { return port_; }
    const std::string& password() const { return password_; }
    const std::string& superuser() const { return superuser_; }
    int server_major() const { return server_major_; }

    pg::ConnectionOptions options(const std::string& dbname) const;
    pg::Connection connect(const std::string& dbname = "postgres") const;
    void exec(const std::string& dbname, const std::string& sql) const;
    std::string query_value(const std::string& dbname, const std::string& sql) const;
    void create_database(const std::string& name) const;  // drops it first if it exists
    void drop_database(const std::string& name) const;

    // POSTGRES_* variables that point pgward at this cluster.
    std::vector<std::pair<std::string, std::string>> env(const std::string& dbname) const;

  private:
    std::vector<std::string> as_server_user(std::vector<std::string> argv) const;
    void wait_ready() const;

    std::filesystem::path bin_dir_;
    std::filesystem::path root_;
    std::filesystem::path data_dir_;
    std::filesystem::path socket_dir_;
    int port_ = 0;
    std::string password_;
    std::string superuser_ = "postgres";
    int server_major_ = 0;
    int server_pid_ = -1;
    bool as_postgres_ = false;
};

// True when the tests run as root (some failure paths need a tmpfs or
// another user to be made real).
bool running_as_root();

}  // namespace pgward::test
