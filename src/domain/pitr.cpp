#include "domain/pitr.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <regex>

#include "domain/manifest.hpp"
#include "domain/naming.hpp"
#include "domain/wal_archive.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/process.hpp"

namespace pgward {
namespace fs = std::filesystem;
using SystemTime = std::chrono::system_clock::time_point;

namespace {

SystemTime to_system(fs::file_time_type t) {
    return std::chrono::time_point_cast<std::chrono::system_clock::duration>(
        std::chrono::file_clock::to_sys(t));
}

std::string describe_time(SystemTime t) {
    return format_iso_utc(std::chrono::time_point_cast<std::chrono::seconds>(t));
}

struct Owner {
    uid_t uid;
    gid_t gid;
    std::string name;
};

// Who the recovered data directory is for: only root can give files away.
// The --owner user, else the owner of an existing (empty) folder, else
// "postgres"; when not root, whoever runs pgward.
std::optional<Owner> data_directory_owner(const PitrRequest& request) {
    if (::geteuid() != 0) {
        return std::nullopt;
    }
    auto by_name = [](const std::string& name) -> std::optional<Owner> {
        passwd* pw = ::getpwnam(name.c_str());
        if (pw == nullptr) {
            return std::nullopt;
        }
        return Owner{pw->pw_uid, pw->pw_gid, name};
    };
    if (request.owner) {
        // UID:GID for a user this system has no name for (a container's).
        static const std::regex numeric(R"(^(\d{1,9}):(\d{1,9})$)");
        std::smatch m;
        if (std::regex_match(*request.owner, m, numeric)) {
            return Owner{static_cast<uid_t>(std::stoul(m[1].str())),
                         static_cast<gid_t>(std::stoul(m[2].str())), *request.owner};
        }
        auto owner = by_name(*request.owner);
        if (!owner) {
            throw usage_error(fmt::format("--owner: there is no user \"{}\"", *request.owner),
                              "give a user name, or UID:GID");
        }
        return owner;
    }
    struct stat st {};
    if (::stat(request.pgdata.c_str(), &st) == 0 && st.st_uid != 0) {
        passwd* pw = ::getpwuid(st.st_uid);
        return Owner{st.st_uid, st.st_gid, pw != nullptr ? pw->pw_name : std::to_string(st.st_uid)};
    }
    auto postgres = by_name("postgres");
    if (!postgres) {
        throw usage_error(
            "pgward runs as root and there is no \"postgres\" user to own the data "
            "directory",
            "name the server's user with --owner");
    }
    return postgres;
}

// Whether `owner` may `test -x`/`test -r` a path (every folder on the way
// counts), asked as that user.
bool user_can(const Owner& owner, const char* test, const fs::path& path) {
    CapturedRun run =
        run_captured(Command{{"/usr/bin/setpriv", fmt::format("--reuid={}", owner.uid),
                              fmt::format("--regid={}", owner.gid), "--clear-groups", "--",
                              "/usr/bin/test", test, path.string()},
                             {},
                             {}},
                     std::chrono::seconds(30));
    return run.status.ok();
}

void give_tree(const fs::path& root, const Owner& owner) {
    auto give = [&](const fs::path& p) {
        if (::lchown(p.c_str(), owner.uid, owner.gid) != 0) {
            throw os_error("cannot hand the data directory to " + owner.name, p.string(), errno);
        }
    };
    give(root);
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
        give(entry.path());
    }
}

// True when it made the folder.
bool prepare_empty_directory(const fs::path& pgdata) {
    std::error_code ec;
    bool created = false;
    if (fs::exists(pgdata, ec)) {
        if (!fs::is_directory(pgdata, ec)) {
            throw usage_error(fmt::format("--pgdata {} is not a directory", pgdata.string()));
        }
        if (!fs::is_empty(pgdata, ec)) {
            throw usage_error(
                fmt::format("--pgdata {} is not empty: a recovery lays out a whole cluster there",
                            pgdata.string()),
                "give a new or empty folder; never the data directory of a running server");
        }
    } else {
        fs::create_directories(pgdata);
        created = true;
    }
    if (::chmod(pgdata.c_str(), 0700) != 0) {
        throw os_error("cannot make the data directory private", pgdata.string(), errno);
    }
    return created;
}

// The plan's WAL files (the newest served from its .partial) and every
// timeline history file, each checked as it is copied.
void copy_wal_into(const PitrPlan& plan, const fs::path& pg_wal) {
    const WalArchive archive = WalArchive::at(plan.archive, plan.base.system);
    std::vector<std::string> files;
    for (const WalArchive::Entry& entry : archive.entries()) {
        if (entry.name.kind == pg::WalFileName::Kind::History) {
            files.push_back(entry.file);
        }
    }
    files.insert(files.end(), plan.wal_files.begin(), plan.wal_files.end());
    size_t copied = 0;
    for (std::string file : files) {
        if (file.ends_with(".partial")) {
            file = file.substr(0, file.size() - std::string_view(".partial").size());
        }
        if (archive.fetch(file, pg_wal / file)) {
            ++copied;
        }
    }
    log::info("WAL copied into the data directory",
              {{"files", std::to_string(copied)}, {"timeline", std::to_string(plan.timeline)}});
}

}  // namespace

