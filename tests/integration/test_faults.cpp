// The rows of docs/reliability.md's fault table that no command suite covers
// on its own: each makes the fault happen and checks the exit code, the
// message and the files left behind.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <map>
#include <random>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "domain/state.hpp"
#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using json = nlohmann::json;

bool has_suffix(const std::string& name, const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Names in `dir` a failed backup must not leave: dumps, temp files, manifests.
std::vector<std::string> backup_files(const fs::path& dir) {
    std::vector<std::string> out;
    for (const std::string& name : list_dir(dir)) {
        if (has_suffix(name, ".dump") || has_suffix(name, ".tmp") || has_suffix(name, ".json") ||
            has_suffix(name, ".globals.sql")) {
            out.push_back(name);
        }
    }
    return out;
}

class FaultTest : public ScratchDirTest {
  protected:
    FaultTest() : ScratchDirTest("faults") {}
    static void SetUpTestSuite() {
        PgCluster& c = PgCluster::instance();
        c.create_database("faults");
        c.exec("faults", R"SQL(
            CREATE TABLE accounts(id int PRIMARY KEY, owner text);
            INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 500) g;
            CREATE TABLE events(id bigint, payload text);
            INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
        )SQL");
    }

    Env env(Env extra = {}) const { return pg_env("faults", dir_, std::move(extra)); }
};

TEST_F(FaultTest, ATableHeldInAccessExclusiveEndsTheBackupAtTheLockWaitTimeout) {
    pg::Connection holder = PgCluster::instance().connect("faults");
    holder.exec("BEGIN");
    holder.exec("LOCK TABLE events IN ACCESS EXCLUSIVE MODE");
    auto started = std::chrono::steady_clock::now();
    RunResult r = run_pgward({"backup", "--lock-wait-timeout", "2"}, env());
    auto took = std::chrono::steady_clock::now() - started;
    holder.exec("ROLLBACK");
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err,
                         "backup of \"faults\" gave up after waiting 2 s for a table another "
                         "session holds locked"))
        << r.err;
    EXPECT_TRUE(contains(r.err, "events")) << r.err;
    EXPECT_TRUE(contains(r.err, "hint: find the holder in pg_locks")) << r.err;
    EXPECT_LT(took, 30s);
    EXPECT_TRUE(backup_files(dir_).empty()) << testing::PrintToString(backup_files(dir_));

    // The lock released, the same command succeeds.
    RunResult ok = run_pgward({"backup", "--lock-wait-timeout", "2"}, env());
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
}

TEST_F(FaultTest, SslmodeRequireAgainstAServerWithoutTlsFailsNamingIt) {
    RunResult r = run_pgward({"backup"}, env({{"PGSSLMODE", "require"}}));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "server does not support SSL, but SSL was required")) << r.err;
    EXPECT_TRUE(contains(r.err, "hint: check sslmode (PGSSLMODE)")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(list_dir(dir_).empty());
}

TEST_F(FaultTest, TheServerCrashingMidDumpFailsTheBackupAndTheNextOneSucceeds) {
    // pg_dump held mid-stream (its output throttled), then the backend that
    // serves its COPY is SIGKILLed: the postmaster resets every session.
    fs::path bin = fake_pg_dump("throttle-bin", "\"$REAL\" \"$@\" | (head -c 4096; sleep 3; cat)");
    BackgroundPgward backup({"backup", "--pg-bin", bin.string()}, env());
    std::string backend;
    ASSERT_TRUE(eventually(
        [&] {
            backend = PgCluster::instance().query_value(
                "postgres",
                "SELECT coalesce((SELECT pid::text FROM pg_stat_activity WHERE datname = 'faults' "
                "AND query LIKE 'COPY %' LIMIT 1), '')");
            return !backend.empty();
        },
        30s));
    ASSERT_EQ(::kill(std::stoi(backend), SIGKILL), 0) << std::strerror(errno);
    auto r = backup.wait(60s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 1);
    // pg_dump's own failure is masked by the throttling pipe (`cat` exits 0);
    // the row-count session sharing its snapshot notices the crash.
    EXPECT_TRUE(contains(r->err, "backup of \"faults\" lost its snapshot session")) << r->err;
    EXPECT_TRUE(contains(r->err, "server closed the connection unexpectedly")) << r->err;
    EXPECT_TRUE(contains(r->err, "nothing was published")) << r->err;
    EXPECT_TRUE(backup_files(dir_).empty()) << testing::PrintToString(backup_files(dir_));
    // After crash recovery the next backup succeeds.
    std::optional<RunResult> next;
    EXPECT_TRUE(eventually(
        [&] {
            next = run_pgward({"backup"}, env());
            return next->exit_code == 0;
        },
        60s))
        << next->err;
}

