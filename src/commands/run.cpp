#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/encryption_options.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "commands/service_options.hpp"
#include "domain/backup_job.hpp"
#include "domain/wal_archive.hpp"
#include "pg/tools.hpp"
#include "service/http_server.hpp"
#include "service/service.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace pgward::commands {
namespace {

std::optional<std::string> http_url(const OptionTable& table, const std::string& key) {
    auto setting = table.get(key);
    if (!setting) {
        return std::nullopt;
    }
    if (setting->value.rfind("http://", 0) != 0 && setting->value.rfind("https://", 0) != 0) {
        throw usage_error(fmt::format("invalid value for {}: expected an http:// or https:// URL",
                                      setting->origin),
                          fmt::format("fix {}", setting->origin));
    }
    return setting->value;
}

// An explicit method the installed pg_dump cannot write is exit 2 at start-up,
// not a failed backup every night. (A pg_dump missing now is the backups' to
// report: it may be mounted later.)
void check_compression_now(const BackupRequest& backup) {
    if (backup.compression.automatic) {
        return;
    }
    std::optional<pg::Tool> pg_dump;
    try {
        pg_dump = pg::ToolFinder(backup.pg_bin).find("pg_dump");
    } catch (const Error&) {
        return;
    }
    choose_compression(backup.compression, pg_dump->version);
}

class RunCommand : public Command {
  public:
    const char* name() const override { return "run"; }
    const char* summary() const override {
        return "the backup service: a backup at start, then every interval, until SIGTERM";
    }

    void setup(CLI::App& app) override {
        add_connection_options(options_, app);
        add_health_options(options_, app);
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups)");
        options_.add(app, "retention", "--retention", "POSTGRES_BACKUP_RETENTION_COUNT",
                     "backups kept after each success (default 7)");
        options_.add(app, "on_start", "--on-start", "POSTGRES_BACKUP_ON_START",
                     "take the first backup at start (default true)");
        add_watchdog_options(options_, app);
        options_.add(app, "lock_wait", "--lock-wait-timeout", "POSTGRES_BACKUP_LOCK_WAIT_SECONDS",
                     "seconds pg_dump waits for a table another session holds locked "
                     "(default: wait)");
        add_compression_option(options_, app);
        add_encryption_options(options_, app);
        add_identity_options(options_, app);
        options_.add(app, "retry", "--retry", "POSTGRES_BACKUP_RETRY_SECONDS",
                     "first retry after a failure; doubles each time (default 60)");
        options_.add(app, "retry_max", "--retry-max", "POSTGRES_BACKUP_RETRY_MAX_SECONDS",
                     "longest wait between retries (default 3600)");
        options_.add(app, "http_addr", "--http-addr", "PGWARD_HTTP_ADDR",
                     "host:port for /healthz and /metrics (default: no listener)");
        options_.add(app, "notify_url", "--notify-url", "PGWARD_NOTIFY_URL",
                     "JSON POST on failures and on recovery");
        options_.add(app, "notify_success", "--notify-every-success", "PGWARD_NOTIFY_EVERY_SUCCESS",
                     "also POST on every success (default false)");
        options_.add(app, "ping_url", "--ping-url", "PGWARD_PING_URL",
                     "healthchecks.io-style ping: GET on success, <url>/fail on failure");
        options_.add(app, "pg_bin", "--pg-bin", "PGWARD_PG_BIN",
                     "directory of the PostgreSQL tools");
        options_.add(app, "drill_interval", "--drill-interval", "POSTGRES_DRILL_INTERVAL_SECONDS",
                     "run a sandbox drill of the newest backup this often (default: never)");
        options_.add(app, "drill_from", "--drill-from", "POSTGRES_DRILL_FROM",
                     "local (default: the newest local backup) or remote (the newest proven "
                     "one in the bucket, fetched: the host-loss rehearsal)");
        options_.add(app, "report_dir", "--report-dir", "PGWARD_REPORT_DIR",
                     "where scheduled drill reports go (default <dir>/reports)");
        options_.add(app, "globals", "--globals", "PGWARD_GLOBALS",
                     "pg_dumpall --globals-only beside each dump (default true)");
        add_remote_options(options_, app);
        add_switch(options_, app, "drill_pitr", "--drill-pitr", "POSTGRES_DRILL_PITR",
                   "with --wal and --drill-interval, each scheduled drill also proves "
                   "point-in-time recovery (drill --pitr) (default true)");
        add_switch(options_, app, "wal", "--wal", "POSTGRES_BACKUP_WAL",
                   "also stream the server's WAL (pg_receivewal on a slot) and take base "
                   "backups, for point-in-time recovery (default false; docs/pitr.md)");
        options_.add(app, "wal_slot", "--wal-slot", "POSTGRES_BACKUP_WAL_SLOT",
                     "with --wal: the physical replication slot (default pgward)");
        add_switch(options_, app, "wal_synchronous", "--wal-synchronous",
                   "POSTGRES_BACKUP_WAL_SYNCHRONOUS",
                   "with --wal: flush every write at once (for synchronous_standby_names)");
        options_.add(app, "wal_lag_limit", "--wal-lag-limit-bytes",
                     "POSTGRES_BACKUP_WAL_LAG_LIMIT_BYTES",
                     "with --wal: alert when streaming is this far behind (default 268435456)");
        options_.add(app, "wal_stopped_limit", "--wal-stopped-limit",
                     "POSTGRES_BACKUP_WAL_STOPPED_SECONDS",
                     "with --wal: alert when nothing has streamed this long (default 60)");
        options_.add(app, "wal_stall", "--wal-stall-timeout", "POSTGRES_BACKUP_WAL_STALL_SECONDS",
                     "with --wal: kill pg_receivewal, and start it again, when it writes nothing "
                     "this long while the server writes WAL (default 300; 0: never)");
        options_.add(app, "wal_drop_slot", "--wal-drop-slot-over-bytes",
                     "POSTGRES_BACKUP_WAL_DROP_SLOT_BYTES",
                     "with --wal: drop the slot when it keeps more WAL than this while nothing "
                     "streams (default: never, report only)");
        options_.add(app, "wal_check", "--wal-check-interval", "POSTGRES_BACKUP_WAL_CHECK_SECONDS",
                     "with --wal: seconds between looks at the streamer's lag and slot "
                     "(default 5)");
        options_.add(app, "base_interval", "--base-interval",
                     "POSTGRES_BACKUP_BASE_INTERVAL_SECONDS",
                     "with --wal: seconds between base backups (default 604800, weekly)");
        options_.add(app, "base_retention", "--base-retention",
                     "POSTGRES_BACKUP_BASE_RETENTION_COUNT",
                     "with --wal: base backups kept, with the WAL they need (default: all)");
        app.add_flag("--once", once_,
                     "one cycle (backup, prune, state file) now, then exit 0 or 1 (for cron)");
    }