std::optional<pg::Lsn> find_restore_point(const fs::path& dir, const std::string& name) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const fs::path& path = it->path();
        if (path.extension() != ".json" || !it->is_regular_file(ec)) {
            continue;
        }
        try {
            const Manifest manifest = read_manifest(path);
            if (manifest.restore_point && manifest.restore_point->name == name) {
                return pg::Lsn::parse(manifest.restore_point->lsn);
            }
        } catch (const Error&) {
            continue;  // not a manifest, or a damaged one: `list` reports those
        }
    }
    return std::nullopt;
}

std::optional<RecoveryTarget> backup_restore_point(const fs::path& dir, std::string_view text,
                                                   const std::optional<std::string>& shown_as) {
    const std::string where = shown_as.value_or(dir.string());
    auto parsed = parse_backup_file_name(fs::path(text).filename().string());
    if (!parsed || parsed->temporary) {
        return std::nullopt;
    }
    if (fs::path(text).has_parent_path() &&
        fs::weakly_canonical(fs::path(text).parent_path()) != fs::weakly_canonical(dir)) {
        throw usage_error(
            fmt::format("--to {}: a backup is named by its file in {}, not by a path elsewhere",
                        text, dir.string()),
            "give the file's name, with --dir its folder");
    }
    const fs::path manifest_path = dir / parsed->id.manifest_file();
    std::error_code ec;
    if (!fs::exists(manifest_path, ec)) {
        throw failure(
            fmt::format("--to {}: there is no such backup in {}", text, where),
            shown_as ? "pgward list --remote shows them" : "pgward list shows the backups");
    }
    const Manifest manifest = read_manifest(manifest_path);
    if (!manifest.restore_point) {
        throw failure(
            fmt::format("--to {}: that backup made no restore point (the server's WAL was not "
                        "being archived into {} then, or the role may not create one)",
                        text, where),
            "recover to the time it started instead: --to " + manifest.started_at);
    }
    RecoveryTarget target;
    target.kind = RecoveryTarget::Kind::Name;
    target.name = manifest.restore_point->name;
    return target;
}

std::optional<SystemTime> parse_time_with_zone(std::string_view text) {
    static const std::regex pattern(
        R"(^(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)$)");
    std::match_results<std::string_view::const_iterator> m;
    if (!std::regex_match(text.begin(), text.end(), m, pattern)) {
        return std::nullopt;
    }
    auto number = [&](int i) { return std::stoi(m[i].str()); };
    using namespace std::chrono;
    const year_month_day date{year{number(1)}, month{static_cast<unsigned>(number(2))},
                              day{static_cast<unsigned>(number(3))}};
    if (!date.ok() || number(4) > 23 || number(5) > 59 || number(6) > 60) {
        return std::nullopt;
    }
    microseconds fraction{0};
    if (m[7].matched) {
        std::string digits = m[7].str();
        digits.resize(6, '0');
        fraction = microseconds{std::stoi(digits)};
    }
    minutes offset{0};
    const std::string zone = m[8].str();
    if (zone != "Z" && zone != "z" && zone != "UTC") {
        const int sign = zone[0] == '-' ? -1 : 1;
        const int hours_part = std::stoi(zone.substr(1, 2));
        int minutes_part = 0;
        if (zone.size() > 3) {
            minutes_part = std::stoi(zone.substr(zone.size() - 2));
        }
        if (hours_part > 15 || minutes_part > 59) {
            return std::nullopt;
        }
        offset = minutes{sign * (hours_part * 60 + minutes_part)};
    }
    const sys_days days{date};
    return time_point_cast<system_clock::duration>(days + hours{number(4)} + minutes{number(5)} +
                                                   seconds{number(6)} + fraction - offset);
}

