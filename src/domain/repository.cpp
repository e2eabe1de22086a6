#include "domain/repository.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>
#include <unordered_set>

#include <fmt/format.h>

#include "domain/manifest.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"

namespace pgward {
namespace {

bool is_regular_file_not_link(const std::filesystem::path& path, uint64_t* size = nullptr) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        return false;
    }
    if (size != nullptr) {
        *size = static_cast<uint64_t>(st.st_size);
    }
    return true;
}

}  // namespace

std::vector<BackupRepository::Listed> BackupRepository::scan() const {
    std::vector<Listed> out;
    std::error_code ec;
    std::filesystem::directory_iterator it(dir_, ec);
    if (ec) {
        throw os_error("cannot read backup directory", dir_.string(), ec.value(),
                       ec.value() == ENOENT ? "check --dir / POSTGRES_BACKUP_DIR" : "");
    }
    for (const auto& entry : it) {
        std::string name = entry.path().filename().string();
        if (auto parsed = parse_backup_file_name(name)) {
            // The type readdir reported, without a stat (is_symlink and
            // is_regular_file answer from it when the filesystem fills it in).
            std::error_code type_ec;
            std::filesystem::file_type type = std::filesystem::file_type::unknown;
            if (entry.is_symlink(type_ec)) {
                type = std::filesystem::file_type::symlink;
            } else if (!type_ec && entry.is_regular_file(type_ec) && !type_ec) {
                type = std::filesystem::file_type::regular;
            } else if (!type_ec) {
                type = std::filesystem::file_type::not_found;  // a directory, fifo, ...
            }
            out.push_back(Listed{std::move(name), *parsed, type});
        }
    }
    return out;
}

std::vector<BackupEntry> BackupRepository::list(const std::optional<std::string>& database,
                                                Kind kind) const {
    std::vector<Listed> files = scan();
    std::unordered_set<std::string> manifests;
    for (const Listed& f : files) {
        if (f.parsed.role == FileRole::Manifest && !f.parsed.temporary) {
            manifests.insert(f.name);
        }
    }
    // Names are looked up relative to the directory: no path walk per file.
    int dir_fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) {
        throw os_error("cannot read backup directory", dir_.string(), errno);
    }
    struct CloseDir {
        int fd;
        ~CloseDir() { ::close(fd); }
    } close_dir{dir_fd};
    std::vector<BackupEntry> out;
    for (const Listed& f : files) {
        if (f.parsed.role != FileRole::Dump || f.parsed.temporary) {
            continue;
        }
        if ((database && f.parsed.id.database != *database) ||
            f.parsed.id.pre_restore != (kind == Kind::SafetyDumps)) {
            continue;
        }
        BackupEntry entry;
        entry.id = f.parsed.id;
        entry.dump_path = dir_ / f.name;
        struct stat st {};
        if (::fstatat(dir_fd, f.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode)) {
            continue;  // a directory or symlink with a backup's name is not ours
        }
        entry.size_bytes = static_cast<uint64_t>(st.st_size);
        entry.has_manifest = manifests.count(entry.id.manifest_file()) > 0;
        out.push_back(std::move(entry));
    }
    const TimePoint now = now_seconds();
    std::sort(out.begin(), out.end(), [now](const BackupEntry& a, const BackupEntry& b) {
        bool a_future = is_future_dated(a.id, now);
        bool b_future = is_future_dated(b.id, now);
        if (a_future != b_future) {
            return b_future;  // a future-dated backup ranks as the oldest
        }
        if (a.id.started != b.id.started) {
            return a.id.started > b.id.started;
        }
        return a.id.database < b.id.database;
    });
    return out;
}

bool BackupRepository::is_dump(const Listed& f) const {
    if (f.parsed.role != FileRole::Dump || f.parsed.temporary) {
        return false;
    }
    return f.type == std::filesystem::file_type::regular ||
           (f.type == std::filesystem::file_type::unknown &&
            is_regular_file_not_link(dir_ / f.name));
}

std::vector<BackupId> BackupRepository::ids(const std::string& database) const {
    std::vector<BackupId> out;
    for (const Listed& f : scan()) {
        if (f.parsed.id.database == database && !f.parsed.id.pre_restore && is_dump(f)) {
            out.push_back(f.parsed.id);
        }
    }
    sort_newest_first(out, now_seconds());
    return out;
}

std::vector<BackupId> BackupRepository::safety_ids(const std::string& database) const {
    std::vector<BackupId> out;
    for (const Listed& f : scan()) {
        if (f.parsed.id.database == database && f.parsed.id.pre_restore && is_dump(f)) {
            out.push_back(f.parsed.id);
        }
    }
    sort_newest_first(out, now_seconds());
    return out;
}

