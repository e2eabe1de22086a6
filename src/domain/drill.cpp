#include "domain/drill.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "archive/summary.hpp"
#include "domain/backup_job.hpp"
#include "domain/json_fields.hpp"
#include "domain/manifest.hpp"
#include "domain/migrations.hpp"
#include "domain/pitr.hpp"
#include "domain/repository.hpp"
#include "domain/restore_job.hpp"
#include "domain/verify.hpp"
#include "pg/fingerprint.hpp"
#include "pg/sandbox.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/lock.hpp"
#include "util/log.hpp"
#include "util/signals.hpp"
#include "util/time.hpp"

namespace pgward {
namespace {

FileLock lock_report_dir(const std::filesystem::path& dir) {
    for (int attempt = 0;; ++attempt) {
        if (std::optional<FileLock> lock = FileLock::try_acquire_directory(dir)) {
            return std::move(*lock);
        }
        if (attempt == 300) {
            throw failure("another drill has held the report directory's lock for a minute",
                          "look for a hung pgward drill writing to " + dir.string());
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
}

// Temp files of reports whose drill was killed while writing them. Called
// with the report directory's lock held.
void remove_report_leftovers(const std::filesystem::path& dir) {
    std::error_code ec;
    bool removed = false;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.rfind("restore_drill_result_", 0) == 0 && name.size() > 9 &&
            name.compare(name.size() - 9, 9, ".json.tmp") == 0) {
            remove_file(entry.path());
            log::info("removed leftover temp file of an interrupted drill report",
                      {{"file", name}});
            removed = true;
        }
    }
    if (removed) {
        fsync_directory(dir);
    }
}

using json = nlohmann::ordered_json;
using SteadyClock = std::chrono::steady_clock;

std::string table_key(const std::string& schema, const std::string& name) {
    return schema + "." + name;
}

// A drill run: its steps, checks and facts, turned into the report.
class Drill {
  public:
    explicit Drill(const DrillRequest& request) : request_(request) {
        started_wall_ = now_seconds();
        started_ = SteadyClock::now();
    }

    // Runs a step unless an earlier one failed; records its time and error.
    bool step(const std::string& name, const std::function<void()>& body) {
        if (failed_) {
            steps_.push_back({{"name", name},
                              {"ok", false},
                              {"seconds", 0},
                              {"error", "skipped: an earlier step failed"}});
            return false;
        }
        auto begin = SteadyClock::now();
        std::string error;
        log::info("drill step", {{"step", name}});
        try {
            if (int sig = pending_interrupt(); sig != 0) {
                throw failure(std::string("interrupted by ") + signal_name(sig));
            }
            body();
        } catch (const Error& e) {
            error = e.what();
        } catch (const std::exception& e) {
            error = std::string("internal error: ") + e.what();
        }
        double seconds = std::chrono::duration<double>(SteadyClock::now() - begin).count();
        steps_.push_back({{"name", name},
                          {"ok", error.empty()},
                          {"seconds", std::round(seconds * 1000) / 1000},
                          {"error", error.empty() ? json() : json(error)}});
        if (!error.empty()) {
            failed_ = true;
            log::error("drill step failed", {{"step", name}, {"error", error}});
            checks_.push_back({"step_" + name, false, "the step succeeds", error});
        }
        return error.empty();
    }

    void check(Check c) { checks_.push_back(std::move(c)); }
    void warn(const std::string& text) {
        log::warn("drill warning", {{"warning", text}});
        warnings_.push_back(text);
    }

