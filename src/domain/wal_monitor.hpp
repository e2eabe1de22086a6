#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "domain/state.hpp"
#include "pg/connection.hpp"
#include "util/time.hpp"

namespace pgward {

// When the WAL streamer of `run --wal` counts as failing, and what pgward
// may do about a slot that fills the server's disk.
struct WalWatchPolicy {
    // Not streaming for longer than this (pg_receivewal down, the server
    // unreachable) is a problem: the archive falls behind the server.
    std::chrono::seconds stopped_limit{60};
    // Further behind the server's flush position than this is a problem.
    uint64_t lag_limit_bytes = 256ULL << 20;
    // While nothing streams, a slot keeping more WAL than this on the server
    // is dropped (the server's disk before the archive's continuity); unset:
    // report only.
    std::optional<uint64_t> drop_slot_over_bytes;
};

// One look at the streamer from the server's side: its slot
// (pg_replication_slots) and its connection (pg_stat_replication).
struct WalServerView {
    bool slot_exists = false;
    bool active = false;
    std::optional<uint64_t> lag_bytes;
    std::optional<double> lag_seconds;
    std::optional<uint64_t> retained_bytes;
    std::optional<std::string> wal_status;
};
WalServerView look_at_wal_stream(pg::Connection& conn, const std::string& slot);

// The state after a look at `now` (nullopt: the server could not be asked,
// `error` says why), judged by `policy`. Pure.
WalStreamState judge_wal_stream(const WalStreamState& before,
                                const std::optional<WalServerView>& view, const std::string& error,
                                TimePoint now, const WalWatchPolicy& policy);

// Whether the policy drops the slot now: nothing has streamed on it for
// longer than the stopped limit (`state`, as last judged) and it keeps more
// WAL than the drop limit.
bool should_drop_slot(const WalServerView& view, const WalStreamState& state, TimePoint now,
                      const WalWatchPolicy& policy);

}  // namespace pgward
