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
    // A standby streams too: its position is what it has received.
    // flush_lsn and flush_lag are NULL for a role without pg_read_all_stats
    // (the lag is then unknown, not zero).
    pg::Result result = conn.exec(
        "WITH server AS (SELECT CASE WHEN pg_catalog.pg_is_in_recovery() "
        "THEN pg_catalog.pg_last_wal_receive_lsn() ELSE pg_catalog.pg_current_wal_lsn() END "
        "AS written, CASE WHEN pg_catalog.pg_is_in_recovery() "
        "THEN pg_catalog.pg_last_wal_receive_lsn() ELSE pg_catalog.pg_current_wal_flush_lsn() "
        "END AS flushed) "
        "SELECT s.active, (server.written - s.restart_lsn)::bigint, "
        "(server.flushed - r.flush_lsn)::bigint, "
        "extract(epoch FROM r.flush_lag)::float8, s.wal_status "
        "FROM pg_catalog.pg_replication_slots s CROSS JOIN server "
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
    if (view.active && view.lag_bytes) {
        // NULL once caught up and idle.
        view.lag_seconds =
            result.is_null(0, 3) ? 0.0 : std::strtod(result.get(0, 3).c_str(), nullptr);
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
        if (view->active) {
            after.stopped_because.reset();
        }
    }
    auto seconds_since = [&](const std::optional<std::string>& text) {
        auto t = text ? parse_iso_utc(*text) : std::nullopt;
        return t ? std::chrono::duration_cast<std::chrono::seconds>(now - *t)
                 : std::chrono::seconds::max();
    };

    after.problem.reset();
    after.problem_kind.reset();
    if (!view) {
        // A server that cannot be asked is not streaming to us either; said
        // once that lasts.
        if (seconds_since(before.checked_at.value_or(before.since)) > policy.stopped_limit) {
            after.problem = fmt::format("cannot check WAL streaming since {}: {}",
                                        before.checked_at.value_or(before.since), error);
            after.problem_kind = "unreachable";
        }
        return after;
    }
    if (!view->slot_exists && (before.slot_exists || before.problem ||
                               seconds_since(after.since) > policy.stopped_limit)) {
        // Gone after it was seen (and until it is back), or never made
        // within the limit: at start the streamer has not created it yet.
        after.problem = fmt::format(
            "the replication slot \"{}\" does not exist (dropped?): the server keeps no WAL "
            "for pgward meanwhile; the streamer creates it again when pg_receivewal restarts, "
            "and WAL the server removed before then is a gap in the archive (a base backup "
            "taken after it makes recovery past it possible)",
            before.slot);
        after.problem_kind = "slot-missing";
    } else if (view->wal_status == "lost") {
        after.problem = fmt::format(
            "the server removed WAL the slot \"{}\" still needed (wal_status lost, "
            "max_slot_wal_keep_size): the archive has a gap; the streamer makes the slot again "
            "and resumes past it, and a base backup is taken (docs/pitr.md)",
            before.slot);
        after.problem_kind = "wal-lost";
    } else if (view->slot_exists && !view->active &&
               seconds_since(after.since) > policy.stopped_limit) {
        after.problem = fmt::format(
            "WAL has not been streamed since {}; the server keeps {} for the slot \"{}\"",
            after.since, mib(view->retained_bytes.value_or(0)), before.slot);
        if (after.stopped_because) {
            *after.problem += fmt::format(" (pg_receivewal said: {})", *after.stopped_because);
        }
        after.problem_kind = "stopped";
    } else if (view->active && view->lag_bytes && *view->lag_bytes > policy.lag_limit_bytes) {
        after.problem = fmt::format(
            "WAL streaming is {} behind the server ({:.0f} s), more than "
            "the limit of {}",
            mib(*view->lag_bytes), view->lag_seconds.value_or(0), mib(policy.lag_limit_bytes));
        after.problem_kind = "behind";
    } else if (before.gap) {
        after.problem = *before.gap;
        after.problem_kind = "wal-gap";
    }
    return after;
}

bool should_drop_slot(const WalServerView& view, const WalStreamState& state, TimePoint now,
                      const WalWatchPolicy& policy) {
    // Never over a restart of pg_receivewal: only once nothing has streamed
    // for longer than the stopped limit.
    const auto since = parse_iso_utc(state.since);
    const bool stopped_long = !state.streaming && since && now - *since > policy.stopped_limit;
    return policy.drop_slot_over_bytes && view.slot_exists && !view.active && stopped_long &&
           view.retained_bytes.value_or(0) > *policy.drop_slot_over_bytes;
}

}  // namespace pgward
