#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pg/connection.hpp"
#include "pg/tools.hpp"
#include "util/lock.hpp"

namespace pgward::pg {

// A private, throwaway PostgreSQL cluster: initdb into a 0700 temp dir and a
// postgres server on a unix socket in that dir (plus a loopback port if
// asked), run as an unprivileged user (`postgres`, or `nobody`, when pgward
// runs as root) who owns the dir, with a random superuser password only this
// process knows. Nothing of the operator's libpq environment reaches it.
// Stopped and removed when destroyed, also when an error or SIGTERM unwinds
// the stack (kept, with its log, when asked to).
// The user a sandbox server runs as when pgward runs as root: "postgres",
// which must exist (PostgreSQL refuses root).
std::string sandbox_server_user(const std::function<bool(const std::string&)>& user_exists);

class Sandbox {
  public:
    struct Options {
        std::optional<std::filesystem::path> bin_dir;  // initdb and postgres; else discovered
        std::optional<int> tcp_port;                   // listen on 127.0.0.1 too
        std::optional<std::string> password;           // the superuser's; else a random one
        std::vector<std::string> server_settings;      // extra -c name=value
        std::string tag = "sandbox";
        // Refuse a server of an older major than this, saying why.
        struct MinimumMajor {
            int major = 0;
            std::string reason;
        };
        std::optional<MinimumMajor> refuse_older_than;
        // A pending SIGTERM/SIGINT aborts waiting for the server to start.
        bool stop_on_interrupt = true;
        // Instead of initdb: a data directory someone else lays out (a
        // point-in-time recovery), served as its `superuser` over the private
        // socket with peer authentication (only this process's OS user, mapped
        // to it, gets in); the server runs without hot standby, so start()
        // returns once recovery has ended and it has promoted, or throws
        // when the server exits first, keeping its log.
        struct Adopted {
            // Fills the (absent) data directory for `owner` (the server's
            // user when pgward runs as root).
            std::function<void(const std::filesystem::path& data_dir,
                               const std::optional<std::string>& owner)>
                lay_out;
            std::string superuser;
        };
        std::optional<Adopted> adopt;
        std::chrono::seconds start_timeout{60};
    };

    // Removes the sandboxes of `tag` that no live process holds (a killed
    // drill's, or a failed one's kept for its log), stopping a server still
    // running in one (SIGKILL after 5 s). Returns how many were removed.
    static size_t remove_leftovers(const std::string& tag);

    explicit Sandbox(const Options& options);
    ~Sandbox();
    Sandbox(const Sandbox&) = delete;
    Sandbox& operator=(const Sandbox&) = delete;

    void start();
    void stop_fast();
    void stop_immediate();  // like a crash: no checkpoint
    bool running() const;
    // Keep the files on destruction (to look at after a failure).
    void keep_files(bool keep) { keep_files_ = keep; }
    bool keeps_files() const { return keep_files_; }

    ConnectionOptions options(const std::string& dbname) const;
    const std::filesystem::path& root() const { return root_; }
    const std::filesystem::path& bin_dir() const { return bin_dir_; }
    const std::filesystem::path& socket_dir() const { return socket_dir_; }
    std::filesystem::path log_path() const { return root_ / "server.log"; }
    const std::string& superuser() const { return superuser_; }
    Version version() const { return version_; }

  private:
    struct Server;
    std::vector<std::string> as_server_user(std::vector<std::string> argv) const;
    void adopt_data_dir();
    void wait_ready();
    int port() const { return options_.tcp_port.value_or(5432); }
    void stop(int signal);

    Options options_;
    std::filesystem::path bin_dir_;
    std::filesystem::path root_;
    std::filesystem::path data_dir_;
    std::filesystem::path socket_dir_;
    std::string superuser_ = "postgres";
    std::string password_;
    std::unique_ptr<FileLock> lock_;  // held while this sandbox lives
    std::optional<std::string> run_as_;
    Version version_;
    std::unique_ptr<Server> server_;
    bool keep_files_ = false;
};

}  // namespace pgward::pg
