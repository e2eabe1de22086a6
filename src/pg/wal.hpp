#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

// PostgreSQL's write-ahead log as files: positions (LSNs), the names of
// segment and history files, and the page headers that say what a segment
// file holds. Pure logic: no file or server is touched here.
namespace pgward::pg {

// A WAL position, written "16/B374D848" (high and low 32 bits in hex).
struct Lsn {
    uint64_t value = 0;

    static std::optional<Lsn> parse(std::string_view text);
    std::string text() const;
    // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>
    auto operator<=>(const Lsn&) const = default;
};

constexpr uint64_t kDefaultSegmentSize = uint64_t{16} << 20;

// A file of a WAL archive, by its name.
struct WalFileName {
    enum class Kind {
        Segment,         // 000000010000000A000000FF
        PartialSegment,  // ...FF.partial: the segment pg_receivewal is writing
        History,         // 00000002.history: where a timeline branched off
    };
    Kind kind = Kind::Segment;
    uint32_t timeline = 0;
    // For segments: the two 32-bit halves of the name after the timeline.
    uint32_t log = 0;
    uint32_t seg = 0;

    // nullopt for any other name (.backup labels, temp files, anything else).
    static std::optional<WalFileName> parse(std::string_view name);
    // The segment's number for a segment size: log * segments-per-log + seg.
    uint64_t segment_number(uint64_t segment_size) const;
    // The name of segment `number` of `timeline` (no .partial suffix).
    static std::string segment_name(uint32_t timeline, uint64_t number, uint64_t segment_size);
    static std::string history_name(uint32_t timeline);
};

// The segment holding `lsn`, and the LSN where segment `number` starts.
uint64_t segment_of(Lsn lsn, uint64_t segment_size);
Lsn segment_start(uint64_t number, uint64_t segment_size);

// What the first page of a segment file says about it.
struct SegmentHeader {
    uint16_t magic = 0;  // changes with each major: says which server wrote it
    uint32_t timeline = 0;
    Lsn page_address;
    uint64_t system_identifier = 0;
    uint32_t segment_size = 0;
    uint32_t block_size = 0;
};

// The first page's long header; nullopt when `bytes` is too short or the
// page has no long header (not the start of a WAL segment).
std::optional<SegmentHeader> read_segment_header(std::string_view bytes);

// The PostgreSQL major whose WAL pages carry this magic (13 to 18), or 0.
int major_of_wal_magic(uint16_t magic);

// Checks a whole segment file's bytes against its name: the long header
// (system, segment size, address, timeline), then every page's header:
// the same magic, its own address, a timeline no later than the file's.
// A page of zeros ends the written part: every later page must be zeros too
// (pg_receivewal fills a segment with zeros before writing it). Returns
// what is wrong, in one sentence, or nullopt. A partial segment may end
// early; a complete one must be exactly the segment size.
std::optional<std::string> check_segment(std::string_view bytes, const WalFileName& name,
                                         std::optional<uint64_t> expected_system);

// The segments missing between the first and the last of `names` (one
// timeline, complete segments), as file names, in order.
std::vector<std::string> missing_segments(const std::vector<WalFileName>& names,
                                          uint64_t segment_size);

// One line of a timeline history file: timeline `parent` ended at `switch_point`.
struct TimelineSwitch {
    uint32_t parent = 0;
    Lsn switch_point;
};

// The lines of a history file ("1\t0/3000158\tno recovery target specified");
// comments and blank lines skipped; a line that is neither is an error.
std::vector<TimelineSwitch> parse_history(std::string_view text);

}  // namespace pgward::pg
