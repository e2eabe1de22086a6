#include <unistd.h>

#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands/command.hpp"
#include "commands/encryption_options.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/offsite.hpp"
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
                       "a .dump file, its name in --dir, latest, or an s3:// URL of one")
            ->required();
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
                     "streams)");
        add_remote_options(options_, app, RemoteFlag::SelectsTheStore);
        add_identity_options(options_, app);
        add_encryption_options(options_, app);
    }

    int run() override {
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
    OptionTable options_;
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
