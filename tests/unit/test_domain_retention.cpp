#include <gtest/gtest.h>

#include "domain/retention.hpp"

namespace pgward {
namespace {

BackupId at(const char* stamp, const char* db = "app") {
    return BackupId{db, *parse_compact_utc(stamp)};
}

struct Row {
    const char* name;
    std::vector<const char*> stamps;
    size_t keep;
    std::vector<const char*> expected_deleted;  // newest first
};

class RetentionPlan : public ::testing::TestWithParam<Row> {};

TEST_P(RetentionPlan, DeletesExactlyTheOldest) {
    const Row& row = GetParam();
    std::vector<BackupId> ids;
    for (const char* s : row.stamps) {
        ids.push_back(at(s));
    }
    auto plan = plan_retention(ids, row.keep);
    ASSERT_EQ(plan.size(), ids.size());
    std::vector<std::string> deleted;
    size_t kept = 0;
    for (const auto& d : plan) {
        EXPECT_FALSE(d.reason.empty());
        if (d.keep) {
            ++kept;
        } else {
            deleted.push_back(format_compact_utc(d.id.started));
        }
    }
    std::vector<std::string> expected(row.expected_deleted.begin(), row.expected_deleted.end());
    EXPECT_EQ(deleted, expected);
    EXPECT_EQ(kept, std::min(row.keep, ids.size()));
    // Newest first, and every kept backup is newer than every deleted one.
    for (size_t i = 1; i < plan.size(); ++i) {
        EXPECT_GE(plan[i - 1].id.started, plan[i].id.started);
        EXPECT_FALSE(!plan[i - 1].keep && plan[i].keep);
    }
}

INSTANTIATE_TEST_SUITE_P(
    Table, RetentionPlan,
    ::testing::Values(Row{"empty", {}, 7, {}},
                      Row{"fewer_than_keep", {"20260101T000000Z", "20260102T000000Z"}, 7, {}},
                      Row{"exactly_keep", {"20260101T000000Z", "20260102T000000Z"}, 2, {}},
                      Row{"one_over",
                          {"20260101T000000Z", "20260102T000000Z", "20260103T000000Z"},
                          2,
                          {"20260101T000000Z"}},
                      Row{"unsorted_input",
                          {"20260105T000000Z", "20260101T000000Z", "20260103T000000Z",
                           "20260102T000000Z", "20260104T000000Z"},
                          2,
                          {"20260103T000000Z", "20260102T000000Z", "20260101T000000Z"}},
                      Row{"keep_one",
                          {"20251231T235959Z", "20260101T000000Z", "20260101T000001Z"},
                          1,
                          {"20260101T000000Z", "20251231T235959Z"}},
                      Row{"same_day_many",
                          {"20260101T000000Z", "20260101T000001Z", "20260101T000002Z",
                           "20260101T000003Z"},
                          3,
                          {"20260101T000000Z"}}),
    [](const ::testing::TestParamInfo<Row>& p) { return std::string(p.param.name); });

TEST(RetentionPlanReasons, SayWhy) {
    auto plan = plan_retention({at("20260101T000000Z"), at("20260102T000000Z")}, 1);
    EXPECT_EQ(plan[0].reason, "newest 1 of 2 (keep 1)");
    EXPECT_EQ(plan[1].reason, "older than the newest 1 (number 2 of 2)");
}

// Backups of the same second (two databases in one directory) keep one order
// whatever order they are listed in: by database name.
TEST(RetentionPlanOrder, TheSameSecondIsOrderedByDatabase) {
    for (bool reversed : {false, true}) {
        std::vector<BackupId> ids = {at("20260101T000000Z", "zeta"),
                                     at("20260101T000000Z", "alpha")};
        if (reversed) {
            std::swap(ids[0], ids[1]);
        }
        auto plan = plan_retention(ids, 1);
        ASSERT_EQ(plan.size(), 2u);
        EXPECT_EQ(plan[0].id.database, "alpha");
        EXPECT_TRUE(plan[0].keep);
        EXPECT_EQ(plan[1].id.database, "zeta");
        EXPECT_FALSE(plan[1].keep);
        EXPECT_EQ(plan[1].reason, "older than the newest 1 (number 2 of 2)");
    }
}

TEST(RetentionReasons, EachDecisionSaysWhy) {
    auto plan =
        plan_retention({at("20260101T000000Z"), at("20260103T000000Z"), at("20260102T000000Z")}, 2);
    ASSERT_EQ(plan.size(), 3U);
    EXPECT_EQ(plan[0].reason, "newest 1 of 3 (keep 2)");
    EXPECT_EQ(plan[1].reason, "newest 2 of 3 (keep 2)");
    EXPECT_EQ(plan[2].reason, "older than the newest 2 (number 3 of 3)");
    EXPECT_FALSE(plan[2].keep);
    EXPECT_EQ(format_compact_utc(plan[2].id.started), "20260101T000000Z");
}

}  // namespace
}  // namespace pgward
