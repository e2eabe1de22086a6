#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace pgward {

// The limits of an operation that runs pg_dump or pg_restore
// (POSTGRES_BACKUP_TIMEOUT_SECONDS, POSTGRES_BACKUP_STALL_SECONDS): a hard
// limit on the whole operation and a limit on how long it may go without
// progress.
struct WatchdogLimits {
    std::optional<std::chrono::seconds> timeout;
    std::optional<std::chrono::seconds> stall;
};

// One operation's clock against its limits, and SIGTERM/SIGINT. check()
// throws the one-line error when a limit is passed or a signal is pending;
// every wait of the operation calls it (the pump's tick, a full queue, a
// count still running), so nothing it waits on can outlast its limits.
class Watchdog {
  public:
    using Clock = std::chrono::steady_clock;

    // The words of its messages: `operation` (backup of "app"), the `child`
    // it kills (pg_dump), `stalled` (pg_dump of "app") and what no progress
    // means for it (no bytes), giving e.g.
    //   backup of "app" timed out after 60 s; pg_dump was killed
    //   pg_dump of "app" stalled: no bytes for 900 s; it was killed
    struct Words {
        std::string operation;
        std::string child;
        std::string stalled;
        std::string no_progress;
    };
    Watchdog(WatchdogLimits limits, Words words);

    void progress() { last_progress_ = Clock::now(); }
    void check() const;

    double elapsed_seconds() const;
    const WatchdogLimits& limits() const { return limits_; }

  private:
    WatchdogLimits limits_;
    Words words_;
    Clock::time_point started_;
    Clock::time_point last_progress_;
};

}  // namespace pgward
