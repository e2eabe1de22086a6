#include "pg/wal.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "util/error.hpp"

namespace pgward::pg {
namespace {

constexpr uint64_t kSegmentsSpace = uint64_t{1} << 32;  // bytes per "log" in a segment name
constexpr uint16_t kLongHeaderFlag = 0x0002;            // XLP_LONG_HEADER
constexpr size_t kShortHeaderSize = 24;                 // XLogPageHeaderData, aligned
constexpr size_t kLongHeaderSize = 40;                  // XLogLongPageHeaderData

// WAL is written in the server's byte order; pgward runs on the same kind of
// machine as the server it streams from (x86_64 and arm64: little-endian).
template <typename T>
T load(std::string_view bytes, size_t offset) {
    T value;
    std::memcpy(&value, bytes.data() + offset, sizeof(T));
    return value;
}

std::optional<uint32_t> parse_hex32(std::string_view text) {
    uint32_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
        return std::nullopt;
    }
    return value;
}

bool all_upper_hex(std::string_view text) {
    return std::all_of(text.begin(), text.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); });
}

bool all_zero(std::string_view bytes) {
    return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

}  // namespace

std::optional<Lsn> Lsn::parse(std::string_view text) {
    const size_t slash = text.find('/');
    if (slash == std::string_view::npos || slash > 8 || text.size() - slash - 1 > 8) {
        return std::nullopt;
    }
    auto high = parse_hex32(text.substr(0, slash));
    auto low = parse_hex32(text.substr(slash + 1));
    if (!high || !low) {
        return std::nullopt;
    }
    return Lsn{(uint64_t{*high} << 32) | *low};
}

std::string Lsn::text() const {
    return fmt::format("{:X}/{:X}", value >> 32, value & 0xFFFFFFFFU);
}

std::optional<WalFileName> WalFileName::parse(std::string_view name) {
    WalFileName parsed;
    if (name.size() == 16 && name.substr(8) == ".history" && all_upper_hex(name.substr(0, 8))) {
        parsed.kind = Kind::History;
        parsed.timeline = *parse_hex32(name.substr(0, 8));
        return parsed.timeline == 0 ? std::nullopt : std::optional(parsed);
    }
    std::string_view stem = name;
    if (name.size() == 32 && name.substr(24) == ".partial") {
        parsed.kind = Kind::PartialSegment;
        stem = name.substr(0, 24);
    }
    if (stem.size() != 24 || !all_upper_hex(stem)) {
        return std::nullopt;
    }
    parsed.timeline = *parse_hex32(stem.substr(0, 8));
    parsed.log = *parse_hex32(stem.substr(8, 8));
    parsed.seg = *parse_hex32(stem.substr(16, 8));
    if (parsed.timeline == 0) {
        return std::nullopt;
    }
    return parsed;
}

uint64_t WalFileName::segment_number(uint64_t segment_size) const {
    return uint64_t{log} * (kSegmentsSpace / segment_size) + seg;
}

std::string WalFileName::segment_name(uint32_t timeline, uint64_t number, uint64_t segment_size) {
    const uint64_t per_log = kSegmentsSpace / segment_size;
    return fmt::format("{:08X}{:08X}{:08X}", timeline, number / per_log, number % per_log);
}

std::string WalFileName::history_name(uint32_t timeline) {
    return fmt::format("{:08X}.history", timeline);
}

uint64_t segment_of(Lsn lsn, uint64_t segment_size) {
    return lsn.value / segment_size;
}

Lsn segment_start(uint64_t number, uint64_t segment_size) {
    return Lsn{number * segment_size};
}

std::optional<SegmentHeader> read_segment_header(std::string_view bytes) {
    if (bytes.size() < kLongHeaderSize) {
        return std::nullopt;
    }
    if ((load<uint16_t>(bytes, 2) & kLongHeaderFlag) == 0) {
        return std::nullopt;
    }
    SegmentHeader header;
    header.magic = load<uint16_t>(bytes, 0);
    header.timeline = load<uint32_t>(bytes, 4);
    header.page_address = Lsn{load<uint64_t>(bytes, 8)};
    header.system_identifier = load<uint64_t>(bytes, 24);
    header.segment_size = load<uint32_t>(bytes, 32);
    header.block_size = load<uint32_t>(bytes, 36);
    return header;
}

int major_of_wal_magic(uint16_t magic) {
    switch (magic) {
        case 0xD106:
            return 13;
        case 0xD10D:
            return 14;
        case 0xD110:
            return 15;
        case 0xD113:
            return 16;
        case 0xD116:
            return 17;
        case 0xD118:
            return 18;
        default:
            return 0;
    }
}