TEST_F(FaultTest, AMissingBackupDirectoryIsCreatedPrivateWithItsParents) {
    fs::path missing = dir_ / "new" / "backups";
    RunResult r = run_pgward({"backup", "--dir", missing.string()}, env());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(fs::is_directory(missing));
    struct stat st {};
    ASSERT_EQ(::stat(missing.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(backup_files(missing).size(), 3u)  // dump, manifest, globals
        << testing::PrintToString(backup_files(missing));
}

TEST_F(FaultTest, APgDumpThatIsNotExecutableIsNamed) {
    fs::path bin = fake_pg_dump("noexec-bin", "exec \"$REAL\" \"$@\"", 0644);
    fs::path out = dir_ / "out";
    RunResult r = run_pgward({"backup", "--pg-bin", bin.string(), "--dir", out.string()}, env());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, (bin / "pg_dump").string())) << r.err;
    EXPECT_TRUE(contains(r.err, "not executable")) << r.err;
    EXPECT_FALSE(fs::exists(out) && !backup_files(out).empty());
}

TEST_F(FaultTest, APgDumpThatExitsZeroWithAnEmptyArchiveIsNeverPublished) {
    fs::path bin = fake_pg_dump("empty-bin", "exit 0");
    fs::path out = dir_ / "out";
    RunResult r = run_pgward({"backup", "--pg-bin", bin.string(), "--dir", out.string()}, env());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err,
                         "pg_dump of \"faults\" exited 0, but archive damaged at byte 0 in the "
                         "header: the file is empty"))
        << r.err;
    EXPECT_TRUE(contains(r.err, "nothing was published")) << r.err;
    EXPECT_TRUE(backup_files(out).empty()) << testing::PrintToString(backup_files(out));
}

TEST_F(FaultTest, APgDumpThatExitsZeroWithATruncatedArchiveIsNeverPublished) {
    // The real archive, cut after 20 kB: pg_dump dies of SIGPIPE, head exits 0.
    fs::path bin = fake_pg_dump("truncating-bin", "\"$REAL\" \"$@\" | head -c 20000");
    fs::path out = dir_ / "out";
    RunResult r = run_pgward({"backup", "--pg-bin", bin.string(), "--dir", out.string()}, env());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "archive damaged at byte")) << r.err;
    EXPECT_TRUE(contains(r.err, "nothing was published")) << r.err;
    EXPECT_TRUE(backup_files(out).empty()) << testing::PrintToString(backup_files(out));
}

TEST_F(FaultTest, SymlinksSquattingOnBackupNamesAreNeverWrittenThroughOrTheirTargetsDeleted) {
    // Links with every name the next few seconds' backup could take, pointing
    // at files outside the backup directory.
    fs::path outside = dir_ / "outside";
    fs::path backups = dir_ / "backups";
    fs::create_directory(outside);
    fs::create_directory(backups);
    auto now = std::chrono::system_clock::now();
    std::vector<fs::path> targets;
    for (int s = 0; s < 6; ++s) {
        std::time_t t = std::chrono::system_clock::to_time_t(now + std::chrono::seconds(s));
        char stamp[32];
        std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", std::gmtime(&t));
        for (const char* suffix : {".dump.tmp", ".json.tmp"}) {
            fs::path target = outside / (std::string("precious") + stamp + suffix);
            write_text(target, "precious data\n", 0600);
            fs::create_symlink(target, backups / (std::string("faults_") + stamp + suffix));
            targets.push_back(target);
        }
    }
    RunResult r = run_pgward({"backup", "--dir", backups.string()}, env());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const fs::path& target : targets) {
        ASSERT_TRUE(fs::exists(target)) << target;
        EXPECT_EQ(slurp(target), "precious data\n") << target;
    }
    size_t dumps = 0;
    for (const std::string& name : list_dir(backups)) {
        if (has_suffix(name, ".dump")) {
            ++dumps;
            EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(backups / name))) << name;
        }
        EXPECT_FALSE(has_suffix(name, ".tmp")) << "left behind: " << name;
    }
    EXPECT_EQ(dumps, 1u);
}

