#include "pg/sandbox.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <fstream>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "pg/environment.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/lock.hpp"
#include "util/log.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"

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

// A sandbox child's environment: none of the operator's PG* variables (not
// PGDATA, PGPORT, PGHOST...), and a locale the cluster is made with.
Command sandbox_command(std::vector<std::string> argv) {
    return Command{std::move(argv), {{"LC_ALL", "C.UTF-8"}}, libpq_variable_names_in_environment()};
}

std::string random_password() {
    std::random_device rd;
    return fmt::format("{:08x}{:08x}{:08x}{:08x}", rd(), rd(), rd(), rd());
}

// The postmaster of a sandbox whose drill was killed: its pid from
// postmaster.pid, if that process still runs in that data directory.
std::optional<pid_t> leftover_postmaster(const std::filesystem::path& data_dir) {
    std::ifstream pidfile(data_dir / "postmaster.pid");
    long pid = 0;
    if (!(pidfile >> pid) || pid <= 1) {
        return std::nullopt;
    }
    std::error_code ec;
    // A postmaster's working directory is its data directory: a reused pid is
    // not mistaken for it.
    auto cwd = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/cwd", ec);
    if (ec || cwd != std::filesystem::weakly_canonical(data_dir, ec)) {
        return std::nullopt;
    }
    return static_cast<pid_t>(pid);
}

bool process_exists(pid_t pid) {
    return ::kill(pid, 0) == 0 || errno == EPERM;
}

void stop_leftover_server(const std::filesystem::path& data_dir) {
    std::optional<pid_t> pid = leftover_postmaster(data_dir);
    if (!pid) {
        return;
    }
    ::kill(*pid, SIGINT);  // fast shutdown
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (process_exists(*pid) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (process_exists(*pid)) {
        ::kill(*pid, SIGKILL);
        log::warn("a leftover sandbox server did not stop in 5 s and was killed",
                  {{"pid", std::to_string(*pid)}, {"dir", data_dir.string()}});
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (process_exists(*pid) && std::chrono::steady_clock::now() < deadline) {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
    }
}

// remove_all, again while what a dying server and its backends still do in
// the directory (a socket or a temp file going away under it) makes it fail.
std::error_code remove_tree(const std::filesystem::path& dir) {
    std::error_code ec;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
        ec.clear();
        std::filesystem::remove_all(dir, ec);
        if (!ec || std::chrono::steady_clock::now() >= deadline) {
            return ec;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
}

void run_or_throw(const std::vector<std::string>& argv, const std::string& what) {
    CapturedRun run = run_captured(sandbox_command(argv), std::chrono::seconds(300));
    if (!run.status.ok()) {
        throw failure(fmt::format("{} failed ({}): {}", what, run.status.describe(),
                                  run.err.empty() ? run.out : run.err));
    }
}

}  // namespace

std::string sandbox_server_user(const std::function<bool(const std::string&)>& user_exists) {
    // Never `nobody`: every daemon that drops privileges runs as it, and the
    // sandbox's files (a full copy of production) would be theirs to read.
    if (!user_exists("postgres")) {
        throw failure(
            "a sandbox started as root runs its server as the user \"postgres\", "
            "and this host has none",
            "create it (adduser --system --group postgres) or run pgward as a "
            "non-root user");
    }
    return "postgres";
}

struct Sandbox::Server {
    pid_t pid = -1;
    std::thread drain;
    std::atomic<bool> exited{false};
};

size_t Sandbox::remove_leftovers(const std::string& tag) {
    const std::string prefix = "pgward-" + tag + "-";
    size_t removed = 0;
    std::error_code ec;
    for (const auto& entry :
         std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind(prefix, 0) != 0 || name.size() != prefix.size() + 6 ||
            !entry.is_directory(ec) || entry.is_symlink(ec)) {
            continue;
        }
        // A live sandbox holds the lock on its directory.
        std::optional<FileLock> lock = FileLock::try_acquire_directory(entry.path());
        if (!lock) {
            continue;
        }
        stop_leftover_server(entry.path() / "data");
        if (std::error_code remove_ec = remove_tree(entry.path())) {
            log::warn("cannot remove a sandbox a previous drill left",
                      {{"dir", entry.path().string()}, {"error", remove_ec.message()}});
            continue;
        }
        ++removed;
        log::info("removed a sandbox a previous drill left", {{"dir", entry.path().string()}});
    }
    return removed;
}

Sandbox::Sandbox(const Options& options) : options_(options) {
    bin_dir_ = server_bin_dir(options.bin_dir);
    for (const char* tool : {"initdb", "postgres"}) {
        if (::access((bin_dir_ / tool).c_str(), X_OK) != 0) {
            throw failure(fmt::format("{} not found in {}", tool, bin_dir_.string()),
                          "a sandbox needs PostgreSQL server binaries (initdb, postgres)");
        }
    }
    CapturedRun v = run_captured(sandbox_command({(bin_dir_ / "postgres").string(), "--version"}));
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
    lock_ = std::make_unique<FileLock>(FileLock::try_acquire_directory(root_).value());
    data_dir_ = root_ / "data";
    socket_dir_ = root_ / "sock";
    std::filesystem::create_directory(socket_dir_);
    ::chmod(socket_dir_.c_str(), 0700);

    if (options.adopt) {
        adopt_data_dir();
        return;
    }
    // Always a password, known only to this process: with the socket in a
    // 0700 directory of the server's user, nothing else on the host gets in,
    // not even another process of that user.
    password_ = options.password.value_or(random_password());
    std::filesystem::path pwfile = root_ / "pwfile";
    {
        int fd = ::open(pwfile.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0) {
            throw os_error("cannot create", pwfile.string(), errno);
        }
        std::string line = password_ + "\n";
        bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
        ::close(fd);
        if (!written) {
            throw os_error("cannot write", pwfile.string(), errno);
        }
    }
    if (::geteuid() == 0) {
        // PostgreSQL refuses to run as root; hand the files to a plain user.
        const std::string user = sandbox_server_user(
            [](const std::string& name) { return ::getpwnam(name.c_str()) != nullptr; });
        passwd* pw = ::getpwnam(user.c_str());
        run_as_ = user;
        for (const auto& p : {root_, socket_dir_, pwfile}) {
            if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
                throw os_error("cannot hand the sandbox to user " + *run_as_, p.string(), errno);
            }
        }
    }
    std::vector<std::string> initdb = {(bin_dir_ / "initdb").string(),
                                       "-D",
                                       data_dir_.string(),
                                       "-U",
                                       superuser_,
                                       "-E",
                                       "UTF8",
                                       "--locale=C.UTF-8",
                                       "--no-sync",
                                       "--auth=scram-sha-256",
                                       "--pwfile=" + pwfile.string()};
    try {
        run_or_throw(as_server_user(initdb), "initdb of the sandbox cluster");
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
        throw;
    }
    std::filesystem::remove(pwfile);
}

