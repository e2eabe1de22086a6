#include "domain/wal_archive.hpp"

#include <poll.h>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <functional>
#include <optional>
#include <set>
#include <utility>

#include "pg/tools.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/process.hpp"
#include "util/signals.hpp"

namespace pgward {
namespace fs = std::filesystem;

namespace {

// The streamer's application_name: what synchronous_standby_names lists.
constexpr const char* kStreamerName = "pgward_wal";

constexpr const char* kReplicationHint =
    "the role needs the REPLICATION attribute (ALTER ROLE name REPLICATION) and pg_hba.conf a "
    "\"replication\" line for it (docs/pitr.md)";

// Waits up to `wait`, returning early (true) when SIGTERM/SIGINT arrives.
bool interrupted_within(std::chrono::milliseconds wait) {
    if (pending_interrupt() != 0) {
        return true;
    }
    pollfd fd{interrupt_fd(), POLLIN, 0};
    ::poll(&fd, interrupt_fd() >= 0 ? 1 : 0, static_cast<int>(wait.count()));
    return pending_interrupt() != 0;
}

// Checks what pg_receivewal completed since the last look: each new segment's
// pages, and that it follows the last one (a gap names what is missing).
class SegmentWatcher {
  public:
    explicit SegmentWatcher(const WalArchive& archive) : archive_(archive) {}

    void look() {
        for (const std::string& file : archive_.file_names()) {
            if (checked_.count(file) != 0) {
                continue;
            }
            const WalArchive::Entry entry{file, *pg::WalFileName::parse(file), 0, {}};
            if (entry.name.kind != pg::WalFileName::Kind::Segment) {
                continue;
            }
            checked_.insert(entry.file);
            uint64_t segment_size = 0;
            try {
                segment_size = archive_.check_segment(entry.file, buffer_).segment_size;
            } catch (const Error& e) {
                log::error("a streamed WAL segment is damaged", {{"error", e.what()}});
                continue;
            }
            const uint64_t number = entry.name.segment_number(segment_size);
            if (last_ && last_->timeline == entry.name.timeline && number > last_->number + 1) {
                log::error(
                    "WAL gap: segments are missing from the archive",
                    {{"first_missing", pg::WalFileName::segment_name(
                                           entry.name.timeline, last_->number + 1, segment_size)},
                     {"next_present", entry.file}});
            }
            if (!last_ || entry.name.timeline > last_->timeline ||
                (entry.name.timeline == last_->timeline && number > last_->number)) {
                last_ = Position{entry.name.timeline, number};
            }
            log::info("WAL segment archived", {{"segment", entry.file}});
        }
    }

    // At start: what earlier runs streamed was checked then (reading a
    // week of segments again would hold up streaming); the newest few are
    // checked again, for a run killed just after it completed one.
    void look_at_start(size_t recheck = 8) {
        std::vector<std::string> segments;
        for (const std::string& file : archive_.file_names()) {
            if (pg::WalFileName::parse(file)->kind == pg::WalFileName::Kind::Segment) {
                segments.push_back(file);
            }
        }
        for (size_t i = 0; i + recheck < segments.size(); ++i) {
            checked_.insert(segments[i]);
        }
        look();
    }

