#pragma once

#include <chrono>

namespace pgward {

// When the service runs its next backup. Times are on a clock that keeps
// counting through a suspend and ignores wall-clock jumps (CLOCK_BOOTTIME).
// Runs stay on a fixed grid (start + k × interval, start to start, so no
// drift); a run that overran its slot or a wake-up from suspend leads to one
// immediate run, never a burst; a failure is retried with doubling backoff,
// never past the next slot.
class Schedule {
  public:
    using Duration = std::chrono::milliseconds;

    Schedule(Duration interval, Duration now, bool run_at_start, Duration retry_initial,
             Duration retry_max);

    Duration next_run() const { return next_; }
    Duration interval() const { return interval_; }

    // Record an attempt that started at `started` and ended at `now`.
    // Returns true when the next slot already passed during the run (the run
    // overran): the next backup then starts at once, delayed.
    bool on_success(Duration started, Duration now);
    bool on_failure(Duration started, Duration now);

    Duration current_backoff() const { return backoff_; }

  private:
    Duration next_slot_after(Duration t) const;

    Duration interval_;
    Duration anchor_;
    Duration next_;
    Duration retry_initial_;
    Duration retry_max_;
    Duration backoff_;
};

// Milliseconds on CLOCK_BOOTTIME.
Schedule::Duration boot_clock_now();

}  // namespace pgward
