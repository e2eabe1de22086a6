#include <gtest/gtest.h>

#include <cstring>

#include <fmt/format.h>

#include "pg/wal.hpp"
#include "util/error.hpp"

namespace pgward::pg {
namespace {

constexpr uint64_t kSystem = 7715167054901219859ULL;
constexpr uint32_t kBlock = 8192;

template <typename T>
void put(std::string& bytes, size_t offset, T value) {
    std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

// A segment as PostgreSQL 15 writes it: a long header on the first page,
// short headers on the next `written - 1` pages, zeros after.
std::string make_segment(uint32_t timeline, uint64_t number, uint64_t size, size_t written,
                         uint32_t page_timeline = 0) {
    std::string bytes(size, '\0');
    const uint64_t start = number * size;
    for (size_t page = 0; page < written; ++page) {
        const size_t at = page * kBlock;
        put<uint16_t>(bytes, at, 0xD110);
        put<uint16_t>(bytes, at + 2, page == 0 ? 0x0002 : 0x0000);
        put<uint32_t>(bytes, at + 4, page_timeline == 0 ? timeline : page_timeline);
        put<uint64_t>(bytes, at + 8, start + at);
        bytes[at + 40] = 'x';  // a record's first byte
    }
    put<uint64_t>(bytes, 24, kSystem);
    put<uint32_t>(bytes, 32, static_cast<uint32_t>(size));
    put<uint32_t>(bytes, 36, kBlock);
    return bytes;
}

WalFileName name_of(const std::string& text) {
    auto parsed = WalFileName::parse(text);
    EXPECT_TRUE(parsed) << text;
    return parsed.value_or(WalFileName{});
}

TEST(Lsn, ParsesAndPrintsAsPostgreSQLDoes) {
    EXPECT_EQ(Lsn::parse("16/B374D848")->value, 0x16B374D848ULL);
    EXPECT_EQ(Lsn::parse("0/0")->value, 0U);
    EXPECT_EQ(Lsn{0x16B374D848ULL}.text(), "16/B374D848");
    EXPECT_EQ(Lsn{0x3000060}.text(), "0/3000060");
    for (const char* bad : {"", "16", "/1", "1/", "G/1", "1/2/3", "123456789/0", "0x1/2"}) {
        EXPECT_FALSE(Lsn::parse(bad)) << bad;
    }
    EXPECT_LT(*Lsn::parse("0/FFFFFFFF"), *Lsn::parse("1/0"));
}

TEST(WalFileName, SegmentsPartialsAndHistoriesAndNothingElse) {
    auto segment = name_of("000000020000000A000000FF");
    EXPECT_EQ(segment.kind, WalFileName::Kind::Segment);
    EXPECT_EQ(segment.timeline, 2U);
    EXPECT_EQ(segment.segment_number(kDefaultSegmentSize), 0xAULL * 256 + 0xFF);
    EXPECT_EQ(name_of("000000010000000000000003.partial").kind, WalFileName::Kind::PartialSegment);
    auto history = name_of("0000000A.history");
    EXPECT_EQ(history.kind, WalFileName::Kind::History);
    EXPECT_EQ(history.timeline, 10U);
    for (const char* other :
         {"000000010000000000000003.00000028.backup", "archive_status", "00000001000000000000000",
          "000000010000000000000003.tmp", "00000000.history", "000000000000000000000003",
          "0000000100000000000000g3", "RECOVERYXLOG"}) {
        EXPECT_FALSE(WalFileName::parse(other)) << other;
    }
}

TEST(WalFileName, NamesFollowTheSegmentSize) {
    EXPECT_EQ(WalFileName::segment_name(1, 0x1FF, kDefaultSegmentSize), "0000000100000001000000FF");
    const uint64_t gigabyte = uint64_t{1} << 30;
    EXPECT_EQ(WalFileName::segment_name(3, 5, gigabyte), "000000030000000100000001");
    EXPECT_EQ(name_of("000000030000000100000001").segment_number(gigabyte), 5U);
    EXPECT_EQ(segment_of(Lsn{0x1FF000123ULL}, kDefaultSegmentSize), 0x1FFU);
    EXPECT_EQ(segment_start(0x1FF, kDefaultSegmentSize).text(), "1/FF000000");
    EXPECT_EQ(WalFileName::history_name(10), "0000000A.history");
}

TEST(SegmentCheck, AWholeSegmentAndAPartialOnePass) {
    const uint64_t size = uint64_t{1} << 20;
    auto name = name_of(WalFileName::segment_name(1, 5, size));
    EXPECT_EQ(check_segment(make_segment(1, 5, size, 128), name, kSystem), std::nullopt);
    EXPECT_EQ(check_segment(make_segment(1, 5, size, 3), name, kSystem), std::nullopt);
    auto partial = name_of(WalFileName::segment_name(1, 5, size) + ".partial");
    EXPECT_EQ(check_segment(make_segment(1, 5, size, 2), partial, kSystem), std::nullopt);
    EXPECT_EQ(check_segment(std::string(size, '\0'), partial, kSystem), std::nullopt)
        << "nothing written yet";
    // After a timeline switch, a segment of timeline 2 begins with pages of 1.
    auto switched = name_of(WalFileName::segment_name(2, 5, size));
    EXPECT_EQ(check_segment(make_segment(2, 5, size, 4, 1), switched, kSystem), std::nullopt);
    auto header = read_segment_header(make_segment(1, 5, size, 1));
    ASSERT_TRUE(header);
    EXPECT_EQ(header->system_identifier, kSystem);
    EXPECT_EQ(header->segment_size, size);
    EXPECT_EQ(major_of_wal_magic(header->magic), 15);
}

TEST(SegmentCheck, EachDamageIsNamed) {
    const uint64_t size = uint64_t{1} << 20;
    const std::string file = WalFileName::segment_name(1, 5, size);
    auto name = name_of(file);
    auto problem = [&](const std::string& bytes) {
        return check_segment(bytes, name, kSystem).value_or("passed");
    };
    std::string good = make_segment(1, 5, size, 3);

    EXPECT_EQ(problem(std::string(size, '\0')), "it starts with zeros, not a WAL page header");
    std::string no_long = good;
    put<uint16_t>(no_long, 2, 0);
    EXPECT_EQ(problem(no_long), "it does not start with a WAL segment's page header");
    std::string magic = good;
    put<uint16_t>(magic, 0, 0xBEEF);
    EXPECT_EQ(problem(magic),
              "its page header has magic 0xBEEF, which no PostgreSQL 13 to 18 writes");
    EXPECT_EQ(check_segment(good, name, kSystem + 1),
              fmt::format("it belongs to database system {}, not {}", kSystem, kSystem + 1));
    EXPECT_EQ(problem(good.substr(0, size / 2)),
              fmt::format("it is {} bytes long, not the segment size {}", size / 2, size));
    std::string seg_size = good;
    put<uint32_t>(seg_size, 32, 3000000);
    EXPECT_EQ(problem(seg_size),
              "its header gives a segment size of 3000000 and a block size of 8192");
    EXPECT_EQ(check_segment(good, name_of(WalFileName::segment_name(1, 6, size)), kSystem),
              "its first page is at 0/500000, but its name says the segment starts at 0/600000");
    EXPECT_EQ(check_segment(make_segment(3, 5, size, 1), name, kSystem),
              "its first page is of timeline 3, later than its name's 1");
    std::string moved = good;
    put<uint64_t>(moved, kBlock + 8, 0x123);
    EXPECT_EQ(problem(moved), "the page at 0/502000 says it is at 0/123");
    std::string later = good;
    put<uint32_t>(later, 2 * kBlock + 4, 9);
    EXPECT_EQ(problem(later), "the page at 0/504000 is of timeline 9, later than its name's 1");
    std::string garbage = good;
    put<uint16_t>(garbage, kBlock, 0x1234);
    EXPECT_EQ(problem(garbage), "the page at 0/502000 has no valid page header");
    std::string after_end = good;
    after_end[10 * kBlock + 100] = 'y';
    EXPECT_EQ(problem(after_end),
              "the page at 0/514000 holds data after the end of the written WAL");
    std::string zero_then_data = good;
    std::memset(zero_then_data.data() + kBlock, 0, 24);
    EXPECT_EQ(problem(zero_then_data),
              "the page at 0/502000 holds data after the end of the written WAL");
}

TEST(MissingSegments, NamesEveryGapInOrder) {
    const uint64_t size = kDefaultSegmentSize;
    std::vector<WalFileName> names;
    for (uint64_t n : {3, 4, 7, 9, 9}) {
        names.push_back(name_of(WalFileName::segment_name(1, n, size)));
    }
    names.push_back(name_of("00000001.history"));
    names.push_back(name_of(WalFileName::segment_name(1, 12, size) + ".partial"));
    EXPECT_EQ(missing_segments(names, size),
              (std::vector<std::string>{WalFileName::segment_name(1, 5, size),
                                        WalFileName::segment_name(1, 6, size),
                                        WalFileName::segment_name(1, 8, size)}));
    EXPECT_TRUE(missing_segments({}, size).empty());
}

TEST(History, ReadsEachSwitchAndRefusesALineItCannotRead) {
    auto switches = parse_history(
        "1\t0/3000158\tno recovery target specified\n\n"
        "# a comment\n2\t0/50000A0\tat restore point \"x\"\n");
    ASSERT_EQ(switches.size(), 2U);
    EXPECT_EQ(switches[0].parent, 1U);
    EXPECT_EQ(switches[0].switch_point.text(), "0/3000158");
    EXPECT_EQ(switches[1].parent, 2U);
    EXPECT_EQ(switches[1].switch_point.text(), "0/50000A0");
    for (const char* bad : {"x\t0/1\n", "1\n", "1\tnot-an-lsn\n", "0\t0/1\n"}) {
        EXPECT_THROW(parse_history(bad), Error) << bad;
    }
}

}  // namespace
}  // namespace pgward::pg
