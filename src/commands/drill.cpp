#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/encryption_options.hpp"
#include "commands/registry.hpp"
#include "commands/remote_options.hpp"
#include "domain/drill.hpp"
#include "domain/offsite.hpp"
#include "domain/pitr_offsite.hpp"
#include "domain/repository.hpp"
#include "domain/verify.hpp"
#include "pg/catalog.hpp"
#include "util/error.hpp"
#include "util/files.hpp"

namespace pgward::commands {
namespace {

class DrillCommand : public Command {
  public:
    const char* name() const override { return "drill"; }
    const char* summary() const override {
        return "the restore drill: prove a dump restores, and write the JSON report";
    }

    void setup(CLI::App& app) override {
        add_connection_options(options_, app);
        options_.add(app, "drill_db", "--drill-db", "DRILL_DB",
                     "scratch database (default <db>_restore_drill); dropped and recreated");
        options_.add(app, "migrations", "--migrations", "", "directory of *.sql migrations");
        options_.add(app, "migrate_cmd", "--migrate-cmd", "",
                     "command that migrates $DATABASE_URL (e.g. alembic upgrade head)");
        options_.add(app, "seed_sql", "--seed-sql", "",
                     "SQL that seeds marker rows (other schemas)");
        options_.add(app, "report_dir", "--report-dir", "",
                     "where the report goes (default reports)");
        options_.add(app, "backup", "--backup", "", "drill an existing backup: a file or latest");
        options_.add(app, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory for --backup latest");
        options_.add(app, "pg_bin", "--pg-bin", "PGWARD_PG_BIN",
                     "directory of the PostgreSQL tools");
        app.add_option("--version-table", version_table_,
                       "TABLE.COLUMN of the schema version, or none")
            ->default_val("alembic_version.version_num");
        app.add_flag("--sandbox", sandbox_,
                     "with --backup: restore into a private throwaway cluster");
        app.add_flag("--keep-drill-db", keep_, "keep the drill database afterwards");
        app.add_flag("--pitr", pitr_,
                     "point-in-time recovery drill: the newest base backup and the WAL recovered "
                     "in a sandbox, proven against the newest dump's restore point "
                     "(docs/pitr.md)");
        app.add_option("--to", pitr_target_,
                       "with --pitr: the target, as restore --pitr --to takes it (default: the "
                       "newest dump's restore point)");
        app.add_option("--system", system_,
                       "with --pitr: the server's system identifier, when --dir holds several");
        add_watchdog_options(options_, app);
        app.add_flag("--remote", remote_,
                     "drill a backup from the remote store (--backup latest by default): the "
                     "host-loss rehearsal, with no local backup needed; with --pitr, the base "
                     "backup and WAL copied there");
        add_remote_options(options_, app, RemoteFlag::SelectsTheStore);
        add_identity_options(options_, app);
    }

    int run() override {
        DrillRequest request;
        request.server = options_.connection();
        request.source_database = pg::resolve_database_name(request.server);
        request.drill_db = options_.get_or("drill_db", request.source_database + "_restore_drill");
        request.report_dir = options_.get_or("report_dir", "reports");
        request.version_table = VersionTable::parse(version_table_);
        request.keep_drill_db = keep_;
        request.sandbox = sandbox_;
        request.limits = watchdog_limits(options_);
        request.keys = decryption_keys(options_);
        if (auto s = options_.get("pg_bin")) {
            request.pg_bin = s->value;
        }
        auto migrations = options_.get("migrations");
        auto migrate_cmd = options_.get("migrate_cmd");
        auto backup = options_.get("backup");
        if (pitr_) {
            if (migrations || migrate_cmd || backup) {
                throw usage_error(
                    "--pitr recovers base backups and WAL; it takes no --backup, "
                    "--migrations or --migrate-cmd",
                    "choose the moment with --to");
            }
            request.pitr = true;
            request.sandbox = true;
            request.backup_dir = options_.get_or("dir", "/backups");
            if (!pitr_target_.empty()) {
                request.pitr_target = pitr_target_;
            }
            if (!system_.empty()) {
                request.system = parse_number(Setting{system_, "--system", true}, 1, UINT64_MAX);
            }
            std::optional<FetchedPitrArchive> fetched;
            if (remote_) {
                const RemoteConfig config = required_remote_config(options_);
                const storage::S3Store store(storage::S3Client(config.s3), config.prefix);
                const uint64_t system = stored_system(store, request.system);
                if (!request.pitr_target) {
                    // The newest dump's restore point decides which base backup is fetched.
                    request.pitr_target = newest_stored_dump_with_restore_point(
                        store, request.source_database, system);
                    if (!request.pitr_target) {
                        throw failure(
                            fmt::format("no backup of \"{}\" in {} made a restore point on "
                                        "server {}: nothing to prove the recovery against",
                                        request.source_database, store.location(), system),
                            "take a backup while WAL is streamed, or give --to");
                    }
                }
                ensure_directory(request.backup_dir);
                fetched.emplace(store, system, *request.pitr_target, request.backup_dir,
                                request.keys);
                request.backup_dir = fetched->dir();
                request.system = system;
            }
            return finish(request);
        }
        if (!pitr_target_.empty() || !system_.empty()) {
            throw usage_error("--to and --system go with --pitr");
        }
        std::optional<FetchedBackup> fetched;
        if (remote_) {
            if (migrations || migrate_cmd) {
                throw usage_error(
                    "--remote drills a stored backup; it takes no --migrations or "
                    "--migrate-cmd");
            }
            const RemoteConfig config = required_remote_config(options_);
            const storage::S3Store store(storage::S3Client(config.s3), config.prefix);
            const std::string spec = backup ? backup->value : "latest";
            const std::vector<BackupId> ids =
                select_stored_backups(store, spec, request.source_database);
            if (spec == "all") {
                throw usage_error("the drill takes one backup, not all");
            }
            const std::filesystem::path dir = options_.get_or("dir", "/backups");
            ensure_directory(dir);
            fetched.emplace(store, ids.front(), dir);
            request.backup = fetched->dump();
            request.backup_source = fetched->source();
        } else if (backup) {
            if (migrations || migrate_cmd) {
                throw usage_error(
                    "--backup drills an existing dump; it takes no --migrations or "
                    "--migrate-cmd");
            }
            const std::filesystem::path dir = options_.get_or("dir", "/backups");
            request.backup = resolve_backup(backup->value, dir, request.source_database,
                                            server_to_drill(request, dir, backup->value));
        } else {
            if (sandbox_) {
                throw usage_error("--sandbox goes with --backup FILE|latest");
            }
            if (static_cast<bool>(migrations) == static_cast<bool>(migrate_cmd)) {
                throw usage_error("the drill needs one of --migrations DIR or --migrate-cmd CMD",
                                  "e.g. --migrations examples/quiz_arena/migrations");
            }
            if (migrations) {
                request.migrations_dir = migrations->value;
            } else {
                request.migrate_cmd = migrate_cmd->value;
            }
        }
        if (auto seed = options_.get("seed_sql")) {
            request.seed_sql = seed->value;
        }
        if (!request.sandbox) {
            check_drill_database(request.drill_db, request.source_database);
        }
        return finish(request);
    }

  private:
    // Runs the drill, prints its report's path; a failed drill is exit 1
    // naming its failed checks.
    static int finish(const DrillRequest& request) {
        DrillOutcome outcome = run_drill(request);
        fmt::print("{}\n", outcome.report_path.string());
        if (!outcome.success) {
            std::string failed;
            for (const auto& check : outcome.report["checks"]) {
                if (!check["passed"].get<bool>()) {
                    failed += (failed.empty() ? "" : "; ") + check["name"].get<std::string>() +
                              ": " + check["actual"].get<std::string>();
                }
            }
            throw failure(
                fmt::format("restore drill failed: {}", failed.empty() ? "no checks ran" : failed),
                "see the report " + outcome.report_path.string());
        }
        return 0;
    }

    // `latest` of a database whose backups come from more than one server is
    // the newest of the server drilled for; that server is asked only then
    // (a drill rehearses a lost server too: unreachable, the choice stays
    // ambiguous and resolve_backup says so, naming the servers).
    static std::optional<std::string> server_to_drill(const DrillRequest& request,
                                                      const std::filesystem::path& dir,
                                                      const std::string& spec) {
        if (spec != "latest" ||
            BackupRepository(dir).systems_of(request.source_database).size() < 2) {
            return std::nullopt;
        }
        try {
            pg::Connection conn = pg::Connection::open(request.server, "pgward drill");
            return pg::system_identifier(conn);
        } catch (const Error&) {
            return std::nullopt;
        }
    }

    OptionTable options_;
    std::string version_table_;
    bool sandbox_ = false;
    bool keep_ = false;
    bool remote_ = false;
    bool pitr_ = false;
    std::string pitr_target_;
    std::string system_;
};

}  // namespace

std::unique_ptr<Command> make_drill_command() {
    return std::make_unique<DrillCommand>();
}

}  // namespace pgward::commands
