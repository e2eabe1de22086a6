// The S3 test harness itself (tests/harness/s3_server.hpp): the server it
// starts answers signed requests of the independent client
// (tests/s3/check_bucket.py) and refuses a request signed with a wrong secret,
// so the S3 tests that build on it check what they claim to.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "harness/runner.hpp"
#include "harness/s3_server.hpp"
#include "harness/scratch.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;

class S3ServerTest : public ScratchDirTest {
  protected:
    S3ServerTest() : ScratchDirTest("s3-server") {}
};

TEST_F(S3ServerTest, TheHarnessServesSignedRequestsAndRefusesAWrongSecret) {
    S3Server* s3 = S3Server::instance();
    if (s3 == nullptr) {
        GTEST_SKIP() << S3Server::skip_reason();
    }
    const std::string bucket = s3->make_bucket("harness-check");
    const std::string text = "an object the harness put\n";
    const fs::path file = dir_ / "object.txt";
    write_text(file, text);
    s3->put(bucket, "some/prefix/object.txt", file);
    s3->put(bucket, "elsewhere.txt", file);

    auto objects = s3->list(bucket, "some/");
    ASSERT_EQ(objects.size(), 1u);
    EXPECT_EQ(objects[0].first, "some/prefix/object.txt");
    EXPECT_EQ(objects[0].second, text.size());
    s3->get(bucket, "some/prefix/object.txt", dir_ / "back.txt");
    EXPECT_EQ(slurp(dir_ / "back.txt"), text);
    EXPECT_TRUE(s3->uploads(bucket, "").empty());

    // A bucket with object lock takes a PUT too (check_bucket.py sends Content-MD5).
    const std::string locked = s3->make_bucket("harness-check-locked", true);
    s3->put(locked, "kept.txt", file);
    EXPECT_EQ(s3->list(locked, "").size(), 1u);

    // The same request signed with a wrong secret is refused, and the
    // client says why.
    RunResult wrong = s3->check_bucket({"list", bucket, ""},
                                       {{"AWS_SECRET_ACCESS_KEY", "x" + s3->secret_access_key()}});
    EXPECT_EQ(wrong.exit_code, 1) << wrong.err;
    EXPECT_TRUE(contains(wrong.err, "SignatureDoesNotMatch")) << wrong.err;
    EXPECT_EQ(wrong.out, "");

    s3->remove(bucket, "elsewhere.txt");
    EXPECT_EQ(s3->list(bucket, "").size(), 1u);
}

}  // namespace
}  // namespace pgward::test