std::optional<std::string> check_segment(std::string_view bytes, const WalFileName& name,
                                         std::optional<uint64_t> expected_system) {
    if (all_zero(bytes.substr(0, std::min(bytes.size(), kLongHeaderSize)))) {
        return name.kind == WalFileName::Kind::PartialSegment
                   ? std::nullopt  // nothing written yet
                   : std::optional<std::string>("it starts with zeros, not a WAL page header");
    }
    auto header = read_segment_header(bytes);
    if (!header) {
        return "it does not start with a WAL segment's page header";
    }
    if (major_of_wal_magic(header->magic) == 0) {
        return fmt::format(
            "its page header has magic 0x{:04X}, which no PostgreSQL 13 to 18 writes",
            header->magic);
    }
    if (expected_system && header->system_identifier != *expected_system) {
        return fmt::format("it belongs to database system {}, not {}", header->system_identifier,
                           *expected_system);
    }
    const uint64_t size = header->segment_size;
    if (size < (uint64_t{1} << 20) || size > (uint64_t{1} << 30) || (size & (size - 1)) != 0 ||
        header->block_size < 1024 || header->block_size > size ||
        (header->block_size & (header->block_size - 1)) != 0) {
        return fmt::format("its header gives a segment size of {} and a block size of {}", size,
                           header->block_size);
    }
    if (name.kind == WalFileName::Kind::Segment && bytes.size() != size) {
        return fmt::format("it is {} bytes long, not the segment size {}", bytes.size(), size);
    }
    if (bytes.size() > size) {
        return fmt::format("it is {} bytes long, more than the segment size {}", bytes.size(),
                           size);
    }
    const Lsn start = segment_start(name.segment_number(size), size);
    if (header->page_address != start) {
        return fmt::format("its first page is at {}, but its name says the segment starts at {}",
                           header->page_address.text(), start.text());
    }
    if (header->timeline > name.timeline) {
        return fmt::format("its first page is of timeline {}, later than its name's {}",
                           header->timeline, name.timeline);
    }
    const size_t block = header->block_size;
    bool ended = false;
    for (size_t offset = block; offset < bytes.size(); offset += block) {
        std::string_view page = bytes.substr(offset, std::min(block, bytes.size() - offset));
        const Lsn address{start.value + offset};
        if (ended || all_zero(page.substr(0, std::min(page.size(), kShortHeaderSize)))) {
            if (!all_zero(page)) {
                return fmt::format("the page at {} holds data after the end of the written WAL",
                                   address.text());
            }
            ended = true;
            continue;
        }
        if (page.size() < kShortHeaderSize || load<uint16_t>(page, 0) != header->magic) {
            return fmt::format("the page at {} has no valid page header", address.text());
        }
        if (load<uint64_t>(page, 8) != address.value) {
            return fmt::format("the page at {} says it is at {}", address.text(),
                               Lsn{load<uint64_t>(page, 8)}.text());
        }
        if (load<uint32_t>(page, 4) > name.timeline) {
            return fmt::format("the page at {} is of timeline {}, later than its name's {}",
                               address.text(), load<uint32_t>(page, 4), name.timeline);
        }
    }
    return std::nullopt;
}

std::vector<std::string> missing_segments(const std::vector<WalFileName>& names,
                                          uint64_t segment_size) {
    std::vector<uint64_t> numbers;
    uint32_t timeline = 0;
    for (const WalFileName& name : names) {
        if (name.kind == WalFileName::Kind::Segment) {
            numbers.push_back(name.segment_number(segment_size));
            timeline = name.timeline;
        }
    }
    std::sort(numbers.begin(), numbers.end());
    numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
    std::vector<std::string> missing;
    for (size_t i = 1; i < numbers.size(); ++i) {
        for (uint64_t n = numbers[i - 1] + 1; n < numbers[i]; ++n) {
            missing.push_back(WalFileName::segment_name(timeline, n, segment_size));
        }
    }
    return missing;
}

std::vector<TimelineSwitch> parse_history(std::string_view text) {
    std::vector<TimelineSwitch> switches;
    size_t line_start = 0;
    while (line_start < text.size()) {
        size_t line_end = text.find('\n', line_start);
        if (line_end == std::string_view::npos) {
            line_end = text.size();
        }
        std::string_view line = text.substr(line_start, line_end - line_start);
        line_start = line_end + 1;
        const size_t first = line.find_first_not_of(" \t\r");
        if (first == std::string_view::npos || line[first] == '#') {
            continue;
        }
        line = line.substr(first);
        const size_t tab = line.find_first_of(" \t");
        const size_t lsn_start =
            tab == std::string_view::npos ? tab : line.find_first_not_of(" \t", tab);
        const size_t lsn_end = lsn_start == std::string_view::npos
                                   ? lsn_start
                                   : line.find_first_of(" \t\r", lsn_start);
        const size_t number_end = tab == std::string_view::npos ? line.size() : tab;
        uint32_t parent = 0;
        auto [end, ec] = std::from_chars(line.data(), line.data() + number_end, parent);
        std::optional<Lsn> point;
        if (lsn_start != std::string_view::npos) {
            point = Lsn::parse(line.substr(lsn_start, lsn_end - lsn_start));
        }
        if (ec != std::errc() || end != line.data() + number_end || parent == 0 || !point) {
            throw failure(
                fmt::format("a timeline history line is not \"TIMELINE<tab>LSN<tab>reason\": {}",
                            std::string(line.substr(0, 80))));
        }
        switches.push_back({parent, *point});
    }
    return switches;
}

}  // namespace pgward::pg
