#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "pg/connection.hpp"

namespace pgward::test {

// A PostgreSQL server started on a data directory a test had pgward lay out
// (a point-in-time recovery): the test cluster's binaries, the server's user
// when the tests run as root, a unix socket in a folder of its own. Stopped
// (immediate) when destroyed; the folders are the test's to remove.
class DataDirServer {
  public:
    explicit DataDirServer(std::filesystem::path pgdata);
    ~DataDirServer();
    DataDirServer(const DataDirServer&) = delete;
    DataDirServer& operator=(const DataDirServer&) = delete;

    // Starts it and waits until it accepts connections (its recovery done);
    // false when it exits instead or does not answer within `timeout`.
    bool start(std::chrono::seconds timeout = std::chrono::seconds(60));
    // The server's log: what recovery said.
    std::string log() const;
    // The test cluster's superuser and password: the recovered copy has them.
    pg::ConnectionOptions options(const std::string& dbname) const;
    std::string query_value(const std::string& dbname, const std::string& sql) const;
    // POSTGRES_HOST and POSTGRES_PORT for a pgward that connects to it.
    std::vector<std::pair<std::string, std::string>> env() const {
        return {{"POSTGRES_HOST", socket_dir_.string()}, {"POSTGRES_PORT", std::to_string(port_)}};
    }

  private:
    std::filesystem::path pgdata_;
    std::filesystem::path socket_dir_;
    std::filesystem::path log_;
    int port_ = 0;
    bool started_ = false;
};

}  // namespace pgward::test
