#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace pgward {

using Clock = std::chrono::system_clock;
using TimePoint = std::chrono::time_point<Clock, std::chrono::seconds>;

TimePoint now_seconds();

// 20260224T031500Z: the form used in backup and report file names.
std::string format_compact_utc(TimePoint t);
std::optional<TimePoint> parse_compact_utc(std::string_view text);

// 2026-02-24T03:15:00Z: the form used in manifests, reports and logs.
std::string format_iso_utc(TimePoint t);
std::string format_iso_utc_millis(Clock::time_point t);
std::optional<TimePoint> parse_iso_utc(std::string_view text);

// "3d 4h", "12m 5s": a short human age.
std::string format_age(std::chrono::seconds age);

}  // namespace pgward
