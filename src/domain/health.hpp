#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <vector>

#include "domain/repository.hpp"
#include "domain/state.hpp"
#include "util/time.hpp"

namespace pgward {

// A freshness check, not a liveness check: is there a recent good backup,
// and did the last attempt succeed?
struct HealthPolicy {
    std::chrono::seconds interval{86400};
    std::chrono::seconds grace{3600};
    std::optional<std::chrono::seconds> max_age;  // default: interval × 1.5 + grace
    // The newest proven offsite copy's own limit; default: limit().
    std::optional<std::chrono::seconds> remote_max_age;

    std::chrono::seconds limit() const;
    std::chrono::seconds remote_limit() const { return remote_max_age.value_or(limit()); }
};

struct Health {
    bool healthy = false;
    std::string status;  // ok, starting, failing, stale, no-backup, future-dated
    std::string reason;
    size_t future_dated = 0;  // backups dated after the clock
};

// What freshness is judged on: when the newest backup that is not dated in
// the future really finished (its manifest's finished_at), and the backups
// dated in the future (by name or manifest: a clock that jumped, a file
// copied in), which never count as fresh.
struct Freshness {
    std::optional<TimePoint> newest_finished;
    std::vector<std::string> future_dated;  // dump file names
};
Freshness assess_freshness(const std::vector<BackupEntry>& newest_first, TimePoint now);

// `newest_backup`: when the newest dump on disk that has a manifest finished.
// Any `future_dated` backup makes the service unhealthy ("future-dated")
// unless something worse holds.
Health evaluate_health(const std::optional<ServiceState>& state,
                       std::optional<TimePoint> newest_backup, TimePoint now,
                       const HealthPolicy& policy,
                       const std::vector<std::string>& future_dated = {});

// Prometheus text exposition of the service's state.
std::string render_metrics(const ServiceState& state, const Health& health);

}  // namespace pgward
