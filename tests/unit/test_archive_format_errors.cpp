// Every way the archive reader refuses an archive, each made on purpose by a
// small writer of pg_dump's custom format (no compression unless a test asks),
// so that each message is asserted exactly where it is raised.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>

#include <fmt/format.h>

#include "archive/reader.hpp"
#include "support/temp_dir.hpp"
#include "util/error.hpp"

namespace pgward::archive {
namespace {

namespace fs = std::filesystem;

struct Entry {
    int dump_id;
    std::string desc = "TABLE DATA";
    std::string tag = "t";
    int data_state = 2;  // 1 no offset (pipe), 2 offset, 3 no data
    uint64_t offset = 0;
    int dependencies = 1;
};

// A custom-format archive, field by field as pg_dump writes it.
class ArchiveWriter {
  public:
    int vmin = 16;
    int int_size = 4;
    int off_size = 8;
    int format = 1;
    int algorithm = 0;  // 1.15+: 0 none, 1 gzip, 2 lz4, 3 zstd
    int64_t level = 0;  // before 1.15: 0 none, -1..9 gzip

    void byte(int b) { out += static_cast<char>(b); }
    void integer(int64_t v, bool negative = false) {
        byte(negative || v < 0 ? 1 : 0);
        auto magnitude = static_cast<uint64_t>(v < 0 ? -v : v);
        for (int i = 0; i < int_size; ++i) {
            // An implausible int_size (9) gets zero bytes past the 8th.
            byte(i < 8 ? static_cast<int>((magnitude >> (8 * i)) & 0xff) : 0);
        }
    }
    void string(const std::optional<std::string>& s) {
        if (!s) {
            integer(-1);
            return;
        }
        integer(static_cast<int64_t>(s->size()));
        out += *s;
    }
    void header() {
        out += "PGDMP";
        byte(1);
        byte(vmin);
        byte(0);
        byte(int_size);
        byte(off_size);
        byte(format);
        if (vmin >= 15) {
            byte(algorithm);
        } else {
            integer(level);
        }
        for (int i = 0; i < 7; ++i) {
            integer(1);
        }
        string("app");
        string("15.18");
        string("17.12");
    }
    void toc(const std::vector<Entry>& entries, int64_t count = -1) {
        integer(count >= 0 ? count : static_cast<int64_t>(entries.size()));
        for (const Entry& e : entries) {
            integer(e.dump_id);
            integer(1);
            string("0");
            string("0");
            string(e.tag);
            string(e.desc);
            integer(3);
            string("");
            string("");
            string(e.desc == "TABLE DATA" ? "COPY public.t (a) FROM stdin;\n" : "");
            string("public");
            string("");
            if (vmin >= 14) {
                string("heap");
            }
            if (vmin >= 16) {
                integer('r');
            }
            string("owner");
            string("false");
            for (int d = 0; d < e.dependencies; ++d) {
                string("1");
            }
            string(std::nullopt);
            byte(e.data_state);
            for (int b = 0; b < off_size; ++b) {
                byte(b < 8 ? static_cast<int>((e.offset >> (8 * b)) & 0xff) : 0);
            }
        }
    }
    // A table's data block with its rows in one chunk.
    void table_block(int dump_id, const std::string& rows = "1\n\\.\n\n") {
        byte(1);
        integer(dump_id);
        integer(static_cast<int64_t>(rows.size()));
        out += rows;
        integer(0);
    }

    std::string out;
};

class CountingVisitor : public ArchiveVisitor {
  public:
    void on_table_data(const TocEntry&, const char*, size_t n) override { bytes += n; }
    void on_large_object(const TocEntry&, uint32_t oid, uint64_t size) override {
        objects.emplace_back(oid, size);
    }
    uint64_t bytes = 0;
    std::vector<std::pair<uint32_t, uint64_t>> objects;
};

class StringSource : public ByteSource {
  public:
    explicit StringSource(std::string data) : data_(std::move(data)) {}
    size_t read(char* buffer, size_t size) override {
        size_t n = std::min(size, data_.size() - pos_);
        std::memcpy(buffer, data_.data() + pos_, n);
        pos_ += n;
        return n;
    }

