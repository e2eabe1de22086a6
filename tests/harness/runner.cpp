#include "harness/runner.hpp"

#include "pg/environment.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace pgward::test {
namespace {

std::vector<std::string> variables_to_clear() {
    std::vector<std::string> names;
    for (char** e = environ; *e != nullptr; ++e) {
        std::string_view entry(*e);
        std::string name(entry.substr(0, entry.find('=')));
        if (name.rfind("PG", 0) == 0 || name.rfind("POSTGRES_", 0) == 0 ||
            name.rfind("PGWARD_", 0) == 0 || name == "DRILL_DB") {
            names.push_back(name);
        }
    }
    return names;
}

int to_exit_code(const ExitStatus& status) {
    return status.signal != 0 ? 128 + status.signal : status.code;
}

}  // namespace

std::string pgward_binary() {
    // PGWARD_TEST_BINARY runs the suite against another build, e.g. an older
    // commit's, to see a new test fail before its fix.
    static const char* const other = std::getenv("PGWARD_TEST_BINARY");
    return other != nullptr && *other != '\0' ? other : PGWARD_BINARY;
}

Command pgward_command(const std::vector<std::string>& args, const Env& env) {
    Command command;
    command.argv.push_back(pgward_binary());
    command.argv.insert(command.argv.end(), args.begin(), args.end());
    command.unset_env = variables_to_clear();
    // The operator's libpq variables of the shell the tests run in (the
    // hostile run sets them, tests/hostile/run.sh): every pgward gets them,
    // below the test's own settings.
    command.set_env = pg::operator_variables();
    command.set_env.insert(command.set_env.end(), env.begin(), env.end());
    return command;
}

RunResult run_pgward(const std::vector<std::string>& args, const Env& env,
                     const std::optional<std::string>& as_user) {
    Command command = pgward_command(args, env);
    if (as_user) {
        passwd* pw = ::getpwnam(as_user->c_str());
        if (pw == nullptr) {
            throw std::runtime_error("no such user: " + *as_user);
        }
        std::vector<std::string> wrapped = {
            "/usr/bin/setpriv", "--reuid=" + std::to_string(pw->pw_uid),
            "--regid=" + std::to_string(pw->pw_gid), "--clear-groups", "--"};
        wrapped.insert(wrapped.end(), command.argv.begin(), command.argv.end());
        command.argv = wrapped;
    }
    CapturedRun run = run_captured(command, std::chrono::seconds(300));
    return RunResult{to_exit_code(run.status), run.out, run.err};
}

struct BackgroundPgward::State {
    std::mutex mutex;
    bool done = false;
    RunResult result;
};

BackgroundPgward::BackgroundPgward(const std::vector<std::string>& args, const Env& env)
    : state_(std::make_shared<State>()) {
    Child child = Child::spawn(pgward_command(args, env));
    pid_ = child.pid();
    thread_ = std::thread([state = state_, c = std::move(child)]() mutable {
        RunResult result;
        PumpHandlers handlers;
        handlers.on_stdout = [&](const char* d, size_t n) { result.out.append(d, n); };
        handlers.on_stderr_line = [&](std::string_view line) {
            result.err.append(line);
            result.err += '\n';
        };
        try {
            result.exit_code = to_exit_code(pump(c, handlers));
        } catch (const std::exception& e) {
            result.err += e.what();
        }
        std::lock_guard lock(state->mutex);
        state->result = std::move(result);
        state->done = true;
    });
}

BackgroundPgward::~BackgroundPgward() {
    if (thread_.joinable()) {
        {
            std::lock_guard lock(state_->mutex);
            if (!state_->done) {
                ::kill(pid_, SIGKILL);
            }
        }
        thread_.join();
    }
}

std::optional<RunResult> BackgroundPgward::wait(std::chrono::milliseconds timeout) {
    bool done = eventually(
        [&] {
            std::lock_guard lock(state_->mutex);
            return state_->done;
        },
        timeout);
    if (!done) {
        return std::nullopt;
    }
    std::lock_guard lock(state_->mutex);
    return state_->result;
}

std::vector<ProcessEntry> list_processes() {
    std::vector<ProcessEntry> out;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
        std::string name = entry.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) {
            continue;
        }
        std::ifstream stat(entry.path() / "stat");
        std::string line;
        std::getline(stat, line);
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        size_t open = line.find('(');
        size_t close = line.rfind(')');
        if (open == std::string::npos || close == std::string::npos || close + 2 > line.size()) {
            continue;
        }
        std::istringstream rest(line.substr(close + 2));
        char state = 0;
        pid_t parent = 0;
        if (rest >> state >> parent) {
            out.push_back({std::stoi(name), parent, line.substr(open + 1, close - open - 1)});
        }
    }
    return out;
}

std::vector<pid_t> children_named(pid_t parent, const std::string& comm) {
    std::vector<pid_t> out;
    for (const ProcessEntry& process : list_processes()) {
        if (process.parent == parent && process.comm == comm) {
            out.push_back(process.pid);
        }
    }
    return out;
}

std::vector<std::string> list_dir(const std::filesystem::path& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::filesystem::path make_temp_dir(const std::string& tag) {
    std::string pattern = "/tmp/pgward-it-" + tag + "-XXXXXX";
    std::vector<char> buffer(pattern.begin(), pattern.end());
    buffer.push_back('\0');
    char* made = ::mkdtemp(buffer.data());
    if (made == nullptr) {
        throw std::runtime_error("mkdtemp failed");
    }
    ::chmod(made, 0755);
    return made;
}

std::optional<std::filesystem::path> find_file(const std::filesystem::path& dir,
                                               const std::string& suffix, uintmax_t min_size) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        std::string name = entry.path().filename().string();
        if (name.size() >= suffix.size() &&
            name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            std::error_code size_ec;
            auto size = std::filesystem::file_size(entry.path(), size_ec);
            if (!size_ec && size >= min_size) {
                return entry.path();
            }
        }
    }
    return std::nullopt;
}

int free_loopback_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    return ntohs(addr.sin_port);
}

std::string slurp(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

void write_text(const std::filesystem::path& path, const std::string& text, int mode) {
    // Tests replace tools with fakes; refusing to follow a symlink keeps a
    // fake from ever landing on the real tool a link points at.
    if (!path.is_absolute()) {
        throw std::runtime_error("write_text: relative path " + path.string());
    }
    std::error_code ec;
    if (std::filesystem::is_symlink(path, ec))
        std::filesystem::remove(path);
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        throw std::runtime_error("write_text: cannot open " + path.string());
    size_t done = 0;
    while (done < text.size()) {
        ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n <= 0) {
            ::close(fd);
            throw std::runtime_error("write_text: cannot write " + path.string());
        }
        done += static_cast<size_t>(n);
    }
    ::fchmod(fd, static_cast<mode_t>(mode));
    ::close(fd);
}

}  // namespace pgward::test
