#include "pg/sandbox.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/log.hpp"
#include "util/process.hpp"

namespace pgward::pg {
namespace {

std::filesystem::path server_bin_dir(const std::optional<std::filesystem::path>& given) {
    if (given) {
        return *given;
    }
    // initdb and postgres are rarely on PATH (Debian keeps them in
    // /usr/lib/postgresql/N/bin): ask pg_config, then take the newest there.
    try {
        // The real directory, not a symlink farm such as /usr/local/bin.
        return std::filesystem::canonical(ToolFinder(std::nullopt).locate("initdb")).parent_path();
    } catch (const Error&) {
    }
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
        throw failure(
            "no PostgreSQL server binaries (initdb, postgres) found for the sandbox",
            "install postgresql, or point --pg-bin at a directory with initdb and postgres");
    }
    return best;
}

void run_or_throw(const std::vector<std::string>& argv, const std::string& what) {
    CapturedRun run =
        run_captured(Command{argv, {{"LC_ALL", "C.UTF-8"}}, {}}, std::chrono::seconds(300));
    if (!run.status.ok()) {
        throw failure(fmt::format("{} failed ({}): {}", what, run.status.describe(),
                                  run.err.empty() ? run.out : run.err));
    }
}

}  // namespace

struct Sandbox::Server {
    pid_t pid = -1;
    std::thread drain;
};

Sandbox::Sandbox(const Options& options) : options_(options) {
    bin_dir_ = server_bin_dir(options.bin_dir);
    for (const char* tool : {"initdb", "postgres"}) {
        if (::access((bin_dir_ / tool).c_str(), X_OK) != 0) {
            throw failure(fmt::format("{} not found in {}", tool, bin_dir_.string()),
                          "a sandbox needs PostgreSQL server binaries (initdb, postgres)");
        }
    }
    CapturedRun v = run_captured(Command{{(bin_dir_ / "postgres").string(), "--version"}, {}, {}});
    version_ = parse_tool_version(v.out).value_or(Version{0});
    if (options.refuse_older_than && version_.major() < options.refuse_older_than->major) {
        // Before initdb: nothing has been made yet.
        throw failure(
            fmt::format("the sandbox server is PostgreSQL {} ({}) but {}", version_.text(),
                        bin_dir_.string(), options.refuse_older_than->reason),
            fmt::format("point --pg-bin at a folder with initdb and postgres {} or newer",
                        options.refuse_older_than->major));
    }

    std::string pattern =
        (std::filesystem::temp_directory_path() / ("pgward-" + options.tag + "-XXXXXX")).string();
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    if (::mkdtemp(buffer.data()) == nullptr) {
        throw os_error("cannot create a temp dir for the sandbox", pattern, errno);
    }
    root_ = buffer.data();
    data_dir_ = root_ / "data";
    socket_dir_ = root_ / "sock";
    std::filesystem::create_directory(socket_dir_);

    std::optional<std::filesystem::path> pwfile;
    if (options.password) {
        pwfile = root_ / "pwfile";
        std::ofstream(*pwfile) << *options.password << "\n";
        ::chmod(pwfile->c_str(), 0600);
    }
    if (::geteuid() == 0) {
        // PostgreSQL refuses to run as root; hand the files to a plain user.
        const char* user = ::getpwnam("postgres") != nullptr ? "postgres" : "nobody";
        passwd* pw = ::getpwnam(user);
        run_as_ = user;
        for (const auto& p : {root_, socket_dir_}) {
            [[maybe_unused]] int rc = ::chown(p.c_str(), pw->pw_uid, pw->pw_gid);
        }
        if (pwfile) {
            [[maybe_unused]] int rc = ::chown(pwfile->c_str(), pw->pw_uid, pw->pw_gid);
        }
        ::chmod(root_.c_str(), 0711);
    }
    std::vector<std::string> initdb = {(bin_dir_ / "initdb").string(),
                                       "-D",
                                       data_dir_.string(),
                                       "-U",
                                       superuser_,
                                       "-E",
                                       "UTF8",
                                       "--locale=C.UTF-8",
                                       "--no-sync"};
    if (pwfile) {
        initdb.push_back("--auth=scram-sha-256");
        initdb.push_back("--pwfile=" + pwfile->string());
    } else {
        // Trust is safe here: the only way in is a socket in a 0700 directory.
        initdb.push_back("--auth=trust");
        ::chmod(socket_dir_.c_str(), 0700);
    }
    try {
        run_or_throw(as_server_user(initdb), "initdb of the sandbox cluster");
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
        throw;
    }
    if (pwfile) {
        std::filesystem::remove(*pwfile);
    }
}