  private:
    struct Position {
        uint32_t timeline;
        uint64_t number;
    };
    const WalArchive& archive_;
    std::string buffer_;
    std::set<std::string> checked_;
    std::optional<Position> last_;
};

// pg_receivewal fills a new segment with zeros to its full size before it
// writes WAL into it; killed while it does, it leaves a shorter .partial that
// every later pg_receivewal refuses ("should be 0 or 16777216 bytes"), so
// streaming would never resume. Such a file holds no WAL: it goes.
void remove_unfinished_partials(const WalArchive& archive) {
    for (const WalArchive::Entry& entry : archive.entries()) {
        const bool whole_segment = entry.size >= (1U << 20) && (entry.size & (entry.size - 1)) == 0;
        if (entry.name.kind != pg::WalFileName::Kind::PartialSegment || whole_segment ||
            entry.size == 0) {
            continue;
        }
        const fs::path path = archive.dir() / entry.file;
        const std::string bytes = read_file(path);
        if (bytes.find_first_not_of('\0') != std::string::npos) {
            log::error(
                "a partial WAL segment has an odd size and holds WAL; pg_receivewal will "
                "refuse it",
                {{"file", path.string()}, {"bytes", std::to_string(bytes.size())}});
            continue;
        }
        remove_file_or_warn(path);
        log::warn("removed a partial WAL segment pg_receivewal left unfinished (zeros only)",
                  {{"file", entry.file}, {"bytes", std::to_string(entry.size)}});
    }
}

}  // namespace

ServerIdentity identify_server(const pg::ConnectionOptions& connection) {
    pg::ConnectionOptions replication = connection;
    replication.replication = "true";
    std::optional<pg::Connection> opened;
    try {
        opened.emplace(pg::Connection::open(replication, "pgward"));
    } catch (const Error& e) {
        const std::string message = e.what();
        if (message.find("walsender") != std::string::npos ||
            message.find("replication connection") != std::string::npos) {
            throw failure(message, kReplicationHint);
        }
        throw;
    }
    pg::Connection& conn = *opened;
    pg::Result result = conn.exec("IDENTIFY_SYSTEM");
    if (result.rows() != 1 || result.columns() < 3) {
        throw failure("IDENTIFY_SYSTEM returned no row on " + conn.target());
    }
    ServerIdentity identity;
    auto system = parse_system_identifier(result.get(0, 0));
    auto flushed = pg::Lsn::parse(result.get(0, 2));
    if (!system || !flushed) {
        throw failure(fmt::format("IDENTIFY_SYSTEM on {} returned \"{}\", \"{}\"", conn.target(),
                                  result.get(0, 0), result.get(0, 2)));
    }
    identity.system = *system;
    identity.timeline = static_cast<uint32_t>(std::stoul(result.get(0, 1)));
    identity.flushed = *flushed;
    return identity;
}

std::string timeline_history(const pg::ConnectionOptions& connection, uint32_t timeline) {
    pg::ConnectionOptions replication = connection;
    replication.replication = "true";
    pg::Connection conn = pg::Connection::open(replication, "pgward");
    pg::Result history = conn.exec(fmt::format("TIMELINE_HISTORY {}", timeline));
    if (history.rows() != 1 || history.columns() < 2) {
        throw failure(
            fmt::format("TIMELINE_HISTORY {} returned no file on {}", timeline, conn.target()));
    }
    return history.get(0, 1);
}

std::optional<TimelineFork> plan_timeline_fork(
    const std::vector<WalArchive::Entry>& entries, uint32_t archive_timeline,
    const std::vector<pg::TimelineSwitch>& server_history, uint32_t server_timeline,
    uint64_t segment_size) {
    auto ended =
        std::find_if(server_history.begin(), server_history.end(),
                     [&](const pg::TimelineSwitch& s) { return s.parent == archive_timeline; });
    if (ended == server_history.end()) {
        return std::nullopt;
    }
    TimelineFork fork;
    fork.switch_point = ended->switch_point;
    // The timeline that followed the archive's: pg_receivewal follows the
    // later switches itself.
    fork.timeline =
        std::next(ended) != server_history.end() ? std::next(ended)->parent : server_timeline;
    const uint64_t fork_segment = pg::segment_of(ended->switch_point, segment_size);
    for (const WalArchive::Entry& e : entries) {
        if (e.name.kind != pg::WalFileName::Kind::History && e.name.timeline == archive_timeline &&
            e.name.segment_number(segment_size) > fork_segment) {
            fork.set_aside.push_back(e.file);
        }
    }
    fork.resume_segment = pg::WalFileName::segment_name(fork.timeline, fork_segment, segment_size);
    return fork;
}

std::optional<uint64_t> parse_system_identifier(std::string_view text) {
    uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value == 0) {
        return std::nullopt;
    }
    return value;
}

WalArchive::WalArchive(const fs::path& backup_dir, uint64_t system)
    : dir_(backup_dir / "wal" / std::to_string(system)), system_(system) {}

WalArchive WalArchive::at(fs::path archive_dir, std::optional<uint64_t> system) {
    WalArchive archive;
    archive.dir_ = std::move(archive_dir);
    archive.system_ = system ? system : parse_system_identifier(archive.dir_.filename().string());
    return archive;
}

