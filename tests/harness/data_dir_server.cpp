#include "data_dir_server.hpp"

#include <pwd.h>
#include <unistd.h>

#include <fmt/format.h>

#include "pg_cluster.hpp"
#include "runner.hpp"
#include "util/process.hpp"

namespace pgward::test {
namespace {

// pg_ctl as the server's user when the tests run as root (PostgreSQL
// refuses root).
CapturedRun pg_ctl(std::vector<std::string> args, std::chrono::seconds timeout) {
    std::vector<std::string> argv;
    if (running_as_root()) {
        passwd* pw = ::getpwnam("postgres");
        argv = {"/usr/bin/setpriv", fmt::format("--reuid={}", pw->pw_uid),
                fmt::format("--regid={}", pw->pw_gid), "--clear-groups", "--"};
    }
    argv.push_back((PgCluster::instance().bin_dir() / "pg_ctl").string());
    argv.insert(argv.end(), args.begin(), args.end());
    return run_captured(Command{argv, {{"LC_MESSAGES", "C"}}, {"PGDATA", "PGPORT", "PGHOST"}},
                        timeout);
}

}  // namespace

DataDirServer::DataDirServer(std::filesystem::path pgdata) : pgdata_(std::move(pgdata)) {
    socket_dir_ = make_temp_dir("recovered-socket");
    log_ = socket_dir_ / "server.log";
    if (running_as_root()) {
        passwd* pw = ::getpwnam("postgres");
        if (::chown(socket_dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
            throw std::runtime_error("cannot give the socket folder to postgres");
        }
    }
    port_ = free_loopback_port();
}

DataDirServer::~DataDirServer() {
    if (started_) {
        pg_ctl({"stop", "-D", pgdata_.string(), "-m", "immediate", "-w"}, std::chrono::seconds(30));
    }
    std::error_code ec;
    std::filesystem::remove_all(socket_dir_, ec);
}

bool DataDirServer::start(std::chrono::seconds timeout) {
    CapturedRun run = pg_ctl({"start", "-D", pgdata_.string(), "-l", log_.string(), "-w", "-t",
                              std::to_string(timeout.count()), "-o",
                              fmt::format("-k {} -p {} -c listen_addresses='' -c fsync=off",
                                          socket_dir_.string(), port_)},
                             timeout + std::chrono::seconds(10));
    started_ = true;  // stop it even if pg_ctl gave up waiting
    if (!run.status.ok()) {
        return false;
    }
    // It accepts connections once consistent, before the end of recovery.
    return eventually(
        [&] {
            try {
                return query_value("postgres", "SELECT pg_is_in_recovery()") == "f";
            } catch (const std::exception&) {
                return false;
            }
        },
        timeout);
}

std::string DataDirServer::log() const {
    return slurp(log_);
}

pg::ConnectionOptions DataDirServer::options(const std::string& dbname) const {
    pg::ConnectionOptions options;
    options.host = pg::ConnectionOptions::Setting{socket_dir_.string(), true};
    options.port = pg::ConnectionOptions::Setting{std::to_string(port_), true};
    options.user = pg::ConnectionOptions::Setting{PgCluster::instance().superuser(), true};
    options.dbname = pg::ConnectionOptions::Setting{dbname, true};
    options.password = PgCluster::instance().password();
    options.isolated = true;
    return options;
}

std::string DataDirServer::query_value(const std::string& dbname, const std::string& sql) const {
    return pg::Connection::open(options(dbname), "pgward tests").query_value(sql).value_or("");
}

}  // namespace pgward::test
