#include "domain/verify.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <exception>
#include <functional>
#include <thread>

#include <fmt/format.h>

#include "archive/reader.hpp"
#include "archive/summary.hpp"
#include "domain/repository.hpp"
#include "domain/verify_encrypted.hpp"
#include "util/error.hpp"
#include "util/process.hpp"

namespace pgward {

std::string ArchiveVersion::text() const {
    return fmt::format("{}.{}", major, minor);
}

int ArchiveVersion::min_pg_restore_major() const {
    // Each pg_restore reads every archive version up to the one its own
    // pg_dump writes: 1.13 from 11, 1.14 from 12, 1.15 from 16, 1.16 from 17.
    if (major != 1) {
        return 99;
    }
    if (minor >= 16) {
        return 17 + (minor - 16);
    }
    if (minor == 15) {
        return 16;
    }
    if (minor == 14) {
        return 12;
    }
    if (minor == 13) {
        return 11;
    }
    return 10;
}

ArchiveVersion read_archive_version(const std::filesystem::path& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        throw os_error("cannot open", path.string(), errno);
    }
    std::array<unsigned char, 8> header{};
    ssize_t n = ::read(fd, header.data(), header.size());
    int read_errno = errno;
    ::close(fd);
    if (n < 0) {
        throw os_error("cannot read", path.string(), read_errno);  // EIO is no verdict
    }
    return archive_version_of(
        std::string_view(reinterpret_cast<const char*>(header.data()), static_cast<size_t>(n)),
        path.string());
}

ArchiveVersion archive_version_of(std::string_view head, const std::string& source) {
    if (head.size() < 8 || head.substr(0, 5) != "PGDMP") {
        throw failure(fmt::format("{} is not a pg_dump custom-format archive (no PGDMP header{})",
                                  source, head.empty() ? "; the file is empty" : ""),
                      "give a .dump file written by pgward backup or pg_dump -Fc");
    }
    const auto byte = [&](size_t i) { return static_cast<unsigned char>(head[i]); };
    return ArchiveVersion{byte(5), byte(6), byte(7)};
}

void check_pg_restore_reads(const pg::Tool& pg_restore, const ArchiveVersion& version,
                            const std::filesystem::path& archive) {
    int needed = version.min_pg_restore_major();
    if (pg_restore.version.major() < needed) {
        // Say the compression too: an operator who chose zstd or lz4 learns
        // why an older pg_restore is out (both came with format 1.15).
        std::string compression;
        try {
            compression = fmt::format(
                " ({})", archive::to_string(archive::read_index(archive).header.compression));
        } catch (const Error&) {
        }
        throw failure(
            fmt::format("{} is in archive format {}{}, which pg_restore {} cannot read: it needs "
                        "pg_restore {} or newer",
                        archive.filename().string(), version.text(), compression,
                        pg_restore.version.text(), needed),
            fmt::format("install postgresql-client-{} and point --pg-bin / PGWARD_PG_BIN at its "
                        "bin directory",
                        needed));
    }
}

VerifyReport verify_archive(const std::filesystem::path& file, const pg::Tool& pg_restore,
                            bool allow_missing_manifest, const DecryptionKeys& keys) {
    VerifyReport report;
    report.file = file;
    report.encrypted = is_encrypted_file(file);
    BackupRepository repo(file.parent_path().empty() ? "." : file.parent_path());
    BackupEntry entry;
    std::error_code ec;
    entry.dump_path = file;
    entry.size_bytes = std::filesystem::file_size(file, ec);
    if (ec) {
        throw os_error("cannot read", file.string(), ec.value());
    }
    // Which pg_restore reads it is the first thing to know: no other check
    // helps while the one in use cannot.
    try {
        report.version = report.encrypted
                             ? encrypted_archive_version(file, keys, manifest_beside(file))
                             : read_archive_version(file);
        if (report.version) {
            check_pg_restore_reads(pg_restore, *report.version, file);
        }
    } catch (const Error& e) {
        report.problem = e.what();
        report.hint = e.hint();
        return report;
    }
    auto parsed = parse_backup_file_name(file.filename().string());
    if (parsed && parsed->role == FileRole::Dump && !parsed->temporary) {
        entry.id = parsed->id;
        entry.has_manifest = std::filesystem::exists(repo.path_of(entry.id.manifest_file()));
    }
    report.checksum =
        entry.has_manifest
            ? check_checksum(repo, entry, true)
            : ChecksumCheck{ChecksumState::NoManifest, "no manifest beside it", {}, {}, {}};
    if (report.checksum.state == ChecksumState::NoManifest) {
        if (!allow_missing_manifest) {
            report.problem = "no manifest: its checksum cannot be checked";
            return report;
        }
    } else if (!report.checksum.good()) {
        report.problem =
            fmt::format("{} ({})", to_string(report.checksum.state), report.checksum.detail);
        return report;
    }
    if (report.encrypted && !report.version) {
        report.ok = true;  // without keys: its SHA-256 and its age header, no more
        return report;
    }
    CapturedRun list =
        report.encrypted ? list_encrypted_archive(pg_restore, file, keys, report.checksum.manifest)
                         : run_captured(pg::list_archive_command(pg_restore, file));
    if (!list.status.ok()) {
        report.problem =
            fmt::format("pg_restore --list cannot read it ({}): {}", list.status.describe(),
                        list.err.substr(0, list.err.find('\n')));
        return report;
    }
    report.ok = true;
    return report;
}

