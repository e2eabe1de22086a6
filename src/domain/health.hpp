#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "domain/state.hpp"
#include "util/time.hpp"

namespace pgward {

// A freshness check, not a liveness check: is there a recent good backup,
// and did the last attempt succeed?
struct HealthPolicy {
    std::chrono::seconds interval{86400};
    std::chrono::seconds grace{3600};
    std::optional<std::chrono::seconds> max_age;  // default: interval × 1.5 + grace

    std::chrono::seconds limit() const;
};

struct Health {
    bool healthy = false;
    std::string status;  // ok, starting, failing, stale, no-backup
    std::string reason;
};

// `newest_backup`: start time of the newest dump on disk that has a manifest.
Health evaluate_health(const std::optional<ServiceState>& state,
                       std::optional<TimePoint> newest_backup, TimePoint now,
                       const HealthPolicy& policy);

// Prometheus text exposition of the service's state.
std::string render_metrics(const ServiceState& state, const Health& health);

}  // namespace pgward