Sandbox::~Sandbox() {
    try {
        stop_fast();
    } catch (...) {
    }
    if (!keep_files_) {
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
    }
}

std::vector<std::string> Sandbox::as_server_user(std::vector<std::string> argv) const {
    if (!run_as_) {
        return argv;
    }
    passwd* pw = ::getpwnam(run_as_->c_str());
    // setpriv execs in place: the pid we hold is the server's own.
    std::vector<std::string> wrapped = {"/usr/bin/setpriv", "--reuid=" + std::to_string(pw->pw_uid),
                                        "--regid=" + std::to_string(pw->pw_gid), "--clear-groups",
                                        "--"};
    wrapped.insert(wrapped.end(), argv.begin(), argv.end());
    return wrapped;
}

void Sandbox::start() {
    std::vector<std::string> argv = {(bin_dir_ / "postgres").string(),
                                     "-D",
                                     data_dir_.string(),
                                     "-k",
                                     socket_dir_.string(),
                                     "-c",
                                     "fsync=off",
                                     "-c",
                                     "max_connections=50"};
    argv.push_back("-c");
    argv.push_back(options_.tcp_port ? "listen_addresses=127.0.0.1" : "listen_addresses=");
    if (options_.tcp_port) {
        argv.push_back("-p");
        argv.push_back(std::to_string(*options_.tcp_port));
    }
    for (const std::string& setting : options_.server_settings) {
        argv.push_back("-c");
        argv.push_back(setting);
    }
    Child child = Child::spawn(Command{as_server_user(argv), {{"LC_ALL", "C.UTF-8"}}, {}});
    server_ = std::make_unique<Server>();
    server_->pid = child.pid();
    // The server's output goes to server.log; the thread reaps it on exit.
    server_->drain = std::thread([c = std::move(child), log_path = root_ / "server.log"]() mutable {
        std::ofstream out(log_path, std::ios::app);
        PumpHandlers handlers;
        handlers.on_stderr_line = [&](std::string_view line) { out << line << '\n'; };
        handlers.stop_on_interrupt = false;
        try {
            pump(c, handlers);
        } catch (...) {
            c.wait();
        }
    });
    wait_ready();
}

bool Sandbox::running() const {
    return server_ != nullptr;
}

void Sandbox::wait_ready() const {
    std::string conninfo = fmt::format("host={} port={} dbname=postgres user={}",
                                       quote_conninfo_value(socket_dir_.string()),
                                       options_.tcp_port.value_or(5432), superuser_);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
        if (PQping(conninfo.c_str()) == PQPING_OK) {
            return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw failure("the sandbox server did not start; see " + (root_ / "server.log").string());
}

void Sandbox::stop(int signal) {
    if (!server_) {
        return;
    }
    ::kill(server_->pid, signal);
    server_->drain.join();
    server_.reset();
}

void Sandbox::stop_fast() {
    stop(SIGINT);
}
void Sandbox::stop_immediate() {
    stop(SIGQUIT);
}

ConnectionOptions Sandbox::options(const std::string& dbname) const {
    ConnectionOptions o;
    if (options_.tcp_port) {
        o.host = ConnectionOptions::Setting{"127.0.0.1", true};
        o.port = ConnectionOptions::Setting{std::to_string(*options_.tcp_port), true};
    } else {
        o.host = ConnectionOptions::Setting{socket_dir_.string(), true};
        o.port = ConnectionOptions::Setting{"5432", true};
    }
    o.user = ConnectionOptions::Setting{superuser_, true};
    o.dbname = ConnectionOptions::Setting{"dbname=" + quote_conninfo_value(dbname), true};
    o.password = options_.password;
    return o;
}

}  // namespace pgward::pg