std::optional<Manifest> manifest_beside(const std::filesystem::path& dump) {
    auto parsed = parse_backup_file_name(dump.filename().string());
    if (!parsed || parsed->role != FileRole::Dump || parsed->temporary) {
        return std::nullopt;
    }
    std::filesystem::path path = dump.parent_path() / parsed->id.manifest_file();
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
        return std::nullopt;
    }
    try {
        Manifest m = read_manifest(path);
        if (m.file == dump.filename().string()) {
            return m;
        }
    } catch (const Error&) {
    }
    return std::nullopt;
}

namespace {

DeepReport compare_with_manifest(const archive::ArchiveSummary& summary,
                                 const std::optional<Manifest>& manifest);

// What the reader thread of deep_verify_stream found.
struct StreamReading {
    std::atomic<bool> done{false};
    std::optional<archive::ArchiveSummary> summary;
    std::string error;
};

void read_stream(archive::QueueSource& queue, StreamReading& reading) {
    try {
        reading.summary = archive::summarize(queue);
    } catch (const std::exception& e) {
        reading.error = e.what();
    }
    reading.done = true;
    // What follows the archive's end or its damage is not read: the
    // producer's pushes return at once, and it still reads its stream to the
    // end (the caller hashes every byte).
    queue.abort();
}

}  // namespace

DeepReport deep_verify(const std::filesystem::path& file, const std::optional<Manifest>& manifest,
                       const DecryptionKeys& keys) {
    if (is_encrypted_file(file)) {
        return deep_verify_encrypted(file, manifest, keys);
    }
    try {
        return compare_with_manifest(archive::summarize_file_parallel(file, 2), manifest);
    } catch (const Error& e) {
        DeepReport report;
        report.problems.push_back(e.what());
        return report;
    }
}

DeepReport deep_verify_stream(
    const std::function<void(const std::function<void(const char*, size_t)>&)>& produce,
    const std::optional<Manifest>& manifest) {
    archive::QueueSource queue;
    StreamReading reading;
    std::thread reader(read_stream, std::ref(queue), std::ref(reading));
    std::exception_ptr producer_failure;
    try {
        produce([&](const char* data, size_t size) { queue.push(data, size); });
        queue.close();
    } catch (...) {
        producer_failure = std::current_exception();
    }
    // A reader that had already found the archive's end or its damage gave
    // the verdict; a stream that broke before that is the producer's failure.
    const bool reader_finished_first = reading.done;
    if (producer_failure) {
        queue.abort();
    }
    reader.join();
    if (producer_failure && !reader_finished_first) {
        std::rethrow_exception(producer_failure);
    }
    if (!reading.summary) {
        DeepReport report;
        report.problems.push_back(reading.error);
        return report;
    }
    return compare_with_manifest(*reading.summary, manifest);
}