std::string format_time_micros(SystemTime t) {
    using namespace std::chrono;
    const auto micros = time_point_cast<microseconds>(t);
    const auto days = floor<std::chrono::days>(micros);
    const year_month_day date{days};
    const hh_mm_ss clock{micros - days};
    return fmt::format("{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
                       static_cast<int>(date.year()), static_cast<unsigned>(date.month()),
                       static_cast<unsigned>(date.day()), clock.hours().count(),
                       clock.minutes().count(), clock.seconds().count(),
                       clock.subseconds().count());
}

std::string shell_quote(std::string_view value) {
    std::string quoted = "'";
    for (char c : value) {
        if (c == '\'') {
            quoted += "'\\''";
        } else {
            quoted += c;
        }
    }
    return quoted + "'";
}

std::string conf_quote(std::string_view value) {
    std::string quoted = "'";
    for (char c : value) {
        quoted += c;
        if (c == '\'') {
            quoted += '\'';
        }
    }
    return quoted + "'";
}

RecoveryTarget RecoveryTarget::parse(std::string_view text) {
    RecoveryTarget target;
    if (text.empty()) {
        throw usage_error(
            "--to is empty: give latest, a time with its zone, an LSN or a restore "
            "point's name");
    }
    if (text == "latest") {
        return target;
    }
    if (text.starts_with("name:")) {
        target.kind = Kind::Name;
        target.name = std::string(text.substr(5));
    } else if (auto lsn = pg::Lsn::parse(text)) {
        target.kind = Kind::Lsn;
        target.lsn = *lsn;
    } else if (auto time = parse_time_with_zone(text)) {
        target.kind = Kind::Time;
        target.time = *time;
    } else if (std::regex_search(std::string(text), std::regex(R"(^\d{4}-\d{2}-\d{2})"))) {
        throw usage_error(
            fmt::format("--to \"{}\" is not a time pgward reads", std::string(text)),
            "write it with its zone: 2026-12-03 18:40:00+01 or 2026-12-03T17:40:00.250Z");
    } else {
        target.kind = Kind::Name;
        target.name = std::string(text);
    }
    if (target.kind == Kind::Name && (target.name.empty() || target.name.size() > 63)) {
        throw usage_error(fmt::format("--to: a restore point's name has 1 to 63 bytes, not {}",
                                      target.name.size()));
    }
    return target;
}

std::string RecoveryTarget::describe() const {
    switch (kind) {
        case Kind::Latest:
            return "latest";
        case Kind::Time:
            return format_time_micros(time);
        case Kind::Lsn:
            return lsn.text();
        case Kind::Name:
            return "restore point \"" + name + "\"";
    }
    return "";
}

std::optional<std::string> RecoveryTarget::setting() const {
    switch (kind) {
        case Kind::Latest:
            return std::nullopt;
        case Kind::Time:
            return "recovery_target_time = " + conf_quote(format_time_micros(time));
        case Kind::Lsn:
            return "recovery_target_lsn = " + conf_quote(lsn.text());
        case Kind::Name:
            return "recovery_target_name = " + conf_quote(name);
    }
    return std::nullopt;
}

std::vector<BaseBackup> base_backups_on_newest_timeline(
    const std::vector<BaseBackup>& backups,
    const std::map<uint32_t, std::vector<pg::TimelineSwitch>>& histories) {
    if (histories.empty()) {
        return backups;
    }
    const auto& [newest, switches] = *histories.rbegin();
    std::vector<BaseBackup> out;
    for (const BaseBackup& b : backups) {
        const bool on_it =
            b.timeline >= newest ||
            std::any_of(switches.begin(), switches.end(), [&](const pg::TimelineSwitch& s) {
                return s.parent == b.timeline && s.switch_point >= b.end;
            });
        if (on_it) {
            out.push_back(b);
        }
    }
    return out;
}

uint32_t TimelinePath::timeline_of(uint64_t segment) const {
    uint32_t timeline = target;
    for (const auto& [tli, first] : begins) {
        if (first <= segment) {
            timeline = tli;
        }
    }
    return timeline;
}