std::optional<std::string> BackupRepository::system_of(const BackupId& id) const {
    try {
        return read_manifest_head(path_of(id.manifest_file())).system_identifier;
    } catch (const Error&) {
        return std::nullopt;
    }
}

std::vector<BackupId> BackupRepository::ids_of_server(
    const std::string& database, const std::optional<std::string>& system) const {
    std::vector<BackupId> out = ids(database);
    if (system) {
        std::erase_if(out, [&](const BackupId& id) {
            std::optional<std::string> from = system_of(id);
            return from && *from != *system;
        });
    }
    return out;
}

std::set<std::string> BackupRepository::systems_of(const std::string& database) const {
    std::set<std::string> out;
    for (const BackupId& id : ids(database)) {
        if (std::optional<std::string> from = system_of(id)) {
            out.insert(*from);
        }
    }
    return out;
}

std::vector<BackupId> BackupRepository::bound_safety_dumps(const std::string& database,
                                                           size_t keep) const {
    std::vector<BackupId> safety = safety_ids(database);
    std::vector<BackupId> deleted;
    for (size_t i = keep; i < safety.size(); ++i) {
        remove_backup(safety[i]);
        log::info("deleted an old safety dump",
                  {{"file", safety[i].dump_file()},
                   {"reason", fmt::format("only the newest {} safety dumps are kept", keep)}});
        deleted.push_back(safety[i]);
    }
    return deleted;
}

std::vector<std::string> BackupRepository::databases() const {
    std::set<std::string> names;
    for (const Listed& f : scan()) {
        if (is_dump(f) && !f.parsed.id.pre_restore) {
            names.insert(f.parsed.id.database);
        }
    }
    return {names.begin(), names.end()};
}

FileLock BackupRepository::lock(const std::string& database) const {
    std::filesystem::path path = dir_ / lock_file_name(database);
    std::optional<FileLock> lock = FileLock::try_acquire(path);
    if (!lock) {
        throw failure(fmt::format("previous run still active for database \"{}\" in {} (lock {})",
                                  database, dir_.string(), path.filename().string()),
                      "wait for it to finish; a crashed run releases the lock by itself");
    }
    return std::move(*lock);
}

std::vector<std::string> BackupRepository::remove_leftovers(const std::string& database) const {
    std::vector<Listed> files = scan();
    std::set<std::string> dumps;
    for (const Listed& f : files) {
        if (f.parsed.role == FileRole::Dump && !f.parsed.temporary) {
            dumps.insert(f.parsed.id.stem());
        }
    }
    std::vector<std::string> removed;
    for (const Listed& f : files) {
        if (f.parsed.id.database != database) {
            continue;
        }
        bool orphan_sidecar = !f.parsed.temporary && f.parsed.role != FileRole::Dump &&
                              dumps.count(f.parsed.id.stem()) == 0;
        if (!f.parsed.temporary && !orphan_sidecar) {
            continue;
        }
        std::filesystem::path path = dir_ / f.name;
        struct stat st {};
        // A symlink with our name is removed as a link; its target is never touched.
        if (::lstat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) {
            continue;
        }
        remove_file(path);
        log::info(f.parsed.temporary ? "removed leftover temp file of an interrupted run"
                                     : "removed sidecar whose dump is gone",
                  {{"file", f.name}});
        removed.push_back(f.name);
    }
    if (!removed.empty()) {
        fsync_directory(dir_);
    }
    return removed;
}

std::vector<std::filesystem::path> BackupRepository::files_of(const BackupId& id) const {
    std::vector<std::filesystem::path> out;
    for (const std::string& name : {id.dump_file(), id.manifest_file(), id.globals_file()}) {
        if (is_regular_file_not_link(dir_ / name)) {
            out.push_back(dir_ / name);
        }
    }
    return out;
}

void BackupRepository::remove_backup(const BackupId& id) const {
    for (const std::filesystem::path& path : files_of(id)) {
        remove_file(path);
    }
    fsync_directory(dir_);
}

std::vector<BackupId> BackupRepository::apply(const std::vector<RetentionDecision>& plan,
                                              bool dry_run) const {
    std::vector<BackupId> deleted;
    // A dry run only prints: its lines go out together. A real one logs each
    // deletion as it happens, so a crash mid-prune leaves an exact record.
    std::optional<log::Batch> batch;
    if (dry_run) {
        batch.emplace();
    }
    for (const RetentionDecision& decision : plan) {
        std::string action = decision.keep ? "keep" : (dry_run ? "would delete" : "delete");
        log::info(action, {{"file", decision.id.dump_file()}, {"reason", decision.reason}});
        if (!decision.keep) {
            if (!dry_run) {
                remove_backup(decision.id);
            }
            deleted.push_back(decision.id);
        }
    }
    return deleted;
}

}  // namespace pgward
