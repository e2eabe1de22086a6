#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "util/process.hpp"

namespace pgward::test {

using Env = std::vector<std::pair<std::string, std::string>>;

struct RunResult {
    int exit_code = -1;  // 128 + signal when killed
    std::string out;
    std::string err;
};

// Runs the real pgward binary with a clean environment: every POSTGRES_*,
// PG* and PGWARD_* variable of the test process is removed, then the PG*
// variables the test binary started with (the hostile run's) set, then `env`.
// With `as_user`, it runs as that user (tests that need permissions to bite
// while running as root).
RunResult run_pgward(const std::vector<std::string>& args, const Env& env = {},
                     const std::optional<std::string>& as_user = std::nullopt);

// pgward started in the background, its output collected by a thread.
class BackgroundPgward {
  public:
    BackgroundPgward(const std::vector<std::string>& args, const Env& env);
    ~BackgroundPgward();

    pid_t pid() const { return pid_; }
    // Waits for exit; nullopt if it is still running after `timeout`.
    std::optional<RunResult> wait(std::chrono::milliseconds timeout);

  private:
    struct State;
    std::shared_ptr<State> state_;
    pid_t pid_ = -1;
    std::thread thread_;
};

Command pgward_command(const std::vector<std::string>& args, const Env& env);
// The pgward binary the suite runs.
std::string pgward_binary();

// A process as /proc/PID/stat tells it.
struct ProcessEntry {
    pid_t pid = 0;
    pid_t parent = 0;
    std::string comm;
};
// Every process of the machine (those that end while it reads are left out).
std::vector<ProcessEntry> list_processes();

// The children of a process named `comm` (e.g. the pg_dump under a pgward).
std::vector<pid_t> children_named(pid_t parent, const std::string& comm);

// Waits until `predicate` holds, polling; false on timeout.
template <typename Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) {
            return true;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return predicate();
}

// File names in dir, sorted.
std::vector<std::string> list_dir(const std::filesystem::path& dir);
// A fresh empty directory under the test temp root.
std::filesystem::path make_temp_dir(const std::string& tag);
// The first file in dir whose name ends with `suffix` and is at least `min_size` bytes.
std::optional<std::filesystem::path> find_file(const std::filesystem::path& dir,
                                               const std::string& suffix, uintmax_t min_size = 0);
std::string slurp(const std::filesystem::path& path);
inline bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}
int free_loopback_port();
void write_text(const std::filesystem::path& path, const std::string& text, int mode = 0644);

}  // namespace pgward::test
