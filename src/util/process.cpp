#include "util/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/signals.hpp"

extern char** environ;

namespace pgward {
namespace {

std::vector<std::string> child_environment(const Command& command) {
    std::map<std::string, std::string> env;
    for (char** entry = environ; *entry != nullptr; ++entry) {
        std::string_view text(*entry);
        size_t eq = text.find('=');
        if (eq == std::string_view::npos) {
            continue;
        }
        env[std::string(text.substr(0, eq))] = std::string(text.substr(eq + 1));
    }
    for (const std::string& name : command.unset_env) {
        env.erase(name);
    }
    for (const auto& [name, value] : command.set_env) {
        env[name] = value;
    }
    std::vector<std::string> out;
    out.reserve(env.size());
    for (const auto& [name, value] : env) {
        std::string entry = name;
        entry += '=';
        entry += value;
        out.push_back(std::move(entry));
    }
    return out;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (std::string& s : strings) {
        out.push_back(s.data());
    }
    out.push_back(nullptr);
    return out;
}

ExitStatus decode(int status) {
    ExitStatus result;
    if (WIFEXITED(status)) {
        result.code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
    }
    return result;
}

}  // namespace

std::string ExitStatus::describe() const {
    if (signal != 0) {
        return fmt::format("killed by {}", signal_name(signal));
    }
    return fmt::format("exit code {}", code);
}

std::string Command::display() const {
    std::string out;
    for (const std::string& arg : argv) {
        if (!out.empty()) {
            out += ' ';
        }
        bool plain = !arg.empty() && arg.find_first_of(" \t\n'\"\\$`") == std::string::npos;
        if (plain) {
            out += arg;
        } else {
            out += '\'';
            for (char c : arg) {
                if (c == '\'') {
                    out += "'\\''";
                } else {
                    out += c;
                }
            }
            out += '\'';
        }
    }
    return out;
}

Child Child::spawn(const Command& command) {
    if (command.argv.empty()) {
        throw failure("internal error: empty command");
    }
    int out_pipe[2];
    int err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) {
        throw failure(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
    }
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        int saved = errno;
        ::close(out_pipe[0]);
        ::close(out_pipe[1]);
        throw failure(fmt::format("cannot create a pipe: {}", std::strerror(saved)));
    }

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);

    // The child starts with default dispositions and an empty mask, whatever
    // pgward ignores or blocks (SIGPIPE must kill a pg_dump whose reader died).
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigset_t empty;
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    std::vector<std::string> args = command.argv;
    std::vector<std::string> env = child_environment(command);
    std::vector<char*> argv = pointers(args);
    std::vector<char*> envp = pointers(env);

    pid_t pid = -1;
    int rc = ::posix_spawn(&pid, args[0].c_str(), &actions, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    if (rc != 0) {
        ::close(out_pipe[0]);
        ::close(err_pipe[0]);
        throw failure(fmt::format("cannot start {}: {}", args[0], std::strerror(rc)));
    }
    std::string name = std::filesystem::path(args[0]).filename().string();
    return Child(pid, out_pipe[0], err_pipe[0], name);
}

Child::Child(Child&& other) noexcept
    : pid_(other.pid_),
      stdout_fd_(other.stdout_fd_),
      stderr_fd_(other.stderr_fd_),
      name_(std::move(other.name_)) {
    other.pid_ = -1;
    other.stdout_fd_ = -1;
    other.stderr_fd_ = -1;
}

Child::~Child() {
    close_pipes();
    if (pid_ > 0) {
        terminate(std::chrono::milliseconds(2000));
    }
}

void Child::close_pipes() {
    if (stdout_fd_ >= 0) {
        ::close(stdout_fd_);
        stdout_fd_ = -1;
    }
    if (stderr_fd_ >= 0) {
        ::close(stderr_fd_);
        stderr_fd_ = -1;
    }
}

void Child::signal(int sig) {
    if (pid_ > 0) {
        ::kill(pid_, sig);
    }
}

