#include <gtest/gtest.h>

#include "domain/schedule.hpp"

namespace pgward {
namespace {

using Ms = std::chrono::milliseconds;
using std::chrono::seconds;

Schedule make(bool on_start = true) {
    return Schedule(seconds(100), seconds(1000), on_start, seconds(10), seconds(40));
}

TEST(Schedule, FirstRunAtStartOrAfterOneInterval) {
    EXPECT_EQ(make(true).next_run(), seconds(1000));
    EXPECT_EQ(make(false).next_run(), seconds(1100));
}

TEST(Schedule, StartToStartWithoutDrift) {
    Schedule s = make();
    // Each backup takes 30 s; the next still starts on the 100 s grid.
    for (int k = 0; k < 5; ++k) {
        auto start = seconds(1000 + 100 * k);
        EXPECT_EQ(s.next_run(), start);
        EXPECT_FALSE(s.on_success(start, start + seconds(30)));
    }
    EXPECT_EQ(s.next_run(), seconds(1500));
}

TEST(Schedule, OverrunDelaysTheNextRunOnceWithoutStacking) {
    Schedule s = make();
    // A backup of 250 s passes two slots (1100, 1200): one delayed run, now.
    EXPECT_TRUE(s.on_success(seconds(1000), seconds(1250)));
    EXPECT_EQ(s.next_run(), seconds(1250));
    // After it, back on the grid: the slot after its start.
    EXPECT_FALSE(s.on_success(seconds(1250), seconds(1260)));
    EXPECT_EQ(s.next_run(), seconds(1300));
}

TEST(Schedule, SuspendLeadsToOneRunNotABurst) {
    Schedule s = make();
    s.on_success(seconds(1000), seconds(1010));
    EXPECT_EQ(s.next_run(), seconds(1100));
    // The host slept until 5000: the loop wakes and runs once...
    EXPECT_FALSE(s.on_success(seconds(5000), seconds(5010)));
    // ...and the next run is the next slot, not the 39 missed ones.
    EXPECT_EQ(s.next_run(), seconds(5100));
}

TEST(Schedule, FailuresBackOffDoublingButNeverPastTheNextSlot) {
    Schedule s = make();
    s.on_failure(seconds(1000), seconds(1001));
    EXPECT_EQ(s.next_run(), seconds(1011));  // +10
    s.on_failure(seconds(1011), seconds(1012));
    EXPECT_EQ(s.next_run(), seconds(1032));  // +20
    s.on_failure(seconds(1032), seconds(1033));
    EXPECT_EQ(s.next_run(), seconds(1073));  // +40 (the cap)
    s.on_failure(seconds(1073), seconds(1074));
    EXPECT_EQ(s.next_run(), seconds(1100));  // +40 would pass the 1100 slot
    // A success resets the backoff.
    s.on_success(seconds(1100), seconds(1105));
    s.on_failure(seconds(1200), seconds(1201));
    EXPECT_EQ(s.next_run(), seconds(1211));
}

TEST(Schedule, BootClockMoves) {
    auto a = boot_clock_now();
    auto b = boot_clock_now();
    EXPECT_LE(a, b);
    EXPECT_GT(a.count(), 0);
}

}  // namespace
}  // namespace pgward
