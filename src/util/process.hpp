#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgward {

struct ExitStatus {
    int code = -1;   // the exit code, when the child exited
    int signal = 0;  // the signal that killed it, otherwise

    bool ok() const { return signal == 0 && code == 0; }
    std::string describe() const;  // "exit code 1", "killed by SIGKILL"
};

// A child to start: argv only (argv[0] is the executable's path, never a
// shell), with its own environment: pgward's, minus `unset_env`, plus
// `set_env`. Secrets such as PGPASSWORD go to the child this way and never
// into pgward's own environment or any argv.
struct Command {
    std::vector<std::string> argv;
    std::vector<std::pair<std::string, std::string>> set_env;
    std::vector<std::string> unset_env;
    // The child's stdin: this descriptor (a pipe's read end, O_CLOEXEC in
    // pgward), or /dev/null when -1.
    int stdin_fd = -1;

    // argv joined for logs; values of `--password=...`-like arguments never occur.
    std::string display() const;
};

// Text that keeps only its first and last `side` bytes: what is cut from the
// middle is counted and shown as "[... N bytes elided ...]". A child's stderr
// line without a newline, or all the error text a tool prints, is held this way.
class HeadTailText {
  public:
    static constexpr size_t kDefaultSide = size_t{64} << 10;

    explicit HeadTailText(size_t side = kDefaultSide) : side_(side) {}

    void append(std::string_view text);
    // The text, with the marker in place of what was elided.
    std::string str() const;
    bool empty() const { return head_.empty(); }
    uint64_t elided() const;
    void clear();

  private:
    size_t side_;
    std::string head_;
    std::string tail_;  // trimmed to `side_` lazily, in steps of `side_`
    uint64_t dropped_ = 0;
};

// A started child with stdin on /dev/null (or Command::stdin_fd) and stdout and stderr on pipes,
// the leader of a process group of its own: signals go to the group, so what a `sh -c` started goes
// with it. Destroyed while running, it is terminated and reaped: no zombie, no orphan.
class Child {
  public:
    static Child spawn(const Command& command);

    Child(Child&& other) noexcept;
    Child& operator=(Child&&) = delete;
    Child(const Child&) = delete;
    ~Child();

    pid_t pid() const { return pid_; }
    int stdout_fd() const { return stdout_fd_; }
    int stderr_fd() const { return stderr_fd_; }
    const std::string& name() const { return name_; }

    // Signals the child's process group.
    void signal(int sig);
    // Reaps the child; a failed waitpid() throws an Error with its errno.
    ExitStatus wait();
    // Reaps the child if it has exited; nullopt while it runs.
    std::optional<ExitStatus> try_wait();
    // SIGTERM to the group, then SIGKILL to the group when the child has not
    // exited within `grace` (and to what of the group outlived it).
    ExitStatus terminate(std::chrono::milliseconds grace);

  private:
    Child(pid_t pid, int out, int err, std::string name)
        : pid_(pid), stdout_fd_(out), stderr_fd_(err), name_(std::move(name)) {}
    void close_pipes();
    // waitpid(), retried on EINTR: the status once reaped, nullopt while it
    // runs (with WNOHANG); throws on any other error.
    std::optional<ExitStatus> reap(int flags);

    pid_t pid_ = -1;
    int stdout_fd_ = -1;
    int stderr_fd_ = -1;
    std::string name_;
};

struct PumpHandlers {
    std::function<void(const char* data, size_t size)> on_stdout;
    std::function<void(std::string_view line)> on_stderr_line;
    // Called at least every tick_every and after each read; may throw to
    // abort (the child is then terminated by Child's destructor).
    std::function<void()> on_tick;
    std::chrono::milliseconds tick_every{1000};
    // A pending SIGTERM/SIGINT aborts the pump (off for a server we only
    // drain: it must go on being drained while it shuts down).
    bool stop_on_interrupt = true;
};

// Drains stdout and stderr together (a child never blocks on a full pipe)
// until both close, then reaps the child, still calling on_tick while it
// waits (a child that closed its pipes and runs on is bounded by the same
// watchdog). A stderr line is cut to its first and last 64 KiB (HeadTailText).
// A pending SIGTERM/SIGINT throws an error naming the signal.
ExitStatus pump(Child& child, const PumpHandlers& handlers);

struct CapturedRun {
    ExitStatus status;
    std::string out;
    std::string err;
};

// Runs a short command to completion, capturing its output; a command that
// has not finished within `timeout` is killed and reported.
CapturedRun run_captured(const Command& command,
                         std::chrono::seconds timeout = std::chrono::seconds(120));

}  // namespace pgward