    int run() override {
        // Every value is checked before the first backup: a typo is exit 2
        // at deploy time, not a failed backup at 3 a.m.
        ServiceConfig config;
        config.backup.connection = options_.connection();
        config.backup.dir = options_.get_or("dir", "/backups");
        config.backup.retention = options_.get_number("retention", 1, 1000000).value_or(7);
        if (auto pg_bin = options_.get("pg_bin")) {
            config.backup.pg_bin = pg_bin->value;
        }
        config.backup.compression = compression_setting(options_);
        config.backup.encryption = encryption_keys(options_);
        config.drill_keys = decryption_keys(options_);
        check_compression_now(config.backup);
        const WatchdogLimits limits = watchdog_limits(options_);
        config.backup.timeout = limits.timeout;
        config.backup.stall = limits.stall;
        if (auto lock_wait = options_.get_number("lock_wait", 1, kTenYears)) {
            config.backup.lock_wait = std::chrono::seconds(*lock_wait);
        }
        if (auto globals = options_.get("globals")) {
            config.backup.globals = parse_bool(*globals);
        }
        config.health = health_policy(options_);
        config.interval = config.health.interval;
        config.offsite = remote_config(options_);
        if (config.offsite && !config.offsite->offsite.retention) {
            config.offsite->offsite.retention = config.backup.retention;
        }
        if (auto on_start = options_.get("on_start")) {
            config.on_start = parse_bool(*on_start);
        }
        config.retry_initial =
            std::chrono::seconds(options_.get_number("retry", 1, kTenYears).value_or(60));
        config.retry_max =
            std::chrono::seconds(options_.get_number("retry_max", 1, kTenYears).value_or(3600));
        if (auto addr = options_.get("http_addr")) {
            parse_http_address(addr->value, addr->origin);
            config.http_addr = addr->value;
        }
        config.notify_url = http_url(options_, "notify_url");
        config.ping_url = http_url(options_, "ping_url");
        if (auto every = options_.get("notify_success")) {
            config.notify_every_success = parse_bool(*every);
        }
        config.database = service_database(options_);
        if (auto drill = options_.get_number("drill_interval", 1, kTenYears)) {
            config.drill_interval = std::chrono::seconds(*drill);
        }
        if (auto from = options_.get("drill_from")) {
            if (from->value != "local" && from->value != "remote") {
                throw usage_error(
                    fmt::format("invalid value \"{}\" for {}: expected local or remote",
                                from->value, from->origin),
                    fmt::format("fix {}", from->origin));
            }
            config.drill_from_remote = from->value == "remote";
            if (config.drill_from_remote && !config.offsite) {
                throw usage_error(
                    fmt::format("{} is remote but no remote store is set", from->origin),
                    "set POSTGRES_BACKUP_REMOTE (or --remote) to s3://BUCKET/PREFIX");
            }
        }
        config.drill_report_dir =
            options_.get_or("report_dir", (config.backup.dir / "reports").string());
        config.drill_version_table = VersionTable::parse("alembic_version.version_num");
        config.once = once_;
        configure_wal(config);

        const char* format = std::getenv("PGWARD_LOG_FORMAT");
        log::configure(log::parse_format(format == nullptr ? "" : format), stdout);
        if (config.drill_interval && config.backup.encryption.enabled() &&
            !config.drill_keys.present()) {
            // The host may rightly hold only public keys; the drill then cannot run.
            log::warn("the scheduled drill cannot open encrypted backups: each one will fail",
                      {{"fix",
                        "set PGWARD_AGE_IDENTITY_FILE (or drill on another host with "
                        "pgward drill --identity)"}});
        }
        return run_service(config);
    }

