#include "harness/s3_server.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "util/process.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;

// A suite interrupted by SIGINT or SIGTERM kills the daemons, then goes on to
// the handler that was there before (environment.cpp's, which stops the
// PostgreSQL cluster and dies); the files stay, as after a failure.
// Async-signal-safe: the pids are in a fixed array, filled before the handler
// is installed.
constexpr int kMaxPids = 8;
pid_t daemon_pids[kMaxPids] = {};
volatile sig_atomic_t daemon_count = 0;
using Handler = void (*)(int);
Handler previous_sigint = SIG_DFL;
Handler previous_sigterm = SIG_DFL;

void kill_daemons_and_go_on(int signal) {
    for (int i = 0; i < daemon_count; ++i) {
        ::kill(daemon_pids[i], SIGKILL);
    }
    daemon_count = 0;
    Handler previous = signal == SIGINT ? previous_sigint : previous_sigterm;
    if (previous != SIG_DFL && previous != SIG_IGN && previous != SIG_ERR) {
        previous(signal);
        return;
    }
    std::signal(signal, SIG_DFL);
    ::raise(signal);
}

void install_signal_handlers() {
    for (int signal : {SIGINT, SIGTERM}) {
        Handler previous = std::signal(signal, kill_daemons_and_go_on);
        if (previous == SIG_IGN) {
            std::signal(signal, SIG_IGN);  // not ours to un-ignore
            continue;
        }
        (signal == SIGINT ? previous_sigint : previous_sigterm) = previous;
    }
}

struct State {
    std::mutex mutex;
    bool tried = false;
    std::unique_ptr<S3Server> server;
    std::string skip_reason;
    pid_t owner = 0;  // the process that started it (not a fork of it) stops it
};

// Never destroyed: the exit handler uses it.
State& state() {
    static State* const s = new State;
    return *s;
}

void stop_at_exit() {
    State& s = state();
    if (!s.server || ::getpid() != s.owner) {
        return;
    }
    daemon_count = 0;
    const ::testing::UnitTest* unit = ::testing::UnitTest::GetInstance();
    s.server->stop(unit != nullptr && unit->failed_test_count() > 0);
    s.server.reset();
}

std::map<std::string, std::string> read_env_file(const fs::path& path) {
    std::map<std::string, std::string> values;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        size_t eq = line.find('=');
        if (eq != std::string::npos) {
            values[line.substr(0, eq)] = line.substr(eq + 1);
        }
    }
    return values;
}

std::vector<pid_t> read_pids(const fs::path& path) {
    std::vector<pid_t> pids;
    std::ifstream in(path);
    std::string name;
    long pid = 0;
    while (in >> name >> pid) {
        if (pid > 1) {
            pids.push_back(static_cast<pid_t>(pid));
        }
    }
    return pids;
}

fs::path temp_root() {
    const char* tmpdir = std::getenv("TMPDIR");
    return tmpdir != nullptr && *tmpdir != '\0' ? fs::path(tmpdir) : fs::path("/tmp");
}

// "rgw.sh: SKIP: <reason>" in the script's output: the reason.
std::string skip_line(const RunResult& run) {
    static const std::string marker = "rgw.sh: SKIP: ";
    for (const std::string* text : {&run.err, &run.out}) {
        size_t at = text->find(marker);
        if (at != std::string::npos) {
            size_t end = text->find('\n', at);
            return text->substr(at + marker.size(), end == std::string::npos
                                                        ? std::string::npos
                                                        : end - at - marker.size());
        }
    }
    return "";
}

RunResult run_script(const std::vector<std::string>& argv, const Env& env,
                     std::chrono::seconds timeout) {
    Command command;
    command.argv = argv;
    command.set_env = env;
    CapturedRun run = run_captured(command, timeout);
    int code = run.status.signal != 0 ? 128 + run.status.signal : run.status.code;
    return RunResult{code, std::move(run.out), std::move(run.err)};
}