    DrillOutcome finish(json facts, const std::vector<json>& tables) {
        bool success = !failed_ && !checks_.empty() && all_passed(checks_);
        auto finished = now_seconds();
        json report;
        report["format"] = kDrillReportFormat;
        report["restore_success"] = success;
        report["started_at"] = format_iso_utc(started_wall_);
        report["finished_at"] = format_iso_utc(finished);
        report["duration_seconds"] =
            std::round(std::chrono::duration<double>(SteadyClock::now() - started_).count() *
                       1000) /
            1000;
        for (auto& [key, value] : facts.items()) {
            report[key] = value;
        }
        json checks = json::array();
        for (const Check& c : checks_) {
            checks.push_back(to_json(c));
        }
        report["checks"] = checks;
        report["warnings"] = warnings_;
        report["steps"] = steps_;
        report["tables"] = tables;

        std::filesystem::path dir = request_.report_dir;
        ensure_directory(dir);
        // Drills that finish together (the service's and one by hand) take
        // turns here, so the temp file a killed drill left can be removed
        // without touching one being written.
        FileLock lock = lock_report_dir(dir);
        remove_report_leftovers(dir);
        std::filesystem::path path;
        for (;;) {
            path = dir / ("restore_drill_result_" + format_compact_utc(now_seconds()) + ".json");
            std::error_code ec;
            if (!std::filesystem::exists(path, ec)) {
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
        write_file_atomically(path, report.dump(2) + "\n", AtomicFile::Publish::NoReplace);
        log::write(success ? log::Level::Info : log::Level::Error, "drill end",
                   {{"restore_success", success ? "true" : "false"}, {"report", path.string()}});
        return {success, path, report};
    }

  private:
    const DrillRequest& request_;
    TimePoint started_wall_;
    SteadyClock::time_point started_;
    json steps_ = json::array();
    std::vector<Check> checks_;
    std::vector<std::string> warnings_;
    bool failed_ = false;
};

void recreate_database(const pg::ConnectionOptions& server, const std::string& name) {
    pg::Connection admin = pg::Connection::open(server.with_dbname("postgres"), "pgward drill");
    admin.exec("DROP DATABASE IF EXISTS " + admin.escape_identifier(name) + " WITH (FORCE)");
    admin.exec("CREATE DATABASE " + admin.escape_identifier(name) + " TEMPLATE template0");
}

void drop_database(const pg::ConnectionOptions& server, const std::string& name) {
    pg::Connection admin = pg::Connection::open(server.with_dbname("postgres"), "pgward drill");
    admin.exec("DROP DATABASE IF EXISTS " + admin.escape_identifier(name) + " WITH (FORCE)");
}

bool has_column(pg::Connection& conn, const std::string& table, const std::string& column) {
    return conn.query_value(
               "SELECT count(*) FROM information_schema.columns WHERE table_schema = "
               "'public' AND table_name = $1 AND column_name = $2",
               {table, column}) == "1";
}

// One marker row with a value nobody else has: beyond the column's max and
// large enough to stand out.
std::optional<std::string> seed_marker(pg::Connection& conn, const std::string& table,
                                       const std::string& column) {
    if (!has_column(conn, table, column)) {
        return std::nullopt;
    }
    std::random_device rd;
    std::string q_table = "public." + conn.escape_identifier(table);
    std::string q_column = conn.escape_identifier(column);
    std::string value =
        conn
            .query_value(fmt::format(
                "SELECT greatest(coalesce(max({0}), 0), 9000000000000) + 1 + {1} FROM {2}",
                q_column, rd() % 1000000, q_table))
            .value();
    conn.exec(fmt::format("INSERT INTO {} ({}) VALUES ($1)", q_table, q_column), {value});
    return value;
}

bool marker_present(pg::Connection& conn, const std::string& table, const std::string& column,
                    const std::string& value) {
    if (conn.query_value("SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                         {"public." + conn.escape_identifier(table)}) != "t") {
        return false;  // the whole table is gone: reported by the row-count check too
    }
    return conn.query_value(
               fmt::format("SELECT count(*) FROM public.{} WHERE {} = $1",
                           conn.escape_identifier(table), conn.escape_identifier(column)),
               {value}) != "0";
}

std::optional<uint64_t> rows_of(const std::map<std::string, uint64_t>& rows,
                                const std::string& key) {
    auto it = rows.find(key);
    return it == rows.end() ? std::nullopt : std::optional<uint64_t>(it->second);
}

struct Comparison {
    std::vector<json> tables;
};

using Fingerprints = std::map<std::string, std::string>;

// fp1 of every table of a live database (pg_dump's session settings), over
// exactly the rows pg_dump writes. With the archive's summary, each table is
// read over the archive's column list in its order: a restored child of a
// parent that gained a column later has its columns in another order than
// the source, and the same rows must give the same fp1.
Fingerprints live_fingerprints(pg::Connection& conn, const std::vector<TableCount>& tables,
                               const archive::ArchiveSummary* archive = nullptr) {
    pg::set_dump_session_settings(conn);
    Fingerprints out;
    const std::optional<archive::TableLookup> archived =
        archive != nullptr ? std::optional<archive::TableLookup>(archive->tables) : std::nullopt;
    for (const TableCount& t : tables) {
        const archive::TableSummary* in_archive =
            archived ? archived->find(t.schema, t.name) : nullptr;
        std::vector<std::string> columns = in_archive != nullptr && in_archive->columns
                                               ? *in_archive->columns
                                               : pg::dumped_columns(conn, t.dumped());
        out[table_key(t.schema, t.name)] =
            pg::fingerprint_table(conn, t.dumped(), columns).to_string();
    }
    return out;
}

Fingerprints archive_fingerprints(const archive::ArchiveSummary& summary) {
    Fingerprints out;
    for (const archive::TableSummary& t : summary.tables) {
        out[table_key(t.schema, t.name)] = t.fingerprint;
    }
    return out;
}

std::optional<std::string> lookup(const Fingerprints& fps, const std::string& key) {
    auto it = fps.find(key);
    return it == fps.end() ? std::nullopt : std::optional<std::string>(it->second);
}

// Every table's rows before (from the dump's manifest) and after (counted in
// the restored database), and its fp1 before, in the archive and after, with
// a check for each kind of mismatch.
Comparison compare_tables(Drill& drill, const Manifest& manifest,
                          const std::vector<TableCount>& after, const Fingerprints& fp_before,
                          const Fingerprints& fp_archive, const Fingerprints& fp_after) {
    std::map<std::string, uint64_t> after_rows;
    for (const TableCount& t : after) {
        after_rows[table_key(t.schema, t.name)] = t.rows;
    }
    Comparison out;
    std::vector<std::string> mismatched;
    std::vector<std::string> fp_mismatched;
    std::map<std::string, bool> seen;
    for (const TableEntry& t : manifest.tables) {
        std::string key = table_key(t.schema, t.name);
        seen[key] = true;
        auto rows_after = rows_of(after_rows, key);
        bool rows_match = t.rows && rows_after && *t.rows == *rows_after;
        if (!rows_match) {
            mismatched.push_back(fmt::format("{} ({} before, {} after)", key,
                                             t.rows ? std::to_string(*t.rows) : "?",
                                             rows_after ? std::to_string(*rows_after) : "missing"));
        }
        auto before = lookup(fp_before, key);
        auto in_archive = lookup(fp_archive, key);
        auto restored = lookup(fp_after, key);
        bool fp_match =
            before && in_archive && restored && *before == *in_archive && *in_archive == *restored;
        if (!fp_match) {
            fp_mismatched.push_back(
                fmt::format("{} (before {}, archive {}, after {})", key, before.value_or("none"),
                            in_archive.value_or("none"), restored.value_or("none")));
        }
        out.tables.push_back({{"schema", t.schema},
                              {"name", t.name},
                              {"rows_before", optional_json(t.rows)},
                              {"rows_after", optional_json(rows_after)},
                              {"fingerprint_before", optional_json(before)},
                              {"fingerprint_archive", optional_json(in_archive)},
                              {"fingerprint_after", optional_json(restored)},
                              {"match", rows_match && fp_match}});
    }
    for (const TableCount& t : after) {
        if (!seen.count(table_key(t.schema, t.name))) {
            mismatched.push_back(table_key(t.schema, t.name) + " (not in the backup)");
        }
    }
    std::string detail;
    for (const std::string& m : mismatched) {
        detail += (detail.empty() ? "" : "; ") + m;
    }
    std::string fp_detail;
    for (const std::string& m : fp_mismatched) {
        fp_detail += (fp_detail.empty() ? "" : "; ") + m;
    }
    drill.check({"table_fingerprints_match", fp_mismatched.empty(),
                 "every table's fp1 equal before, in the archive and after",
                 fp_mismatched.empty() ? fmt::format("{} tables match", manifest.tables.size())
                                       : "mismatch: " + fp_detail});
    drill.check({"table_row_counts_match", mismatched.empty(),
                 fmt::format("{} tables with the same row counts", manifest.tables.size()),
                 mismatched.empty() ? fmt::format("{} tables match", manifest.tables.size())
                                    : "mismatch: " + detail});
    return out;
}

void add_smoke_checks(Drill& drill, const SmokeReport& smoke) {
    for (const Check& c : smoke.checks) {
        if (c.name == "schema_version" || c.name == "table_row_counts") {
            continue;  // compared against the dump by the drill's own checks
        }
        Check copy = c;
        copy.name = "smoke_" + c.name;
        drill.check(copy);
    }
}

std::map<std::string, uint64_t> manifest_rows(const Manifest& m) {
    std::map<std::string, uint64_t> rows;
    for (const TableEntry& t : m.tables) {
        if (t.rows) {
            rows[table_key(t.schema, t.name)] = *t.rows;
        }
    }
    return rows;
}

bool has_server_binaries(const std::filesystem::path& dir) {
    return ::access((dir / "initdb").c_str(), X_OK) == 0 &&
           ::access((dir / "postgres").c_str(), X_OK) == 0;
}

Check restore_check(const PgRestoreRun& run) {
    return {"restore_completed", run.ok, "pg_restore without errors",
            run.ok ? "ok"
                   : fmt::format("{} error(s), first: {}", run.messages.errors.size(),
                                 run.messages.errors.front())};
}

struct Restored {
    std::optional<uint64_t> users_after;
    std::optional<uint64_t> updates_after;
    std::vector<json> tables;
};

// Large objects: their number and lo1 before (the manifest), in the archive
// and after the restore; and every sequence at the value the archive set.
void compare_large_objects_and_sequences(Drill& drill, pg::Connection& conn,
                                         const Manifest& manifest,
                                         const archive::ArchiveSummary& archive) {
    pg::LargeObjectsContent after = pg::large_objects_content(conn);
    std::string after_fp = archive::large_objects_fingerprint_text(after.fingerprint);
    std::string archive_fp = archive.large_objects_fingerprint();
    bool counts_match = archive.large_objects == after.count &&
                        (!manifest.large_objects || *manifest.large_objects == after.count);
    bool content_match =
        archive_fp == after_fp &&
        (!manifest.large_objects_fingerprint || *manifest.large_objects_fingerprint == after_fp);
    drill.check(
        {"large_objects_match", counts_match && content_match,
         fmt::format("{} large objects, {}", manifest.large_objects.value_or(archive.large_objects),
                     manifest.large_objects_fingerprint.value_or(archive_fp)),
         fmt::format("archive {} ({}), after {} ({})", archive.large_objects, archive_fp,
                     after.count, after_fp)});

    std::vector<std::string> differ;
    for (const archive::SequenceValue& s : archive.sequences) {
        auto restored = pg::sequence_last_value(conn, s.sequence);
        std::optional<int64_t> expected =
            s.is_called ? std::optional<int64_t>(s.last_value) : std::nullopt;
        if (!restored) {
            differ.push_back(s.sequence + " missing");
        } else if (*restored != expected) {
            differ.push_back(
                fmt::format("{} at {} (archive {})", s.sequence,
                            *restored ? std::to_string(**restored) : std::string("not called"),
                            expected ? std::to_string(*expected) : std::string("not called")));
        }
    }
    std::string detail;
    for (const std::string& d : differ) {
        detail += (detail.empty() ? "" : "; ") + d;
    }
    drill.check({"sequences_match", differ.empty(),
                 fmt::format("{} sequences at the archive's values", archive.sequences.size()),
                 differ.empty() ? fmt::format("{} sequences match", archive.sequences.size())
                                : "mismatch: " + detail});
}

// The source's conditions a smoke check would flag, as the manifest recorded
// them; none for a manifest written before pgward recorded them.
std::optional<SmokeFindings> baseline_of(const Manifest& manifest) {
    if (!manifest.sequences_behind && !manifest.invalid_indexes) {
        return std::nullopt;
    }
    return SmokeFindings{manifest.sequences_behind.value_or(std::vector<std::string>{}),
                         manifest.invalid_indexes.value_or(std::vector<std::string>{})};
}

// The checks both kinds of drill run on the restored database: every
// table's rows and fp1 against the dump, large objects and sequences against
// the archive, and the smoke checks (what the source already had is a
// warning).
Restored check_restored(Drill& drill, pg::Connection& conn, const Manifest& manifest,
                        const SmokeReport& smoke, const Fingerprints& fp_before,
                        const Fingerprints& fp_archive, const archive::ArchiveSummary& archive) {
    std::map<std::string, uint64_t> after;
    for (const TableCount& t : smoke.tables) {
        after[table_key(t.schema, t.name)] = t.rows;
    }
    Restored out;
    out.users_after = rows_of(after, "public.users");
    out.updates_after = rows_of(after, "public.processed_updates");
    out.tables = compare_tables(drill, manifest, smoke.tables, fp_before, fp_archive,
                                live_fingerprints(conn, smoke.tables, &archive))
                     .tables;
    compare_large_objects_and_sequences(drill, conn, manifest, archive);
    add_smoke_checks(drill, smoke);
    for (const std::string& w : smoke.warnings) {
        drill.warn(w);
    }
    return out;
}

DrillOutcome run_migration_drill(const DrillRequest& request) {
    Drill drill(request);
    pg::ConnectionOptions drill_options = request.server.with_dbname(request.drill_db);
    std::optional<std::filesystem::path> work;
    std::optional<Manifest> manifest;
    std::optional<std::string> seeded_user, seeded_update, version_before, version_after;
    std::optional<uint64_t> users_after, updates_after;
    std::vector<json> tables;
    std::filesystem::path dump_path;
    Fingerprints fp_before, fp_archive;
    archive::ArchiveSummary summary;

    drill.step("recreate_drill_db", [&] {
        // A pg_dump older than the server would fail only at the backup step,
        // after the drill database was made: refuse before touching anything.
        pg::Tool pg_dump = pg::ToolFinder(request.pg_bin).find("pg_dump");
        check_client_against_server(
            pg_dump, pg::Connection::open(request.server.with_dbname("postgres"), "pgward drill"));
        recreate_database(request.server, request.drill_db);
    });
    drill.step("migrate", [&] {
        pg::Connection conn = pg::Connection::open(drill_options, "pgward drill");
        if (request.migrations_dir) {
            apply_sql_migrations(conn, *request.migrations_dir);
        } else {
            run_migrate_command(*request.migrate_cmd, conn);
        }
    });
    drill.step("seed", [&] {
        pg::Connection conn = pg::Connection::open(drill_options, "pgward drill");
        if (request.seed_sql) {
            conn.exec(read_file(*request.seed_sql));
        } else {
            seeded_user = seed_marker(conn, "users", "telegram_user_id");
            seeded_update = seed_marker(conn, "processed_updates", "update_id");
        }
        if (request.version_table) {
            version_before = read_schema_version(conn, *request.version_table);
        }
    });
    drill.step("backup", [&] {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "pgward-drill-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw os_error("cannot create a temp dir", pattern, errno);
        }
        work = pattern;
        BackupRequest backup;
        backup.connection = drill_options;
        backup.dir = *work;
        backup.pg_bin = request.pg_bin;
        backup.globals = false;
        backup.timeout = request.limits.timeout;
        backup.stall = request.limits.stall;
        BackupResult result = run_backup_job(backup);
        dump_path = result.dump_path;
        manifest = result.manifest;
        // The drill database is unchanged since the dump's snapshot.
        pg::Connection conn = pg::Connection::open(drill_options, "pgward drill");
        fp_before = live_fingerprints(conn, count_tables(conn));
        summary = archive::summarize_file(dump_path);
        fp_archive = archive_fingerprints(summary);
    });
    drill.step("simulate_loss", [&] { recreate_database(request.server, request.drill_db); });
    drill.step("restore", [&] {
        pg::Tool pg_restore = pg::ToolFinder(request.pg_bin).find("pg_restore");
        pg::Connection conn = pg::Connection::open(drill_options, "pgward drill");
        PgRestoreRun run = run_pg_restore(pg_restore, conn, dump_path, {}, request.limits);
        drill.check(restore_check(run));
    });
    drill.step("verify", [&] {
        pg::Connection conn = pg::Connection::open(drill_options, "pgward drill");
        SmokeReport smoke = run_smoke(conn, request.version_table, baseline_of(*manifest));
        if (request.version_table) {
            version_after = smoke.schema_version;
            drill.check({"alembic_version_matches",
                         version_before && version_before == version_after,
                         version_before.value_or("(none)"), version_after.value_or("(missing)")});
        }
        std::map<std::string, uint64_t> before = manifest_rows(*manifest);
        std::map<std::string, uint64_t> after;
        for (const TableCount& t : smoke.tables) {
            after[table_key(t.schema, t.name)] = t.rows;
        }
        users_after = rows_of(after, "public.users");
        updates_after = rows_of(after, "public.processed_updates");
        for (const auto& [key, label] :
             {std::pair{"public.users", "users_count_matches"},
              std::pair{"public.processed_updates", "processed_updates_count_matches"}}) {
            if (before.count(key)) {
                auto a = rows_of(after, key);
                drill.check({label, a && *a == before[key], std::to_string(before[key]),
                             a ? std::to_string(*a) : "table missing"});
            }
        }
        if (seeded_user) {
            bool present = marker_present(conn, "users", "telegram_user_id", *seeded_user);
            drill.check({"seeded_telegram_user_id_present", present, *seeded_user,
                         present ? *seeded_user : "absent"});
        }
        if (seeded_update) {
            bool present = marker_present(conn, "processed_updates", "update_id", *seeded_update);
            drill.check({"seeded_update_id_present", present, *seeded_update,
                         present ? *seeded_update : "absent"});
        }
        tables =
            check_restored(drill, conn, *manifest, smoke, fp_before, fp_archive, summary).tables;
    });
    if (!request.keep_drill_db) {
        try {
            drop_database(request.server, request.drill_db);
        } catch (const Error& e) {
            log::warn("cannot drop the drill database", {{"error", e.what()}});
        }
    }
    json facts;
    facts["mode"] = "migrations";
    facts["drill_db"] = request.drill_db;
    facts["dump_file"] = dump_path.empty() ? json() : json(dump_path.filename().string());
    facts["dump_size_bytes"] = manifest ? json(manifest->size_bytes) : json();
    facts["alembic_version_before"] = optional_json(version_before);
    facts["alembic_version_after"] = optional_json(version_after);
    auto before_rows = manifest ? manifest_rows(*manifest) : std::map<std::string, uint64_t>{};
    facts["users_count_before"] = optional_json(rows_of(before_rows, "public.users"));
    facts["users_count_after"] = optional_json(users_after);
    facts["processed_updates_count_before"] =
        optional_json(rows_of(before_rows, "public.processed_updates"));
    facts["processed_updates_count_after"] = optional_json(updates_after);
    facts["seeded_telegram_user_id"] = seeded_user ? json(std::stoll(*seeded_user)) : json();
    facts["seeded_update_id"] = seeded_update ? json(std::stoll(*seeded_update)) : json();
    facts["server_version"] = manifest ? json(manifest->server_version) : json();
    DrillOutcome outcome = drill.finish(facts, tables);
    if (work) {
        std::error_code ec;
        std::filesystem::remove_all(*work, ec);
    }
    return outcome;
}

DrillOutcome run_backup_drill(const DrillRequest& request) {
    Drill drill(request);
    std::optional<Manifest> manifest;
    std::optional<std::string> version_after;
    std::optional<uint64_t> users_after, updates_after;
    std::vector<json> tables;
    std::unique_ptr<pg::Sandbox> sandbox;
    pg::ConnectionOptions target;
    std::string target_version;
    std::optional<pg::Tool> pg_restore;
    std::vector<std::string> restore_errors;
    const std::filesystem::path& archive = *request.backup;
    Fingerprints fp_before, fp_archive;
    archive::ArchiveSummary summary;

    // An encrypted backup: a sandbox restores with --jobs from a private
    // decrypted copy (summarized from it too); otherwise it is decrypted as
    // it streams, into the reader and into pg_restore.
    std::optional<DecryptedCopy> decrypted;
    std::filesystem::path readable = archive;
    drill.step("verify_archive", [&] {
        pg_restore = pg::ToolFinder(request.pg_bin).find("pg_restore");
        require_keys_for(archive, request.keys);
        VerifyReport verify = verify_archive(archive, *pg_restore, false, request.keys);
        if (!verify.ok) {
            throw failure(verify.problem, verify.hint);
        }
        manifest = verify.checksum.manifest;
        open_manifest(*manifest, request.keys, archive.string());
        for (const TableEntry& t : manifest->tables) {
            if (t.fingerprint) {
                fp_before[table_key(t.schema, t.name)] = *t.fingerprint;
            }
        }
        if (is_encrypted_file(archive) && request.sandbox) {
            decrypted.emplace(archive, request.keys, manifest);
            readable = decrypted->path();
        }
        summary = readable == archive && is_encrypted_file(archive)
                      ? summarize_encrypted(archive, request.keys, manifest)
                      : archive::summarize_file(readable);
        fp_archive = archive_fingerprints(summary);
    });
    drill.step("create_target", [&] {
        if (request.sandbox) {
            // A sandbox kept for its log by a failed drill, or left by a
            // killed one, goes now (its server too, if it still runs).
            pg::Sandbox::remove_leftovers("sandbox");
            pg::Sandbox::Options options;
            options.tag = "sandbox";
            // An upgrade rehearsal: --pg-bin holding a server of another major
            // restores last night's dump into that major.
            if (request.pg_bin && has_server_binaries(*request.pg_bin)) {
                options.bin_dir = *request.pg_bin;
            }
            // A cluster that is thrown away afterwards needs no crash safety:
            // no full-page images, minimal WAL, no checkpoints mid-restore,
            // and room for index builds. What is restored is the same.
            options.server_settings = {"full_page_writes=off",      "wal_level=minimal",
                                       "max_wal_senders=0",         "synchronous_commit=off",
                                       "max_wal_size=8GB",          "checkpoint_timeout=1h",
                                       "maintenance_work_mem=256MB"};
            // A dump restores into its own major or a newer one; an older
            // sandbox would fail on whatever the newer major added.
            if (int source_major = manifest ? std::atoi(manifest->server_version.c_str()) : 0) {
                options.refuse_older_than = pg::Sandbox::Options::MinimumMajor{
                    source_major, fmt::format("the backup is of PostgreSQL {}: a dump restores "
                                              "only into its own major or a newer one",
                                              manifest->server_version)};
            }
            sandbox = std::make_unique<pg::Sandbox>(options);
            sandbox->start();
            target = sandbox->options(request.drill_db);
            pg::Connection admin =
                pg::Connection::open(sandbox->options("postgres"), "pgward drill");
            // The archive's encoding, so restored text keeps its bytes (and fp1).
            const std::string& encoding = summary.encoding;
            admin.exec("CREATE DATABASE " + admin.escape_identifier(request.drill_db) +
                       " TEMPLATE template0" +
                       (encoding.empty() ? std::string()
                                         : " ENCODING " + admin.escape_literal(encoding) +
                                               " LC_COLLATE 'C' LC_CTYPE 'C'"));
            log::info("sandbox cluster started",
                      {{"dir", sandbox->root().string()}, {"version", sandbox->version().text()}});
        } else {
            recreate_database(request.server, request.drill_db);
            target = request.server.with_dbname(request.drill_db);
        }
    });
    drill.step("restore", [&] {
        pg::Connection conn = pg::Connection::open(target, "pgward drill");
        target_version = conn.server_version_text();
        PgRestoreFlags flags;
        flags.no_owner = request.sandbox;  // the sandbox has none of the source's roles
        flags.no_privileges = request.sandbox;
        // The sandbox is private: restore with one job per core.
        if (request.sandbox) {
            flags.jobs = static_cast<int>(std::clamp(std::thread::hardware_concurrency(), 1U, 8U));
        }
        PgRestoreRun run =
            run_pg_restore(*pg_restore, conn, readable, flags, request.limits, {}, request.keys);
        restore_errors = run.messages.errors;
        drill.check(restore_check(run));
    });
    drill.step("verify", [&] {
        pg::Connection conn = pg::Connection::open(target, "pgward drill");
        SmokeReport smoke = run_smoke(conn, request.version_table, baseline_of(*manifest));
        if (request.version_table) {
            version_after = smoke.schema_version;
            drill.check({"alembic_version_matches", manifest->schema_version == version_after,
                         manifest->schema_version.value_or("(none)"),
                         version_after.value_or("(none)")});
        }
        Restored restored =
            check_restored(drill, conn, *manifest, smoke, fp_before, fp_archive, summary);
        users_after = restored.users_after;
        updates_after = restored.updates_after;
        tables = std::move(restored.tables);
    });
    if (sandbox) {
        sandbox.reset();  // stop and remove it before the report says done
    } else if (!request.keep_drill_db) {
        try {
            drop_database(request.server, request.drill_db);
        } catch (const Error& e) {
            log::warn("cannot drop the drill database", {{"error", e.what()}});
        }
    }
    json facts;
    facts["mode"] = request.sandbox ? "backup-sandbox" : "backup";
    facts["drill_db"] = request.drill_db;
    facts["dump_file"] = archive.filename().string();
    facts["dump_source"] = request.backup_source.value_or(archive.string());
    std::error_code ec;
    facts["dump_size_bytes"] = std::filesystem::file_size(archive, ec);
    facts["alembic_version_before"] = manifest ? optional_json(manifest->schema_version) : json();
    facts["alembic_version_after"] = optional_json(version_after);
    auto before_rows = manifest ? manifest_rows(*manifest) : std::map<std::string, uint64_t>{};
    facts["users_count_before"] = optional_json(rows_of(before_rows, "public.users"));
    facts["users_count_after"] = optional_json(users_after);
    facts["processed_updates_count_before"] =
        optional_json(rows_of(before_rows, "public.processed_updates"));
    facts["processed_updates_count_after"] = optional_json(updates_after);
    facts["seeded_telegram_user_id"] = json();
    facts["seeded_update_id"] = json();
    facts["server_version"] = manifest ? json(manifest->server_version) : json();
    facts["target_server_version"] = target_version;
    facts["pg_restore_version"] = pg_restore ? json(pg_restore->version.text()) : json();
    facts["restore_errors"] = restore_errors;
    facts["sandbox"] = request.sandbox;
    return drill.finish(facts, tables);
}

// amcheck on every database of a recovered cluster: each valid B-tree index
// (bt_index_check with heapallindexed) and, from PostgreSQL 14, each table's
// heap (verify_heapam). Returns what it found, one line each (at most 20).
std::vector<std::string> amcheck_cluster(const pg::Sandbox& sandbox, bool& heap_checked) {
    std::vector<std::string> problems;
    pg::Connection admin = pg::Connection::open(sandbox.options("postgres"), "pgward drill");
    pg::Result databases =
        admin.exec("SELECT datname FROM pg_catalog.pg_database WHERE datallowconn ORDER BY 1");
    heap_checked = admin.server_version_num() >= 140000;
    for (int d = 0; d < databases.rows() && problems.size() < 20; ++d) {
        const std::string database = databases.get(d, 0);
        pg::Connection conn = pg::Connection::open(sandbox.options(database), "pgward drill");
        // The sandbox is thrown away: the extension may be added to it.
        pg::Result installed = conn.exec(
            "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
            "ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'");
        std::optional<std::string> schema;
        if (installed.rows() == 1) {
            schema = installed.get(0, 0);
            // An old version in the copy lacks verify_heapam.
            conn.exec("ALTER EXTENSION amcheck UPDATE");
        } else {
            conn.exec("CREATE SCHEMA pgward_amcheck");
            conn.exec("CREATE EXTENSION amcheck WITH SCHEMA pgward_amcheck");
            schema = "pgward_amcheck";
        }
        const std::string amcheck = conn.escape_identifier(*schema);
        pg::Result indexes = conn.exec(
            "SELECT c.oid::text, c.oid::regclass::text FROM pg_catalog.pg_index i "
            "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_catalog.pg_am a ON a.oid = c.relam "
            "WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready "
            "AND c.relpersistence = 'p' ORDER BY c.oid");
        for (int i = 0; i < indexes.rows() && problems.size() < 20; ++i) {
            try {
                conn.exec("SELECT " + amcheck + ".bt_index_check($1::oid::regclass, true)",
                          {indexes.get(i, 0)});
            } catch (const Error& e) {
                problems.push_back(
                    fmt::format("{}: index {}: {}", database, indexes.get(i, 1), e.what()));
            }
        }
        if (heap_checked) {
            pg::Result heap = conn.exec(
                "SELECT c.oid::regclass::text, v.blkno, v.msg FROM pg_catalog.pg_class c, "
                "LATERAL " +
                amcheck +
                ".verify_heapam(c.oid) v WHERE c.relkind IN ('r', 'm', 't') "
                "AND c.relpersistence = 'p' LIMIT 20");
            for (int r = 0; r < heap.rows() && problems.size() < 20; ++r) {
                problems.push_back(fmt::format("{}: table {} block {}: {}", database,
                                               heap.get(r, 0), heap.get(r, 1), heap.get(r, 2)));
            }
        }
    }
    return problems;
}

}  // namespace

std::optional<Manifest> newest_dump_with_restore_point(const std::filesystem::path& dir,
                                                       const std::string& database,
                                                       uint64_t system) {
    const BackupRepository repo(dir);
    for (const BackupEntry& e : repo.list(database)) {
        if (!e.has_manifest) {
            continue;
        }
        try {
            Manifest m = read_manifest(repo.path_of(e.id.manifest_file()));
            if (m.restore_point && m.system_identifier == std::to_string(system)) {
                return m;
            }
        } catch (const Error&) {
            continue;  // a damaged manifest is verify's to report
        }
    }
    return std::nullopt;
}

namespace {

// The server binaries of one major: --pg-bin if it has them, else Debian's
// folder for that major; nullopt leaves the choice to the sandbox.
std::optional<std::filesystem::path> server_bin_of_major(const DrillRequest& request, int major) {
    if (request.pg_bin && has_server_binaries(*request.pg_bin)) {
        return *request.pg_bin;
    }
    const std::filesystem::path debian = fmt::format("/usr/lib/postgresql/{}/bin", major);
    if (has_server_binaries(debian)) {
        return debian;
    }
    return std::nullopt;
}

DrillOutcome run_pitr_drill(const DrillRequest& request) {
    Drill drill(request);
    RecoveryTarget target;
    std::optional<Manifest> dump;  // the dump whose restore point is the target
    std::optional<PitrPlan> plan;
    std::unique_ptr<pg::Sandbox> sandbox;
    std::vector<json> tables;
    double recovery_seconds = 0;
    std::string recovered_version;
    std::string stop_line;
    std::vector<std::string> amcheck_problems;
    bool heap_checked = false;
    json written_between = json::array();

    drill.step("plan", [&] {
        PitrRequest planned;
        planned.dir = request.backup_dir;
        planned.system = request.system;
        if (request.pitr_target) {
            auto at_backup = backup_restore_point(request.backup_dir, *request.pitr_target);
            target = at_backup ? *at_backup : RecoveryTarget::parse(*request.pitr_target);
        }
        planned.target = target;
        if (!request.pitr_target || target.kind == RecoveryTarget::Kind::Name) {
            // The system the base backups are of decides which dumps count;
            // with several and none chosen, plan_pitr says so.
            uint64_t system = request.system.value_or(0);
            if (system == 0) {
                const std::vector<uint64_t> systems = base_backup_systems(request.backup_dir);
                system = systems.size() == 1 ? systems.front() : plan_pitr(planned).base.system;
            }
            if (!request.pitr_target) {
                dump = newest_dump_with_restore_point(request.backup_dir, request.source_database,
                                                      system);
                if (!dump) {
                    throw failure(
                        fmt::format("no backup of \"{}\" in {} made a restore point on server "
                                    "{}: nothing to prove the recovery against",
                                    request.source_database, request.backup_dir.string(), system),
                        "take a backup while WAL is streamed (pgward backup), or give --to");
                }
                target.kind = RecoveryTarget::Kind::Name;
                target.name = dump->restore_point->name;
            } else {
                const BackupRepository repo(request.backup_dir);
                for (const BackupEntry& e : repo.list()) {
                    try {
                        Manifest m = read_manifest(repo.path_of(e.id.manifest_file()));
                        if (m.restore_point && m.restore_point->name == target.name) {
                            dump = std::move(m);
                            break;
                        }
                    } catch (const Error&) {
                    }
                }
            }
            planned.target = target;
        }
        plan = plan_pitr(planned);
        if (dump && dump->encryption) {
            open_manifest(*dump, request.keys, dump->file);
        }
    });
    drill.step("recover", [&] {
        pg::Sandbox::remove_leftovers("pitr");
        pg::Sandbox::Options options;
        options.tag = "pitr";
        const int major = std::atoi(plan->base.server_version.c_str());
        options.bin_dir = server_bin_of_major(request, major);
        options.start_timeout = request.limits.timeout.value_or(std::chrono::seconds(21600));
        options.refuse_older_than = pg::Sandbox::Options::MinimumMajor{
            major, fmt::format("base backup {} is of PostgreSQL {}: it recovers only with that "
                               "major's server",
                               plan->base.name, plan->base.server_version)};
        options.adopt = pg::Sandbox::Options::Adopted{
            [&](const std::filesystem::path& data_dir, const std::optional<std::string>& owner) {
                PitrRequest laid;
                laid.dir = request.backup_dir;
                laid.pgdata = data_dir;
                laid.target = target;
                laid.system = plan->base.system;
                laid.owner = owner;
                laid.copy_wal = true;
                restore_pitr(laid);
            },
            plan->base.bootstrap_superuser};
        const auto begin = SteadyClock::now();
        sandbox = std::make_unique<pg::Sandbox>(options);
        if (sandbox->version().major() != major) {
            throw failure(
                fmt::format("the sandbox server is PostgreSQL {} but base backup {} is of {}",
                            sandbox->version().text(), plan->base.name, plan->base.server_version),
                fmt::format("point --pg-bin at PostgreSQL {}'s server binaries", major));
        }
        sandbox->start();
        recovery_seconds = std::chrono::duration<double>(SteadyClock::now() - begin).count();
        pg::Connection conn = pg::Connection::open(sandbox->options("postgres"), "pgward drill");
        recovered_version = conn.server_version_text();
        log::info("point-in-time recovery done in the sandbox",
                  {{"seconds", fmt::format("{:.1f}", recovery_seconds)},
                   {"base_backup", plan->base.name},
                   {"target", target.describe()}});
    });
    drill.step("verify_recovery", [&] {
        const std::string server_log = read_file(sandbox->log_path());
        std::vector<std::string> errors;
        size_t start = 0;
        while (start < server_log.size()) {
            size_t end = server_log.find('\n', start);
            std::string line =
                server_log.substr(start, end == std::string::npos ? end : end - start);
            if (line.find("recovery stopping") != std::string::npos ||
                (target.kind == RecoveryTarget::Kind::Latest &&
                 line.find("archive recovery complete") != std::string::npos &&
                 stop_line.empty())) {
                stop_line = line;
            }
            // Connections refused while it recovered (our own wait) are not
            // the recovery's errors.
            const bool refused_connection =
                line.find("the database system is not accepting connections") !=
                    std::string::npos ||
                line.find("the database system is not yet accepting connections") !=
                    std::string::npos ||
                line.find("the database system is starting up") != std::string::npos;
            if ((line.find("FATAL:") != std::string::npos ||
                 line.find("PANIC:") != std::string::npos) &&
                !refused_connection) {
                errors.push_back(line);
            }
            if (end == std::string::npos) {
                break;
            }
            start = end + 1;
        }
        const std::string expected =
            target.kind == RecoveryTarget::Kind::Name
                ? "recovery stopping at restore point \"" + target.name + "\""
                : (target.kind == RecoveryTarget::Kind::Latest ? "archive recovery complete"
                                                               : "recovery stopping");
        drill.check({"recovery_reached_target", stop_line.find(expected) != std::string::npos,
                     expected, stop_line.empty() ? "the server's log does not say" : stop_line});
        drill.check({"recovery_without_errors", errors.empty(), "no FATAL or PANIC in the log",
                     errors.empty() ? "none" : fmt::format("{}", fmt::join(errors, "; "))});
    });
    drill.step("amcheck", [&] {
        amcheck_problems = amcheck_cluster(*sandbox, heap_checked);
        drill.check({"amcheck_clean", amcheck_problems.empty(),
                     heap_checked ? "every B-tree index and heap checked, nothing found"
                                  : "every B-tree index checked (heaps from PostgreSQL 14), "
                                    "nothing found",
                     amcheck_problems.empty()
                         ? "nothing found"
                         : fmt::format("{}", fmt::join(amcheck_problems, "; "))});
    });
    if (dump) {
        drill.step("compare_with_dump", [&] {
            pg::Connection conn =
                pg::Connection::open(sandbox->options(dump->database), "pgward drill");
            conn.exec("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
            std::vector<TableCount> counted = count_tables(conn);
            // Unlogged tables are not in the WAL: recovery leaves them empty.
            pg::Result unlogged = conn.exec(
                "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN "
                "pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relpersistence = 'u' "
                "AND c.relkind = 'r'");
            std::set<std::string> skip;
            for (int r = 0; r < unlogged.rows(); ++r) {
                skip.insert(table_key(unlogged.get(r, 0), unlogged.get(r, 1)));
            }
            Manifest compared = *dump;
            std::erase_if(compared.tables, [&](const TableEntry& t) {
                return skip.count(table_key(t.schema, t.name)) != 0;
            });
            std::erase_if(counted, [&](const TableCount& t) {
                return skip.count(table_key(t.schema, t.name)) != 0;
            });
            for (const std::string& key : skip) {
                drill.warn("unlogged table " + key +
                           " is not in the WAL: empty after recovery, not compared");
            }
            Fingerprints before;
            for (const TableEntry& t : compared.tables) {
                if (t.fingerprint) {
                    before[table_key(t.schema, t.name)] = *t.fingerprint;
                }
            }
            Fingerprints after = live_fingerprints(conn, counted);
            conn.exec("COMMIT");
            // A table written between the snapshot and the restore point may
            // differ from the dump: named, with the gap, not a failure.
            for (const auto& [schema, name] : dump->written_around_restore_point.value_or(
                     std::vector<std::pair<std::string, std::string>>{})) {
                const std::string key = table_key(schema, name);
                auto entry = std::find_if(
                    compared.tables.begin(), compared.tables.end(),
                    [&](const TableEntry& t) { return table_key(t.schema, t.name) == key; });
                auto live = std::find_if(counted.begin(), counted.end(), [&](const TableCount& t) {
                    return table_key(t.schema, t.name) == key;
                });
                if (entry == compared.tables.end() || live == counted.end()) {
                    continue;
                }
                const bool same = entry->rows == live->rows && lookup(before, key).has_value() &&
                                  lookup(before, key) == lookup(after, key);
                if (same) {
                    continue;
                }
                written_between.push_back({{"schema", schema},
                                           {"name", name},
                                           {"rows_dump", optional_json(entry->rows)},
                                           {"rows_recovered", live->rows}});
                drill.warn(fmt::format(
                    "table {} was written between the dump's snapshot and its restore point "
                    "({:.1f} ms apart; its write counters changed within {:.0f} ms of the "
                    "snapshot): {} rows in the dump, {} recovered; not compared",
                    key, dump->restore_point->gap_ms.value_or(0),
                    dump->restore_point->counters_window_ms.value_or(0),
                    entry->rows ? std::to_string(*entry->rows) : "?", live->rows));
                compared.tables.erase(entry);
                counted.erase(live);
            }
            // The manifest's fp1 was taken from the archive pg_dump wrote: it
            // stands for both "before" and "in the archive".
            tables = compare_tables(drill, compared, counted, before, before, after).tables;
            // Large objects are in the WAL as in the dump: the manifest's
            // count and lo1 against the recovered ones.
            const pg::LargeObjectsContent objects = pg::large_objects_content(conn);
            const std::string objects_fp =
                archive::large_objects_fingerprint_text(objects.fingerprint);
            drill.check({"large_objects_match",
                         dump->large_objects.value_or(0) == objects.count &&
                             dump->large_objects_fingerprint.value_or(objects_fp) == objects_fp,
                         fmt::format("{} large objects, {}", dump->large_objects.value_or(0),
                                     dump->large_objects_fingerprint.value_or("(no lo1)")),
                         fmt::format("{} ({})", objects.count, objects_fp)});
        });
    } else {
        drill.warn(
            fmt::format("{} is not a dump's restore point: the recovered tables are not "
                        "compared with a dump",
                        target.describe()));
    }
    sandbox.reset();

    json facts;
    facts["kind"] = "pitr";
    facts["mode"] = "pitr-sandbox";
    facts["drill_db"] = dump ? dump->database : request.source_database;
    facts["dump_file"] = dump ? json(dump->file) : json();
    facts["dump_size_bytes"] = dump ? json(dump->size_bytes) : json();
    facts["alembic_version_before"] = dump ? optional_json(dump->schema_version) : json();
    facts["alembic_version_after"] = json();
    auto before_rows = dump ? manifest_rows(*dump) : std::map<std::string, uint64_t>{};
    facts["users_count_before"] = optional_json(rows_of(before_rows, "public.users"));
    facts["users_count_after"] = json();
    facts["processed_updates_count_before"] =
        optional_json(rows_of(before_rows, "public.processed_updates"));
    facts["processed_updates_count_after"] = json();
    for (const json& t : tables) {
        if (t["schema"] == "public" && t["name"] == "users") {
            facts["users_count_after"] = t["rows_after"];
        }
        if (t["schema"] == "public" && t["name"] == "processed_updates") {
            facts["processed_updates_count_after"] = t["rows_after"];
        }
    }
    facts["seeded_telegram_user_id"] = json();
    facts["seeded_update_id"] = json();
    facts["server_version"] = plan ? json(plan->base.server_version) : json();
    facts["target_server_version"] = recovered_version;
    facts["sandbox"] = true;
    json pitr;
    pitr["target"] = target.describe();
    pitr["restore_point"] = dump ? json(dump->restore_point->name) : json();
    pitr["base_backup"] = plan ? json(plan->base.path.string()) : json();
    pitr["wal_first_segment"] = plan ? json(plan->first_segment) : json();
    pitr["wal_last_segment"] = plan ? json(plan->last_segment) : json();
    pitr["recovery_seconds"] = std::round(recovery_seconds * 1000) / 1000;
    pitr["server_log_stop_line"] = stop_line;
    pitr["amcheck_heap_checked"] = heap_checked;
    pitr["amcheck_problems"] = amcheck_problems;
    pitr["gap_ms"] = dump ? optional_json(dump->restore_point->gap_ms) : json();
    pitr["written_between"] = written_between;
    facts["pitr"] = pitr;
    return drill.finish(facts, tables);
}

}  // namespace

void check_drill_database(const std::string& drill_db, const std::string& source_database) {
    if (drill_db == source_database) {
        throw usage_error(
            fmt::format("the drill database \"{}\" is the source database; refusing to "
                        "drop it",
                        drill_db),
            "set DRILL_DB / --drill-db to a scratch name such as <db>_restore_drill");
    }
    bool looks_like_drill = false;
    size_t start = 0;
    while (start <= drill_db.size()) {
        size_t end = drill_db.find('_', start);
        std::string part =
            drill_db.substr(start, end == std::string::npos ? std::string::npos : end - start);
        looks_like_drill = looks_like_drill || part == "drill";
        if (end == std::string::npos) {
            break;
        }
        start = end + 1;
    }
    if (!looks_like_drill) {
        throw usage_error(
            fmt::format("\"{}\" does not look like a drill database; the drill drops and "
                        "recreates it, so its name must contain the word drill (e.g. "
                        "{}_restore_drill)",
                        drill_db, source_database),
            "set DRILL_DB / --drill-db to a scratch database");
    }
}

DrillOutcome run_drill(const DrillRequest& request) {
    if (request.pitr) {
        return run_pitr_drill(request);
    }
    return request.backup ? run_backup_drill(request) : run_migration_drill(request);
}

}  // namespace pgward
