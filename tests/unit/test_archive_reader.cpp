#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "archive/decompressor.hpp"
#include "archive/fingerprint.hpp"
#include "archive/reader.hpp"
#include "archive/summary.hpp"
#include "util/error.hpp"
#include "util/sha256.hpp"

namespace pgward::archive {
namespace {

namespace fs = std::filesystem;
const fs::path kFixtures = PGWARD_FIXTURES_DIR;

std::string slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

// Bytes from memory, at most `step` per read: row and block boundaries
// land anywhere.
class MemorySource : public ByteSource {
  public:
    MemorySource(const std::string& data, size_t step) : data_(data), step_(step) {}
    size_t read(char* buffer, size_t size) override {
        size_t n = std::min({size, step_, data_.size() - pos_});
        std::memcpy(buffer, data_.data() + pos_, n);
        pos_ += n;
        return n;
    }

  private:
    const std::string& data_;
    size_t step_;
    size_t pos_ = 0;
};

struct TableResult {
    std::vector<std::string> rows;
    TableFingerprint fp;
};

// Collects every table's rows (to compare with the ground truth) and fp1.
class Collector : public ArchiveVisitor {
  public:
    void on_toc(const Header& h, const std::vector<TocEntry>& toc) override {
        header = h;
        entries = toc.size();
    }
    void on_table_begin(const TocEntry& e) override {
        current = &tables[key(e)];
        partial.clear();
        ended = false;
        stream = std::make_unique<RowStream>(current->fp);
    }
    void on_table_data(const TocEntry&, const char* data, size_t n) override {
        stream->feed(data, n);
        partial.append(data, n);
        size_t start = 0;
        for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
            std::string row = partial.substr(start, nl - start);
            ended = ended || row == "\\.";  // COPY's end marker; pg_dump adds blank lines after it
            if (!ended) {
                current->rows.push_back(std::move(row));
            }
        }
        partial.erase(0, start);
    }
    void on_table_end(const TocEntry&) override {
        // Data that stops mid-row is damage (the summarizer reports it).
        torn = torn || !stream->finish() || !partial.empty();
    }
    void on_large_object(const TocEntry&, uint32_t, uint64_t bytes) override {
        ++large_objects;
        large_object_bytes += bytes;
    }
    static std::string key(const TocEntry& e) { return e.schema + "." + e.tag; }