std::string join(const std::vector<std::string>& args) {
    std::string out;
    for (const std::string& arg : args) {
        out += out.empty() ? "" : " ";
        out += arg;
    }
    return out;
}

}  // namespace

// check_bucket.py serve, started as pgward starts its tools (Child): its
// stdin a pipe of ours, its stdout read a line per command. (Its stderr pipe
// is not read: serve answers errors in its JSON, so only a crash of its own
// writes there.)
struct S3Server::Checker {
    int to = -1;  // its stdin
    std::optional<Child> child;
    std::string pending;  // read past the last answer

    Checker(const std::string& endpoint, const Env& credentials) {
        int in_pipe[2];
        if (::pipe2(in_pipe, O_CLOEXEC) != 0) {
            throw std::runtime_error(std::string("check_bucket.py serve: pipe: ") +
                                     std::strerror(errno));
        }
        to = in_pipe[1];
        Command command{
            {"/usr/bin/env", "python3", check_bucket_script().string(), "serve", endpoint},
            credentials,
            {}};
        command.stdin_fd = in_pipe[0];
        try {
            child.emplace(Child::spawn(command));
        } catch (...) {
            ::close(in_pipe[0]);
            ::close(to);
            throw;
        }
        ::close(in_pipe[0]);
    }
    ~Checker() {
        ::close(to);  // end of input: it exits (Child's destructor reaps it)
    }
    Checker(const Checker&) = delete;
    Checker& operator=(const Checker&) = delete;

    // The line to its stdin; false when it is gone. SIGPIPE, which would kill
    // the test binary, is blocked meanwhile and taken back if it came.
    bool send(const std::string& line) const {
        sigset_t pipe_signal;
        sigset_t before;
        sigemptyset(&pipe_signal);
        sigaddset(&pipe_signal, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &pipe_signal, &before);
        const char* p = line.data();
        size_t left = line.size();
        bool sent = true;
        while (left > 0) {
            const ssize_t n = ::write(to, p, left);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                if (errno == EPIPE) {
                    const timespec now{};
                    ::sigtimedwait(&pipe_signal, nullptr, &now);
                }
                sent = false;
                break;
            }
            p += n;
            left -= static_cast<size_t>(n);
        }
        ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
        return sent;
    }

    // One command; nullopt when the server is gone (the caller starts another).
    std::optional<RunResult> run(const std::vector<std::string>& args) {
        if (!send(nlohmann::json(args).dump() + "\n")) {
            return std::nullopt;
        }
        size_t end = pending.find('\n');
        while (end == std::string::npos) {
            char buffer[65536];
            const ssize_t n = ::read(child->stdout_fd(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return std::nullopt;
            }
            pending.append(buffer, static_cast<size_t>(n));
            end = pending.find('\n');
        }
        const nlohmann::json reply = nlohmann::json::parse(pending.substr(0, end));
        pending.erase(0, end + 1);
        return RunResult{reply.at("rc").get<int>(), reply.at("out").get<std::string>(),
                         reply.at("err").get<std::string>()};
    }
};

S3Server::S3Server() = default;

fs::path S3Server::rgw_script() {
    return fs::path(PGWARD_SOURCE_DIR) / "tests" / "s3" / "rgw.sh";
}

fs::path S3Server::check_bucket_script() {
    return fs::path(PGWARD_SOURCE_DIR) / "tests" / "s3" / "check_bucket.py";
}

