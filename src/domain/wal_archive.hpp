#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "pg/connection.hpp"
#include "pg/wal.hpp"

namespace pgward {

// What a server says of itself over a replication connection
// (IDENTIFY_SYSTEM): its system identifier names its WAL and base backups.
struct ServerIdentity {
    uint64_t system = 0;
    uint32_t timeline = 0;
    pg::Lsn flushed;  // the server's current WAL flush position
};
ServerIdentity identify_server(const pg::ConnectionOptions& connection);
// The server's history file of `timeline` (TIMELINE_HISTORY; from timeline 2).
std::string timeline_history(const pg::ConnectionOptions& connection, uint32_t timeline);

// The WAL of one database system: <backup dir>/wal/<system identifier>/,
// complete segments, the one pg_receivewal is writing (.partial) and
// timeline history files, all timelines in one folder as PostgreSQL names them.
class WalArchive {
  public:
    WalArchive(const std::filesystem::path& backup_dir, uint64_t system);
    // The archive in folder `archive_dir` itself (restore_command's
    // --archive); its system from the folder's name when not given.
    static WalArchive at(std::filesystem::path archive_dir, std::optional<uint64_t> system = {});

    const std::filesystem::path& dir() const { return dir_; }
    std::optional<uint64_t> system() const { return system_; }

    struct Entry {
        std::string file;
        pg::WalFileName name;
        uint64_t size = 0;
        std::filesystem::file_time_type modified;
    };
    // WAL files, by name; anything else in the folder is ignored.
    std::vector<Entry> entries() const;
    // Their names only, sorted, without a stat of each: what the streamer's
    // and the uploader's frequent looks need (an archive holds thousands).
    std::vector<std::string> file_names() const;

    // Reads a segment and checks it against its name and this system; throws
    // a failure naming the file and what is wrong. Returns its header.
    pg::SegmentHeader check_segment(const std::string& file) const;
    // The same, reading into `buffer`: a watcher that checks each segment as
    // it completes reuses one buffer rather than new memory per segment.
    pg::SegmentHeader check_segment(const std::string& file, std::string& buffer) const;

    // Copies `file` to `destination` (via a temp file and a rename), checking
    // a segment first. A segment that is only here as .partial (the newest,
    // still being streamed) is served from it. False when the archive does not
    // have it.
    bool fetch(const std::string& file, const std::filesystem::path& destination) const;

  private:
    WalArchive() = default;
    std::filesystem::path dir_;
    std::optional<uint64_t> system_;
};

// A folder's name as a system identifier (decimal, not 0).
std::optional<uint64_t> parse_system_identifier(std::string_view text);

// Systems with a WAL archive under <backup dir>/wal/.
std::vector<uint64_t> wal_archive_systems(const std::filesystem::path& backup_dir);

// A usage error unless `slot` is a replication slot's name: 1 to 63
// lower-case letters, digits and underscores.
void check_slot_name(const std::string& slot);

// What following a server that moved to a newer timeline asks of the
// archive (its newest timeline `archive_timeline`): where that timeline
// ended in the server's history, the files of it past that point (another
// history: set aside, kept), and the new timeline's segment streaming
// resumes in. nullopt when the server's history does not pass through
// `archive_timeline` (not this archive's history).
struct TimelineFork {
    pg::Lsn switch_point;
    uint32_t timeline = 0;               // the one that followed the archive's
    std::vector<std::string> set_aside;  // archive files of the old timeline past the fork
    std::string resume_segment;          // the new timeline's segment holding the fork
};
std::optional<TimelineFork> plan_timeline_fork(
    const std::vector<WalArchive::Entry>& entries, uint32_t archive_timeline,
    const std::vector<pg::TimelineSwitch>& server_history, uint32_t server_timeline,
    uint64_t segment_size);

// Where pg_receivewal resumes streaming into an archive holding `entries`
// (segment numbers for `segment_size`): the start of the newest .partial
// segment, else the segment after the newest complete one; nothing for an
// archive without segments (it then starts where the slot holds WAL from).
std::optional<uint64_t> archive_resume_segment(const std::vector<WalArchive::Entry>& entries,
                                               uint64_t segment_size);

// WAL the archive lacks and the server no longer has: from `first_missing`
// up to (not including) `resumes_at`, segment numbers.
struct WalGap {
    uint64_t first_missing = 0;
    uint64_t resumes_at = 0;
};
// The gap when the slot holds WAL only from segment `slot_holds_from` on and
// the archive resumes at an earlier segment; none otherwise.
std::optional<WalGap> find_wal_gap(std::optional<uint64_t> archive_resumes_at,
                                   uint64_t slot_holds_from);

// The streamer's physical replication slot as the server has it.
struct ReplicationSlotView {
    bool exists = false;
    std::optional<pg::Lsn> restart_lsn;  // where the WAL it holds starts
    bool lost = false;                   // invalidated: the server removed WAL it needed
    bool active = false;                 // a walsender streams on it
};
ReplicationSlotView read_replication_slot(pg::Connection& conn, const std::string& slot);

// Makes the physical replication slot `slot` hold WAL from now on: created
// with its WAL reserved at once (pg_receivewal --create-slot reserves none
// until it first streams, and a checkpoint in between can remove the very
// WAL it is about to ask for), or dropped and made again when the server
// invalidated it. Returns the slot as it is then; `was_lost` tells whether
// an invalidated slot was replaced.
ReplicationSlotView ensure_replication_slot(pg::Connection& conn, const std::string& slot,
                                            bool* was_lost = nullptr);

// What changes in the archive while pg_receivewal streams: where it would
// resume, and the newest write into any of its files.
struct ArchiveMark {
    std::optional<uint64_t> resume;
    std::filesystem::file_time_type newest_write{};
    bool operator==(const ArchiveMark&) const = default;
};

ArchiveMark archive_mark(const WalArchive& archive, uint64_t segment_size);

// A pg_receivewal that hangs (stopped, or stuck on a connection that no
// longer moves) never exits, so it is never started again, and it can hold
// up a checkpoint that invalidates its slot (docs/pitr.md). It is taken for
// hung when the archive has not changed for the stall timeout while the
// server has WAL it would have written: the server's flush position moved on
// after the archive went quiet, or is past the segment being written. The
// server is asked only while the archive is quiet, every few seconds, and
// that WAL must have been seen one look before (time enough to arrive).
class StallWatch {
  public:
    using Clock = std::chrono::steady_clock;

