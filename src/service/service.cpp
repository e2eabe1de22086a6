#include "service/service.hpp"

#include <poll.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "domain/drill.hpp"
#include "domain/pitr_offsite.hpp"
#include "domain/repository.hpp"
#include "domain/schedule.hpp"
#include "domain/state.hpp"
#include "domain/wal_archive.hpp"
#include "pg/catalog.hpp"
#include "service/http_server.hpp"
#include "service/notifier.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/signals.hpp"

namespace pgward {
namespace {

using Ms = std::chrono::milliseconds;

// Sleeps until `deadline` on the boot clock, or until `wake` is set; false
// when a signal came first.
bool sleep_until(Schedule::Duration deadline, const std::atomic<bool>* wake = nullptr) {
    for (;;) {
        if (pending_interrupt() != 0) {
            return false;
        }
        auto now = boot_clock_now();
        if (now >= deadline || (wake != nullptr && wake->load())) {
            return true;
        }
        // Short naps: a suspend or a clock change is noticed within a second.
        auto wait = std::min<Ms>(deadline - now, Ms(1000));
        pollfd fd{interrupt_fd(), POLLIN, 0};
        ::poll(&fd, interrupt_fd() >= 0 ? 1 : 0, static_cast<int>(wait.count()));
    }
}

std::string wall_time_in(Schedule::Duration from_now) {
    auto at = Clock::now() + from_now;
    return format_iso_utc(std::chrono::time_point_cast<std::chrono::seconds>(at));
}

// The state the service and its HTTP handlers share.
class SharedState {
  public:
    SharedState(ServiceState state, std::filesystem::path path, std::filesystem::path dir,
                HealthPolicy policy)
        : state_(std::move(state)), path_(std::move(path)), dir_(std::move(dir)), policy_(policy) {}

    template <typename F>
    void update(F change) {
        ServiceState copy;
        {
            std::lock_guard lock(mutex_);
            change(state_);
            copy = state_;
        }
        try {
            save_state(path_, copy);
        } catch (const Error& e) {
            // The service keeps running: the state in memory still answers
            // /healthz and /metrics, and the next save retries.
            log::error("cannot write the state file", {{"error", e.what()}});
        }
    }

    ServiceState get() const {
        std::lock_guard lock(mutex_);
        return state_;
    }

    Health health() const {
        ServiceState s = get();
        Freshness freshness;
        const TimePoint now = now_seconds();
        try {
            freshness = assess_freshness(BackupRepository(dir_).list(s.database), now);
        } catch (const Error&) {
            // an unreadable directory shows as no backup
        }
        return evaluate_health(s, freshness.newest_finished, now, policy_, freshness.future_dated);
    }