std::unique_ptr<S3Server> S3Server::start(std::string& reason, bool& failed) {
    failed = false;
    std::string pattern = (temp_root() / "pgward-s3-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) {
        failed = true;
        reason = fmt::format("cannot create a temp dir for the S3 server in {}: {}",
                             temp_root().string(), std::strerror(errno));
        return nullptr;
    }
    const fs::path dir = pattern;
    auto remove_dir = [&] {
        std::error_code ec;
        fs::remove_all(dir, ec);
    };
    RunResult run;
    try {
        // RGW_OWNER_PID: should this process die without stopping the
        // daemons (SIGKILL, a crash), rgw.sh's watcher stops them.
        run =
            run_script({"/usr/bin/env", "bash", rgw_script().string(), "start", dir.string()},
                       {{"RGW_OWNER_PID", std::to_string(::getpid())}}, std::chrono::seconds(180));
    } catch (const std::exception& e) {
        // Timed out: run_captured killed rgw.sh's process group, the
        // daemons with it.
        failed = true;
        reason = fmt::format("tests/s3/rgw.sh start {} failed: {}; its files are kept there",
                             dir.string(), e.what());
        return nullptr;
    }
    if (run.exit_code == 3) {
        std::string line = skip_line(run);
        reason = line.empty() ? "tests/s3/rgw.sh: " + run.err : line;
        remove_dir();
        return nullptr;
    }
    if (run.exit_code != 0) {
        failed = true;
        reason = fmt::format("tests/s3/rgw.sh start {} failed (exit code {}), files kept:\n{}",
                             dir.string(), run.exit_code, run.err);
        return nullptr;
    }
    auto values = read_env_file(dir / "env");
    std::unique_ptr<S3Server> server(new S3Server);
    server->dir_ = dir;
    server->endpoint_ = values["S3_ENDPOINT"];
    server->access_key_id_ = values["AWS_ACCESS_KEY_ID"];
    server->secret_access_key_ = values["AWS_SECRET_ACCESS_KEY"];
    server->region_ = values["AWS_REGION"];
    if (server->endpoint_.empty() || server->access_key_id_.empty() ||
        server->secret_access_key_.empty() || server->region_.empty()) {
        failed = true;
        reason = fmt::format("tests/s3/rgw.sh start {} wrote no complete {}", dir.string(),
                             (dir / "env").string());
        server->stop(true);
        return nullptr;
    }
    return server;
}

S3Server* S3Server::instance() {
    State& s = state();
    std::lock_guard lock(s.mutex);
    if (!s.tried) {
        s.tried = true;
        bool failed = false;
        std::string reason;
        s.server = start(reason, failed);
        if (s.server) {
            s.owner = ::getpid();
            std::vector<pid_t> pids = read_pids(s.server->dir() / "pids");
            int count = 0;
            for (pid_t pid : pids) {
                if (count < kMaxPids) {
                    daemon_pids[count++] = pid;
                }
            }
            daemon_count = count;
            install_signal_handlers();
            std::atexit(stop_at_exit);
        } else if (failed) {
            // Ceph is installed but did not serve: an error, not a skip. The
            // test that asked first fails with the details; the others skip.
            ADD_FAILURE() << "the S3 server did not start: " << reason;
            s.skip_reason = "the S3 server did not start (see the first S3 test's failure)";
        } else {
            s.skip_reason = reason;
        }
    }
    return s.server.get();
}

const std::string& S3Server::skip_reason() {
    return state().skip_reason;
}

