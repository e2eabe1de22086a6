#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "domain/compression.hpp"
#include "util/error.hpp"

namespace pgward {
namespace {

pg::Version version(int major, int minor = 0) {
    return pg::Version{major * 10000 + minor};
}

std::string usage_message(const std::string& text) {
    try {
        CompressionSetting::parse(text);
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Usage);
        return e.what();
    }
    return "(accepted)";
}

TEST(CompressionSetting, ParsesAutoAndEveryMethodWithAndWithoutALevel) {
    EXPECT_TRUE(CompressionSetting::parse("auto").automatic);
    EXPECT_TRUE(CompressionSetting::parse("").automatic);
    for (const char* text :
         {"gzip", "gzip:1", "gzip:9", "lz4", "lz4:12", "zstd", "zstd:1", "zstd:22", "none"}) {
        CompressionSetting s = CompressionSetting::parse(text);
        EXPECT_FALSE(s.automatic) << text;
        EXPECT_EQ(s.text(), text);
    }
    EXPECT_EQ(CompressionSetting::parse("zstd:7").level, 7);
    EXPECT_EQ(CompressionSetting::parse("gzip").level, std::nullopt);
}

TEST(CompressionSetting, RefusesWhatPgDumpWouldRefuseWithTheReason) {
    EXPECT_EQ(usage_message("brotli"),
              "compression \"brotli\" is not valid: unknown method \"brotli\"");
    EXPECT_EQ(usage_message("gzip:10"),
              "compression \"gzip:10\" is not valid: gzip levels go from 1 to 9");
    EXPECT_EQ(usage_message("gzip:0"),
              "compression \"gzip:0\" is not valid: gzip levels go from 1 to 9");
    EXPECT_EQ(usage_message("zstd:23"),
              "compression \"zstd:23\" is not valid: zstd levels go from 1 to 22");
    EXPECT_EQ(usage_message("lz4:13"),
              "compression \"lz4:13\" is not valid: lz4 levels go from 1 to 12");
    EXPECT_EQ(usage_message("zstd:"),
              "compression \"zstd:\" is not valid: the level \"\" is not a number");
    EXPECT_EQ(usage_message("zstd:fast"),
              "compression \"zstd:fast\" is not valid: the level \"fast\" is not a number");
    EXPECT_EQ(usage_message("zstd:3x"),
              "compression \"zstd:3x\" is not valid: the level \"3x\" is not a number");
    EXPECT_EQ(usage_message("none:1"), "compression \"none:1\" is not valid: none takes no level");
    EXPECT_EQ(usage_message("ZSTD"), "compression \"ZSTD\" is not valid: unknown method \"ZSTD\"");
}

TEST(ChooseCompression, AutoIsGzipBefore16AndZstdLevel1From16) {
    for (int major : {13, 14, 15}) {
        CompressionChoice c = choose_compression({}, version(major, 8));
        EXPECT_EQ(c.text(), "gzip") << major;
        EXPECT_TRUE(c.pg_dump_args.empty()) << major;  // pg_dump's own default
    }
    for (int major : {16, 17, 18}) {
        CompressionChoice c = choose_compression({}, version(major, 2));
        EXPECT_EQ(c.text(), "zstd:1") << major;
        EXPECT_EQ(c.pg_dump_args, std::vector<std::string>{"--compress=zstd:1"}) << major;
    }
}

TEST(ChooseCompression, ExplicitMethodsBecomeTheArgumentsEachPgDumpTakes) {
    auto args = [](const char* text, int major) {
        return choose_compression(CompressionSetting::parse(text), version(major)).pg_dump_args;
    };
    using Args = std::vector<std::string>;
    EXPECT_EQ(args("gzip:6", 15), Args{"--compress=6"});
    EXPECT_EQ(args("gzip", 15), Args{});
    EXPECT_EQ(args("none", 15), Args{"--compress=0"});
    EXPECT_EQ(args("gzip", 17), Args{"--compress=gzip"});
    EXPECT_EQ(args("lz4:3", 17), Args{"--compress=lz4:3"});
    EXPECT_EQ(args("none", 18), Args{"--compress=none"});
}

TEST(ChooseCompression, AMethodTheClientCannotWriteIsAUsageErrorNamingItsMajor) {
    for (const char* method : {"zstd", "lz4:2"}) {
        try {
            choose_compression(CompressionSetting::parse(method), version(15, 18));
            ADD_FAILURE() << method << " accepted for pg_dump 15";
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::Usage);
            std::string name = std::string(method).substr(0, std::string(method).find(':'));
            EXPECT_EQ(std::string(e.what()), "pg_dump 15.18 cannot write " + name + " archives: " +
                                                 name + " needs pg_dump 16 or newer");
            EXPECT_EQ(e.hint(),
                      "with pg_dump 15 use auto, gzip[:1-9] or none, or point --pg-bin / "
                      "PGWARD_PG_BIN at pg_dump 16 or newer");
        }
    }
}

}  // namespace
}  // namespace pgward