  private:
    mutable std::mutex mutex_;
    ServiceState state_;
    std::filesystem::path path_;
    std::filesystem::path dir_;
    HealthPolicy policy_;
};

// What every scheduled drill shares: this server, its database, the
// service's report folder, tools and time limits, in a sandbox.
DrillRequest scheduled_drill_request(const ServiceConfig& config, const std::string& drill_db) {
    DrillRequest request;
    request.server = config.backup.connection;
    request.source_database = config.database;
    request.drill_db = drill_db;
    request.report_dir = config.drill_report_dir;
    request.pg_bin = config.backup.pg_bin;
    request.sandbox = true;
    request.limits = {config.backup.timeout, config.backup.stall};
    return request;
}

// "name: actual" of a report's first failed check, if any.
std::optional<std::string> first_failed_check(const nlohmann::ordered_json& report) {
    for (const auto& check : report["checks"]) {
        if (!check["passed"].get<bool>()) {
            return check["name"].get<std::string>() + ": " + check["actual"].get<std::string>();
        }
    }
    return std::nullopt;
}

// drill --pitr beside the scheduled drill: the newest base backup and the WAL
// recovered to the newest dump's restore point, in a sandbox, and proven
// table by table. What failed, or "" when it passed or could not run yet (no
// base backup, or no dump made a restore point: both come once WAL streams).
std::string run_scheduled_pitr_drill(const ServiceConfig& config) {
    try {
        // The drill recovers to the newest dump's restore point: it needs a
        // base backup finished before that point.
        const std::vector<BaseBackup> bases = list_base_backups(config.backup.dir);
        const std::optional<Manifest> dump =
            bases.empty() ? std::nullopt
                          : newest_dump_with_restore_point(config.backup.dir, config.database,
                                                           bases.back().system);
        const std::optional<pg::Lsn> point =
            dump ? pg::Lsn::parse(dump->restore_point->lsn) : std::nullopt;
        const bool reachable =
            point && std::any_of(bases.begin(), bases.end(), [&](const BaseBackup& b) {
                return b.system == bases.back().system && b.end <= *point;
            });
        if (!reachable) {
            log::warn(
                "point-in-time recovery drill skipped: no dump has made a restore point "
                "after a base backup yet",
                {{"database", config.database}});
            return "";
        }
        DrillRequest request = scheduled_drill_request(config, config.database + "_pitr_drill");
        request.pitr = true;
        request.backup_dir = config.backup.dir;
        const DrillOutcome outcome = run_drill(request);
        log::write(outcome.success ? log::Level::Info : log::Level::Error,
                   "scheduled point-in-time recovery drill finished",
                   {{"database", config.database},
                    {"success", outcome.success ? "true" : "false"},
                    {"report", outcome.report_path.string()}});
        if (outcome.success) {
            return "";
        }
        if (auto failed = first_failed_check(outcome.report)) {
            return "point-in-time recovery drill: " + *failed;
        }
        return "point-in-time recovery drill failed: " + outcome.report_path.string();
    } catch (const Error& e) {
        return std::string("point-in-time recovery drill: ") + e.what();
    }
}

// The sandbox drill of the newest backup (with drill_from_remote, the newest
// proven one in the bucket, fetched: the host-loss rehearsal): its result goes
// to the state (status, health, metrics) and to the alert hook.
void run_scheduled_drill(const ServiceConfig& config, SharedState& shared, Notifier& notifier) {
    DrillRequest request = scheduled_drill_request(config, config.database + "_restore_drill");
    request.version_table = config.drill_version_table;
    request.keys = config.drill_keys;
    bool success = false;
    std::string detail;
    std::string report;
    std::optional<FetchedBackup> fetched;
    std::optional<std::string> fetch_error;  // a failed fetch is a failed drill
    if (config.drill_from_remote && config.offsite) {
        try {
            const storage::S3Store store(storage::S3Client(config.offsite->s3),
                                         config.offsite->prefix);
            const std::vector<RemoteBackup> stored = list_remote(store, config.database);
            auto newest = std::find_if(stored.begin(), stored.end(),
                                       [](const RemoteBackup& b) { return b.has_manifest; });
            if (newest == stored.end()) {
                log::warn("scheduled drill skipped: no backup in the remote store yet",
                          {{"database", config.database}, {"store", store.location()}});
                return;
            }
            fetched.emplace(store, newest->id, config.backup.dir);
            request.backup = fetched->dump();
            request.backup_source = fetched->source();
        } catch (const Error& e) {
            fetch_error = fmt::format("fetching the newest remote backup: {}", e.what());
        }
    } else {
        try {
            // This server's newest backup, when the directory holds another
            // server's backups of the same name too.
            const BackupRepository repo(config.backup.dir);
            std::optional<std::string> server;
            if (repo.systems_of(config.database).size() > 1) {
                try {
                    pg::Connection conn =
                        pg::Connection::open(config.backup.connection, "pgward drill");
                    server = pg::system_identifier(conn);
                } catch (const Error&) {
                }
            }
            for (const BackupEntry& e : repo.list(config.database)) {
                const std::optional<std::string> from =
                    server ? repo.system_of(e.id) : std::nullopt;
                if (e.has_manifest && (!from || *from == *server)) {
                    request.backup = e.dump_path;
                    break;
                }
            }
        } catch (const Error&) {
        }
        if (!request.backup) {
            log::warn("scheduled drill skipped: no backup to drill yet",
                      {{"database", config.database}});
            return;
        }
    }
    if (fetch_error) {
        detail = *fetch_error;
    } else {
        try {
            DrillOutcome outcome = run_drill(request);
            success = outcome.success;
            report = outcome.report_path.string();
            detail = report;
            if (!success) {
                detail = first_failed_check(outcome.report).value_or(detail);
            }
        } catch (const Error& e) {
            detail = e.what();
        }
    }
    if (config.drill_pitr && config.wal && !fetch_error && pending_interrupt() == 0) {
        const std::string pitr_detail = run_scheduled_pitr_drill(config);
        if (!pitr_detail.empty() && success) {
            success = false;
            detail = pitr_detail;
        }
    }
    if (pending_interrupt() != 0) {
        return;
    }
    bool recovered = shared.get().last_drill_success == false;
    std::string at = format_iso_utc(now_seconds());
    shared.update([&](ServiceState& s) {
        s.last_drill_at = at;
        s.last_drill_success = success;
        s.last_drill_report = report.empty() ? std::nullopt : std::optional(report);
        s.last_drill_failure = success ? std::nullopt : std::optional(detail);
        (success ? s.drills_succeeded_total : s.drills_failed_total) += 1;
    });
    notifier.drill_finished({"", config.database, at, detail, 0}, success, success && recovered);
    log::write(success ? log::Level::Info : log::Level::Error, "scheduled drill finished",
               {{"database", config.database},
                {"restore_success", success ? "true" : "false"},
                {"detail", detail}});
}

// The cycle's offsite copy, after its backup succeeded. False when it
// failed: the local backup stays, and the cycle is degraded.
bool copy_offsite_in_cycle(const ServiceConfig& config, SharedState& shared, Notifier& notifier) {
    const std::string location = config.offsite->location();
    try {
        OffsiteResult copied =
            copy_directory_offsite(config.backup.dir, config.database, *config.offsite);
        const std::string at = format_iso_utc(now_seconds());
        bool recovered = shared.get().remote_consecutive_failures > 0;
        shared.update([&](ServiceState& s) {
            s.last_remote_success_at = at;
            if (!copied.uploaded.empty()) {
                s.last_remote_file = copied.uploaded.front().dump_file();
            }
            s.last_remote_duration_seconds = copied.seconds;
            s.remote_consecutive_failures = 0;
            s.remote_successes_total += 1;
            s.remote_bytes_total += copied.bytes_uploaded;
        });
        if (recovered) {
            log::info("offsite copies work again", {{"store", location}});
        }
        notifier.offsite_finished({"", config.database, at, location, 0}, true, recovered);
        return true;
    } catch (const Error& e) {
        if (pending_interrupt() != 0) {
            return false;  // stopped, not failed: no alert
        }
        const std::string reason = e.what();
        shared.update([&](ServiceState& s) {
            s.last_remote_failure_at = format_iso_utc(now_seconds());
            s.last_remote_failure_reason = reason;
            s.remote_consecutive_failures += 1;
            s.remote_failures_total += 1;
        });
        ServiceState s = shared.get();
        notifier.offsite_finished({"", config.database, *s.last_remote_failure_at,
                                   "the backup is kept locally, but its offsite copy to " +
                                       location + " failed: " + reason,
                                   s.remote_consecutive_failures},
                                  false, false);
        log::error("offsite copy failed; the cycle is degraded and the local backup is kept",
                   {{"store", location},
                    {"reason", reason},
                    {"consecutive_failures", std::to_string(s.remote_consecutive_failures)}});
        return false;
    }
}

// Waits up to `wait`; false when SIGTERM/SIGINT came first.
bool wait_uninterrupted(Ms wait) {
    return sleep_until(boot_clock_now() + wait);
}

// pg_receivewal beside the schedule (stream_wal returns on SIGTERM); a
// streamer that cannot start (server down, slot refused) is tried again with
// backoff, each failure logged, and the watcher reports it.
void supervise_wal_stream(const WalStreamRequest& request) {
    Ms retry(1000);
    while (pending_interrupt() == 0) {
        // Nothing may escape a thread: it would end the process.
        try {
            stream_wal(request);
            return;
        } catch (const std::exception& e) {
            if (pending_interrupt() != 0) {
                return;
            }
            log::error("WAL streaming cannot start",
                       {{"error", e.what()}, {"retry_in_ms", std::to_string(retry.count())}});
        }
        if (!wait_uninterrupted(retry)) {
            return;
        }
        retry = std::min(retry * 2, Ms(60000));
    }
}

// One look at the streamer (see watch_wal_stream).
void look_once_at_wal_stream(const ServiceConfig& config, SharedState& shared, Notifier& notifier,
                             std::optional<pg::Connection>& conn) {
    const WalStreamState before = shared.get().wal.value_or(WalStreamState{});
    std::optional<WalServerView> view;
    std::string error;
    try {
        if (!conn) {
            conn.emplace(pg::Connection::open(config.backup.connection, "pgward wal watch"));
            // A look that hangs would hide the very problem it looks for.
            conn->exec("SET statement_timeout = '10s'");
        }
        view = look_at_wal_stream(*conn, config.wal->slot);
        if (should_drop_slot(*view, before, now_seconds(), config.wal_policy)) {
            conn->exec("SELECT pg_catalog.pg_drop_replication_slot($1)", {config.wal->slot});
            log::error(
                "dropped the replication slot: it kept more WAL than the limit while "
                "nothing streamed; the archive has a gap from here, take a base backup",
                {{"slot", config.wal->slot},
                 {"retained_bytes", std::to_string(view->retained_bytes.value_or(0))},
                 {"limit_bytes",
                  std::to_string(config.wal_policy.drop_slot_over_bytes.value_or(0))}});
            view = look_at_wal_stream(*conn, config.wal->slot);
        }
    } catch (const std::exception& e) {
        conn.reset();
        view.reset();
        error = e.what();
    }
    // Judged against the state as it is now: the streamer may have recorded
    // a gap while the server was asked.
    WalStreamState after;
    bool failing = false;
    bool recovered = false;
    shared.update([&](ServiceState& s) {
        const WalStreamState now_before = s.wal.value_or(WalStreamState{});
        after = judge_wal_stream(now_before, view, error, now_seconds(), config.wal_policy);
        // A new problem, or a worse kind of it (stopped, then the WAL lost).
        failing = after.problem.has_value() && after.problem_kind != now_before.problem_kind;
        recovered = !after.problem.has_value() && now_before.problem.has_value();
        if (failing) {
            after.alerts_total += 1;
        }
        s.wal = after;
    });
    const std::string at = format_iso_utc(now_seconds());
    if (failing) {
        log::error("WAL streaming is failing", {{"reason", *after.problem}});
        notifier.wal_changed({"", config.database, at, *after.problem, 0}, false);
    } else if (recovered) {
        log::info("WAL streaming works again", {{"slot", after.slot}});
        notifier.wal_changed({"", config.database, at, "", 0}, true);
    }
}

// Looks at the streamer from the server's side every check interval: lag,
// the slot's retained WAL, problems alerted once when they start and when
// they end; drops a slot over the policy's limit while nothing streams.
void watch_wal_stream(const ServiceConfig& config, SharedState& shared, Notifier& notifier) {
    std::optional<pg::Connection> conn;
    while (wait_uninterrupted(config.wal_check_interval)) {
        try {
            look_once_at_wal_stream(config, shared, notifier, conn);
        } catch (const std::exception& e) {
            // Nothing may escape a thread: it would end the process.
            log::error("cannot record the WAL streamer's state", {{"error", e.what()}});
        }
    }
}
// A run of failures of something retried: a failure starts or lengthens
// it, a success ends it. What changed, for the alerts.
struct FailureRun {
    bool started = false;
    bool ended = false;
    uint64_t length = 0;
};
FailureRun record_outcome(std::optional<std::string>& failure,
                          std::optional<std::string>& failure_at, uint64_t& in_a_row,
                          const std::string& failed, const std::string& at) {
    FailureRun run;
    if (failed.empty()) {
        run.ended = failure.has_value();
        failure.reset();
        failure_at.reset();
        in_a_row = 0;
    } else {
        run.started = !failure.has_value();
        failure = failed;
        failure_at = at;
        run.length = ++in_a_row;
    }
    return run;
}

// What one pass of the WAL uploader did.
struct PitrOffsitePass {
    std::optional<std::string> newest;  // the newest segment proven offsite
    bool uploaded = false;              // something new went up
    std::vector<std::string> failures;  // each part that failed, with why
};

// Copies the completed WAL of each server here, then any new base backup.
// Each part on its own: a damaged segment or one server's failure does not
// keep the others from going up.
PitrOffsitePass copy_pitr_offsite_once(const ServiceConfig& config, const storage::S3Store& store,
                                       std::map<uint64_t, WalOffsiteCopier>& copiers,
                                       std::set<std::string>& bases_stored) {
    PitrOffsitePass pass;
    auto attempt = [&](const std::string& part, const std::function<void()>& copy) {
        try {
            copy();
        } catch (const std::exception& e) {
            pass.failures.push_back(fmt::format("{}: {}", part, e.what()));
        }
    };
    attempt("listing the backup directory", [&] {
        for (uint64_t system : wal_archive_systems(config.backup.dir)) {
            attempt(fmt::format("the WAL of server {}", system), [&] {
                auto copier = copiers.find(system);
                if (copier == copiers.end()) {
                    copier = copiers
                                 .emplace(system, WalOffsiteCopier(config.backup.dir, system, store,
                                                                   config.offsite->offsite.proof,
                                                                   config.backup.encryption))
                                 .first;
                }
                const WalOffsiteResult copied = copier->second.copy();
                pass.uploaded = pass.uploaded || !copied.uploaded.empty();
                pass.newest = copied.newest ? copied.newest : pass.newest;
            });
        }
        for (const BaseBackup& base : list_base_backups(config.backup.dir)) {
            if (bases_stored.count(base.name) != 0) {
                continue;
            }
            attempt(fmt::format("base backup {}", base.name), [&] {
                const BaseOffsiteResult copied = copy_base_backups_offsite(
                    config.backup.dir, base.system, store, config.offsite->offsite.proof,
                    config.base_retention, config.backup.encryption);
                if (copied.busy) {
                    return;  // another pgward copies them now; looked at again next pass
                }
                pass.uploaded = pass.uploaded || !copied.uploaded.empty();
                for (const BaseBackup& b : list_base_backups(config.backup.dir, base.system)) {
                    bases_stored.insert(b.name);
                }
            });
        }
    });
    return pass;
}

// Copies the completed WAL, then any new base backup, offsite every check
// interval: what a lost host loses is at most what is not there yet, and a
// copy that failed is tried again on the next pass. Its outcome is in the
// state (wal.offsite_*), alerted when copies start failing and when they
// work again.
void upload_wal_offsite(const ServiceConfig& config, SharedState& shared, Notifier& notifier) {
    const storage::S3Store store(storage::S3Client(config.offsite->s3), config.offsite->prefix);
    const std::string location = config.offsite->location();
    std::map<uint64_t, WalOffsiteCopier> copiers;
    std::set<std::string> bases_stored;  // base backups known to be in the store
    while (wait_uninterrupted(config.wal_check_interval)) {
        PitrOffsitePass pass;
        try {
            pass = copy_pitr_offsite_once(config, store, copiers, bases_stored);
        } catch (const std::exception& e) {
            // Nothing may escape a thread: it would end the process.
            pass.failures.emplace_back(e.what());
        }
        if (pending_interrupt() != 0) {
            return;  // stopped halfway: not a failure of the store
        }
        std::string failure;
        for (const std::string& f : pass.failures) {
            failure += (failure.empty() ? "" : "; ") + f;
        }
        if (!failure.empty()) {
            failure = fmt::format("copying the WAL and base backups to {}: {}", location, failure);
        }
        const std::string at = format_iso_utc(now_seconds());
        FailureRun run;
        shared.update([&](ServiceState& s) {
            if (!s.wal) {
                return;
            }
            WalStreamState& w = *s.wal;
            if (pass.newest) {
                w.offsite_newest = pass.newest;
            }
            if (pass.uploaded) {
                w.offsite_at = at;
            }
            run = record_outcome(w.offsite_failure, w.offsite_failure_at, w.offsite_failures,
                                 failure, at);
        });
        if (!failure.empty()) {
            log::error("offsite copy of the WAL or base backups failed; the local archive is kept",
                       {{"reason", failure}, {"consecutive_failures", std::to_string(run.length)}});
            if (run.started) {
                notifier.wal_offsite_changed({"", config.database, at, failure, run.length}, false);
            }
        } else if (run.ended) {
            log::info("offsite copies of the WAL and base backups work again",
                      {{"store", location}});
            notifier.wal_offsite_changed({"", config.database, at, location, 0}, true);
        }
    }
}

// pg_basebackup, proven, then retention.
void take_and_prune_base_backup(const ServiceConfig& config) {
    BaseBackupRequest request;
    request.connection = config.backup.connection;
    request.dir = config.backup.dir;
    request.pg_bin = config.backup.pg_bin;
    request.limits = {config.backup.timeout, config.backup.stall};
    const BaseBackup backup = take_base_backup(request);
    if (config.base_retention) {
        prune_base_backups(config.backup.dir, backup.system, *config.base_retention);
    }
}

// A scheduled base backup, then base backup retention. A failure is in the
// state (wal.base_failure), alerted when it starts and when one succeeds
// again, and tried again with the schedule's backoff.
bool take_scheduled_base_backup(const ServiceConfig& config, SharedState& shared,
                                Notifier& notifier) {
    std::string failure;
    try {
        take_and_prune_base_backup(config);
    } catch (const Error& e) {
        if (pending_interrupt() != 0) {
            return false;
        }
        failure = e.what();
        log::error("scheduled base backup failed", {{"error", failure}});
    }
    const std::string at = format_iso_utc(now_seconds());
    FailureRun run;
    shared.update([&](ServiceState& s) {
        if (!s.wal) {
            return;
        }
        WalStreamState& w = *s.wal;
        if (failure.empty()) {
            w.last_base_backup_at = at;
        }
        run = record_outcome(w.base_failure, w.base_failure_at, w.base_failures, failure, at);
    });
    if (run.started) {
        notifier.base_backup_changed({"", config.database, at, failure, run.length}, false);
    } else if (run.ended) {
        log::info("scheduled base backups work again", {{"database", config.database}});
        notifier.base_backup_changed({"", config.database, at, "", 0}, true);
    }
    return failure.empty();
}

}  // namespace

int run_service(const ServiceConfig& config) {
    ensure_directory(config.backup.dir);
    std::filesystem::path state_path = config.backup.dir / state_file_name(config.database);
    ServiceState initial;
    try {
        if (auto loaded = load_state(state_path)) {
            initial = *loaded;
        }
    } catch (const Error& e) {
        log::warn("ignoring an unreadable state file", {{"error", e.what()}});
    }
    initial.database = config.database;
    initial.interval_seconds = static_cast<uint64_t>(config.interval.count());
    initial.service_started_at = format_iso_utc(now_seconds());
    if (config.offsite) {
        initial.remote =
            fmt::format("s3://{}/{}", config.offsite->s3.bucket, config.offsite->prefix);
        initial.remote_proof = config.offsite->offsite.proof == RemoteProof::Read ? "read" : "size";
    } else {
        initial.remote.reset();
        initial.remote_proof.reset();
    }
    if (config.wal) {
        WalStreamState wal = initial.wal.value_or(WalStreamState{});
        // What a previous run saw is not a fact about this one; the count
        // of alerts carries on.
        WalStreamState fresh;
        fresh.slot = config.wal->slot;
        fresh.since = format_iso_utc(now_seconds());
        fresh.alerts_total = wal.alerts_total;
        // A gap stays one until a base backup after it.
        fresh.gap = wal.gap;
        fresh.gap_at = wal.gap_at;
        fresh.timeline_switch = wal.timeline_switch;
        fresh.timeline_switch_at = wal.timeline_switch_at;
        fresh.offsite_newest = wal.offsite_newest;
        fresh.offsite_at = wal.offsite_at;
        initial.wal = fresh;
    } else {
        initial.wal.reset();
    }
    initial.running = false;  // a killed predecessor may have left it set
    initial.running_since.reset();
    SharedState shared(initial, state_path, config.backup.dir, config.health);
    shared.update([](ServiceState&) {});

    std::unique_ptr<HttpServer> http;
    if (config.http_addr) {
        HttpServer::Handlers handlers;
        handlers.healthz = [&shared] {
            Health h = shared.health();
            ServiceState s = shared.get();
            nlohmann::ordered_json body{
                {"healthy", h.healthy},
                {"status", h.status},
                {"reason", h.reason},
                {"database", s.database},
                {"last_success_at", s.last_success_at ? *s.last_success_at : ""},
                {"consecutive_failures", s.consecutive_failures},
                {"running", s.running}};
            return HttpServer::Response{
                h.healthy ? 200 : 503, "application/json",
                body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"};
        };
        handlers.metrics = [&shared] {
            return HttpServer::Response{200, "text/plain; version=0.0.4",
                                        render_metrics(shared.get(), shared.health())};
        };
        http = std::make_unique<HttpServer>(*config.http_addr, handlers);
    }
    Notifier notifier(config.notify_url, config.ping_url, config.notify_every_success,
                      config.notify_timeout);

    Schedule schedule(config.interval, boot_clock_now(), config.on_start || config.once,
                      config.retry_initial, config.retry_max);
    log::info("service started",
              {{"database", config.database},
               {"dir", config.backup.dir.string()},
               {"interval_seconds", std::to_string(config.interval.count())},
               {"retention", std::to_string(config.backup.retention.value_or(0))},
               {"first_backup_at", wall_time_in(schedule.next_run() - boot_clock_now())},
               {"http", config.http_addr.value_or("off")}});

    std::optional<Schedule> drills;
    if (config.drill_interval) {
        // The first drill one interval after start: there is a backup by then.
        drills.emplace(*config.drill_interval, boot_clock_now(), false, Ms(60000), Ms(3600000));
    }
    std::optional<Schedule> bases;
    std::atomic<bool> base_after_gap{false};
    WalStreamRequest streamer_request = config.wal.value_or(WalStreamRequest{});
    // The WAL threads stop on SIGTERM/SIGINT; should the main loop end
    // another way (an exception), they are sent one, so that the joins
    // below (or this guard's, while unwinding) return.
    struct WalThreads {
        std::thread streamer;
        std::thread watcher;
        std::thread uploader;
        ~WalThreads() {
            if ((streamer.joinable() || watcher.joinable() || uploader.joinable()) &&
                pending_interrupt() == 0) {
                ::raise(SIGTERM);
            }
            for (std::thread* t : {&streamer, &watcher, &uploader}) {
                if (t->joinable()) {
                    t->join();
                }
            }
        }
    } wal_threads;
    if (config.wal) {
        // Recovery starts from a base backup: the first one now when there
        // is none here yet (the WAL streamed from now on needs it), else one
        // interval after the newest, whenever the service (re)started.
        std::optional<std::chrono::seconds> newest_age;
        try {
            for (const BaseBackup& b : list_base_backups(config.backup.dir)) {
                // (One dated in the future counts as just taken.)
                const auto age = std::max(
                    std::chrono::seconds(0),
                    std::chrono::duration_cast<std::chrono::seconds>(now_seconds() - b.finished));
                newest_age = newest_age ? std::min(*newest_age, age) : age;
            }
        } catch (const Error&) {
        }
        const bool due_now = !newest_age || *newest_age >= config.base_interval;
        // A base backup due now goes before a dump due now: that dump's
        // restore point can then be recovered to.
        const Schedule::Duration base_start =
            due_now ? std::min(boot_clock_now(), schedule.next_run() - Ms(1))
                    : boot_clock_now() - std::chrono::duration_cast<Ms>(*newest_age);
        bases.emplace(config.base_interval, base_start, due_now, config.retry_initial,
                      config.retry_max);
        // Past a gap in the WAL only a base backup taken after it recovers:
        // one at once (and again after a failure, with backoff).
        base_after_gap = shared.get().wal->gap.has_value();
        // Alerted here and now: the base backup may cover the gap before
        // the watcher looks, and the operator still lost recovery to any
        // moment inside it.
        streamer_request.on_gap = [&](const std::string& message) {
            const std::string at = format_iso_utc(now_seconds());
            shared.update([&](ServiceState& s) {
                if (s.wal) {
                    s.wal->gap = message;
                    s.wal->gap_at = at;
                    s.wal->problem = message;
                    s.wal->problem_kind = "wal-gap";
                    s.wal->alerts_total += 1;
                }
            });
            notifier.wal_changed({"", config.database, at, message, 0}, false);
            base_after_gap = true;
        };
        streamer_request.on_timeline_switch = [&](const std::string& message) {
            const std::string at = format_iso_utc(now_seconds());
            shared.update([&](ServiceState& s) {
                if (s.wal) {
                    s.wal->timeline_switch = message;
                    s.wal->timeline_switch_at = at;
                    s.wal->alerts_total += 1;
                }
            });
            notifier.wal_timeline_switched({"", config.database, at, message, 0});
        };
        streamer_request.on_stop = [&](const std::string& said) {
            shared.update([&](ServiceState& s) {
                if (s.wal) {
                    s.wal->stopped_because = said;
                }
            });
        };
        wal_threads.streamer =
            std::thread([&streamer_request] { supervise_wal_stream(streamer_request); });
        wal_threads.watcher = std::thread([&] { watch_wal_stream(config, shared, notifier); });
        if (config.offsite) {
            wal_threads.uploader =
                std::thread([&] { upload_wal_offsite(config, shared, notifier); });
        }
    }
    bool last_cycle_failed = false;
    for (;;) {
        bool drill_due = drills && drills->next_run() < schedule.next_run();
        Schedule::Duration next = drill_due ? drills->next_run() : schedule.next_run();
        bool base_due = bases && bases->next_run() <= next;
        if (!sleep_until(base_due ? bases->next_run() : next, &base_after_gap)) {
            break;
        }
        if (base_after_gap.exchange(false)) {
            base_due = true;
        }
        if (base_due) {
            auto started = boot_clock_now();
            const std::string started_at = format_iso_utc(now_seconds());
            if (take_scheduled_base_backup(config, shared, notifier)) {
                bases->on_success(started, boot_clock_now());
                // The gap is behind the newest base backup now.
                shared.update([&](ServiceState& s) {
                    if (s.wal && s.wal->gap_at && *s.wal->gap_at <= started_at) {
                        s.wal->gap.reset();
                        s.wal->gap_at.reset();
                    }
                });
            } else {
                // (After a gap too, tried again with the schedule's backoff.)
                bases->on_failure(started, boot_clock_now());
            }
            continue;
        }
        if (drill_due) {
            run_scheduled_drill(config, shared, notifier);
            auto now = boot_clock_now();
            drills->on_success(now, now);
            continue;
        }
        auto started = boot_clock_now();
        std::string started_at = format_iso_utc(now_seconds());
        shared.update([&](ServiceState& s) {
            s.running = true;
            s.running_since = started_at;
            s.last_attempt_at = started_at;
        });
        bool overran = false;
        try {
            BackupResult result = run_backup_job(config.backup);
            bool recovered = shared.get().consecutive_failures > 0;
            shared.update([&](ServiceState& s) {
                s.running = false;
                s.running_since.reset();
                s.last_success_at = result.manifest.started_at;
                s.last_success_file = result.id.dump_file();
                s.last_success_bytes = result.manifest.size_bytes;
                s.last_success_duration_seconds = result.manifest.duration_seconds;
                s.consecutive_failures = 0;
                s.successes_total += 1;
                s.retained_count = result.retained;
            });
            notifier.backup_succeeded(
                {"", config.database, result.manifest.finished_at, result.id.dump_file(), 0},
                recovered);
            last_cycle_failed = config.offsite && !copy_offsite_in_cycle(config, shared, notifier);
            if (pending_interrupt() == 0) {
                notifier.cycle_finished(!last_cycle_failed);
            }
            overran = schedule.on_success(started, boot_clock_now());
        } catch (const Error& e) {
            last_cycle_failed = true;
            if (pending_interrupt() != 0) {
                break;
            }
            std::string reason = e.what();
            shared.update([&](ServiceState& s) {
                s.running = false;
                s.running_since.reset();
                s.last_failure_at = format_iso_utc(now_seconds());
                s.last_failure_reason = reason;
                s.consecutive_failures += 1;
                s.failures_total += 1;
            });
            ServiceState s = shared.get();
            notifier.backup_failed(
                {"", config.database, *s.last_failure_at, reason, s.consecutive_failures});
            notifier.cycle_finished(false);
            overran = schedule.on_failure(started, boot_clock_now());
            log::error("backup failed; nothing was pruned",
                       {{"database", config.database},
                        {"reason", reason},
                        {"consecutive_failures", std::to_string(s.consecutive_failures)},
                        {"next_attempt_at", wall_time_in(schedule.next_run() - boot_clock_now())}});
        }
        if (config.once) {
            break;
        }
        if (overran) {
            log::warn("the next backup was due while this one ran; starting it now (delayed)",
                      {{"database", config.database}});
        } else {
            log::info("next backup scheduled",
                      {{"at", wall_time_in(schedule.next_run() - boot_clock_now())}});
        }
    }

    int sig = pending_interrupt();
    shared.update([](ServiceState& s) {
        s.running = false;
        s.running_since.reset();
    });
    for (std::thread* t : {&wal_threads.streamer, &wal_threads.watcher, &wal_threads.uploader}) {
        if (t->joinable()) {
            t->join();
        }
    }
    notifier.drain(Ms(2000));
    log::info("service stopped", {{"signal", sig != 0 ? signal_name(sig) : "none"}});
    return config.once && sig == 0 && last_cycle_failed ? 1 : 0;
}

}  // namespace pgward
