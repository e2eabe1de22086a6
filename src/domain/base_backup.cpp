#include "domain/base_backup.hpp"

#include <sys/stat.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <thread>
#include <tuple>

#include "domain/wal_archive.hpp"
#include "pg/tools.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/process.hpp"

namespace pgward {
namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "pgward-base-backup/1";
constexpr const char* kInfoFile = kBaseBackupInfoFile;

fs::path system_dir(const fs::path& backup_dir, uint64_t system) {
    return backup_dir / "base" / std::to_string(system);
}

uint64_t tree_bytes(const fs::path& dir) {
    uint64_t total = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code size_ec;
        if (it->is_regular_file(size_ec)) {
            total += it->file_size(size_ec);
        }
    }
    return total;
}

nlohmann::ordered_json to_json(const BaseBackup& b) {
    return {{"format", kFormat},
            {"name", b.name},
            {"system_identifier", std::to_string(b.system)},
            {"timeline", b.timeline},
            {"start_lsn", b.start.text()},
            {"end_lsn", b.end.text()},
            {"started_at", format_iso_utc(b.started)},
            {"finished_at", format_iso_utc(b.finished)},
            {"server_version", b.server_version},
            {"bootstrap_superuser", b.bootstrap_superuser},
            {"bytes", b.bytes},
            {"wal_segment_size", b.segment_size},
            {"files", b.files},
            {"verified_by", b.verified_by}};
}

BaseBackup from_json(const nlohmann::json& doc, const fs::path& path) {
    auto lsn = [&](const char* key) {
        auto parsed = pg::Lsn::parse(doc.at(key).get<std::string>());
        if (!parsed) {
            throw failure(fmt::format("{} has a bad {}", (path / kInfoFile).string(), key));
        }
        return *parsed;
    };
    auto time = [&](const char* key) {
        auto parsed = parse_iso_utc(doc.at(key).get<std::string>());
        if (!parsed) {
            throw failure(fmt::format("{} has a bad {}", (path / kInfoFile).string(), key));
        }
        return *parsed;
    };
    if (doc.value("format", "") != kFormat) {
        throw failure(
            fmt::format("{} is not a pgward base backup description", (path / kInfoFile).string()));
    }
    BaseBackup b;
    b.name = doc.at("name").get<std::string>();
    b.path = path;
    b.system = std::stoull(doc.at("system_identifier").get<std::string>());
    b.timeline = doc.at("timeline").get<uint32_t>();
    b.start = lsn("start_lsn");
    b.end = lsn("end_lsn");
    b.started = time("started_at");
    b.finished = time("finished_at");
    b.server_version = doc.value("server_version", "");
    b.bootstrap_superuser = doc.value("bootstrap_superuser", "");
    b.bytes = doc.value("bytes", uint64_t{0});
    b.segment_size = doc.value("wal_segment_size", pg::kDefaultSegmentSize);
    if (b.segment_size < (uint64_t{1} << 20) || (b.segment_size & (b.segment_size - 1)) != 0) {
        throw failure(fmt::format("{} has a bad wal_segment_size", (path / kInfoFile).string()));
    }
    b.files = doc.value("files", std::vector<std::string>{});
    b.verified_by = doc.value("verified_by", "");
    return b;
}

