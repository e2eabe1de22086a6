#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
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

    // Reads a segment and checks it against its name and this system; throws
    // a failure naming the file and what is wrong. Returns its header.
    pg::SegmentHeader check_segment(const std::string& file) const;

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

// Systems with a WAL archive under <backup dir>/wal/.
std::vector<uint64_t> wal_archive_systems(const std::filesystem::path& backup_dir);

// A usage error unless `slot` is a replication slot's name: 1 to 63
// lower-case letters, digits and underscores.
void check_slot_name(const std::string& slot);

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
};

// Streams the server's WAL into its archive with pg_receivewal on a
// physical replication slot (created if missing), until SIGTERM/SIGINT.
// Each segment pg_receivewal completes is checked (page headers, system,
// continuity: a gap is an error naming the missing segment). A pg_receivewal
// that stops is restarted with backoff, each stop logged with its reason.
void stream_wal(const WalStreamRequest& request);

}  // namespace pgward
