#include "domain/retention.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace pgward {

std::vector<RetentionDecision> plan_retention(std::vector<BackupId> backups, size_t keep,
                                              TimePoint now) {
    std::sort(backups.begin(), backups.end(), [now](const BackupId& a, const BackupId& b) {
        bool a_future = is_future_dated(a, now);
        bool b_future = is_future_dated(b, now);
        if (a_future != b_future) {
            return b_future;  // dated after the clock: ranked as the oldest
        }
        if (a.started != b.started) {
            return a.started > b.started;
        }
        return a.database < b.database;
    });
    std::vector<RetentionDecision> plan;
    plan.reserve(backups.size());
    for (size_t i = 0; i < backups.size(); ++i) {
        RetentionDecision decision{backups[i], i < keep, {}};
        if (decision.keep) {
            decision.reason = fmt::format("newest {} of {} (keep {})", i + 1, backups.size(), keep);
        } else if (is_future_dated(backups[i], now)) {
            decision.reason = fmt::format("dated after the clock ({}), so ranked as the oldest",
                                          format_iso_utc(now));
        } else {
            decision.reason = fmt::format("older than the newest {} (number {} of {})", keep, i + 1,
                                          backups.size());
        }
        plan.push_back(std::move(decision));
    }
    return plan;
}

}  // namespace pgward
