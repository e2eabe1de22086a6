#include <unistd.h>

#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands/command.hpp"
#include "commands/encryption_options.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/offsite.hpp"
#include "domain/pitr.hpp"
#include "domain/pitr_offsite.hpp"
#include "domain/restore_job.hpp"
#include "domain/verify.hpp"
#include "util/error.hpp"
#include "util/files.hpp"

namespace pgward::commands {
namespace {

class RestoreCommand : public Command {
  public:
    const char* name() const override { return "restore"; }
    const char* summary() const override {
        return "restore a backup with pg_restore, behind preflight checks and guard rails";
    }

    void setup(CLI::App& app) override {
        app.add_option("backup", backup_,
                       "a .dump file, its name in --dir, latest, or an s3:// URL of one");
        add_connection_options(options_, app);
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory: where latest is found and the safety dump goes");
        options_.add(app, "from_db", "--from-db", "",
                     "with latest: the source database whose newest backup to restore "
                     "(default: the target's name)");
        options_.add(app, "jobs", "-j,--jobs", "", "parallel pg_restore jobs");
        options_.add(app, "pg_bin", "--pg-bin", "PGWARD_PG_BIN",
                     "directory of pg_restore and pg_dump");
        app.add_flag("--clean", flags_.clean,
                     "drop objects before recreating them (needs consent)");
        app.add_flag("--if-exists", flags_.if_exists, "with --clean: DROP ... IF EXISTS");
        app.add_flag("--single-transaction", flags_.single_transaction, "all or nothing");
        app.add_flag("--no-owner", flags_.no_owner, "do not set object owners");
        app.add_flag("--no-privileges", flags_.no_privileges, "do not restore GRANTs");
        app.add_flag("--create", create_, "create the target database if it does not exist");
        app.add_flag("--yes", yes_, "consent to replacing a non-empty database");
        app.add_flag("--no-safety-backup", no_safety_,
                     "skip the dump of the target taken before --clean");
        app.add_flag("--terminate-sessions", terminate_, "end other sessions on the target");
        app.add_flag("--json", json_, "print the result as JSON");
        add_watchdog_options(options_, app);
        app.add_flag("--remote", remote_,
                     "restore from the remote store: latest or a name there (checked as it "
                     "streams); with --pitr, the base backup and WAL copied there");
        add_remote_options(options_, app, RemoteFlag::SelectsTheStore);
        add_identity_options(options_, app);
        add_encryption_options(options_, app);
        app.add_flag("--pitr", pitr_,
                     "point-in-time recovery of the whole server: a base backup and the WAL "
                     "laid out in --pgdata (docs/pitr.md)");
        app.add_option("--to", pitr_target_,
                       "with --pitr: latest (default), a time with its zone, an LSN, a restore "
                       "point's name, or a backup's file (the restore point it made)");
        app.add_option("--pgdata", pgdata_,
                       "with --pitr: the new data directory (absent or empty)");
        app.add_option("--system", system_,
                       "with --pitr: the server's system identifier, when --dir holds several");
        app.add_flag("--fetch-wal", fetch_wal_,
                     "with --pitr: the server fetches each WAL segment through pgward as it "
                     "needs it (restore_command) instead of a copy in pg_wal");
        app.add_option("--owner", owner_,
                       "with --pitr, as root: the user the data directory is for (default: the "
                       "folder's owner, else postgres)");
    }

