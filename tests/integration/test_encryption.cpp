// Issue 21 (encryption with age), what is built so far: `pgward keygen`
// writes an identity in age-keygen's own format, private and never
// overwritten, that the reference `age` tool reads.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>

#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "util/process.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;

// A tool's exit code and stdout.
std::pair<int, std::string> run_tool(const std::vector<std::string>& argv) {
    Child child = Child::spawn(Command{argv, {}, {}});
    std::string out;
    PumpHandlers handlers;
    handlers.on_stdout = [&](const char* data, size_t size) { out.append(data, size); };
    ExitStatus status = pump(child, handlers);
    return {status.code, out};
}

class KeygenTest : public ScratchDirTest {
  protected:
    KeygenTest() : ScratchDirTest("keygen") {}
};

TEST_F(KeygenTest, TheIdentityIsAgesOwnFormatPrivateAndNeverOverwritten) {
    const fs::path key = dir_ / "backup-key.txt";
    RunResult r = run_pgward({"keygen", "-o", key.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string recipient = r.out.substr(0, r.out.find('\n'));
    EXPECT_EQ(recipient.rfind("age1", 0), 0U) << r.out;
    EXPECT_TRUE(contains(r.err, "Public key: " + recipient)) << r.err;
    struct stat st {};
    ASSERT_EQ(::stat(key.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600U);
    const std::string text = slurp(key);
    EXPECT_TRUE(contains(text, "# public key: " + recipient + "\nAGE-SECRET-KEY-1")) << text;

    // Never overwritten: exit 2, the file as it was.
    RunResult again = run_pgward({"keygen", "-o", key.string()});
    EXPECT_EQ(again.exit_code, 2);
    EXPECT_TRUE(contains(again.err, key.string() + " exists; pgward keygen never overwrites"))
        << again.err;
    EXPECT_EQ(slurp(key), text);

    // Without -o, the identity on stdout, nothing written.
    RunResult printed = run_pgward({"keygen"});
    EXPECT_EQ(printed.exit_code, 0);
    EXPECT_TRUE(contains(printed.out, "\nAGE-SECRET-KEY-1")) << printed.out;

    if (!fs::exists("/usr/bin/age-keygen")) {
        GTEST_SKIP() << "the age tool is not installed (apt-get install age): its reading of the "
                        "identity is not checked";
    }
    // The reference tool reads the file and derives the same public key.
    auto [code, derived] = run_tool({"/usr/bin/age-keygen", "-y", key.string()});
    EXPECT_EQ(code, 0);
    EXPECT_EQ(derived, recipient + "\n");
    write_text(dir_ / "plain", "a secret row\n");
    auto [enc, ignored] = run_tool({"/usr/bin/age", "-r", recipient, "-o",
                                    (dir_ / "sealed").string(), (dir_ / "plain").string()});
    ASSERT_EQ(enc, 0);
    auto [dec, opened] =
        run_tool({"/usr/bin/age", "-d", "-i", key.string(), (dir_ / "sealed").string()});
    EXPECT_EQ(dec, 0);
    EXPECT_EQ(opened, "a secret row\n");
}

}  // namespace
}  // namespace pgward::test