std::vector<WalArchive::Entry> WalArchive::entries() const {
    std::vector<Entry> found;
    std::error_code ec;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string file = it->path().filename().string();
        auto name = pg::WalFileName::parse(file);
        std::error_code stat_ec;
        if (!name || !it->is_regular_file(stat_ec)) {
            continue;
        }
        Entry entry{file, *name, it->file_size(stat_ec), it->last_write_time(stat_ec)};
        if (!stat_ec) {
            found.push_back(std::move(entry));
        }
    }
    if (ec && ec != std::errc::no_such_file_or_directory) {
        throw os_error("cannot list the WAL archive", dir_.string(), ec.value());
    }
    std::sort(found.begin(), found.end(),
              [](const Entry& a, const Entry& b) { return a.file < b.file; });
    return found;
}

std::vector<std::string> WalArchive::file_names() const {
    std::vector<std::string> found;
    std::error_code ec;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
        std::string file = it->path().filename().string();
        if (pg::WalFileName::parse(file)) {
            found.push_back(std::move(file));
        }
    }
    if (ec && ec != std::errc::no_such_file_or_directory) {
        throw os_error("cannot list the WAL archive", dir_.string(), ec.value());
    }
    std::sort(found.begin(), found.end());
    return found;
}

pg::SegmentHeader WalArchive::check_segment(const std::string& file) const {
    std::string bytes;
    return check_segment(file, bytes);
}

pg::SegmentHeader WalArchive::check_segment(const std::string& file, std::string& bytes) const {
    auto name = pg::WalFileName::parse(file);
    if (!name || name->kind == pg::WalFileName::Kind::History) {
        throw failure(fmt::format("{} is not a WAL segment's name", file));
    }
    read_file_into(dir_ / file, bytes);
    if (auto problem = pg::check_segment(bytes, *name, system_)) {
        throw failure(
            fmt::format("WAL segment {} in {} is damaged: {}", file, dir_.string(), *problem),
            "it cannot be replayed; a base backup taken after it is needed to recover "
            "past this point");
    }
    auto header = pg::read_segment_header(bytes);
    if (!header) {
        throw failure(
            fmt::format("WAL segment {} in {} has nothing written yet", file, dir_.string()));
    }
    return *header;
}

bool WalArchive::fetch(const std::string& file, const fs::path& destination) const {
    auto name = pg::WalFileName::parse(file);
    if (!name || name->kind == pg::WalFileName::Kind::PartialSegment) {
        throw usage_error(
            fmt::format("\"{}\" is not the name of a WAL segment or history file", file));
    }
    std::string source = file;
    std::error_code ec;
    if (!fs::is_regular_file(dir_ / source, ec)) {
        source = file + ".partial";
        if (name->kind != pg::WalFileName::Kind::Segment ||
            !fs::is_regular_file(dir_ / source, ec)) {
            return false;
        }
    }
    const std::string bytes = read_file(dir_ / source);
    if (source != file &&
        std::string_view(bytes).substr(0, 40).find_first_not_of('\0') == std::string_view::npos) {
        // pg_receivewal has opened the segment but written nothing yet.
        return false;
    }
    if (name->kind == pg::WalFileName::Kind::Segment) {
        auto problem = pg::check_segment(bytes, *name, system_);
        if (problem) {
            throw failure(
                fmt::format("WAL segment {} in {} is damaged: {}", source, dir_.string(), *problem),
                "recovery cannot go past it; recover to an earlier target");
        }
        auto header = pg::read_segment_header(bytes);
        if (source != file) {
            // A partial segment may not have its header yet; PostgreSQL
            // needs a whole segment's size either way.
            const uint64_t size = header ? header->segment_size : pg::kDefaultSegmentSize;
            if (bytes.size() != size) {
                throw failure(fmt::format("the streamed segment {} is {} bytes, not {}", source,
                                          bytes.size(), size));
            }
        }
    }
    write_file_atomically(destination, bytes, AtomicFile::Publish::Replace);
    return true;
}

std::vector<uint64_t> wal_archive_systems(const fs::path& backup_dir) {
    std::vector<uint64_t> systems;
    std::error_code ec;
    for (fs::directory_iterator it(backup_dir / "wal", ec), end; !ec && it != end;
         it.increment(ec)) {
        if (auto system = parse_system_identifier(it->path().filename().string())) {
            systems.push_back(*system);
        }
    }
    std::sort(systems.begin(), systems.end());
    return systems;
}

void check_slot_name(const std::string& slot) {
    if (slot.empty() || slot.size() > 63 ||
        slot.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") != std::string::npos) {
        throw usage_error(fmt::format("\"{}\" is not a replication slot's name", slot),
                          "use 1 to 63 lower-case letters, digits and underscores");
    }
}

