#pragma once

#include <string>
#include <vector>

#include "domain/naming.hpp"

namespace pgward {

struct RetentionDecision {
    BackupId id;
    bool keep = true;
    std::string reason;
};

// The pure retention plan: the newest `keep` backups stay, the rest go,
// newest first, each with the reason. Callers pass only one database's
// strictly named dumps; the plan never invents or drops one. A backup dated
// after `now` (is_future_dated) ranks as the oldest.
std::vector<RetentionDecision> plan_retention(std::vector<BackupId> backups, size_t keep,
                                              TimePoint now = now_seconds());

}  // namespace pgward