    int run() override {
        if (pitr_) {
            return run_pitr();
        }
        if (!pitr_target_.empty() || !pgdata_.empty() || !system_.empty() || !owner_.empty()) {
            throw usage_error("--to, --pgdata, --system and --owner go with --pitr");
        }
        if (backup_.empty()) {
            throw usage_error(
                "restore needs a backup: a .dump file, its name in --dir, latest, "
                "or an s3:// URL",
                "or --pitr for a point-in-time recovery of the whole server");
        }
        RestoreRequest request;
        request.keys = decryption_keys(options_);
        request.safety_encryption = encryption_keys(options_);
        request.target = options_.connection();
        request.backup_dir = options_.get_or("dir", "/backups");
        if (auto pg_bin = options_.get("pg_bin")) {
            request.pg_bin = pg_bin->value;
        }
        if (auto jobs = options_.get_number("jobs", 1, 64)) {
            request.flags.jobs = static_cast<int>(*jobs);
        }
        request.flags.clean = flags_.clean;
        request.flags.if_exists = flags_.if_exists;
        request.flags.single_transaction = flags_.single_transaction;
        request.flags.no_owner = flags_.no_owner;
        request.flags.no_privileges = flags_.no_privileges;
        if (flags_.if_exists && !flags_.clean) {
            throw usage_error("--if-exists goes with --clean", "add --clean or drop --if-exists");
        }
        if (flags_.single_transaction && request.flags.jobs > 1) {
            throw usage_error("--single-transaction cannot be combined with --jobs",
                              "choose one of them");
        }
        request.create = create_;
        request.consent = yes_;
        request.safety_backup = !no_safety_;
        request.terminate_sessions = terminate_;
        request.limits = watchdog_limits(options_);
        if (::isatty(STDIN_FILENO) && ::isatty(STDERR_FILENO)) {
            request.ask_consent = [](const std::string& database, const std::string& plan) {
                std::fprintf(stderr,
                             "%s\nThis replaces the contents of database \"%s\".\nType its "
                             "name to confirm: ",
                             plan.c_str(), database.c_str());
                std::string answer;
                std::getline(std::cin, answer);
                return answer == database;
            };
        }
        request.backup = backup_;
        if (auto from = options_.get("from_db")) {
            request.from_db = from->value;
        }
        // From the bucket: fetched (checked against its manifest as it
        // streams) into a private directory that goes when the restore ends.
        std::optional<FetchedBackup> fetched;
        if (remote_ || backup_.rfind("s3://", 0) == 0) {
            const RemoteConfig config = required_remote_config(options_);
            const storage::S3Store store(storage::S3Client(config.s3), config.prefix);
            std::optional<std::string> source = request.from_db;
            if (!source) {
                source = database_name(options_);
            }
            const std::vector<BackupId> ids = select_stored_backups(store, backup_, source);
            if (backup_ == "all") {
                throw usage_error("restore takes one backup, not all");
            }
            ensure_directory(request.backup_dir);
            fetched.emplace(store, ids.front(), request.backup_dir);
            request.backup = fetched->dump().string();
        }

        RestoreResult result = run_restore_job(request);
        if (json_) {
            nlohmann::ordered_json doc;
            doc["restore_success"] = result.success;
            doc["restoring"] = result.plan;
            doc["file"] = result.archive.string();
            doc["source_database"] = result.source_database
                                         ? nlohmann::ordered_json(*result.source_database)
                                         : nlohmann::ordered_json();
            doc["taken_at"] = result.taken_at ? nlohmann::ordered_json(*result.taken_at)
                                              : nlohmann::ordered_json();
            doc["target_database"] = result.target_database;
            doc["connections_blocked"] = result.connections_blocked;
            doc["archive_version"] = result.archive_version;
            doc["safety_backup"] = result.safety_backup
                                       ? nlohmann::ordered_json(result.safety_backup->string())
                                       : nlohmann::ordered_json();
            doc["errors"] = result.errors;
            doc["benign_notices"] = result.benign_notices;
            doc["duration_seconds"] = result.duration_seconds;
            fmt::print("{}\n", doc.dump(2));
        } else if (result.safety_backup) {
            fmt::print("safety backup: {}\n", result.safety_backup->string());
        }
        if (!result.success) {
            throw failure(
                fmt::format("restore of {} into \"{}\" failed with {} error(s); first: {}",
                            result.archive.filename().string(), result.target_database,
                            result.errors.size(),
                            result.errors.empty() ? "?" : result.errors.front()),
                result.safety_backup
                    ? "the target's previous contents are in " + result.safety_backup->string()
                    : "see pg_restore's errors above");
        }
        return 0;
    }

  private:
    int run_pitr() {
        if (!backup_.empty()) {
            throw usage_error(
                "--pitr takes no backup argument: it recovers the whole server from "
                "base backups and WAL",
                "choose the moment with --to");
        }
        if (pgdata_.empty()) {
            throw usage_error("--pitr needs --pgdata: the new data directory to lay out");
        }
        PitrRequest request;
        request.dir = options_.get_or("dir", "/backups");
        request.pgdata = std::filesystem::absolute(pgdata_);
        if (!system_.empty()) {
            request.system = parse_number(Setting{system_, "--system", true}, 1, UINT64_MAX);
        }
        std::optional<FetchedPitrArchive> fetched;
        if (remote_) {
            if (fetch_wal_) {
                throw usage_error("--fetch-wal does not go with --remote",
                                  "the WAL fetched from the store is copied into pg_wal");
            }
            const RemoteConfig config = required_remote_config(options_);
            const storage::S3Store store(storage::S3Client(config.s3), config.prefix);
            // Fetched beside the new data directory: it is copied from there.
            fetched.emplace(store, request.system, pitr_target_, request.pgdata.parent_path(),
                            decryption_keys(options_));
            request.dir = fetched->dir();
            request.system = fetched->system();
            request.target = fetched->target();
            request.archive_location = fetched->wal_location();
        } else {
            auto at_backup = backup_restore_point(request.dir, pitr_target_);
            request.target =
                at_backup ? *at_backup
                          : RecoveryTarget::parse(pitr_target_.empty() ? "latest" : pitr_target_);
        }
        if (!owner_.empty()) {
            request.owner = owner_;
        }
        request.pgward = std::filesystem::read_symlink("/proc/self/exe");
        request.copy_wal = !fetch_wal_;
        const PitrPlan plan = restore_pitr(request);
        fmt::print("{}\n", request.pgdata.string());
        fmt::print(stderr,
                   "Recovery to {} is laid out in {} (base backup {}, WAL {} to {}).\n"
                   "Start PostgreSQL {} on it, e.g. pg_ctl -D {} start; it replays the WAL and "
                   "promotes. In compose: stop the postgres service, mount this folder as its "
                   "data volume, start it (docs/pitr.md).\n",
                   request.target.describe(), request.pgdata.string(), plan.base.name,
                   plan.first_segment, plan.last_segment, plan.base.server_version,
                   request.pgdata.string());
        return 0;
    }

    OptionTable options_;
    bool pitr_ = false;
    bool fetch_wal_ = false;
    std::string pitr_target_;
    std::string pgdata_;
    std::string system_;
    std::string owner_;
    std::string backup_;
    PgRestoreFlags flags_;
    bool create_ = false;
    bool yes_ = false;
    bool no_safety_ = false;
    bool terminate_ = false;
    bool json_ = false;
    bool remote_ = false;
};

}  // namespace

std::unique_ptr<Command> make_restore_command() {
    return std::make_unique<RestoreCommand>();
}

}  // namespace pgward::commands