std::optional<uint64_t> archive_resume_segment(const std::vector<WalArchive::Entry>& entries,
                                               uint64_t segment_size) {
    std::optional<uint64_t> resume;
    for (const WalArchive::Entry& entry : entries) {
        if (entry.name.kind == pg::WalFileName::Kind::History) {
            continue;
        }
        const uint64_t number = entry.name.segment_number(segment_size);
        const uint64_t from =
            entry.name.kind == pg::WalFileName::Kind::PartialSegment ? number : number + 1;
        resume = std::max(resume.value_or(0), from);
    }
    return resume;
}

std::optional<WalGap> find_wal_gap(std::optional<uint64_t> archive_resumes_at,
                                   uint64_t slot_holds_from) {
    if (!archive_resumes_at || slot_holds_from <= *archive_resumes_at) {
        return std::nullopt;
    }
    return WalGap{*archive_resumes_at, slot_holds_from};
}

ReplicationSlotView read_replication_slot(pg::Connection& conn, const std::string& slot) {
    pg::Result r = conn.exec(
        "SELECT restart_lsn::text, coalesce(wal_status = 'lost', false), active "
        "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
        {slot});
    ReplicationSlotView view;
    if (r.rows() == 0) {
        return view;
    }
    view.exists = true;
    if (auto text = r.get_optional(0, 0)) {
        view.restart_lsn = pg::Lsn::parse(*text);
    }
    view.lost = r.get(0, 1) == "t";
    view.active = r.get(0, 2) == "t";
    return view;
}

ReplicationSlotView ensure_replication_slot(pg::Connection& conn, const std::string& slot,
                                            bool* was_lost) {
    ReplicationSlotView view = read_replication_slot(conn, slot);
    // An invalidated slot, or one holding no WAL that nobody uses (made by
    // pg_receivewal --create-slot), is replaced by one that holds WAL.
    if (view.exists && !view.active && (view.lost || !view.restart_lsn)) {
        conn.exec("SELECT pg_catalog.pg_drop_replication_slot($1)", {slot});
        if (was_lost != nullptr) {
            *was_lost = view.lost;
        }
        view = ReplicationSlotView{};
    }
    if (!view.exists) {
        try {
            conn.exec("SELECT pg_catalog.pg_create_physical_replication_slot($1, true)", {slot});
        } catch (const Error& e) {
            // Made meanwhile (another streamer starting) is as good.
            if (!read_replication_slot(conn, slot).exists) {
                throw failure(fmt::format("cannot create the replication slot \"{}\" on {}: {}",
                                          slot, conn.target(), e.what()),
                              kReplicationHint);
            }
        }
        view = read_replication_slot(conn, slot);
    }
    return view;
}