TEST_F(FaultTest, SigtermOfABackupMidDumpExitsOneAndLeavesNothing) {
    // A pg_dump slowed to a trickle: the signal lands mid-stream.
    fs::path bin = fake_pg_dump("slow-bin", "\"$REAL\" \"$@\" | (head -c 4096; sleep 30; cat)");
    BackgroundPgward backup({"backup", "--pg-bin", bin.string()}, env());
    // The temp file is made before pg_dump starts; its first 4 KiB stay in
    // pgward's 1 MiB write buffer, so give them a moment to arrive.
    ASSERT_TRUE(eventually(
        [&] {
            for (const std::string& name : list_dir(dir_)) {
                if (has_suffix(name, ".dump.tmp")) {
                    return true;
                }
            }
            return false;
        },
        30s));
    std::this_thread::sleep_for(1s);
    ::kill(backup.pid(), SIGTERM);
    auto r = backup.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 1);
    EXPECT_TRUE(contains(r->err, "interrupted by SIGTERM while pg_dump was running")) << r->err;
    EXPECT_TRUE(backup_files(dir_).empty()) << testing::PrintToString(backup_files(dir_));
}

TEST_F(FaultTest, VerifyRefusesANonArchiveAnEmptyFileAndAManifestOfAnotherDump) {
    write_text(dir_ / "notes.dump", "hello", 0600);
    RunResult foreign = run_pgward({"verify", (dir_ / "notes.dump").string(), "--deep"}, env());
    EXPECT_EQ(foreign.exit_code, 1);
    EXPECT_TRUE(contains(foreign.out + foreign.err, "is not a pg_dump custom-format archive"))
        << foreign.out << foreign.err;
    write_text(dir_ / "empty.dump", "", 0600);
    RunResult empty = run_pgward({"verify", (dir_ / "empty.dump").string(), "--deep"}, env());
    EXPECT_EQ(empty.exit_code, 1);
    EXPECT_TRUE(contains(empty.out + empty.err, "the file is empty")) << empty.out << empty.err;
    // A real header and a torn TOC, no manifest: pg_restore --list itself refuses it.
    std::string archive = slurp(fs::path(PGWARD_FIXTURES_DIR) / "pg15_gzip.dump");
    write_text(dir_ / "torn.dump", archive.substr(0, 300), 0600);
    RunResult torn = run_pgward({"verify", (dir_ / "torn.dump").string(), "--deep"}, env());
    EXPECT_EQ(torn.exit_code, 1);
    EXPECT_TRUE(contains(torn.out,
                         "FAIL torn.dump: pg_restore --list cannot read it (exit code 1): "
                         "pg_restore: error: "))
        << torn.out << torn.err;
    RunResult torn_restore = run_pgward(
        {"restore", (dir_ / "torn.dump").string(), "--dbname", "faults_torn", "--create"}, env());
    EXPECT_EQ(torn_restore.exit_code, 1);
    EXPECT_TRUE(contains(torn_restore.err,
                         "torn.dump cannot be restored: pg_restore --list cannot read it"))
        << torn_restore.err;
    EXPECT_EQ(PgCluster::instance().query_value(
                  "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'faults_torn'"),
              "0");

    // Two real backups; the first's manifest copied over the second's.
    RunResult first = run_pgward({"backup"}, env());
    ASSERT_EQ(first.exit_code, 0) << first.err;
    std::this_thread::sleep_for(1100ms);
    RunResult second = run_pgward({"backup"}, env());
    ASSERT_EQ(second.exit_code, 0) << second.err;
    auto manifest_of = [](const std::string& dump_line) {
        std::string dump = dump_line.substr(0, dump_line.find('\n'));
        return fs::path(dump.substr(0, dump.size() - 5) + ".json");
    };
    fs::path second_dump = second.out.substr(0, second.out.find('\n'));
    fs::copy_file(manifest_of(first.out), manifest_of(second.out),
                  fs::copy_options::overwrite_existing);
    RunResult swapped = run_pgward({"verify", second_dump.string()}, env());
    EXPECT_EQ(swapped.exit_code, 1);
    EXPECT_TRUE(contains(
        swapped.out, "the manifest describes " +
                         fs::path(first.out.substr(0, first.out.find('\n'))).filename().string() +
                         ", not this dump"))
        << swapped.out;
    RunResult restore =
        run_pgward({"restore", second_dump.string(), "--dbname", "faults_copy", "--create"}, env());
    EXPECT_EQ(restore.exit_code, 1);
    EXPECT_TRUE(contains(restore.err, "cannot be restored")) << restore.err;
}