// pg_verifybackup on the copy unpacked in a folder of its own beside it
// (PostgreSQL before 18 verifies only a plain-format backup): every file's
// size and checksum against backup_manifest, and the WAL parsed start to end.
// pg_waldump (which it runs for the WAL) reads only its own major's WAL: for
// a server of another major the WAL's page headers are checked here instead.
std::string verify_base_backup(const fs::path& partial, const std::vector<std::string>& tars,
                               const BaseBackup& backup, const std::optional<fs::path>& pg_bin,
                               Watchdog& watchdog) {
    const pg::Tool verifier = pg::ToolFinder(pg_bin).find("pg_verifybackup");
    const int server_major = std::atoi(backup.server_version.c_str());
    // pg_verifybackup runs the pg_waldump beside it, which Debian ships with
    // the server, not the client.
    std::error_code exists_ec;
    const bool has_waldump = fs::exists(verifier.path.parent_path() / "pg_waldump", exists_ec);
    const bool parse_wal = verifier.version.major() == server_major && has_waldump;
    const fs::path unpacked = partial / "unpacked";
    ensure_directory(unpacked);
    for (const std::string& tar : tars) {
        watchdog.check();
        if (tar == "base.tar") {
            extract_tar(partial / tar, unpacked);
        } else if (tar == "pg_wal.tar") {
            ensure_directory(unpacked / "pg_wal");
            extract_tar(partial / tar, unpacked / "pg_wal");
        } else {
            throw failure(fmt::format(
                "the base backup has a tablespace ({}): pgward does not recover tablespaces yet",
                tar));
        }
    }
    watchdog.check();
    std::string wal_checked;
    if (!parse_wal) {
        // Every segment from the backup's start to its end, each by its page headers.
        const uint64_t first = pg::segment_of(backup.start, backup.segment_size);
        // (An end on a segment boundary is the end of the segment before it.)
        const uint64_t last =
            pg::segment_of(pg::Lsn{backup.end.value > backup.start.value ? backup.end.value - 1
                                                                         : backup.end.value},
                           backup.segment_size);
        for (uint64_t number = first; number <= last; ++number) {
            const std::string file =
                pg::WalFileName::segment_name(backup.timeline, number, backup.segment_size);
            const fs::path path = unpacked / "pg_wal" / file;
            std::error_code ec;
            if (!fs::is_regular_file(path, ec)) {
                throw failure(fmt::format("the base backup lacks WAL segment {}, which it needs "
                                          "from {} to {}",
                                          file, backup.start.text(), backup.end.text()),
                              "nothing was published");
            }
            if (auto problem = pg::check_segment(read_file(path), *pg::WalFileName::parse(file),
                                                 backup.system)) {
                throw failure(
                    fmt::format("the base backup's WAL segment {} is damaged: {}", file, *problem),
                    "nothing was published");
            }
        }
        wal_checked = fmt::format(
            "; its WAL ({} segment(s)) checked by page headers, not parsed: {}", last - first + 1,
            has_waldump
                ? fmt::format("pg_waldump {} reads only PostgreSQL {}'s WAL, the server "
                              "is {}",
                              verifier.version.major(), verifier.version.major(), server_major)
                : fmt::format("no pg_waldump beside {} (Debian ships it with the server)",
                              verifier.path.string()));
    }
    Command command{
        {verifier.path.string(), "--manifest-path=" + (partial / "backup_manifest").string(),
         unpacked.string()},
        {{"LC_MESSAGES", "C"}},
        {"LC_ALL"}};
    if (!parse_wal) {
        command.argv.insert(command.argv.begin() + 1, "--no-parse-wal");
    }
    CapturedRun run =
        run_captured(command, watchdog.limits().timeout.value_or(std::chrono::hours(6)));
    std::error_code ec;
    fs::remove_all(unpacked, ec);
    if (!run.status.ok()) {
        throw failure(fmt::format("pg_verifybackup found the base backup damaged ({}): {}",
                                  run.status.describe(), run.err.empty() ? run.out : run.err),
                      "nothing was published");
    }
    return verifier.version_line + wal_checked;
}

}  // namespace

std::string base_backup_info_text(const BaseBackup& backup) {
    return to_json(backup).dump(2) + "\n";
}

BaseBackup parse_base_backup_info(std::string_view text, const fs::path& where) {
    try {
        return from_json(nlohmann::json::parse(text), where);
    } catch (const nlohmann::json::exception& e) {
        throw failure(fmt::format("{} cannot be read: {}", (where / kInfoFile).string(), e.what()));
    }
}

ManifestWalRange read_manifest_wal_range(const std::string& backup_manifest_text) {
    nlohmann::json manifest;
    try {
        manifest = nlohmann::json::parse(backup_manifest_text);
        const auto& ranges = manifest.at("WAL-Ranges");
        if (ranges.size() != 1) {
            throw failure(
                fmt::format("backup_manifest names {} WAL ranges, not one", ranges.size()));
        }
        const auto& range = ranges.at(0);
        auto start = pg::Lsn::parse(range.at("Start-LSN").get<std::string>());
        auto end = pg::Lsn::parse(range.at("End-LSN").get<std::string>());
        if (!start || !end) {
            throw failure("backup_manifest has a WAL range with a bad LSN");
        }
        return {range.at("Timeline").get<uint32_t>(), *start, *end};
    } catch (const nlohmann::json::exception& e) {
        throw failure(fmt::format("backup_manifest cannot be read: {}", e.what()));
    }
}

void extract_tar(const fs::path& tar_file, const fs::path& dir) {
    const fs::path tar = pg::ToolFinder(std::nullopt).locate("tar");
    CapturedRun run =
        run_captured(Command{{tar.string(), "--extract", "--no-same-owner",
                              "--file=" + tar_file.string(), "--directory=" + dir.string()},
                             {{"LC_MESSAGES", "C"}},
                             {"LC_ALL"}},
                     std::chrono::hours(6));
    if (!run.status.ok()) {
        throw failure(fmt::format("cannot unpack {} into {} ({}): {}", tar_file.string(),
                                  dir.string(), run.status.describe(), run.err));
    }
}