TimelinePath timeline_path(const std::map<uint32_t, std::vector<pg::TimelineSwitch>>& histories,
                           uint32_t from, uint64_t segment_size) {
    TimelinePath path{from, {{from, 0}}};
    for (const auto& [timeline, switches] : histories) {
        if (timeline <= path.target) {
            continue;
        }
        auto branch = std::find_if(switches.begin(), switches.end(),
                                   [&](const pg::TimelineSwitch& s) { return s.parent == from; });
        if (branch == switches.end()) {
            continue;  // not a descendant of `from`
        }
        path.target = timeline;
        path.begins = {{from, 0}};
        for (auto it = branch; it != switches.end(); ++it) {
            const uint32_t next =
                std::next(it) != switches.end() ? std::next(it)->parent : timeline;
            path.begins.emplace_back(next, pg::segment_of(it->switch_point, segment_size));
        }
    }
    return path;
}

std::optional<pg::Lsn> target_position(const fs::path& dir, const RecoveryTarget& target) {
    if (target.kind == RecoveryTarget::Kind::Lsn) {
        return target.lsn;
    }
    if (target.kind == RecoveryTarget::Kind::Name) {
        return find_restore_point(dir, target.name);
    }
    return std::nullopt;
}

const BaseBackup* choose_base_backup(const std::vector<BaseBackup>& backups,
                                     const RecoveryTarget& target,
                                     std::optional<pg::Lsn> target_lsn) {
    const BaseBackup* chosen = nullptr;
    for (const BaseBackup& b : backups) {
        const bool usable = (target.kind == RecoveryTarget::Kind::Time &&
                             std::chrono::system_clock::time_point(b.finished) <= target.time) ||
                            (target_lsn && b.end <= *target_lsn) ||
                            target.kind == RecoveryTarget::Kind::Latest ||
                            (target.kind == RecoveryTarget::Kind::Name && !target_lsn);
        if (usable) {
            chosen = &b;
        }
    }
    return chosen;
}