ExitStatus Child::wait() {
    int status = 0;
    for (;;) {
        pid_t rc = ::waitpid(pid_, &status, 0);
        if (rc == pid_) {
            break;
        }
        if (rc < 0 && errno != EINTR) {
            pid_ = -1;
            return ExitStatus{};
        }
    }
    pid_ = -1;
    return decode(status);
}

std::optional<ExitStatus> Child::try_wait() {
    if (pid_ <= 0) {
        return ExitStatus{};
    }
    int status = 0;
    pid_t rc = ::waitpid(pid_, &status, WNOHANG);
    if (rc == pid_) {
        pid_ = -1;
        return decode(status);
    }
    return std::nullopt;
}

ExitStatus Child::terminate(std::chrono::milliseconds grace) {
    if (pid_ <= 0) {
        return ExitStatus{};
    }
    ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + grace;
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        pid_t rc = ::waitpid(pid_, &status, WNOHANG);
        if (rc == pid_) {
            pid_ = -1;
            return decode(status);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    return wait();
}

ExitStatus pump(Child& child, const PumpHandlers& handlers) {
    std::string err_partial;
    std::array<char, 1 << 16> buffer{};
    int fds[2] = {child.stdout_fd(), child.stderr_fd()};
    bool open[2] = {true, true};
    auto flush_stderr_line = [&](std::string_view line) {
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (handlers.on_stderr_line) {
            handlers.on_stderr_line(line);
        }
    };
    while (open[0] || open[1]) {
        pollfd polls[3];
        nfds_t count = 0;
        int index_of[3] = {-1, -1, -1};
        for (int i = 0; i < 2; ++i) {
            if (open[i]) {
                polls[count] = pollfd{fds[i], POLLIN, 0};
                index_of[count++] = i;
            }
        }
        if (interrupt_fd() >= 0) {
            polls[count] = pollfd{interrupt_fd(), POLLIN, 0};
            index_of[count++] = 2;
        }
        int ready = ::poll(polls, count, 1000);
        if (ready < 0 && errno != EINTR) {
            throw failure(fmt::format("poll failed: {}", std::strerror(errno)));
        }
        if (int sig = pending_interrupt(); sig != 0 && handlers.stop_on_interrupt) {
            throw failure(fmt::format("interrupted by {} while {} was running", signal_name(sig),
                                      child.name()));
        }
        for (nfds_t p = 0; p < count && ready > 0; ++p) {
            int i = index_of[p];
            if (i == 2 || (polls[p].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
                continue;
            }
            ssize_t n = ::read(fds[i], buffer.data(), buffer.size());
            if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
                continue;
            }
            if (n <= 0) {
                open[i] = false;
                continue;
            }
            if (i == 0) {
                if (handlers.on_stdout) {
                    handlers.on_stdout(buffer.data(), static_cast<size_t>(n));
                }
            } else {
                err_partial.append(buffer.data(), static_cast<size_t>(n));
                size_t start = 0;
                for (size_t nl; (nl = err_partial.find('\n', start)) != std::string::npos;
                     start = nl + 1) {
                    flush_stderr_line(std::string_view(err_partial).substr(start, nl - start));
                }
                err_partial.erase(0, start);
            }
        }
        if (handlers.on_tick) {
            handlers.on_tick();
        }
    }
    if (!err_partial.empty()) {
        flush_stderr_line(err_partial);
    }
    return child.wait();
}

CapturedRun run_captured(const Command& command, std::chrono::seconds timeout) {
    Child child = Child::spawn(command);
    CapturedRun result;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    PumpHandlers handlers;
    handlers.on_stdout = [&](const char* data, size_t size) { result.out.append(data, size); };
    handlers.on_stderr_line = [&](std::string_view line) {
        result.err.append(line);
        result.err += '\n';
    };
    handlers.on_tick = [&] {
        if (std::chrono::steady_clock::now() > deadline) {
            throw failure(
                fmt::format("{} did not finish within {} s", command.argv[0], timeout.count()));
        }
    };
    result.status = pump(child, handlers);
    return result;
}

}  // namespace pgward