  private:
    void configure_wal(ServiceConfig& config) const {
        const std::optional<Setting> wal_setting = options_.get("wal");
        const bool wal = wal_setting && parse_bool(*wal_setting);
        if (!wal) {
            for (const char* key :
                 {"wal_slot", "wal_synchronous", "wal_lag_limit", "wal_stopped_limit", "wal_stall",
                  "wal_drop_slot", "wal_check", "base_interval", "base_retention", "drill_pitr"}) {
                if (auto setting = options_.get(key); setting && setting->from_flag) {
                    throw usage_error(fmt::format("{} goes with --wal", setting->origin));
                }
            }
            return;
        }
        if (config.once) {
            throw usage_error("--wal streams beside the schedule and cannot run with --once",
                              "use pgward wal stream for a streamer of its own");
        }
        WalStreamRequest request;
        request.connection = config.backup.connection;
        request.dir = config.backup.dir;
        request.pg_bin = config.backup.pg_bin;
        request.slot = options_.get_or("wal_slot", "pgward");
        check_slot_name(request.slot);
        if (auto synchronous = options_.get("wal_synchronous")) {
            request.synchronous = parse_bool(*synchronous);
        }
        if (auto stall = options_.get_number("wal_stall", 0, kTenYears)) {
            request.stall_timeout = std::chrono::seconds(*stall);
        }
        config.wal = request;
        const std::optional<Setting> drill_pitr = options_.get("drill_pitr");
        config.drill_pitr = !drill_pitr || parse_bool(*drill_pitr);
        if (auto lag = options_.get_number("wal_lag_limit", 1, UINT64_MAX)) {
            config.wal_policy.lag_limit_bytes = *lag;
        }
        if (auto stopped = options_.get_number("wal_stopped_limit", 1, kTenYears)) {
            config.wal_policy.stopped_limit = std::chrono::seconds(*stopped);
        }
        if (auto check = options_.get_number("wal_check", 1, 3600)) {
            config.wal_check_interval = std::chrono::seconds(*check);
        }
        config.wal_policy.drop_slot_over_bytes =
            options_.get_number("wal_drop_slot", 1, UINT64_MAX);
        if (auto interval = options_.get_number("base_interval", 60, kTenYears)) {
            config.base_interval = std::chrono::seconds(*interval);
        }
        if (auto keep = options_.get_number("base_retention", 1, 10000)) {
            config.base_retention = static_cast<size_t>(*keep);
        }
    }

    OptionTable options_;
    bool once_ = false;
};

}  // namespace

std::unique_ptr<Command> make_run_command() {
    return std::make_unique<RunCommand>();
}

}  // namespace pgward::commands
