// The pure parts of the S3 client: how a file is split into parts, and what
// a remote URL may be.
#include <gtest/gtest.h>

#include <string>

#include "storage/s3_client.hpp"
#include "util/error.hpp"

namespace pgward::storage {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

TEST(UploadPlanTest, OnePutUpToThePartSizeThenEqualPartsOfWholeMiB) {
    EXPECT_EQ(plan_upload(0, 0, 10000).parts, 0U);
    EXPECT_EQ(plan_upload(16 * kMiB, 0, 10000).parts, 0U);  // exactly one part: one PUT
    UploadPlan two = plan_upload(16 * kMiB + 1, 0, 10000);
    EXPECT_EQ(two.part_size, 16 * kMiB);
    EXPECT_EQ(two.parts, 2U);
    // A configured part below S3's 5 MiB floor is raised to it.
    EXPECT_EQ(plan_upload(100 * kMiB, 1, 10000).part_size, 5 * kMiB);
    EXPECT_EQ(plan_upload(100 * kMiB, 1, 10000).parts, 20U);
}

TEST(UploadPlanTest, ThePartGrowsSoTheCountStaysWithinTheCap) {
    // 1 TiB in at most 10,000 parts: 105 MiB each (whole MiB, rounded up).
    const uint64_t tib = 1024 * 1024 * kMiB;
    UploadPlan plan = plan_upload(tib, 0, 10000);
    EXPECT_EQ(plan.part_size, 105 * kMiB);
    EXPECT_LE(plan.parts, 10000U);
    EXPECT_GE(plan.parts * plan.part_size, tib);
    // Scaleway's 1,000.
    UploadPlan scaleway = plan_upload(tib, 0, 1000);
    EXPECT_EQ(scaleway.part_size, 1049 * kMiB);
    EXPECT_LE(scaleway.parts, 1000U);
    // More than 10,000 parts of 5 GiB cannot be uploaded at all.
    try {
        plan_upload(60000 * 1024 * kMiB, 0, 10000);
        ADD_FAILURE() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("needs more than 10000 parts of 5 GiB"),
                  std::string::npos)
            << e.what();
    }
}

TEST(S3UrlTest, BucketAndPrefix) {
    EXPECT_EQ(parse_s3_url("s3://backups", "X"),
              std::make_pair(std::string("backups"), std::string()));
    EXPECT_EQ(parse_s3_url("s3://backups/", "X").second, "");
    EXPECT_EQ(parse_s3_url("s3://backups/prod/pg", "X").second, "prod/pg/");
    EXPECT_EQ(parse_s3_url("s3://backups/prod/pg//", "X").second, "prod/pg/");
    for (const char* bad : {"backups", "gs://backups/x", "s3://", "s3://ab", "s3://Backups",
                            "s3://back_ups", "s3://backups/a//b"}) {
        try {
            parse_s3_url(bad, "POSTGRES_BACKUP_REMOTE");
            ADD_FAILURE() << bad;
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::Usage) << bad;
            EXPECT_NE(std::string(e.what()).find("in POSTGRES_BACKUP_REMOTE"), std::string::npos)
                << e.what();
        }
    }
}

}  // namespace
}  // namespace pgward::storage
