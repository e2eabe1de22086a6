#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include <map>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "commands/service_options.hpp"
#include "domain/health.hpp"
#include "domain/repository.hpp"
#include "domain/restore_job.hpp"
#include "domain/state.hpp"
#include "util/error.hpp"

namespace pgward::commands {
namespace {

struct Observed {
    std::string database;
    std::optional<ServiceState> state;
    std::vector<BackupEntry> backups;
    Health health;
    size_t safety_dumps = 0;
    // server system identifier -> how many of the backups came from it
    std::map<std::string, size_t> servers;
    std::optional<LeftConnectionBlock> left_block;
};

// What only `status` shows (healthcheck runs often and needs none of it):
// safety dumps, the servers the backups came from (a manifest read each), a
// connection block a killed restore left.
void observe_more(Observed& o, const BackupRepository& repo) {
    o.safety_dumps = repo.safety_ids(o.database).size();
    for (const BackupEntry& e : o.backups) {
        if (auto system = repo.system_of(e.id)) {
            ++o.servers[*system];
        }
    }
    for (LeftConnectionBlock& left : left_connection_blocks(repo.dir())) {
        if (left.database == o.database) {
            o.left_block = std::move(left);
        }
    }
}

Observed observe(const OptionTable& options) {
    BackupRepository repo(options.get_or("dir", "/backups"));
    Observed o;
    o.database = service_database(options);
    o.state = load_state(repo.path_of(state_file_name(o.database)));
    o.backups = repo.list(o.database);
    const TimePoint now = now_seconds();
    Freshness freshness = assess_freshness(o.backups, now);
    o.health = evaluate_health(o.state, freshness.newest_finished, now, health_policy(options),
                               freshness.future_dated);
    return o;
}

void add_common(OptionTable& options, CLI::App& app) {
    options.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR", "backup directory (default /backups)");
    options.add(app, "dbname", "-d,--dbname", "POSTGRES_DB", "the database");
    options.add(app, "user", "-U,--username", "POSTGRES_USER", "user name (the default database)");
    add_health_options(options, app);
}

class StatusCommand : public Command {
  public:
    const char* name() const override { return "status"; }
    const char* summary() const override {
        return "last backup, last success/failure and why, retention, health";
    }
    void setup(CLI::App& app) override {
        add_common(options_, app);
        app.add_flag("--json", json_, "print JSON");
    }
    int run() override {
        Observed o = observe(options_);
        observe_more(o, BackupRepository(options_.get_or("dir", "/backups")));
        if (json_) {
            nlohmann::ordered_json doc;
            doc["database"] = o.database;
            doc["healthy"] = o.health.healthy;
            doc["status"] = o.health.status;
            doc["reason"] = o.health.reason;
            doc["backups"] = o.backups.size();
            doc["future_dated_backups"] = o.health.future_dated;
            doc["safety_dumps"] = o.safety_dumps;
            doc["servers"] = o.servers;
            if (o.left_block) {
                doc["connections_left_blocked"] = {{"since", o.left_block->since},
                                                   {"undo", o.left_block->undo_sql}};
            }
            doc["newest_backup"] = o.backups.empty()
                                       ? nlohmann::ordered_json()
                                       : nlohmann::ordered_json(o.backups.front().id.dump_file());
            doc["state"] = o.state ? nlohmann::ordered_json::parse(state_to_json(*o.state))
                                   : nlohmann::ordered_json();
            fmt::print("{}\n", doc.dump(2));
            return 0;
        }
        fmt::print("database:        {}\n", o.database);
        fmt::print("health:          {} ({})\n", o.health.healthy ? "healthy" : "UNHEALTHY",
                   o.health.reason);
        fmt::print("backups kept:    {}\n", o.backups.size());
        if (o.health.future_dated > 0) {
            fmt::print("future-dated:    {} (never fresh; see the reason above)\n",
                       o.health.future_dated);
        }
        if (!o.backups.empty()) {
            fmt::print("newest backup:   {}\n", o.backups.front().id.dump_file());
        }
        if (o.safety_dumps > 0) {
            fmt::print("safety dumps:    {} (taken by restore; `pgward list` shows them)\n",
                       o.safety_dumps);
        }
        if (o.servers.size() > 1) {
            std::string parts;
            for (const auto& [system, count] : o.servers) {
                parts +=
                    fmt::format("{}{} from server {}", parts.empty() ? "" : ", ", count, system);
            }
            fmt::print("servers:         {} ({}); latest and retention work per server\n",
                       o.servers.size(), parts);
        }
        if (o.left_block) {
            fmt::print(
                "WARNING:         a restore interrupted at {} left new connections to "
                "\"{}\" blocked; the next restore puts the setting back, or run: {}\n",
                o.left_block->since, o.database, o.left_block->undo_sql);
        }
        if (o.state) {
            const ServiceState& s = *o.state;
            fmt::print("service started: {}\n", s.service_started_at);
            fmt::print("last attempt:    {}{}\n", s.last_attempt_at.value_or("never"),
                       s.running ? " (running now)" : "");
            fmt::print("last success:    {} {}\n", s.last_success_at.value_or("never"),
                       s.last_success_file.value_or(""));
            if (s.last_failure_at) {
                fmt::print("last failure:    {}: {}\n", *s.last_failure_at,
                           s.last_failure_reason.value_or(""));
            }
            fmt::print("attempts:        {} succeeded, {} failed, {} failed in a row\n",
                       s.successes_total, s.failures_total, s.consecutive_failures);
            if (s.remote) {
                fmt::print("offsite:         {} (proof: {})\n", *s.remote,
                           s.remote_proof == "size" ? "size only, not read back"
                                                    : "each upload read back, SHA-256");
                fmt::print("offsite proven:  {} {}\n", s.last_remote_success_at.value_or("never"),
                           s.last_remote_file.value_or(""));
                if (s.last_remote_failure_at) {
                    fmt::print("offsite failure: {}: {}\n", *s.last_remote_failure_at,
                               s.last_remote_failure_reason.value_or(""));
                }
                fmt::print("offsite copies:  {} succeeded, {} failed, {} failed in a row\n",
                           s.remote_successes_total, s.remote_failures_total,
                           s.remote_consecutive_failures);
            }
            if (s.wal) {
                const WalStreamState& w = *s.wal;
                fmt::print("WAL streaming:   {} since {} (slot {}{})\n", w.streaming ? "yes" : "NO",
                           w.since, w.slot, w.slot_exists ? "" : ", missing");
                if (w.checked_at && w.lag_bytes) {
                    fmt::print(
                        "WAL lag:         {} bytes, {:.1f} s behind the server; the slot "
                        "keeps {} bytes (at {})\n",
                        *w.lag_bytes, w.lag_seconds.value_or(0), w.slot_retained_bytes.value_or(0),
                        *w.checked_at);
                } else if (w.checked_at) {
                    fmt::print(
                        "WAL lag:         unknown (the role needs pg_read_all_stats to "
                        "see it); the slot keeps {} bytes (at {})\n",
                        w.slot_retained_bytes.value_or(0), *w.checked_at);
                }
                if (w.problem) {
                    fmt::print("WAL problem:     {}\n", *w.problem);
                }
                if (w.timeline_switch) {
                    fmt::print("timeline switch: {}: {}\n", w.timeline_switch_at.value_or("?"),
                               *w.timeline_switch);
                }
                if (s.remote) {
                    fmt::print("WAL offsite:     newest segment {} (copied {})\n",
                               w.offsite_newest.value_or("none yet"),
                               w.offsite_at.value_or("never"));
                }
                if (w.base_failure) {
                    fmt::print("base backup failure: {}: {} ({} in a row)\n",
                               w.base_failure_at.value_or("?"), *w.base_failure, w.base_failures);
                }
                if (w.offsite_failure) {
                    fmt::print("WAL offsite failure: {}: {} ({} in a row)\n",
                               w.offsite_failure_at.value_or("?"), *w.offsite_failure,
                               w.offsite_failures);
                }
            }
        } else {
            fmt::print("service state:   none (pgward run has not written one here)\n");
        }
        return 0;
    }

  private:
    OptionTable options_;
    bool json_ = false;
};

class HealthcheckCommand : public Command {
  public:
    const char* name() const override { return "healthcheck"; }
    const char* summary() const override {
        return "exit 0 when the newest backup is fresh and the last attempt succeeded, 1 otherwise";
    }
    void setup(CLI::App& app) override { add_common(options_, app); }
    int run() override {
        Observed o = observe(options_);
        fmt::print("{}: {}\n", o.health.healthy ? "healthy" : "unhealthy", o.health.reason);
        return o.health.healthy ? 0 : 1;
    }

  private:
    OptionTable options_;
};

}  // namespace

std::unique_ptr<Command> make_status_command() {
    return std::make_unique<StatusCommand>();
}
std::unique_ptr<Command> make_healthcheck_command() {
    return std::make_unique<HealthcheckCommand>();
}

}  // namespace pgward::commands