PitrPlan plan_pitr(const PitrRequest& request) {
    uint64_t system = 0;
    if (request.system) {
        system = *request.system;
    } else {
        const std::vector<uint64_t> systems = base_backup_systems(request.dir);
        if (systems.empty()) {
            throw failure(fmt::format("no base backups in {}", (request.dir / "base").string()),
                          "point-in-time recovery starts from one: pgward basebackup");
        }
        if (systems.size() > 1) {
            std::string names;
            for (uint64_t s : systems) {
                names += (names.empty() ? "" : ", ") + std::to_string(s);
            }
            throw usage_error(fmt::format("{} holds base backups of several servers ({})",
                                          request.dir.string(), names),
                              "choose one with --system");
        }
        system = systems.front();
    }
    const std::vector<BaseBackup> all_backups = list_base_backups(request.dir, system);
    if (all_backups.empty()) {
        throw failure(fmt::format("no base backups of system {} in {}", system,
                                  (request.dir / "base").string()),
                      "point-in-time recovery starts from one: pgward basebackup");
    }
    PitrPlan plan;
    const WalArchive archive(request.dir, system);
    plan.archive = archive.dir();
    const std::string archive_name = request.archive_location.value_or(archive.dir().string());
    const std::vector<WalArchive::Entry> entries = archive.entries();
    std::map<uint32_t, std::vector<pg::TimelineSwitch>> histories;
    for (const WalArchive::Entry& e : entries) {
        if (e.name.kind == pg::WalFileName::Kind::History) {
            try {
                histories[e.name.timeline] = pg::parse_history(read_file(archive.dir() / e.file));
            } catch (const Error& error) {
                throw failure(fmt::format("timeline history file {} in {} cannot be read: {}",
                                          e.file, archive_name, error.what()));
            }
        }
    }
    // Recovery goes to the newest timeline: only a base backup on its history can.
    const std::vector<BaseBackup> backups = base_backups_on_newest_timeline(all_backups, histories);
    if (backups.empty()) {
        throw failure(
            fmt::format("no base backup of system {} can reach timeline {}, the newest in {}: "
                        "each was taken on a timeline that timeline {} left before it ended",
                        system, histories.rbegin()->first, archive_name, histories.rbegin()->first),
            "take a base backup now (pgward basebackup)");
    }

    const std::optional<pg::Lsn> target_lsn = target_position(request.dir, request.target);
    const BaseBackup* chosen = choose_base_backup(backups, request.target, target_lsn);

    // The WAL from the base backup on: its own (start to end, in pg_wal.tar)
    // then the archive's, with no segment missing, along the timelines
    // recovery follows (recovery_target_timeline = 'latest').
    const BaseBackup& oldest = backups.front();
    const uint64_t size = oldest.segment_size;
    struct Segments {
        TimelinePath path;
        std::map<uint64_t, const WalArchive::Entry*> files;
    };
    auto segments_from = [&](const BaseBackup& from) {
        Segments out{timeline_path(histories, from.timeline, size), {}};
        for (const WalArchive::Entry& e : entries) {
            if (e.name.kind != pg::WalFileName::Kind::History &&
                e.name.timeline == out.path.timeline_of(e.name.segment_number(size))) {
                out.files.emplace(e.name.segment_number(size), &e);
            }
        }
        return out;
    };
    auto reach = [&](const BaseBackup& from) {
        const Segments found = segments_from(from);
        const auto& segments = found.files;
        struct Reach {
            uint64_t last_segment;
            SystemTime written;
            std::optional<std::string> missing;
            std::vector<std::string> files;
            uint32_t timeline;
        } r{pg::segment_of(from.end, size),
            SystemTime(from.finished),
            std::nullopt,
            {},
            found.path.target};
        for (auto it = segments.lower_bound(pg::segment_of(from.start, size)); it != segments.end();
             ++it) {
            if (it->first > r.last_segment + 1) {
                r.missing = fmt::format(
                    "WAL segment {} is missing from {}",
                    pg::WalFileName::segment_name(found.path.timeline_of(r.last_segment + 1),
                                                  r.last_segment + 1, size),
                    archive_name);
                break;
            }
            r.files.push_back(it->second->file);
            r.last_segment = std::max(r.last_segment, it->first);
            r.written = std::max(r.written, to_system(it->second->modified));
            // A .partial with later segments after it: streaming stopped in
            // it and resumed further on, past WAL the server had removed.
            if (it->second->name.kind == pg::WalFileName::Kind::PartialSegment &&
                std::next(it) != segments.end()) {
                r.missing = fmt::format(
                    "WAL segment {} in {} ends where streaming stopped, and the WAL after it up "
                    "to {} was removed by the server before it was streamed",
                    it->second->file, archive_name, std::next(it)->second->file);
                break;
            }
        }
        return r;
    };
    const auto window_start = describe_time(SystemTime(oldest.finished));
    const auto whole = reach(oldest);
    const std::string window =
        fmt::format("the archive can reach from {} (base backup {} finished) to about {}",
                    window_start, oldest.name, describe_time(whole.written));
    if (chosen == nullptr) {
        throw failure(
            fmt::format("{} is before every base backup: {}", request.target.describe(), window),
            "recover to a later target, or keep base backups longer");
    }
    const auto r = reach(*chosen);
    const std::string end_text = describe_time(r.written);
    const bool past_end =
        (request.target.kind == RecoveryTarget::Kind::Time && request.target.time > r.written) ||
        (target_lsn && target_lsn->value >= pg::segment_start(r.last_segment + 1, size).value);
    // A target whose place is not known (latest, a name no manifest holds)
    // could lie past the gap.
    if (r.missing && (past_end || request.target.kind == RecoveryTarget::Kind::Latest ||
                      (request.target.kind == RecoveryTarget::Kind::Name && !target_lsn))) {
        throw failure(fmt::format("{}: recovery from base backup {} stops there, at about {}",
                                  *r.missing, chosen->name, end_text),
                      "recover to a target before it (--to a time or LSN), or from a base backup "
                      "taken after the gap");
    }
    if (past_end) {
        throw failure(fmt::format("{} is past the end of the archived WAL: {}",
                                  request.target.describe(), window),
                      "is pgward streaming WAL (pgward wal stream, or run --wal)?");
    }
    plan.base = *chosen;
    const TimelinePath path = timeline_path(histories, chosen->timeline, size);
    const uint64_t first = pg::segment_of(chosen->start, size);
    plan.first_segment = pg::WalFileName::segment_name(path.timeline_of(first), first, size);
    plan.last_segment =
        pg::WalFileName::segment_name(path.timeline_of(r.last_segment), r.last_segment, size);
    plan.wal_files = r.files;
    plan.timeline = r.timeline;
    plan.wal_written = fs::file_time_type(std::chrono::file_clock::from_sys(r.written));
    plan.segment_size = size;
    return plan;
}

