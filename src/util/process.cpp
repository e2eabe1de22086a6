#include "util/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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

// The length of `text` without a UTF-8 sequence cut short at its end.
size_t whole_utf8_prefix(std::string_view text) {
    size_t n = text.size();
    for (size_t back = 1; back <= 4 && back <= n; ++back) {
        auto c = static_cast<unsigned char>(text[n - back]);
        if ((c & 0xC0) == 0x80) {
            continue;  // a continuation byte: look further back for its lead
        }
        size_t needed = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
        return needed > back ? n - back : n;
    }
    return n;
}

// How many continuation bytes (of a character cut at its start) `text` begins with.
size_t leading_continuation_bytes(std::string_view text) {
    size_t n = 0;
    while (n < text.size() && n < 3 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) {
        ++n;
    }
    return n;
}

}  // namespace

void HeadTailText::append(std::string_view text) {
    if (head_.size() < side_) {
        size_t take = std::min(side_ - head_.size(), text.size());
        head_.append(text.substr(0, take));
        text.remove_prefix(take);
    }
    tail_.append(text);
    if (tail_.size() >= 2 * side_ && tail_.size() > side_) {
        size_t cut = tail_.size() - side_;
        dropped_ += cut;
        tail_.erase(0, cut);
    }
}

uint64_t HeadTailText::elided() const {
    return dropped_ + (tail_.size() > side_ ? tail_.size() - side_ : 0);
}

std::string HeadTailText::str() const {
    uint64_t cut = elided();
    if (cut == 0) {
        return head_ + tail_;
    }
    // Whole characters on either side of the marker.
    std::string_view head(head_);
    std::string_view tail = std::string_view(tail_).substr(tail_.size() - side_);
    size_t head_keep = whole_utf8_prefix(head);
    size_t tail_skip = leading_continuation_bytes(tail);
    cut += (head.size() - head_keep) + tail_skip;
    std::string out(head.substr(0, head_keep));
    out += fmt::format("[... {} bytes elided ...]", cut);
    out += tail.substr(tail_skip);
    return out;
}

void HeadTailText::clear() {
    head_.clear();
    tail_.clear();
    dropped_ = 0;
}

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
    if (command.stdin_fd >= 0) {
        posix_spawn_file_actions_adddup2(&actions, command.stdin_fd, 0);
    } else {
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    }
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
    // A process group of its own (setpgid(0, 0) in the child, before exec):
    // terminate() reaches whatever the child starts, and a terminal's Ctrl-C
    // reaches pgward alone, which then stops its children itself.
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);

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
        try {
            terminate(std::chrono::milliseconds(2000));
        } catch (const Error&) {
            // waitpid failed: the child is not ours to reap any more.
        }
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
        ::kill(-pid_, sig);
    }
}

std::optional<ExitStatus> Child::reap(int flags) {
    for (;;) {
        int status = 0;
        pid_t rc = ::waitpid(pid_, &status, flags);
        if (rc == pid_) {
            pid_ = -1;
            return decode(status);
        }
        if (rc == 0) {
            return std::nullopt;
        }
        if (errno == EINTR) {
            continue;
        }
        int err = errno;
        pid_t pid = pid_;
        pid_ = -1;
        throw failure(
            fmt::format("cannot wait for {} (pid {}): {}", name_, pid, std::strerror(err)),
            "its exit status is unknown; treat its work as failed");
    }
}

ExitStatus Child::wait() {
    if (pid_ <= 0) {
        return ExitStatus{};
    }
    return *reap(0);
}

std::optional<ExitStatus> Child::try_wait() {
    if (pid_ <= 0) {
        return ExitStatus{};
    }
    return reap(WNOHANG);
}

ExitStatus Child::terminate(std::chrono::milliseconds grace) {
    if (pid_ <= 0) {
        return ExitStatus{};
    }
    const pid_t group = pid_;
    ::kill(-group, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + grace;
    std::optional<ExitStatus> status;
    while (!(status = reap(WNOHANG)) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // The child if it is still there, and whatever of its group outlived it
    // (a `sh -c`'s background jobs): the group lives on while any member does.
    ::kill(-group, SIGKILL);
    if (!status) {
        status = reap(0);
    }
    return *status;
}

ExitStatus pump(Child& child, const PumpHandlers& handlers) {
    // The stderr line being read; only a line longer than 128 KiB is cut.
    HeadTailText err_line;
    bool err_pending = false;
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
    auto take_stderr = [&](std::string_view chunk) {
        for (size_t nl; (nl = chunk.find('\n')) != std::string_view::npos;
             chunk.remove_prefix(nl + 1)) {
            if (!err_pending) {
                flush_stderr_line(chunk.substr(0, nl));
                continue;
            }
            err_line.append(chunk.substr(0, nl));
            flush_stderr_line(err_line.str());
            err_line.clear();
            err_pending = false;
        }
        if (!chunk.empty()) {
            err_line.append(chunk);
            err_pending = true;
        }
    };
    auto check_interrupt = [&] {
        if (int sig = pending_interrupt(); sig != 0 && handlers.stop_on_interrupt) {
            throw failure(fmt::format("interrupted by {} while {} was running", signal_name(sig),
                                      child.name()));
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
        int ready = ::poll(polls, count, static_cast<int>(handlers.tick_every.count()));
        if (ready < 0 && errno != EINTR) {
            throw failure(fmt::format("poll failed: {}", std::strerror(errno)));
        }
        check_interrupt();
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
                take_stderr(std::string_view(buffer.data(), static_cast<size_t>(n)));
            }
        }
        if (handlers.on_tick) {
            handlers.on_tick();
        }
    }
    if (err_pending) {
        flush_stderr_line(err_line.str());
    }
    // Both pipes are closed, which a child can do and run on: it is polled,
    // with the tick (its watchdog) and interrupts still heard, never waited
    // for blindly.
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
        if (std::optional<ExitStatus> status = child.try_wait()) {
            return *status;
        }
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::milliseconds(100));
        check_interrupt();
        if (handlers.on_tick) {
            handlers.on_tick();
        }
    }
}

CapturedRun run_captured(const Command& command, std::chrono::seconds timeout) {
    Child child = Child::spawn(command);
    CapturedRun result;
    HeadTailText err;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    PumpHandlers handlers;
    handlers.on_stdout = [&](const char* data, size_t size) { result.out.append(data, size); };
    handlers.on_stderr_line = [&](std::string_view line) {
        err.append(line);
        err.append("\n");
    };
    handlers.on_tick = [&] {
        if (std::chrono::steady_clock::now() > deadline) {
            throw failure(
                fmt::format("{} did not finish within {} s", command.argv[0], timeout.count()));
        }
    };
    result.status = pump(child, handlers);
    result.err = err.str();
    return result;
}

}  // namespace pgward
