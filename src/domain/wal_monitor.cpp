#include "domain/wal_monitor.hpp"

#include <fmt/format.h>

#include <charconv>

namespace pgward {
namespace {

std::optional<uint64_t> unsigned_field(const pg::Result& result, int column) {
    if (result.is_null(0, column)) {
        return std::nullopt;
    }
    const std::string text = result.get(0, column);
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) {
        return uint64_t{0};  // negative: the streamer is ahead of this backend's view
    }
    return value;
}

std::string mib(uint64_t bytes) {
    return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / 1048576.0);
}

}  // namespace

WalServerView look_at_wal_stream(pg::Connection& conn, const std::string& slot) {
    // pg_stat_replication's row is the slot's active process's; flush_lag is
    // NULL once the standby has caught up and nothing is written.
    pg::Result result = conn.exec(
        "SELECT s.active, "
        "(pg_catalog.pg_current_wal_lsn() - s.restart_lsn)::bigint, "
        "(pg_catalog.pg_current_wal_flush_lsn() - r.flush_lsn)::bigint, "
        "extract(epoch FROM r.flush_lag)::float8, s.wal_status "
        "FROM pg_catalog.pg_replication_slots s "
        "LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid = s.active_pid "
        "WHERE s.slot_name = $1",
        {slot});
    WalServerView view;
    if (result.rows() == 0) {
        return view;
    }
    view.slot_exists = true;
    view.active = result.get(0, 0) == "t";
    view.retained_bytes = unsigned_field(result, 1);
    view.lag_bytes = unsigned_field(result, 2);
    if (view.active) {
        view.lag_seconds = result.is_null(0, 3) ? 0.0 : std::stod(result.get(0, 3));
    }
    if (!result.is_null(0, 4)) {
        view.wal_status = result.get(0, 4);
    }
    return view;
}

WalStreamState judge_wal_stream(const WalStreamState& before,
                                const std::optional<WalServerView>& view, const std::string& error,
                                TimePoint now, const WalWatchPolicy& policy) {
    WalStreamState after = before;
    const std::string at = format_iso_utc(now);
    if (view) {
        after.checked_at = at;
        after.slot_exists = view->slot_exists;
        after.lag_bytes = view->lag_bytes;
        after.lag_seconds = view->lag_seconds;
        after.slot_retained_bytes = view->retained_bytes;
        after.slot_wal_status = view->wal_status;
        if (view->active != before.streaming || after.since.empty()) {
            after.since = at;
        }
        after.streaming = view->active;
    }
    auto seconds_since = [&](const std::optional<std::string>& text) {
        auto t = text ? parse_iso_utc(*text) : std::nullopt;
        return t ? std::chrono::duration_cast<std::chrono::seconds>(now - *t)
                 : std::chrono::seconds::max();
    };

    after.problem.reset();
    if (!view) {
        // A server that cannot be asked is not streaming to us either; said
        // once that lasts.
        if (seconds_since(before.checked_at.value_or(before.since)) > policy.stopped_limit) {
            after.problem = fmt::format("cannot check WAL streaming since {}: {}",
                                        before.checked_at.value_or(before.since), error);
        }
        return after;
    }
    if (!view->slot_exists && (before.slot_exists || before.problem ||
                               seconds_since(after.since) > policy.stopped_limit)) {
        // Gone after it was seen (and until it is back), or never made
        // within the limit: at start the streamer has not created it yet.
        after.problem = fmt::format(
            "the replication slot \"{}\" does not exist (dropped?): WAL written while it was "
            "gone is not in the archive; the streamer creates it again, and a base backup "
            "makes recovery past the gap possible",
            before.slot);
    } else if (view->wal_status == "lost") {
        after.problem = fmt::format(
            "the server removed WAL the slot \"{}\" still needed (wal_status lost, "
            "max_slot_wal_keep_size): the archive has a gap; take a base backup",
            before.slot);
    } else if (view->slot_exists && !view->active &&
               seconds_since(after.since) > policy.stopped_limit) {
        after.problem = fmt::format(
            "WAL has not been streamed since {}; the server keeps {} for the slot \"{}\"",
            after.since, mib(view->retained_bytes.value_or(0)), before.slot);
    } else if (view->active && view->lag_bytes && *view->lag_bytes > policy.lag_limit_bytes) {
        after.problem = fmt::format(
            "WAL streaming is {} behind the server ({:.0f} s), more than "
            "the limit of {}",
            mib(*view->lag_bytes), view->lag_seconds.value_or(0), mib(policy.lag_limit_bytes));
    }
    return after;
}

bool should_drop_slot(const WalServerView& view, const WalWatchPolicy& policy) {
    return policy.drop_slot_over_bytes && view.slot_exists && !view.active &&
           view.retained_bytes.value_or(0) > *policy.drop_slot_over_bytes;
}

}  // namespace pgward