  private:
    std::string data_;
    size_t pos_ = 0;
};

// The message the reader throws for `data`, or "" when it reads it.
std::string refusal(const std::string& data) {
    StringSource source(data);
    CountingVisitor visitor;
    try {
        read_archive(source, visitor);
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.hint()), "this archive cannot be trusted; use another backup");
        return e.what();
    }
    return "";
}

ArchiveWriter one_table() {
    ArchiveWriter w;
    w.header();
    w.toc({Entry{5}});
    return w;
}

TEST(ArchiveRefusals, AWellFormedArchiveReads) {
    ArchiveWriter w = one_table();
    w.table_block(5);
    EXPECT_EQ(refusal(w.out), "");
    // The base visitor ignores everything; reading with it still checks it all.
    StringSource source(w.out);
    ArchiveVisitor ignore;
    EXPECT_NO_THROW(read_archive(source, ignore));
}

TEST(ArchiveRefusals, HeaderFields) {
    auto header_with = [](auto&& change) {
        ArchiveWriter w;
        change(w);
        w.header();
        return refusal(w.out);
    };
    EXPECT_EQ(header_with([](ArchiveWriter& w) { w.int_size = 9; }),
              "archive damaged at byte 10 in the header: implausible integer/offset sizes 9/8");
    EXPECT_EQ(header_with([](ArchiveWriter& w) { w.off_size = 0; }),
              "archive damaged at byte 10 in the header: implausible integer/offset sizes 4/0");
    EXPECT_EQ(header_with([](ArchiveWriter& w) { w.format = 3; }),
              "archive damaged at byte 11 in the header: archive format 3 is not the custom "
              "format (-Fc)");
    EXPECT_EQ(header_with([](ArchiveWriter& w) { w.algorithm = 4; }),
              "archive damaged at byte 12 in the header: unknown compression algorithm 4");
    EXPECT_EQ(header_with([](ArchiveWriter& w) {
                  w.vmin = 14;
                  w.level = 10;
              }),
              "archive damaged at byte 16 in the header: implausible compression level 10");
    EXPECT_EQ(header_with([](ArchiveWriter& w) { w.vmin = 11; }),
              "archive damaged at byte 8 in the header: unsupported archive version 1.11 (this "
              "reader knows 1.12 to 1.16)");
    EXPECT_EQ(header_with([](ArchiveWriter& w) {
                  w.vmin = 14;
                  w.level = -2;
              }),
              "archive damaged at byte 16 in the header: implausible compression level -2");
    EXPECT_EQ(refusal("PGD"),
              "archive damaged at byte 3 in the header: the file ends inside the header "
              "(truncated)");
}

TEST(ArchiveRefusals, IntegersAndStrings) {
    ArchiveWriter w;
    w.int_size = 8;
    w.header();
    size_t toc = w.out.size();
    w.byte(0);  // the TOC count: sign, then 8 bytes above INT64_MAX
    for (int i = 0; i < 8; ++i) {
        w.byte(0xff);
    }
    EXPECT_EQ(refusal(w.out), fmt::format("archive damaged at byte {} in the TOC: the TOC entry "
                                          "count out of range",
                                          toc + 9));

    ArchiveWriter bad_sign;
    bad_sign.header();
    bad_sign.byte(2);
    EXPECT_EQ(refusal(bad_sign.out),
              fmt::format("archive damaged at byte {} in the TOC: bad sign byte 2 in the TOC "
                          "entry count",
                          bad_sign.out.size()));

    ArchiveWriter long_tag;
    long_tag.header();
    long_tag.integer(1);
    long_tag.integer(5);
    long_tag.integer(1);
    long_tag.string("0");
    long_tag.string("0");
    long_tag.integer(300'000'000);
    EXPECT_EQ(refusal(long_tag.out),
              fmt::format("archive damaged at byte {} in TOC entry 1 of 1: a tag of 300000000 "
                          "bytes is implausible",
                          long_tag.out.size()));
}