void S3Server::stop(bool keep_files) {
    {
        std::lock_guard lock(checker_mutex_);
        checker_.reset();
    }
    std::vector<std::string> argv = {"/usr/bin/env", "bash", rgw_script().string(), "stop",
                                     dir_.string()};
    if (keep_files) {
        argv.push_back("--keep");
    }
    try {
        RunResult run = run_script(argv, {}, std::chrono::seconds(60));
        if (run.exit_code != 0) {
            std::fprintf(stderr,
                         "pgward tests: tests/s3/rgw.sh stop %s failed (exit code %d): %s\n",
                         dir_.c_str(), run.exit_code, run.err.c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pgward tests: tests/s3/rgw.sh stop %s failed: %s\n", dir_.c_str(),
                     e.what());
    }
    if (keep_files) {
        std::fprintf(stderr, "pgward tests: a test failed; the S3 server's files are kept in %s\n",
                     dir_.c_str());
    }
}

Env S3Server::credentials_env() const {
    return {{"AWS_ACCESS_KEY_ID", access_key_id_},
            {"AWS_SECRET_ACCESS_KEY", secret_access_key_},
            {"AWS_REGION", region_}};
}

RunResult S3Server::check_bucket(const std::vector<std::string>& args, const Env& env) const {
    if (args.empty()) {
        throw std::invalid_argument("check_bucket: no subcommand");
    }
    if (env.empty()) {
        std::lock_guard lock(checker_mutex_);
        for (int attempt = 0; attempt < 2; ++attempt) {
            if (!checker_) {
                checker_ = std::make_unique<Checker>(endpoint_, credentials_env());
            }
            if (std::optional<RunResult> run = checker_->run(args)) {
                return *run;
            }
            checker_.reset();  // it died: once more with a new one
        }
        throw std::runtime_error("check_bucket.py serve stopped answering: " + join(args));
    }
    std::vector<std::string> argv = {"/usr/bin/env", "python3", check_bucket_script().string(),
                                     args[0], endpoint_};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    Env full = credentials_env();
    full.insert(full.end(), env.begin(), env.end());
    return run_script(argv, full, std::chrono::seconds(300));
}

std::string S3Server::checked(const std::vector<std::string>& args) const {
    RunResult run = check_bucket(args);
    if (run.exit_code != 0) {
        throw std::runtime_error(fmt::format("check_bucket.py {} failed (exit code {}): {}",
                                             join(args), run.exit_code, run.err));
    }
    return run.out;
}

std::string S3Server::make_bucket(std::string_view name, bool object_lock) {
    std::vector<std::string> args = {"mkbucket", std::string(name)};
    if (object_lock) {
        args.push_back("--lock");
    }
    checked(args);
    return std::string(name);
}

std::vector<std::pair<std::string, uint64_t>> S3Server::list(std::string_view bucket,
                                                             std::string_view prefix) {
    std::istringstream in(checked({"list", std::string(bucket), std::string(prefix)}));
    std::vector<std::pair<std::string, uint64_t>> out;
    for (std::string line; std::getline(in, line);) {
        size_t space = line.rfind(' ');
        if (space == std::string::npos) {
            throw std::runtime_error("check_bucket.py list: unexpected line: " + line);
        }
        out.emplace_back(line.substr(0, space), std::stoull(line.substr(space + 1)));
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> S3Server::uploads(std::string_view bucket,
                                                                   std::string_view prefix) {
    std::istringstream in(checked({"uploads", std::string(bucket), std::string(prefix)}));
    std::vector<std::pair<std::string, std::string>> out;
    for (std::string line; std::getline(in, line);) {
        size_t space = line.rfind(' ');
        if (space == std::string::npos) {
            throw std::runtime_error("check_bucket.py uploads: unexpected line: " + line);
        }
        out.emplace_back(line.substr(0, space), line.substr(space + 1));
    }
    return out;
}

S3Server::Snapshot S3Server::snapshot(std::string_view bucket, std::string_view prefix) {
    std::istringstream in(checked({"snapshot", std::string(bucket), std::string(prefix)}));
    Snapshot out;
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string kind;
        std::string key;
        fields >> kind >> key;
        if (kind == "object") {
            uint64_t size = 0;
            std::string sha;
            fields >> size >> sha;
            out.objects[key] = {size, sha};
        } else if (kind == "upload") {
            std::string id;
            fields >> id;
            out.uploads.emplace_back(key, id);
        } else {
            throw std::runtime_error("check_bucket.py snapshot: unexpected line: " + line);
        }
    }
    return out;
}

std::string S3Server::sha256(std::string_view bucket, std::string_view key) {
    std::string out = checked({"sha256", std::string(bucket), std::string(key)});
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) {
        out.pop_back();
    }
    return out;
}

void S3Server::get(std::string_view bucket, std::string_view key, const fs::path& to) {
    checked({"get", std::string(bucket), std::string(key), to.string()});
}

void S3Server::put(std::string_view bucket, std::string_view key, const fs::path& from) {
    checked({"put", std::string(bucket), std::string(key), from.string()});
}

void S3Server::remove(std::string_view bucket, std::string_view key) {
    checked({"rm", std::string(bucket), std::string(key)});
}

}  // namespace pgward::test
