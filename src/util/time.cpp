#include "util/time.hpp"

#include <fmt/format.h>

#include <cstdio>
#include <ctime>

namespace pgward {
namespace {

// Civil UTC fields by calendar arithmetic: no gmtime_r/timegm, whose time
// zone lock serialised a `list` of thousands of backups.
std::tm to_utc_tm(TimePoint t) {
    using namespace std::chrono;
    auto day_point = floor<days>(t);
    year_month_day date{day_point};
    hh_mm_ss<seconds> time{t - day_point};
    std::tm tm{};
    tm.tm_year = static_cast<int>(date.year()) - 1900;
    tm.tm_mon = static_cast<int>(static_cast<unsigned>(date.month())) - 1;
    tm.tm_mday = static_cast<int>(static_cast<unsigned>(date.day()));
    tm.tm_hour = static_cast<int>(time.hours().count());
    tm.tm_min = static_cast<int>(time.minutes().count());
    tm.tm_sec = static_cast<int>(time.seconds().count());
    return tm;
}

// Strict: rejects what timegm would normalise (month 13, 31 February, second
// 60), so a parsed time always formats back to its text.
std::optional<TimePoint> from_fields(int year, int month, int day, int hour, int minute,
                                     int second) {
    using namespace std::chrono;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59) {
        return std::nullopt;
    }
    year_month_day date{std::chrono::year{year}, std::chrono::month{static_cast<unsigned>(month)},
                        std::chrono::day{static_cast<unsigned>(day)}};
    if (!date.ok()) {
        return std::nullopt;
    }
    return TimePoint{sys_days{date}.time_since_epoch() + hours{hour} + minutes{minute} +
                     seconds{second}};
}

bool all_digits(std::string_view text) {
    for (char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

int to_int(std::string_view digits) {
    int value = 0;
    for (char c : digits) {
        value = value * 10 + (c - '0');
    }
    return value;
}

}  // namespace

TimePoint now_seconds() {
    return std::chrono::time_point_cast<std::chrono::seconds>(Clock::now());
}

std::string format_compact_utc(TimePoint t) {
    std::tm tm = to_utc_tm(t);
    return fmt::format("{:04}{:02}{:02}T{:02}{:02}{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::optional<TimePoint> parse_compact_utc(std::string_view text) {
    // YYYYMMDDTHHMMSSZ
    if (text.size() != 16 || text[8] != 'T' || text[15] != 'Z' || !all_digits(text.substr(0, 8)) ||
        !all_digits(text.substr(9, 6))) {
        return std::nullopt;
    }
    return from_fields(to_int(text.substr(0, 4)), to_int(text.substr(4, 2)),
                       to_int(text.substr(6, 2)), to_int(text.substr(9, 2)),
                       to_int(text.substr(11, 2)), to_int(text.substr(13, 2)));
}

std::string format_iso_utc(TimePoint t) {
    std::tm tm = to_utc_tm(t);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                       tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string format_iso_utc_millis(Clock::time_point t) {
    auto seconds = std::chrono::time_point_cast<std::chrono::seconds>(t);
    auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(t - seconds).count();
    std::string text = format_iso_utc(seconds);
    text.pop_back();
    return fmt::format("{}.{:03}Z", text, millis);
}

std::optional<TimePoint> parse_iso_utc(std::string_view text) {
    // YYYY-MM-DDTHH:MM:SSZ
    if (text.size() != 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' ||
        text[13] != ':' || text[16] != ':' || text[19] != 'Z') {
        return std::nullopt;
    }
    for (size_t i : {0, 5, 8, 11, 14, 17}) {
        size_t len = i == 0 ? 4 : 2;
        if (!all_digits(text.substr(i, len))) {
            return std::nullopt;
        }
    }
    return from_fields(to_int(text.substr(0, 4)), to_int(text.substr(5, 2)),
                       to_int(text.substr(8, 2)), to_int(text.substr(11, 2)),
                       to_int(text.substr(14, 2)), to_int(text.substr(17, 2)));
}

std::string format_age(std::chrono::seconds age) {
    long long s = age.count();
    if (s < 0) {
        return "in the future";
    }
    if (s < 60) {
        return fmt::format("{}s", s);
    }
    if (s < 3600) {
        return fmt::format("{}m {}s", s / 60, s % 60);
    }
    if (s < 86400) {
        return fmt::format("{}h {}m", s / 3600, (s % 3600) / 60);
    }
    return fmt::format("{}d {}h", s / 86400, (s % 86400) / 3600);
}

}  // namespace pgward
