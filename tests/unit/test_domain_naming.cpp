#include <gtest/gtest.h>

#include "domain/naming.hpp"

namespace pgward {
namespace {

TEST(Naming, PlainNamesAreKept) {
    EXPECT_EQ(encode_db_name("quiz_arena"), "quiz_arena");
    EXPECT_EQ(encode_db_name("a.b-c_D9"), "a.b-c_D9");
}

TEST(Naming, UnsafeBytesArePercentEncoded) {
    EXPECT_EQ(encode_db_name("it's"), "it%27s");
    EXPECT_EQ(encode_db_name("my db"), "my%20db");
    EXPECT_EQ(encode_db_name("a/b"), "a%2Fb");
    EXPECT_EQ(encode_db_name("100%"), "100%25");
    EXPECT_EQ(encode_db_name(".hidden"), "%2Ehidden");
    EXPECT_EQ(encode_db_name("ü"), "%C3%BC");
}

TEST(Naming, EncodingRoundTripsEveryByte) {
    std::string all;
    for (int b = 1; b < 256; ++b) {
        all += static_cast<char>(b);
    }
    for (const std::string& name : {all, std::string("x"), std::string("..")}) {
        std::string encoded = encode_db_name(name);
        EXPECT_EQ(encoded.find('/'), std::string::npos);
        ASSERT_EQ(decode_db_name(encoded), name);
    }
}

TEST(Naming, DecodeAcceptsOnlyTheCanonicalSpelling) {
    EXPECT_FALSE(decode_db_name("a%2fb"));    // lowercase hex
    EXPECT_FALSE(decode_db_name("%61bc"));    // 'a' needs no escape
    EXPECT_FALSE(decode_db_name("a%2"));      // truncated escape
    EXPECT_FALSE(decode_db_name("a b"));      // raw unsafe byte
    EXPECT_FALSE(decode_db_name(".hidden"));  // leading dot must be escaped
    EXPECT_FALSE(decode_db_name(""));
}

TEST(Naming, FileNamesUseUtcCompactTime) {
    BackupId id{"quiz_arena", *parse_compact_utc("20260224T031500Z")};
    EXPECT_EQ(id.dump_file(), "quiz_arena_20260224T031500Z.dump");
    EXPECT_EQ(id.manifest_file(), "quiz_arena_20260224T031500Z.json");
    EXPECT_EQ(id.globals_file(), "quiz_arena_20260224T031500Z.globals.sql");
    EXPECT_EQ(format_iso_utc(id.started), "2026-02-24T03:15:00Z");
}

TEST(Naming, ParsesOnlyStrictNames) {
    auto parsed = parse_backup_file_name("quiz_arena_20260224T031500Z.dump");
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->id.database, "quiz_arena");
    EXPECT_EQ(parsed->role, FileRole::Dump);
    EXPECT_FALSE(parsed->temporary);

    auto tmp = parse_backup_file_name("my%20db_20260224T031500Z.dump.tmp");
    ASSERT_TRUE(tmp);
    EXPECT_EQ(tmp->id.database, "my db");
    EXPECT_TRUE(tmp->temporary);

    auto globals = parse_backup_file_name("x_20260224T031500Z.globals.sql");
    ASSERT_TRUE(globals);
    EXPECT_EQ(globals->role, FileRole::Globals);

    for (const char* foreign :
         {"quiz_arena_20260224T031500.dump", "quiz_arena_20261324T031500Z.dump",
          "quiz_arena_20260230T031500Z.dump", "quiz_arena-20260224T031500Z.dump",
          "_20260224T031500Z.dump", "quiz_arena_20260224T031500Z.dump.bak", "notes.txt",
          "quiz_arena_20260224T031500Z.DUMP", "a b_20260224T031500Z.dump"}) {
        EXPECT_FALSE(parse_backup_file_name(foreign)) << foreign;
    }
}

TEST(Naming, UnderscoresInNamesStayUnambiguous) {
    auto parsed = parse_backup_file_name("foo_bar_20260224T031500Z.dump");
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->id.database, "foo_bar");
}

TEST(Time, CompactAndIsoRoundTrip) {
    auto t = parse_compact_utc("20240229T235959Z");
    ASSERT_TRUE(t);
    EXPECT_EQ(format_compact_utc(*t), "20240229T235959Z");
    EXPECT_EQ(parse_iso_utc("2024-02-29T23:59:59Z"), t);
    EXPECT_FALSE(parse_compact_utc("20230229T000000Z"));
    EXPECT_FALSE(parse_iso_utc("2024-02-29 23:59:59Z"));
}

TEST(Time, RejectsWhatACalendarWouldNormalise) {
    for (const char* text :
         {"20241301T000000Z", "20240001T000000Z", "20240431T000000Z", "20240100T000000Z",
          "20240101T240000Z", "20240101T236000Z", "20240101T235960Z", "21000229T000000Z"}) {
        EXPECT_FALSE(parse_compact_utc(text)) << text;
    }
    EXPECT_EQ(format_compact_utc(*parse_compact_utc("19700101T000000Z")), "19700101T000000Z");
    EXPECT_EQ(format_compact_utc(*parse_compact_utc("20000229T120000Z")), "20000229T120000Z");
    EXPECT_EQ(parse_compact_utc("19700101T000001Z")->time_since_epoch().count(), 1);
}

}  // namespace
}  // namespace pgward