    // A timeout of 0 never takes it for hung.
    StallWatch(std::chrono::seconds timeout, uint64_t segment_size);

    // Called on each tick: what to say when pg_receivewal is hung.
    std::optional<std::string> look(Clock::time_point now,
                                    const std::function<ArchiveMark()>& mark_now,
                                    const std::function<std::optional<pg::Lsn>()>& server_now);

  private:
    std::chrono::seconds timeout_;
    Clock::duration every_;
    uint64_t segment_size_;
    std::optional<Clock::time_point> looked_;
    ArchiveMark mark_;
    std::optional<Clock::time_point> quiet_since_;
    std::optional<pg::Lsn> server_at_quiet_;         // the server's position early in the quiet
    std::optional<Clock::time_point> server_ahead_;  // when it was first seen with WAL to write
};

struct WalStreamRequest {
    pg::ConnectionOptions connection;
    std::filesystem::path dir;  // the backup directory
    std::optional<std::filesystem::path> pg_bin;
    std::string slot = "pgward";
    bool synchronous = false;  // pg_receivewal --synchronous: flush every write
    // How long to wait before restarting a pg_receivewal that stopped: doubled
    // after each quick failure, up to the maximum.
    std::chrono::milliseconds first_retry{1000};
    std::chrono::milliseconds max_retry{60000};
    // A pg_receivewal that writes nothing for this long while the server
    // flushes WAL is taken for hung, killed and started again; 0: never.
    std::chrono::seconds stall_timeout{300};
    // Called when streaming resumes past a gap (the server removed WAL the
    // archive did not have yet); the message names it.
    std::function<void(const std::string& message)> on_gap;
    // Called when the server moved to a newer timeline and streaming follows it.
    std::function<void(const std::string& message)> on_timeline_switch;
    // Called when pg_receivewal stops, with what it said first went wrong
    // (its first error line, else its last line).
    std::function<void(const std::string& said)> on_stop;
};

// Streams the server's WAL into its archive with pg_receivewal on a
// physical replication slot (created if missing), until SIGTERM/SIGINT.
// Each segment pg_receivewal completes is checked (page headers, system,
// continuity: a gap is an error naming the missing segment). A pg_receivewal
// that stops is restarted with backoff, each stop logged with its reason;
// one that hangs (stall_timeout) is killed first.
// When the server no longer has the WAL the archive resumes at (the slot
// was invalidated, or dropped and made again after a checkpoint), streaming
// resumes where the slot holds WAL from, the gap named (logged and on_gap):
// recovery cannot cross it, a base backup taken after it can.
void stream_wal(const WalStreamRequest& request);

}  // namespace pgward