    Header header;
    size_t entries = 0;
    std::map<std::string, TableResult> tables;
    TableResult* current = nullptr;
    std::unique_ptr<RowStream> stream;
    std::string partial;
    int large_objects = 0;
    uint64_t large_object_bytes = 0;
    bool torn = false;
    bool ended = false;
};

std::vector<std::string> fixture_names() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(kFixtures)) {
        if (e.path().extension() == ".dump") {
            names.push_back(e.path().filename().string());
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string sorted_sha256(std::vector<std::string> rows) {
    std::sort(rows.begin(), rows.end());
    Sha256 hash;
    for (const auto& r : rows) {
        hash.update(r);
        hash.update("\n");
    }
    return hash.hex_digest();
}

Collector read_all(const std::string& data, size_t step) {
    Collector c;
    MemorySource source(data, step);
    read_archive(source, c);
    return c;
}

TEST(ArchiveFixtures, EveryTableMatchesTheGroundTruthInEveryFixture) {
    auto expected = nlohmann::json::parse(slurp(kFixtures / "expected.json"));
    auto names = fixture_names();
    ASSERT_EQ(names.size(), 13u);
    std::map<std::string, std::string> fp_by_table;
    for (const std::string& name : names) {
        SCOPED_TRACE(name);
        Collector c;
        read_archive_file(kFixtures / name, c);
        EXPECT_EQ(c.header.version_text(), name.rfind("pg15", 0) == 0 ? "1.14" : "1.16");
        EXPECT_EQ(c.header.database, "fixture");
        std::string compression = name.substr(5, name.find_first_of("_.", 5) - 5);
        EXPECT_EQ(to_string(c.header.compression), compression);
        EXPECT_EQ(c.large_objects, expected["large_objects"].get<int>());
        EXPECT_FALSE(c.torn);
        for (const auto& t : expected["tables"]) {
            std::string key = t["schema"].get<std::string>() + "." + t["name"].get<std::string>();
            ASSERT_TRUE(c.tables.count(key)) << key;
            const TableResult& r = c.tables[key];
            EXPECT_EQ(r.rows.size(), t["rows"].get<size_t>()) << key;
            EXPECT_EQ(r.fp.rows(), t["rows"].get<uint64_t>()) << key;
            EXPECT_EQ(sorted_sha256(r.rows), t["sorted_copy_sha256"].get<std::string>()) << key;
            // fp1 depends only on the COPY text: equal in every archive.
            auto [it, inserted] = fp_by_table.emplace(key, r.fp.to_string());
            EXPECT_EQ(it->second, r.fp.to_string()) << key;
        }
    }
}

TEST(ArchiveFixtures, ChunkSizeDoesNotMatter) {
    for (const char* name :
         {"pg15_gzip_pipe.dump", "pg17_lz4.dump", "pg18_zstd.dump", "pg17_none.dump"}) {
        SCOPED_TRACE(name);
        std::string data = slurp(kFixtures / name);
        Collector whole = read_all(data, data.size());
        for (size_t step : {size_t{1}, size_t{7}, size_t{4096}}) {
            if (step == 1 && data.size() > 1'000'000) {
                continue;  // a million virtual calls add nothing over 7
            }
            Collector c = read_all(data, step);
            ASSERT_EQ(c.tables.size(), whole.tables.size());
            for (const auto& [key, r] : whole.tables) {
                EXPECT_EQ(c.tables[key].fp, r.fp) << key << " step " << step;
            }
            EXPECT_EQ(c.large_object_bytes, whole.large_object_bytes);
        }
    }
}

TEST(ArchiveFixtures, ParallelReadingAtOffsetsEqualsTheSequentialRead) {
    for (const std::string& name : fixture_names()) {
        SCOPED_TRACE(name);
        ArchiveIndex index = read_index(kFixtures / name);
        EXPECT_EQ(index.has_offsets(),
                  name.find("pipe") == std::string::npos || name.rfind("pg15", 0) == 0);
        ArchiveSummary sequential = summarize_file(kFixtures / name);
        ArchiveSummary parallel = summarize_file_parallel(kFixtures / name, 2);
        ASSERT_EQ(parallel.tables.size(), sequential.tables.size());
        for (size_t i = 0; i < sequential.tables.size(); ++i) {
            EXPECT_EQ(parallel.tables[i].fingerprint, sequential.tables[i].fingerprint);
            EXPECT_EQ(parallel.tables[i].rows, sequential.tables[i].rows);
            EXPECT_EQ(parallel.tables[i].name, sequential.tables[i].name);
        }
        EXPECT_EQ(parallel.large_objects, sequential.large_objects);
        EXPECT_EQ(parallel.encoding, "UTF8");
    }
    // A flipped byte inside a table's block is found by the parallel read too.
    fs::path copy = fs::path(::testing::TempDir()) / "pgward_parallel_damage.dump";
    std::string data = slurp(kFixtures / "pg17_gzip.dump");
    data[data.size() / 2] = static_cast<char>(data[data.size() / 2] ^ 0x20);
    {
        std::ofstream out(copy, std::ios::binary);
        out << data;
    }
    EXPECT_THROW(summarize_file_parallel(copy, 2), Error);
    fs::remove(copy);
}

TEST(ArchiveFixtures, IsalAndZlibInflateAgree) {
    for (const char* name : {"pg15_gzip.dump", "pg17_gzip_pipe.dump", "pg18_gzip.dump"}) {
        std::string data = slurp(kFixtures / name);
        set_gzip_engine(GzipEngine::Zlib);
        Collector zlib = read_all(data, 4096);
        set_gzip_engine(GzipEngine::Isal);
        Collector isal = read_all(data, 4096);
        ASSERT_EQ(zlib.tables.size(), isal.tables.size()) << name;
        for (const auto& [key, r] : zlib.tables) {
            EXPECT_EQ(isal.tables[key].fp, r.fp) << name << " " << key;
        }
        EXPECT_EQ(zlib.large_object_bytes, isal.large_object_bytes);
        // A flipped byte is an error for both.
        std::string damaged = data;
        damaged[data.size() / 2] = static_cast<char>(damaged[data.size() / 2] ^ 0x10);
        set_gzip_engine(GzipEngine::Zlib);
        EXPECT_THROW(read_all(damaged, damaged.size()), Error);
        set_gzip_engine(GzipEngine::Isal);
        EXPECT_THROW(read_all(damaged, damaged.size()), Error);
    }
}

TEST(Fingerprint, OrderIndependentAndDuplicatesCount) {
    TableFingerprint a, b, one, two;
    a.add_row("x\t1");
    a.add_row("y\t2");
    b.add_row("y\t2");
    b.add_row("x\t1");
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.to_string(), b.to_string());
    one.add_row("same");
    two.add_row("same");
    two.add_row("same");
    EXPECT_NE(one.to_string(), two.to_string());
    EXPECT_EQ(two.rows(), 2u);
    TableFingerprint empty;
    EXPECT_EQ(empty.to_string(), "fp1:00000000000000000000000000000000");
    // XXH3-128 of "abc" is a published test vector: 06b05ab6733a618578af5f94892f3950.
    TableFingerprint abc;
    abc.add_row("abc");
    EXPECT_EQ(abc.to_string(), "fp1:06b05ab6733a618578af5f94892f3950");
}

TEST(Fingerprint, RowStreamSplitsAnywhereAndStopsAtTheEndMarker) {
    TableFingerprint direct, streamed;
    direct.add_row("a\\tb");
    direct.add_row("");
    direct.add_row("long row");
    std::string text = "a\\tb\n\nlong row\n\\.\nignored\n";
    for (size_t step = 1; step <= text.size(); ++step) {
        TableFingerprint fp;
        RowStream rows(fp);
        for (size_t i = 0; i < text.size(); i += step) {
            rows.feed(text.data() + i, std::min(step, text.size() - i));
        }
        EXPECT_TRUE(rows.finish());
        EXPECT_EQ(fp, direct) << step;
    }
    TableFingerprint torn;
    RowStream rows(torn);
    rows.feed("no newline", 10);
    EXPECT_FALSE(rows.finish());
}

// Damage: every truncation is found by the reader; every flipped byte in
// the data is found by the reader or changes a table's fp1 (what a manifest
// catches).
struct Damage {
    size_t tried = 0;
    size_t parser = 0;
    size_t fingerprint = 0;
};

Damage flip_many(const std::string& original, int count, uint64_t seed) {
    Collector clean = read_all(original, original.size());
    std::mt19937_64 rng(seed);
    Damage d;
    // The data region: past the header and TOC (the first third or so).
    size_t start = original.size() / 3;
    for (int i = 0; i < count; ++i) {
        std::string copy = original;
        size_t at = start + rng() % (copy.size() - start);
        copy[at] = static_cast<char>(copy[at] ^ static_cast<char>(1 + rng() % 255));
        ++d.tried;
        try {
            Collector c = read_all(copy, copy.size());
            bool differs = c.torn || c.large_object_bytes != clean.large_object_bytes;
            for (const auto& [key, r] : clean.tables) {
                differs = differs || !(c.tables[key].fp == r.fp);
            }
            if (differs) {
                ++d.fingerprint;
            } else {
                ADD_FAILURE() << "flip at byte " << at << " went unnoticed";
            }
        } catch (const Error&) {
            ++d.parser;
        }
    }
    return d;
}

TEST(ArchiveDamage, EveryTruncationIsDetected) {
    for (const char* name :
         {"pg15_gzip.dump", "pg17_zstd.dump", "pg18_lz4.dump", "pg18_none.dump"}) {
        std::string data = slurp(kFixtures / name);
        std::mt19937_64 rng(7);
        for (int i = 0; i < 60; ++i) {
            size_t cut = i < 10 ? static_cast<size_t>(i) : rng() % data.size();
            std::string copy = data.substr(0, cut);
            EXPECT_THROW(read_all(copy, copy.size()), Error) << name << " cut at " << cut;
        }
    }
}

TEST(ArchiveDamage, EveryFlipIsDetectedByTheReaderOrTheFingerprint) {
    for (const char* name :
         {"pg15_gzip.dump", "pg17_lz4.dump", "pg18_zstd.dump", "pg17_none.dump"}) {
        Damage d = flip_many(slurp(kFixtures / name), 150, 11);
        std::printf(
            "measured: %s: %zu flips, %zu found by the reader alone (%.0f%%), the rest by fp1\n",
            name, d.tried, d.parser,
            100.0 * static_cast<double>(d.parser) / static_cast<double>(d.tried));
        EXPECT_EQ(d.parser + d.fingerprint, d.tried) << name;
    }
}

TEST(ArchiveDamage, ErrorsSayWhere) {
    std::string data = slurp(kFixtures / "pg17_gzip.dump");
    std::string cut = data.substr(0, data.size() - 1000);
    try {
        read_all(cut, cut.size());
        FAIL();
    } catch (const Error& e) {
        std::string what = e.what();
        EXPECT_NE(what.find("archive damaged at byte"), std::string::npos) << what;
        EXPECT_NE(what.find("truncated"), std::string::npos) << what;
    }
    EXPECT_THROW(read_all(std::string(), 1), Error);
    std::string not_archive = "hello world, not an archive at all";
    try {
        read_all(not_archive, not_archive.size());
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no PGDMP magic"), std::string::npos);
    }
}

TEST(ArchiveFormat, Version115HeaderWithAnAlgorithmByteParses) {
    // 1.16 and 1.15 differ only in the TOC's relkind field; 1.14 and 1.15 in
    // the header's compression (a level int, then an algorithm byte). Build a
    // 1.15 archive from the 1.14 fixture: version byte 15, the level int
    // (sign + 4 bytes, here 0 = none) replaced by the algorithm byte 0.
    std::string data = slurp(kFixtures / "pg15_none.dump");
    ASSERT_EQ(data[6], 14);
    ASSERT_EQ(data[8], 4);  // int size
    std::string v115 = data.substr(0, 11);
    v115[6] = 15;
    v115 += '\0';  // algorithm: none
    v115 += data.substr(11 + 5);
    Collector c = read_all(v115, v115.size());
    EXPECT_EQ(c.header.version_text(), "1.15");
    EXPECT_EQ(c.header.compression, Compression::None);
    Collector original = read_all(data, data.size());
    for (const auto& [key, r] : original.tables) {
        EXPECT_EQ(c.tables[key].fp, r.fp) << key;
    }
}

TEST(TableLookup, FindsByExactSchemaAndNameWithoutMixingThem) {
    std::vector<TableSummary> tables;
    tables.push_back({"a.b", "c", 1, "", std::nullopt});
    tables.push_back({"a", "b.c", 2, "", std::nullopt});
    tables.push_back({"", "x", 3, "", std::nullopt});
    for (int i = 0; i < 20000; ++i) {
        tables.push_back(
            {"tenant_" + std::to_string(i), "t", static_cast<uint64_t>(i), "", std::nullopt});
    }
    const TableLookup lookup(tables);
    ASSERT_NE(lookup.find("a.b", "c"), nullptr);
    EXPECT_EQ(lookup.find("a.b", "c")->rows, 1U);
    ASSERT_NE(lookup.find("a", "b.c"), nullptr);
    EXPECT_EQ(lookup.find("a", "b.c")->rows, 2U);
    EXPECT_EQ(lookup.find("", "x")->rows, 3U);
    EXPECT_EQ(lookup.find("tenant_19999", "t")->rows, 19999U);
    EXPECT_EQ(lookup.find("a", "b"), nullptr);
    EXPECT_EQ(lookup.find("A.B", "c"), nullptr);
    EXPECT_EQ(lookup.find("tenant_20000", "t"), nullptr);
}

}  // namespace
}  // namespace pgward::archive