BaseBackup take_base_backup(const BaseBackupRequest& request) {
    const ServerIdentity identity = identify_server(request.connection);
    pg::Connection conn = pg::Connection::open(request.connection, "pgward");
    const pg::Tool basebackup = pg::ToolFinder(request.pg_bin).find("pg_basebackup");

    BaseBackup backup;
    backup.system = identity.system;
    backup.server_version = conn.server_version_text();
    backup.bootstrap_superuser =
        conn.query_value("SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10").value_or("");
    backup.segment_size =
        std::stoull(conn.query_value("SELECT setting FROM pg_catalog.pg_settings WHERE name = "
                                     "'wal_segment_size'")
                        .value_or("16777216"));
    backup.started = now_seconds();
    backup.name = format_compact_utc(backup.started);

    const fs::path parent = system_dir(request.dir, identity.system);
    ensure_directory(parent);
    // Another base backup of this server took this second: wait for the next.
    while (fs::exists(parent / backup.name)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        backup.started = now_seconds();
        backup.name = format_compact_utc(backup.started);
    }
    const fs::path partial = make_private_dir(parent, ".partial-", "a base backup being taken");
    // The backup is renamed out of it when published: what is left goes.
    struct RemoveTree {
        fs::path dir;
        ~RemoveTree() {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    } cleanup{partial};

    log::info("base backup begin", {{"system", std::to_string(identity.system)},
                                    {"server", conn.target()},
                                    {"server_version", backup.server_version},
                                    {"name", backup.name}});
    Watchdog watchdog(request.limits, {"base backup of system " + std::to_string(identity.system),
                                       "pg_basebackup", "pg_basebackup", "no bytes written"});
    const fs::path out = partial / "backup";
    Command command = pg::server_tool_command(
        basebackup,
        {"--pgdata=" + out.string(), "--format=tar", "--wal-method=stream", "--checkpoint=fast",
         "--manifest-checksums=CRC32C", "--label=pgward " + backup.name, "--verbose"},
        conn, "pgward_basebackup");
    Child child = Child::spawn(command);
    std::string errors;
    uint64_t last_bytes = 0;
    auto last_report = std::chrono::steady_clock::now();
    PumpHandlers handlers;
    handlers.on_stderr_line = [&](std::string_view line) {
        errors.append(line).append("\n");
        if (errors.size() > 16384) {
            errors.erase(0, errors.size() - 16384);
        }
    };
    handlers.on_tick = [&] {
        const uint64_t bytes = tree_bytes(out);
        if (bytes != last_bytes) {
            watchdog.progress();
            last_bytes = bytes;
        }
        if (std::chrono::steady_clock::now() - last_report > std::chrono::seconds(10)) {
            last_report = std::chrono::steady_clock::now();
            log::info("base backup progress", {{"bytes", std::to_string(bytes)}});
        }
        watchdog.check();
    };
    ExitStatus status = pump(child, handlers);
    if (!status.ok()) {
        throw failure(fmt::format("pg_basebackup failed ({}): {}", status.describe(), errors),
                      "nothing was published; the role needs the REPLICATION attribute and a "
                      "\"replication\" line in pg_hba.conf (docs/pitr.md)");
    }

    for (const auto& entry : fs::directory_iterator(out)) {
        const std::string file = entry.path().filename().string();
        if (file.size() > 4 && file.ends_with(".tar")) {
            backup.files.push_back(file);
        }
    }
    std::sort(backup.files.begin(), backup.files.end());
    const ManifestWalRange range = read_manifest_wal_range(read_file(out / "backup_manifest"));
    backup.timeline = range.timeline;
    backup.start = range.start;
    backup.end = range.end;
    log::info("base backup written; verifying it with pg_verifybackup",
              {{"bytes", std::to_string(tree_bytes(out))},
               {"start_lsn", backup.start.text()},
               {"end_lsn", backup.end.text()}});
    backup.verified_by = verify_base_backup(out, backup.files, backup, request.pg_bin, watchdog);
    backup.finished = now_seconds();
    backup.bytes = tree_bytes(out);
    for (const auto& entry : fs::directory_iterator(out)) {
        ::chmod(entry.path().c_str(), 0600);
    }
    write_file_atomically(out / kInfoFile, base_backup_info_text(backup),
                          AtomicFile::Publish::NoReplace);
    // pg_basebackup synced its files, write_file_atomically base.json.
    fsync_directory(out);
    ::chmod(out.c_str(), 0700);
    rename_no_replace(out, parent / backup.name);
    fsync_directory(parent);
    backup.path = parent / backup.name;
    log::info("base backup done", {{"path", backup.path.string()},
                                   {"bytes", std::to_string(backup.bytes)},
                                   {"start_lsn", backup.start.text()},
                                   {"end_lsn", backup.end.text()},
                                   {"verified_by", backup.verified_by}});
    return backup;
}

std::vector<uint64_t> base_backup_systems(const fs::path& backup_dir) {
    std::vector<uint64_t> systems;
    std::error_code ec;
    for (fs::directory_iterator it(backup_dir / "base", ec), end; !ec && it != end;
         it.increment(ec)) {
        const std::string name = it->path().filename().string();
        uint64_t value = 0;
        auto [ptr, parse_ec] = std::from_chars(name.data(), name.data() + name.size(), value);
        if (parse_ec == std::errc() && ptr == name.data() + name.size() && value != 0) {
            systems.push_back(value);
        }
    }
    std::sort(systems.begin(), systems.end());
    return systems;
}

std::vector<BaseBackup> list_base_backups(const fs::path& backup_dir,
                                          std::optional<uint64_t> system) {
    std::vector<BaseBackup> found;
    std::vector<uint64_t> systems =
        system ? std::vector<uint64_t>{*system} : base_backup_systems(backup_dir);
    for (uint64_t s : systems) {
        std::error_code ec;
        for (fs::directory_iterator it(system_dir(backup_dir, s), ec), end; !ec && it != end;
             it.increment(ec)) {
            const fs::path info = it->path() / kInfoFile;
            if (it->path().filename().string().starts_with(".") || !fs::is_regular_file(info)) {
                continue;
            }
            try {
                found.push_back(from_json(nlohmann::json::parse(read_file(info)), it->path()));
            } catch (const nlohmann::json::exception& e) {
                log::warn("a base backup's description cannot be read; it is skipped",
                          {{"file", info.string()}, {"error", e.what()}});
            }
        }
    }
    std::sort(found.begin(), found.end(), [](const BaseBackup& a, const BaseBackup& b) {
        return std::tie(a.started, a.name) < std::tie(b.started, b.name);
    });
    return found;
}

BasePrunePlan plan_base_prune(const std::vector<BaseBackup>& backups,
                              const std::vector<std::string>& wal_files, size_t keep) {
    BasePrunePlan plan;
    if (keep == 0 || backups.size() <= keep) {
        return plan;
    }
    plan.remove.assign(backups.begin(), backups.end() - static_cast<std::ptrdiff_t>(keep));
    const BaseBackup& oldest_kept = backups[backups.size() - keep];
    for (const std::string& file : wal_files) {
        auto name = pg::WalFileName::parse(file);
        if (!name || name->kind == pg::WalFileName::Kind::History) {
            continue;
        }
        // The segment holding the oldest kept backup's start, and all after it, stay.
        if (name->segment_number(oldest_kept.segment_size) <
            pg::segment_of(oldest_kept.start, oldest_kept.segment_size)) {
            plan.wal_files.push_back(file);
        }
    }
    return plan;
}

BasePrunePlan prune_base_backups(const fs::path& backup_dir, uint64_t system, size_t keep) {
    const std::vector<BaseBackup> backups = list_base_backups(backup_dir, system);
    const WalArchive archive(backup_dir, system);
    std::vector<std::string> wal_files;
    for (const WalArchive::Entry& entry : archive.entries()) {
        wal_files.push_back(entry.file);
    }
    BasePrunePlan plan = plan_base_prune(backups, wal_files, keep);
    // What a removal killed halfway left behind.
    std::error_code ec;
    for (fs::directory_iterator it(system_dir(backup_dir, system), ec), end; !ec && it != end;
         it.increment(ec)) {
        if (it->path().filename().string().starts_with(".removing-")) {
            std::error_code remove_ec;
            fs::remove_all(it->path(), remove_ec);
        }
    }
    for (const BaseBackup& old : plan.remove) {
        // Out of sight first: a half-removed backup is never listed.
        const fs::path doomed = old.path.parent_path() / (".removing-" + old.name);
        fs::rename(old.path, doomed);
        fs::remove_all(doomed);
        log::info("base backup removed by retention", {{"name", old.name}});
    }
    for (const std::string& file : plan.wal_files) {
        remove_file(archive.dir() / file);
    }
    if (!plan.wal_files.empty()) {
        log::info("WAL removed by retention", {{"files", std::to_string(plan.wal_files.size())},
                                               {"first", plan.wal_files.front()},
                                               {"last", plan.wal_files.back()}});
    }
    return plan;
}

}  // namespace pgward
