#include "domain/schedule.hpp"

#include <time.h>

#include <algorithm>

namespace pgward {

Schedule::Schedule(Duration interval, Duration now, bool run_at_start, Duration retry_initial,
                   Duration retry_max)
    : interval_(interval),
      anchor_(run_at_start ? now : now + interval),
      next_(anchor_),
      retry_initial_(retry_initial),
      retry_max_(retry_max),
      backoff_(retry_initial) {}

Schedule::Duration Schedule::next_slot_after(Duration t) const {
    if (t < anchor_) {
        return anchor_;
    }
    auto slots = (t - anchor_) / interval_ + 1;
    return anchor_ + interval_ * slots;
}

bool Schedule::on_success(Duration started, Duration now) {
    backoff_ = retry_initial_;
    next_ = next_slot_after(started);
    if (next_ <= now) {
        next_ = now;
        return true;
    }
    return false;
}

bool Schedule::on_failure(Duration started, Duration now) {
    Duration slot = next_slot_after(started);
    next_ = std::min(now + backoff_, slot);
    backoff_ = std::min(backoff_ * 2, retry_max_);
    if (next_ <= now) {
        next_ = now;
        return true;
    }
    return false;
}

Schedule::Duration boot_clock_now() {
    timespec ts{};
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return std::chrono::duration_cast<Schedule::Duration>(std::chrono::seconds(ts.tv_sec) +
                                                          std::chrono::nanoseconds(ts.tv_nsec));
}

}  // namespace pgward