PitrPlan restore_pitr(const PitrRequest& request) {
    PitrPlan plan = plan_pitr(request);
    const std::optional<Owner> owner = data_directory_owner(request);
    for (const std::string& file : plan.base.files) {
        if (file != "base.tar" && file != "pg_wal.tar") {
            throw failure(
                fmt::format("base backup {} has a tablespace ({}): pgward does not "
                            "recover tablespaces yet",
                            plan.base.name, file));
        }
    }
    if (!request.copy_wal && owner) {
        // restore_command runs as the server's user: it must be able to run
        // pgward and read the archive, or recovery stops at its first segment.
        for (const auto& [test, path] : {std::pair{"-x", request.pgward},
                                         std::pair{"-r", plan.archive / plan.first_segment}}) {
            if (!user_can(*owner, test, path)) {
                throw failure(fmt::format("with --fetch-wal the server's user {} must {} {}, and "
                                          "cannot",
                                          owner->name, std::string(test) == "-x" ? "run" : "read",
                                          path.string()),
                              "drop --fetch-wal (the WAL is then copied into pg_wal), or install "
                              "pgward and the archive where that user can reach them");
            }
        }
    }
    log::info("point-in-time recovery: laying out the base backup",
              {{"base_backup", plan.base.name},
               {"target", request.target.describe()},
               {"wal_from", plan.first_segment},
               {"wal_to", plan.last_segment},
               {"pgdata", request.pgdata.string()}});
    const bool created = prepare_empty_directory(request.pgdata);
    try {
        extract_tar(plan.base.path / "base.tar", request.pgdata);
        ensure_directory(request.pgdata / "pg_wal");
        if (std::find(plan.base.files.begin(), plan.base.files.end(), "pg_wal.tar") !=
            plan.base.files.end()) {
            extract_tar(plan.base.path / "pg_wal.tar", request.pgdata / "pg_wal");
        }

        // PostgreSQL recovers from pg_wal only when restore_command finds
        // nothing, and needs one set: `false` finds nothing.
        std::string restore_command = "false";
        if (request.copy_wal) {
            copy_wal_into(plan, request.pgdata / "pg_wal");
        } else {
            restore_command =
                fmt::format("{} wal fetch --archive {} %f %p", shell_quote(request.pgward.string()),
                            shell_quote(plan.archive.string()));
        }
        std::string settings = fmt::format(
            "\n# pgward restore --pitr: recovery to {} from base backup {}. Remove these lines\n"
            "# once the server has promoted.\n"
            "restore_command = {}\n"
            "recovery_target_timeline = 'latest'\n",
            request.target.describe(), plan.base.name, conf_quote(restore_command));
        if (auto target = request.target.setting()) {
            settings += *target + "\nrecovery_target_action = 'promote'\n";
        }
        const fs::path auto_conf = request.pgdata / "postgresql.auto.conf";
        std::string conf;
        if (fs::exists(auto_conf)) {
            conf = read_file(auto_conf);
        }
        write_file_atomically(auto_conf, conf + settings, AtomicFile::Publish::Replace);
        write_file_atomically(request.pgdata / "recovery.signal", "", AtomicFile::Publish::Replace);
        if (owner) {
            give_tree(request.pgdata, *owner);
        }
        fsync_directory(request.pgdata);
    } catch (...) {
        // Nothing half laid out is left: a server started on it would
        // recover to somewhere else, or not at all.
        std::error_code ec;
        if (created) {
            fs::remove_all(request.pgdata, ec);
        } else {
            for (fs::directory_iterator it(request.pgdata, ec), end; !ec && it != end;
                 it.increment(ec)) {
                std::error_code remove_ec;
                fs::remove_all(it->path(), remove_ec);
            }
        }
        throw;
    }
    log::info("point-in-time recovery ready",
              {{"pgdata", request.pgdata.string()},
               {"owner", owner ? owner->name : "the current user"},
               {"next", "start PostgreSQL on it: it replays the WAL to the target and promotes"}});
    return plan;
}

}  // namespace pgward