TEST(ArchiveRefusals, TocEntries) {
    ArchiveWriter count;
    count.header();
    count.integer(-1);
    EXPECT_EQ(refusal(count.out),
              fmt::format("archive damaged at byte {} in the TOC: implausible TOC entry count -1",
                          count.out.size()));

    ArchiveWriter flag;
    flag.header();
    flag.toc({Entry{5, "TABLE DATA", "t", 4}});
    EXPECT_NE(refusal(flag.out).find("in TOC entry 1 of 1: bad data offset flag 4"),
              std::string::npos);

    ArchiveWriter twice;
    twice.header();
    twice.toc({Entry{5}, Entry{5}});
    EXPECT_NE(refusal(twice.out).find("in TOC entry 2 of 2: dump id 5 appears twice"),
              std::string::npos);

    ArchiveWriter endless;
    endless.header();
    endless.toc({Entry{5, "TABLE DATA", "t", 2, 0, 1'000'002}});
    EXPECT_NE(refusal(endless.out).find("in TOC entry 1 of 1: an endless dependency list"),
              std::string::npos);
}

TEST(ArchiveRefusals, DataBlocks) {
    auto blocks = [](auto&& write) {
        ArchiveWriter w;
        w.header();
        w.toc({Entry{5}, Entry{6, "BLOBS", "BLOBS"}, Entry{7, "TABLE", "u", 3}});
        write(w);
        return refusal(w.out);
    };
    auto has = [](const std::string& message, const std::string& part) {
        return message.find(part) != std::string::npos ? ::testing::AssertionSuccess()
                                                       : ::testing::AssertionFailure() << message;
    };
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) { w.table_block(9); }),
                    "a data block for dump id 9, which no TOC entry with data has"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) { w.table_block(7); }),
                    "a data block for dump id 7, which no TOC entry with data has"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) {
                        w.table_block(5);
                        w.table_block(5);
                    }),
                    "a second data block for public.t"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) { w.table_block(6); }),
                    "a table data block for TOC entry \"large objects (BLOBS)\" (BLOBS)"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) {
                        w.byte(3);
                        w.integer(5);
                    }),
                    "a large-object block for TOC entry \"public.t\" (TABLE DATA)"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) {
                        w.byte(2);
                        w.integer(5);
                    }),
                    "an old-style single large-object block (archive versions before 1.12)"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) {
                        w.byte(7);
                        w.integer(5);
                    }),
                    "in the block starting at byte"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) {
                        w.byte(7);
                        w.integer(5);
                    }),
                    "unknown block type 7"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) {
                        w.byte(1);
                        w.integer(5);
                        w.integer(-5);
                    }),
                    "implausible chunk length -5"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) {
                        w.byte(1);
                        w.integer(5);
                        w.integer(10);
                        w.out += "1\n";
                    }),
                    "the file ends inside a data chunk (truncated)"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) { w.table_block(5); }),
                    "at the end of the file: no data block for large objects (BLOBS) (the "
                    "archive is truncated or damaged)"));
    EXPECT_TRUE(has(blocks([](ArchiveWriter& w) {
                        w.table_block(5);
                        w.byte(3);
                        w.integer(6);
                        w.integer(-3);
                    }),
                    "implausible large object oid -3"));
}

TEST(ArchiveRefusals, LargeObjectsAreCountedWithTheirSizes) {
    ArchiveWriter w;
    w.header();
    w.toc({Entry{6, "BLOBS", "BLOBS"}});
    w.byte(3);
    w.integer(6);
    for (uint32_t oid : {16384U, 4294967295U}) {
        w.integer(oid);
        w.integer(3);
        w.out += "abc";
        w.integer(0);
    }
    w.integer(0);
    StringSource source(w.out);
    CountingVisitor visitor;
    read_archive(source, visitor);
    EXPECT_EQ(visitor.objects,
              (std::vector<std::pair<uint32_t, uint64_t>>{{16384U, 3}, {4294967295U, 3}}));
}

