#include "domain/watchdog.hpp"

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/signals.hpp"

namespace pgward {

Watchdog::Watchdog(WatchdogLimits limits, Words words)
    : limits_(limits), words_(std::move(words)), started_(Clock::now()), last_progress_(started_) {}

double Watchdog::elapsed_seconds() const {
    return std::chrono::duration<double>(Clock::now() - started_).count();
}

void Watchdog::check() const {
    if (int sig = pending_interrupt(); sig != 0) {
        throw failure(
            fmt::format("interrupted by {} while {} was running", signal_name(sig), words_.child));
    }
    auto now = Clock::now();
    if (limits_.timeout && now - started_ > *limits_.timeout) {
        throw failure(fmt::format("{} timed out after {} s; {} was killed", words_.operation,
                                  limits_.timeout->count(), words_.child),
                      "raise POSTGRES_BACKUP_TIMEOUT_SECONDS (--timeout) if the database needs "
                      "longer");
    }
    if (limits_.stall && now - last_progress_ > *limits_.stall) {
        throw failure(fmt::format("{} stalled: {} for {} s; it was killed", words_.stalled,
                                  words_.no_progress, limits_.stall->count()),
                      "look for locks held on the database (pg_locks) or a hung server; "
                      "POSTGRES_BACKUP_STALL_SECONDS (--stall-timeout) sets the limit");
    }
}

}  // namespace pgward