namespace {

// The server's flushed WAL position (on a standby, what it received);
// nullopt when it cannot be asked just now, logged once (`told`): a hung
// pg_receivewal goes unnoticed meanwhile.
std::optional<pg::Lsn> server_flushed(const pg::ConnectionOptions& connection,
                                      std::optional<pg::Connection>& session, bool& told) {
    try {
        if (!session) {
            session.emplace(pg::Connection::open(connection, "pgward"));
        }
        pg::Result r = session->exec(
            "SELECT (CASE WHEN pg_catalog.pg_is_in_recovery() "
            "THEN pg_catalog.pg_last_wal_receive_lsn() "
            "ELSE pg_catalog.pg_current_wal_flush_lsn() END)::text");
        return r.rows() == 1 && !r.is_null(0, 0) ? pg::Lsn::parse(r.get(0, 0)) : std::nullopt;
    } catch (const Error& e) {
        session.reset();
        if (!std::exchange(told, true)) {
            log::error(
                "cannot ask the server how far its WAL is; a hung pg_receivewal is not "
                "noticed meanwhile",
                {{"error", e.what()}});
        }
        return std::nullopt;
    }
}

uint64_t server_segment_size(pg::Connection& conn) {
    pg::Result r =
        conn.exec("SELECT setting FROM pg_catalog.pg_settings WHERE name = 'wal_segment_size'");
    uint64_t size = 0;
    if (r.rows() == 1) {
        const std::string text = r.get(0, 0);
        std::from_chars(text.data(), text.data() + text.size(), size);
    }
    return size != 0 ? size : pg::kDefaultSegmentSize;
}

// The stretch the server removed is named, and pg_receivewal is pointed
// past it: it starts at the newest segment it finds, so an empty .partial of
// the first segment the server still has (pg_receivewal fills one of 0
// bytes itself) is where it resumes.
void resume_past_gap(const WalStreamRequest& request, const WalArchive& archive, const WalGap& gap,
                     uint64_t segment_size) {
    const uint32_t timeline = identify_server(request.connection).timeline;
    const std::string first =
        pg::WalFileName::segment_name(timeline, gap.first_missing, segment_size);
    const std::string resume =
        pg::WalFileName::segment_name(timeline, gap.resumes_at, segment_size);
    write_file_atomically(archive.dir() / (resume + ".partial"), "", AtomicFile::Publish::Replace);
    const std::string message = fmt::format(
        "WAL gap: the server no longer has the WAL from segment {} up to {} (the slot was "
        "invalidated, or dropped, while nothing streamed): streaming resumes at {}; recovery "
        "cannot cross the gap, a base backup taken after it can",
        first, resume, resume);
    log::error(
        message,
        {{"first_missing", first}, {"resumes_at", resume}, {"archive", archive.dir().string()}});
    if (request.on_gap) {
        request.on_gap(message);
    }
}

// A server on a newer timeline than the archive's newest (promoted after a
// point-in-time recovery, or a failover): pg_receivewal would resume on the
// old timeline past the point where the server's history left it, and fail
// there for ever. The old timeline's files past the fork are another
// history: kept, in forked-timeline-<N>/ beside the archive; the new
// timeline's history file goes in, and streaming resumes in the new
// timeline's segment holding the fork.
void follow_timeline_fork(const WalStreamRequest& request, const WalArchive& archive,
                          uint64_t segment_size) {
    const std::vector<WalArchive::Entry> entries = archive.entries();
    uint32_t archive_timeline = 0;
    for (const WalArchive::Entry& e : entries) {
        if (e.name.kind != pg::WalFileName::Kind::History) {
            archive_timeline = std::max(archive_timeline, e.name.timeline);
        }
    }
    if (archive_timeline == 0) {
        return;
    }
    const ServerIdentity server = identify_server(request.connection);
    if (server.timeline <= archive_timeline) {
        return;
    }
    const std::string history_text = timeline_history(request.connection, server.timeline);
    const std::vector<pg::TimelineSwitch> history = pg::parse_history(history_text);
    const std::optional<TimelineFork> fork =
        plan_timeline_fork(entries, archive_timeline, history, server.timeline, segment_size);
    if (!fork) {
        throw failure(fmt::format("the server is on timeline {}, whose history does not pass "
                                  "through timeline {} of the archive {}",
                                  server.timeline, archive_timeline, archive.dir().string()),
                      "is this the same server? Point-in-time recovery of its old timeline "
                      "stays possible; stream the new one into a backup directory of its own");
    }
    if (!fork->set_aside.empty()) {
        const fs::path aside = archive.dir() / fmt::format("forked-timeline-{}", archive_timeline);
        ensure_directory(aside);
        for (const std::string& file : fork->set_aside) {
            fs::rename(archive.dir() / file, aside / file);
        }
        fsync_directory(aside);
    }
    // Every history file from the one that followed the archive's on.
    for (uint32_t timeline = fork->timeline; timeline <= server.timeline; ++timeline) {
        write_file_atomically(archive.dir() / pg::WalFileName::history_name(timeline),
                              timeline == server.timeline
                                  ? history_text
                                  : timeline_history(request.connection, timeline),
                              AtomicFile::Publish::Replace);
    }
    std::error_code ec;
    if (!fs::exists(archive.dir() / fork->resume_segment, ec) &&
        !fs::exists(archive.dir() / (fork->resume_segment + ".partial"), ec)) {
        write_file_atomically(archive.dir() / (fork->resume_segment + ".partial"), "",
                              AtomicFile::Publish::NoReplace);
    }
    fsync_directory(archive.dir());
    const std::string kept_in =
        fork->set_aside.empty()
            ? std::string()
            : (archive.dir() / fmt::format("forked-timeline-{}", archive_timeline)).string();
    const std::string message = fmt::format(
        "the server moved to timeline {}, which left timeline {} at {}: streaming follows it "
        "from segment {}{}",
        fork->timeline, archive_timeline, fork->switch_point.text(), fork->resume_segment,
        kept_in.empty() ? std::string()
                        : fmt::format("; {} segment(s) of timeline {} past the fork kept in {}",
                                      fork->set_aside.size(), archive_timeline, kept_in));
    log::warn(message, {{"set_aside", std::to_string(fork->set_aside.size())},
                        {"kept_in", kept_in.empty() ? std::string("none") : kept_in}});
    if (request.on_timeline_switch) {
        request.on_timeline_switch(message);
    }
}

}  // namespace