// tmpfs faults need root to mount; both tests skip with the reason otherwise.
class FullFilesystemTest : public FaultTest {
  protected:
    void SetUp() override {
        FaultTest::SetUp();
        if (!running_as_root()) {
            GTEST_SKIP() << "needs root to mount a small tmpfs";
        }
        small_ = dir_ / "small";
        fs::create_directory(small_);
        ASSERT_EQ(::mount("tmpfs", small_.c_str(), "tmpfs", 0, "size=2m,mode=0700"), 0)
            << std::strerror(errno);
        mounted_ = true;
    }
    void TearDown() override {
        if (mounted_) {
            ::umount2(small_.c_str(), MNT_DETACH);
        }
        FaultTest::TearDown();
    }

    // Fills the tmpfs until exactly `free_bytes` (a multiple of 4 KiB) stay free.
    void leave_free(uintmax_t free_bytes) {
        struct statvfs st {};
        ASSERT_EQ(::statvfs(small_.c_str(), &st), 0);
        uintmax_t available = static_cast<uintmax_t>(st.f_bavail) * st.f_frsize;
        ASSERT_GE(available, free_bytes);
        fs::path filler = small_ / "filler";
        std::error_code ec;
        uintmax_t existing = fs::exists(filler) ? fs::file_size(filler) : 0;
        write_text(filler, std::string(existing + available - free_bytes, 'f'), 0600);
    }

    fs::path small_;
    bool mounted_ = false;
};

TEST_F(FullFilesystemTest, ARoomForTheDataButNotTheManifestPublishesNothing) {
    // The dump's size in pages, from a backup into a roomy directory.
    fs::path roomy = dir_ / "roomy";
    RunResult probe = run_pgward({"backup", "--dir", roomy.string()}, env());
    ASSERT_EQ(probe.exit_code, 0) << probe.err;
    uintmax_t dump_bytes = fs::file_size(probe.out.substr(0, probe.out.find('\n')));
    uintmax_t pages = (dump_bytes + 4095) / 4096;
    leave_free(pages * 4096);
    RunResult r = run_pgward({"backup", "--dir", small_.string()}, env());
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(contains(r.err, "No space left on device")) << r.err;
    EXPECT_TRUE(contains(r.err, ".json")) << "the manifest stage: " << r.err;
    EXPECT_TRUE(contains(r.err, "hint: free space")) << r.err;
    EXPECT_TRUE(backup_files(small_).empty()) << testing::PrintToString(backup_files(small_));
}

TEST_F(FullFilesystemTest, AFullDiskFailsEachCycleKeepsTheServiceUpAndHealsWhenSpaceReturns) {
    leave_free(0);
    int http_port = free_loopback_port();
    BackgroundPgward service({"run", "--dir", small_.string()},
                             env({{"POSTGRES_BACKUP_INTERVAL_SECONDS", "1"},
                                  {"POSTGRES_BACKUP_RETRY_SECONDS", "1"},
                                  {"POSTGRES_BACKUP_RETENTION_COUNT", "2"},
                                  {"PGWARD_HTTP_ADDR", "127.0.0.1:" + std::to_string(http_port)}}));
    httplib::Client client("127.0.0.1", http_port);
    // Neither the dump nor the state file can be written: health comes from memory.
    bool failing = eventually(
        [&] {
            auto health = client.Get("/healthz");
            return health && health->status == 503 &&
                   contains(health->body, "No space left on device");
        },
        30s);
    EXPECT_TRUE(failing);
    // Nothing stays: a listing may catch a write the service is trying (and
    // removes when it fails), so the directory must be seen empty, not
    // empty at every instant.
    EXPECT_TRUE(eventually([&] { return backup_files(small_).empty(); }, 5s))
        << testing::PrintToString(backup_files(small_));
    fs::remove(small_ / "filler");
    bool healed = eventually(
        [&] {
            auto health = client.Get("/healthz");
            return health && health->status == 200;
        },
        30s);
    EXPECT_TRUE(healed);
    ::kill(service.pid(), SIGTERM);
    auto r = service.wait(15s);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->exit_code, 0) << r->err;
    EXPECT_TRUE(contains(r->out, "cannot write the state file")) << r->out;
    auto state = load_state(small_ / state_file_name("faults"));
    ASSERT_TRUE(state);
    EXPECT_GE(state->successes_total, 1u);
    EXPECT_GE(state->failures_total, 1u);
    for (const std::string& name : list_dir(small_)) {
        EXPECT_FALSE(has_suffix(name, ".tmp")) << "left behind: " << name;
    }
}