void Sandbox::adopt_data_dir() {
    std::optional<passwd> server_user;
    if (::geteuid() == 0) {
        run_as_ = sandbox_server_user(
            [](const std::string& name) { return ::getpwnam(name.c_str()) != nullptr; });
        server_user = *::getpwnam(run_as_->c_str());
    }
    try {
        for (const auto& p : {root_, socket_dir_}) {
            if (server_user && ::chown(p.c_str(), server_user->pw_uid, server_user->pw_gid) != 0) {
                throw os_error("cannot hand the sandbox to user " + *run_as_, p.string(), errno);
            }
        }
        options_.adopt->lay_out(data_dir_, run_as_);
        superuser_ = options_.adopt->superuser;
        // Peer authentication on the 0700 socket: the OS user of this
        // process, and no one else, becomes the recovered superuser.
        passwd* me = ::getpwuid(::geteuid());
        if (me == nullptr) {
            throw failure("this process's user has no name (getpwuid)",
                          "run pgward as a user listed in /etc/passwd");
        }
        const std::string hba = "local all all peer map=pgward\n";
        const std::string ident = fmt::format("pgward {} {}\n", me->pw_name, superuser_);
        for (const auto& [file, text] :
             {std::pair{root_ / "pg_hba.conf", hba}, std::pair{root_ / "pg_ident.conf", ident}}) {
            write_file_atomically(file, text, AtomicFile::Publish::Replace);
            if (server_user &&
                ::chown(file.c_str(), server_user->pw_uid, server_user->pw_gid) != 0) {
                throw os_error("cannot hand the sandbox to user " + *run_as_, file.string(), errno);
            }
        }
        // A server configured outside its data directory (Debian's
        // /etc/postgresql) leaves none in the copy; defaults do.
        const std::filesystem::path conf = data_dir_ / "postgresql.conf";
        std::error_code ec;
        if (!std::filesystem::exists(conf, ec)) {
            write_file_atomically(conf, "", AtomicFile::Publish::NoReplace);
            if (server_user &&
                ::chown(conf.c_str(), server_user->pw_uid, server_user->pw_gid) != 0) {
                throw os_error("cannot hand the sandbox to user " + *run_as_, conf.string(), errno);
            }
        }
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
        throw;
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
    // The port always given: postgres would otherwise take the operator's
    // PGPORT, and its socket would not be where the sandbox looks.
    std::vector<std::string> argv = {(bin_dir_ / "postgres").string(),
                                     "-D",
                                     data_dir_.string(),
                                     "-k",
                                     socket_dir_.string(),
                                     "-p",
                                     std::to_string(port()),
                                     "-c",
                                     "unix_socket_permissions=0700",
                                     "-c",
                                     "fsync=off",
                                     "-c",
                                     "max_connections=50"};
    argv.push_back("-c");
    argv.push_back(options_.tcp_port ? "listen_addresses=127.0.0.1" : "listen_addresses=");
    if (options_.adopt) {
        // The copy's own settings stay (shared_preload_libraries, the
        // recovery settings); what would reach outside the sandbox, need
        // the production host's files or its memory, or hide the log is
        // overridden.
        for (const std::string& setting :
             {"hba_file=" + (root_ / "pg_hba.conf").string(),
              "ident_file=" + (root_ / "pg_ident.conf").string(), std::string("ssl=off"),
              std::string("archive_mode=off"), std::string("logging_collector=off"),
              std::string("log_destination=stderr"), std::string("hot_standby=off"),
              std::string("shared_buffers=128MB"), std::string("primary_conninfo="),
              // No background workers: a copy's pg_cron, pg_net or job
              // scheduler would run its jobs here, and they may reach out
              // (pg_cron connects to localhost:5432, production's port).
              std::string("max_worker_processes=0"),
              // Its log is read: in English whatever the copy's language.
              std::string("lc_messages=C")}) {
            argv.push_back("-c");
            argv.push_back(setting);
        }
    }
    for (const std::string& setting : options_.server_settings) {
        argv.push_back("-c");
        argv.push_back(setting);
    }
    Child child = Child::spawn(sandbox_command(as_server_user(argv)));
    server_ = std::make_unique<Server>();
    server_->pid = child.pid();
    // The server's output goes to server.log; the thread reaps it on exit.
    server_->drain = std::thread(
        [c = std::move(child), log_path = root_ / "server.log", server = server_.get()]() mutable {
            std::ofstream out(log_path, std::ios::app);
            PumpHandlers handlers;
            handlers.on_stderr_line = [&](std::string_view line) {
                out << line << '\n';
                out.flush();
            };
            handlers.stop_on_interrupt = false;
            try {
                pump(c, handlers);
            } catch (...) {
                c.wait();
            }
            server->exited = true;
        });
    wait_ready();
}

bool Sandbox::running() const {
    return server_ != nullptr;
}

void Sandbox::wait_ready() {
    ConnectionOptions target = options("postgres");
    auto deadline = std::chrono::steady_clock::now() + options_.start_timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (ping(target)) {
            return;
        }
        if (server_->exited) {
            keep_files_ = true;
            throw failure("the sandbox server exited before it accepted connections; see " +
                              log_path().string(),
                          "the sandbox directory is kept for its log; the next drill removes it");
        }
        if (int sig = pending_interrupt(); sig != 0 && options_.stop_on_interrupt) {
            throw failure(std::string("interrupted by ") + signal_name(sig) +
                          " while the sandbox server was starting");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    // The log it names must outlive this error.
    keep_files_ = true;
    throw failure(fmt::format("the sandbox server did not start within {} s; see {}",
                              options_.start_timeout.count(), log_path().string()),
                  "the sandbox directory is kept for its log; the next drill removes it");
}

void Sandbox::stop(int signal) {
    if (!server_) {
        return;
    }
    if (!server_->exited) {  // once reaped, the pid may be another process's
        ::kill(server_->pid, signal);
    }
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
        o.port = ConnectionOptions::Setting{std::to_string(port()), true};
    }
    o.user = ConnectionOptions::Setting{superuser_, true};
    o.dbname = ConnectionOptions::Setting{"dbname=" + quote_conninfo_value(dbname), true};
    o.password = password_;
    o.isolated = true;
    return o;
}

}  // namespace pgward::pg