ArchiveMark archive_mark(const WalArchive& archive, uint64_t segment_size) {
    // Names only, and a stat of just the files pg_receivewal writes in place
    // (the .partial being streamed, a history file): a completed segment
    // only ever appears by a rename, which the resume point already shows.
    // The archive holds thousands of segments, and this runs every few
    // seconds while streaming.
    std::vector<WalArchive::Entry> entries;
    for (const std::string& file : archive.file_names()) {
        entries.push_back(WalArchive::Entry{file, *pg::WalFileName::parse(file), 0, {}});
    }
    // file_clock's epoch is in 2174: a default time would be later than
    // every real write.
    ArchiveMark mark{archive_resume_segment(entries, segment_size), fs::file_time_type::min()};
    for (const WalArchive::Entry& entry : entries) {
        if (entry.name.kind == pg::WalFileName::Kind::Segment) {
            continue;
        }
        std::error_code ec;
        const fs::file_time_type modified = fs::last_write_time(archive.dir() / entry.file, ec);
        if (!ec) {
            mark.newest_write = std::max(mark.newest_write, modified);
        }
    }
    return mark;
}

StallWatch::StallWatch(std::chrono::seconds timeout, uint64_t segment_size)
    : timeout_(timeout),
      every_(std::clamp<Clock::duration>(timeout / 4, std::chrono::seconds(1),
                                         std::chrono::seconds(5))),
      segment_size_(segment_size) {}

std::optional<std::string> StallWatch::look(
    Clock::time_point now, const std::function<ArchiveMark()>& mark_now,
    const std::function<std::optional<pg::Lsn>()>& server_now) {
    if (timeout_.count() <= 0 || (looked_ && now - *looked_ < every_)) {
        return std::nullopt;
    }
    looked_ = now;
    const ArchiveMark mark = mark_now();
    if (!quiet_since_ || mark != mark_) {
        mark_ = mark;
        quiet_since_ = now;
        server_at_quiet_.reset();
        server_ahead_.reset();
        return std::nullopt;
    }
    const std::optional<pg::Lsn> server = server_now();
    if (!server) {
        return std::nullopt;
    }
    if (!server_at_quiet_) {
        server_at_quiet_ = server;
    }
    const bool past_segment = mark.resume && pg::segment_of(*server, segment_size_) > *mark.resume;
    if (!server_ahead_ && (*server > *server_at_quiet_ || past_segment)) {
        server_ahead_ = now;
    }
    if (!server_ahead_ || now - *server_ahead_ < every_ || now - *quiet_since_ < timeout_) {
        return std::nullopt;
    }
    const auto quiet = std::chrono::duration_cast<std::chrono::seconds>(now - *quiet_since_);
    return fmt::format(
        "pg_receivewal wrote nothing for {} s while the server flushed WAL up to {} "
        "(stall timeout {} s): killed as hung, to be started again",
        quiet.count(), server->text(), timeout_.count());
}