TEST(ArchiveRefusals, ACompressedStreamThatEndsEarly) {
    ArchiveWriter w;
    w.vmin = 14;
    w.level = -1;  // gzip
    w.header();
    w.toc({Entry{5}});
    w.byte(1);
    w.integer(5);
    w.integer(2);
    w.out += "\x78\x9c";  // a zlib header, then nothing
    w.integer(0);
    std::string message = refusal(w.out);
    EXPECT_NE(message.find("in the data block (at byte"), std::string::npos) << message;
    EXPECT_NE(message.find("of table public.t"), std::string::npos) << message;
}

class ArchiveFileRefusals : public test::TempDirTest {
  protected:
    fs::path write(const std::string& data) {
        fs::path path = dir_ / "a.dump";
        std::ofstream(path, std::ios::binary) << data;
        return path;
    }
    // The message read_blocks_at throws for the entries of the archive's index.
    static std::string blocks_refusal(const fs::path& path) {
        ArchiveIndex index = read_index(path);
        std::vector<const TocEntry*> entries;
        for (const TocEntry& e : index.toc) {
            if (e.has_data()) {
                entries.push_back(&e);
            }
        }
        CountingVisitor visitor;
        try {
            read_blocks_at(path, index, entries, visitor);
        } catch (const Error& e) {
            return e.what();
        }
        return "";
    }
};

TEST_F(ArchiveFileRefusals, OffsetsThatPointNowhere) {
    ArchiveWriter w;
    w.header();
    size_t toc_start = w.out.size();
    w.toc({Entry{5, "TABLE DATA", "t", 2, 0}});
    uint64_t block = w.out.size();
    w.out.resize(toc_start);
    w.toc({Entry{5, "TABLE DATA", "t", 2, block}});
    w.table_block(5);
    EXPECT_EQ(blocks_refusal(write(w.out)), "");
    EXPECT_TRUE(read_index(dir_ / "a.dump").has_offsets());

    w.out.resize(toc_start);
    w.toc({Entry{5, "TABLE DATA", "t", 2, block + 1000}});
    w.table_block(5);
    EXPECT_EQ(blocks_refusal(write(w.out)),
              fmt::format("archive damaged at byte {0} in the block that the TOC places at byte "
                          "{0}: the data block of public.t is past the end of the file "
                          "(truncated)",
                          block + 1000));

    w.out.resize(toc_start);
    w.toc({Entry{5, "TABLE DATA", "t", 2, block}});
    w.table_block(6);
    EXPECT_NE(blocks_refusal(write(w.out))
                  .find("the block at the offset of public.t belongs to dump id 6"),
              std::string::npos);

    w.out.resize(toc_start);
    w.toc({Entry{5, "TABLE DATA", "t", 2, UINT64_MAX}});
    EXPECT_EQ(blocks_refusal(write(w.out)),
              "cannot seek in " + (dir_ / "a.dump").string() + ": Invalid argument");

    w.out.resize(toc_start);
    w.toc({Entry{5, "TABLE DATA", "t", 1}});
    EXPECT_FALSE(read_index(write(w.out)).has_offsets());
}

TEST_F(ArchiveFileRefusals, AMissingFileIsNamed) {
    CountingVisitor visitor;
    try {
        read_archive_file(dir_ / "missing.dump", visitor);
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "cannot open " + (dir_ / "missing.dump").string() +
                                             ": No such file or directory");
    }
}

TEST(ArchiveNames, CompressionAndEntryNames) {
    EXPECT_STREQ(to_string(Compression::None), "none");
    EXPECT_STREQ(to_string(Compression::Gzip), "gzip");
    EXPECT_STREQ(to_string(Compression::Lz4), "lz4");
    EXPECT_STREQ(to_string(Compression::Zstd), "zstd");
    EXPECT_STREQ(to_string(static_cast<Compression>(9)), "unknown");
    TocEntry e;
    e.tag = "t";
    EXPECT_EQ(display_name(e), "t");
    e.schema = "s";
    EXPECT_EQ(display_name(e), "s.t");
    e.desc = "BLOBS";
    e.tag = "BLOBS";
    EXPECT_EQ(display_name(e), "large objects (BLOBS)");
}

}  // namespace
}  // namespace pgward::archive