TEST_F(FullFilesystemTest, TenRandomFillLevelsEachBackupSucceedsWhollyOrFailsNamingEnospc) {
    // The last good backup, then ten backups with --retention 1 into what is
    // left after filling the tmpfs to a random level: each one is whole and
    // proven and has replaced the last, or failed naming ENOSPC with the
    // last good backup untouched and nothing partial beside it.
    RunResult first = run_pgward({"backup", "--dir", small_.string()}, env());
    ASSERT_EQ(first.exit_code, 0) << first.err;
    const uintmax_t dump_bytes = fs::file_size(first.out.substr(0, first.out.find('\n')));
    const unsigned seed = static_cast<unsigned>(std::random_device{}());
    std::mt19937 random(seed);
    int succeeded = 0;
    for (int i = 0; i < 10; ++i) {
        std::vector<std::string> before_names = backup_files(small_);
        std::map<std::string, std::string> before;
        for (const std::string& name : before_names) {
            before[name] = slurp(small_ / name);
        }
        std::error_code ec;
        fs::remove(small_ / "filler", ec);
        // Between nothing and twice the dump (or all there is): about half
        // the levels leave room for a whole backup.
        struct statvfs st {};
        ASSERT_EQ(::statvfs(small_.c_str(), &st), 0);
        const uintmax_t available = static_cast<uintmax_t>(st.f_bavail) * st.f_frsize;
        const uintmax_t pages = std::uniform_int_distribution<uintmax_t>(
            0, std::min(available, 2 * dump_bytes + 65536) / 4096)(random);
        leave_free(pages * 4096);
        const std::string where = "seed " + std::to_string(seed) + ", fill " +
                                  std::to_string(i + 1) + ": " + std::to_string(pages * 4) +
                                  " KiB free";
        RunResult r = run_pgward({"backup", "--dir", small_.string(), "--retention", "1"}, env());
        std::vector<std::string> after = backup_files(small_);
        for (const std::string& name : after) {
            EXPECT_FALSE(has_suffix(name, ".tmp")) << where << ": left behind: " << name;
        }
        if (r.exit_code == 0) {
            ++succeeded;
            const std::string dump = r.out.substr(0, r.out.find('\n'));
            RunResult v = run_pgward({"verify", dump, "--deep"}, env());
            EXPECT_EQ(v.exit_code, 0) << where << ": " << v.err;
            size_t dumps = 0;
            for (const std::string& name : after) {
                dumps += has_suffix(name, ".dump") ? 1 : 0;
            }
            EXPECT_EQ(dumps, 1u) << where << ": " << testing::PrintToString(after);
        } else {
            EXPECT_EQ(r.exit_code, 1) << where << ": " << r.err;
            EXPECT_TRUE(contains(r.err, "No space left on device")) << where << ": " << r.err;
            EXPECT_EQ(after, before_names) << where << ": files changed by a failed backup";
            for (const auto& [name, bytes] : before) {
                EXPECT_TRUE(fs::exists(small_ / name) && slurp(small_ / name) == bytes)
                    << where << ": the last good backup changed: " << name;
            }
        }
        if (HasFailure()) {
            return;
        }
    }
    std::printf(
        "full filesystem: 10 random fill levels (seed %u): %d backups succeeded whole, "
        "%d failed naming ENOSPC with the last good backup intact\n",
        seed, succeeded, 10 - succeeded);
}

}  // namespace
}  // namespace pgward::test