void stream_wal(const WalStreamRequest& request) {
    const ServerIdentity identity = identify_server(request.connection);
    WalArchive archive(request.dir, identity.system);
    ensure_directory(archive.dir());
    pg::Connection conn = pg::Connection::open(request.connection, "pgward");
    const pg::Tool receiver = pg::ToolFinder(request.pg_bin).find("pg_receivewal");
    log::info("streaming WAL", {{"system", std::to_string(identity.system)},
                                {"timeline", std::to_string(identity.timeline)},
                                {"server_flushed", identity.flushed.text()},
                                {"archive", archive.dir().string()},
                                {"slot", request.slot},
                                {"synchronous", request.synchronous ? "true" : "false"}});
    ensure_replication_slot(conn, request.slot);
    const uint64_t segment_size = server_segment_size(conn);
    // The slot is looked at between runs on a session of its own, opened
    // again after the server restarts.
    std::optional<pg::Connection> slot_session;

    SegmentWatcher watcher(archive);
    watcher.look_at_start();
    bool first_start = true;
    // pg_receivewal runs in a row that ended having streamed nothing.
    int fruitless_runs = 0;
    std::chrono::milliseconds retry = request.first_retry;
    while (pending_interrupt() == 0) {
        std::vector<std::string> args = {"--directory=" + archive.dir().string(),
                                         "--slot=" + request.slot, "--no-loop", "--verbose",
                                         // The server learns within a second how far
                                         // the archive is (pg_stat_replication).
                                         "--status-interval=1"};
        if (request.synchronous) {
            args.emplace_back("--synchronous");
        }
        const auto started = std::chrono::steady_clock::now();
        std::string last_line;
        std::string first_error;
        std::optional<std::string> hung_because;
        ExitStatus status;
        ArchiveMark before;
        try {
            remove_unfinished_partials(archive);
            follow_timeline_fork(request, archive, segment_size);
            if (!std::exchange(first_start, false)) {
                try {
                    if (!slot_session) {
                        slot_session.emplace(pg::Connection::open(request.connection, "pgward"));
                    }
                    // Someone may have dropped the slot, or the server
                    // invalidated it: a new one holds WAL from now on. The
                    // WAL the archive resumes at is gone when the slot was
                    // invalidated, or when pg_receivewal keeps failing there
                    // while the slot holds WAL only from later on.
                    bool was_lost = false;
                    const ReplicationSlotView slot =
                        ensure_replication_slot(*slot_session, request.slot, &was_lost);
                    if (slot.restart_lsn && (was_lost || fruitless_runs >= 2)) {
                        if (auto gap = find_wal_gap(
                                archive_resume_segment(archive.entries(), segment_size),
                                pg::segment_of(*slot.restart_lsn, segment_size))) {
                            resume_past_gap(request, archive, *gap, segment_size);
                            fruitless_runs = 0;
                        }
                    }
                } catch (const Error& e) {
                    slot_session.reset();
                    log::error("cannot look at the replication slot",
                               {{"slot", request.slot}, {"error", e.what()}});
                }
            }
            before = archive_mark(archive, segment_size);
            Child child =
                Child::spawn(pg::server_tool_command(receiver, args, conn, kStreamerName));
            StallWatch stall(request.stall_timeout, segment_size);
            bool told_unasked = false;
            PumpHandlers handlers;
            handlers.on_stderr_line = [&](std::string_view line) {
                last_line = std::string(line);
                if (first_error.empty() && last_line.find("error: ") != std::string::npos) {
                    first_error = last_line;
                }
                log::info("pg_receivewal", {{"said", last_line}});
            };
            handlers.on_tick = [&] {
                watcher.look();
                const std::optional<std::string> hung = stall.look(
                    std::chrono::steady_clock::now(),
                    [&] { return archive_mark(archive, segment_size); },
                    [&] { return server_flushed(request.connection, slot_session, told_unasked); });
                if (hung && !hung_because) {
                    hung_because = hung;
                    log::error("pg_receivewal is hung; killing it", {{"reason", *hung}});
                    child.signal(SIGKILL);
                }
            };
            status = pump(child, handlers);
        } catch (const Error& e) {
            if (pending_interrupt() != 0) {
                break;
            }
            throw;
        }
        watcher.look();
        if (pending_interrupt() != 0) {
            break;
        }
        fruitless_runs = archive_mark(archive, segment_size) == before ? fruitless_runs + 1 : 0;
        if (std::chrono::steady_clock::now() - started > request.max_retry) {
            retry = request.first_retry;
        }
        const std::string said = hung_because          ? *hung_because
                                 : first_error.empty() ? last_line
                                                       : first_error;
        log::error("pg_receivewal stopped; WAL is not being streamed",
                   {{"status", status.describe()},
                    {"said", said},
                    {"restart_in_ms", std::to_string(retry.count())}});
        if (request.on_stop) {
            request.on_stop(said);
        }
        if (interrupted_within(retry)) {
            break;
        }
        // A slot still held by the connection that just died frees as soon
        // as the server notices (wal_sender_timeout at most): look again
        // every few seconds rather than backing off to the maximum.
        const bool slot_busy = last_line.find("is active for PID") != std::string::npos;
        retry = std::min(retry * 2,
                         slot_busy ? std::min(request.max_retry, std::chrono::milliseconds(5000))
                                   : request.max_retry);
    }
    watcher.look();
    log::info("WAL streaming stopped", {{"signal", signal_name(pending_interrupt())}});
}

}  // namespace pgward
