#include <gtest/gtest.h>

#include "harness/pg_cluster.hpp"
#include "pg/environment.hpp"

namespace pgward::test {
namespace {

// One cluster per test binary: started before the first test, removed after
// the last (kept, with its path printed, if any test failed).
class ClusterEnvironment : public ::testing::Environment {
  public:
    void SetUp() override {
        PgCluster& cluster = PgCluster::instance();
        cluster.init();
        cluster.start();
    }
    void TearDown() override {
        bool failed = ::testing::UnitTest::GetInstance()->failed_test_count() > 0;
        PgCluster::instance().destroy(failed);
    }
};

}  // namespace
}  // namespace pgward::test

int main(int argc, char** argv) {
    // As pgward does: the harness's own server and connections never see the
    // PG* variables of the shell the tests run in (the hostile run sets them).
    pgward::pg::capture_operator_environment();
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new pgward::test::ClusterEnvironment);
    return RUN_ALL_TESTS();
}