namespace {

DeepReport compare_with_manifest(const archive::ArchiveSummary& summary,
                                 const std::optional<Manifest>& manifest) {
    DeepReport report;
    report.tables = summary.tables.size();
    report.large_objects = summary.large_objects;
    for (const archive::TableSummary& t : summary.tables) {
        report.rows += t.rows;
    }
    if (manifest) {
        const archive::TableLookup archived(summary.tables);
        for (const TableEntry& m : manifest->tables) {
            const archive::TableSummary* a = archived.find(m.schema, m.name);
            std::string name = m.schema + "." + m.name;
            if (a == nullptr) {
                report.problems.push_back("table " + name +
                                          " is in the manifest but not in the archive");
                continue;
            }
            if (m.rows && *m.rows != a->rows) {
                report.problems.push_back(
                    fmt::format("table {}: {} rows in the archive, {} in the manifest", name,
                                a->rows, *m.rows));
            }
            if (m.fingerprint && *m.fingerprint != a->fingerprint) {
                report.problems.push_back(
                    fmt::format("table {}: content fingerprint {} differs from the "
                                "manifest's {}",
                                name, a->fingerprint, *m.fingerprint));
            }
        }
        if (manifest->large_objects && *manifest->large_objects != summary.large_objects) {
            report.problems.push_back(
                fmt::format("{} large objects in the archive, {} in the manifest",
                            summary.large_objects, *manifest->large_objects));
        }
        if (manifest->large_objects_fingerprint &&
            *manifest->large_objects_fingerprint != summary.large_objects_fingerprint()) {
            report.problems.push_back(fmt::format(
                "large objects: content fingerprint {} differs from the manifest's {}",
                summary.large_objects_fingerprint(), *manifest->large_objects_fingerprint));
        }
    }
    report.ok = report.problems.empty();
    return report;
}

}  // namespace

namespace {

std::string quoted_list(const std::vector<std::string>& names) {
    std::string out;
    for (const std::string& name : names) {
        out += (out.empty() ? "\"" : ", \"") + name + "\"";
    }
    return out;
}

std::filesystem::path resolve_latest(const BackupRepository& repo,
                                     const std::optional<std::string>& named,
                                     const std::optional<std::string>& server) {
    std::vector<std::string> names = repo.databases();
    std::string database;
    if (named) {
        database = *named;
    } else if (names.size() == 1) {
        database = names.front();
    } else if (names.empty()) {
        throw failure(fmt::format("no backups in {}", repo.dir().string()),
                      "check --dir / POSTGRES_BACKUP_DIR");
    } else {
        throw usage_error(fmt::format("\"latest\" is ambiguous: {} holds backups of {} databases "
                                      "({})",
                                      repo.dir().string(), names.size(), quoted_list(names)),
                          "name the database with --from-db or give the file");
    }
    std::vector<BackupId> ids = repo.ids(database);
    if (ids.empty()) {
        throw failure(names.empty()
                          ? fmt::format("no backups of \"{}\" in {} (it holds none at all)",
                                        database, repo.dir().string())
                          : fmt::format("no backups of \"{}\" in {}; it holds backups of {}",
                                        database, repo.dir().string(), quoted_list(names)),
                      names.empty() ? "check --dir / POSTGRES_BACKUP_DIR"
                                    : "name the source database with --from-db, or give the file");
    }
    // Newest first: the first of the target's server is the one; else each
    // server's newest, in that order.
    std::vector<std::pair<std::string, BackupId>> newest_by_server;
    for (const BackupId& id : ids) {
        std::optional<std::string> from = repo.system_of(id);
        if (server && (!from || *from == *server)) {
            return repo.path_of(id.dump_file());
        }
        if (from && std::none_of(newest_by_server.begin(), newest_by_server.end(),
                                 [&](const auto& known) { return known.first == *from; })) {
            newest_by_server.emplace_back(*from, id);
        }
    }
    if (newest_by_server.size() <= 1) {
        return repo.path_of(ids.front().dump_file());
    }
    std::string servers;
    for (const auto& [system, id] : newest_by_server) {
        servers += fmt::format("{}server {} (newest {})", servers.empty() ? "" : ", ", system,
                               id.dump_file());
    }
    throw failure(fmt::format("\"latest\" is ambiguous: {} holds backups of \"{}\" from {} "
                              "servers: {}",
                              repo.dir().string(), database, newest_by_server.size(), servers),
                  "give the file to restore (`pgward list` shows each backup's server)");
}

}  // namespace

std::filesystem::path resolve_backup(const std::string& spec, const std::filesystem::path& dir,
                                     const std::optional<std::string>& database,
                                     const std::optional<std::string>& server) {
    if (spec != "latest") {
        std::filesystem::path path = spec;
        if (!std::filesystem::exists(path) && path.parent_path().empty()) {
            path = dir / spec;
        }
        if (!std::filesystem::exists(path)) {
            throw failure(fmt::format("backup {} not found (nor in {})", spec, dir.string()),
                          "see `pgward list` for the backups there");
        }
        return path;
    }
    return resolve_latest(BackupRepository(dir), database, server);
}

}  // namespace pgward
