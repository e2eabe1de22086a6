// The fault walks of docs/reliability.md: every file-system call pgward makes
// in an operation's directory is, in turn, the one that kills it or fails
// (tests/shims/faultfs.c), and after each the directory must hold only
// complete, proven backups, every older backup byte-identical, and the next
// run must succeed with retention exact.
//
// PGWARD_WALK=full (make torture) walks every call with SIGKILL and with each
// errno once and persistently; otherwise (make test) every third call is
// walked with SIGKILL and with one errno/mode pair that rotates from one walked
// call to the next, so each pair is met every eighth walked call.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const fs::path kSource = PGWARD_SOURCE_DIR;
const fs::path kMigrations = kSource / "examples/quiz_arena/migrations";

bool has_suffix(const std::string& name, const std::string& suffix) {
    return name.size() >= suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

struct Fault {
    std::string action;  // kill, EIO, ENOSPC, EDQUOT, EACCES
    bool persist = false;
    int errnum() const {
        if (action == "EIO")
            return EIO;
        if (action == "ENOSPC")
            return ENOSPC;
        if (action == "EDQUOT")
            return EDQUOT;
        if (action == "EACCES")
            return EACCES;
        return 0;
    }
    std::string describe() const {
        return action == "kill" ? "SIGKILL" : action + (persist ? " from then on" : " once");
    }
};

const std::vector<std::string> kErrnos = {"EIO", "ENOSPC", "EDQUOT", "EACCES"};

// The first call (1-based) ending with `then` after one containing `first`.
long call_after(const std::vector<std::string>& calls, const std::string& first,
                const std::string& then) {
    for (size_t i = 0; i < calls.size(); ++i) {
        if (contains(calls[i], first)) {
            for (size_t j = i + 1; j < calls.size(); ++j) {
                if (has_suffix(calls[j], then)) {
                    return static_cast<long>(j + 1);
                }
            }
        }
    }
    return 0;
}

// Whether a trace line ("N call path...") is of `name`.
bool is_call(const std::string& line, const std::string& name) {
    size_t space = line.find(' ');
    return space != std::string::npos && line.compare(space + 1, name.size() + 1, name + " ") == 0;
}

// A failed call pgward may shrug off: the close of a descriptor it only
// read, or an open of a file it only looks for.
bool shruggable(const std::string& call) {
    return is_call(call, "close") || is_call(call, "open") || is_call(call, "openat");
}

bool full_walk() {
    const char* walk = std::getenv("PGWARD_WALK");
    return walk != nullptr && std::string(walk) == "full";
}

// Calls walked: every one in the full walk, every third in CI's (1, 4, 7, ...;
// the errno/mode pair still rotates through all eight).
long walk_stride() {
    return full_walk() ? 1 : 3;
}

std::vector<Fault> faults_at(long n) {
    std::vector<Fault> out{{"kill", false}};
    if (full_walk()) {
        for (const std::string& e : kErrnos) {
            out.push_back({e, false});
            out.push_back({e, true});
        }
    } else {
        const long pair = ((n - 1) / walk_stride()) % 8;
        out.push_back({kErrnos[static_cast<size_t>(pair / 2)], pair % 2 == 1});
    }
    return out;
}

// Every regular file of dir by name (dotfiles: the lock and state files, too).
using Contents = std::map<std::string, std::string>;
Contents contents_of(const fs::path& dir) {
    Contents out;
    if (!fs::exists(dir)) {
        return out;
    }
    for (const auto& entry : fs::directory_iterator(dir)) {
        if (entry.is_regular_file()) {
            out[entry.path().filename().string()] = slurp(entry.path());
        }
    }
    return out;
}

std::vector<std::string> names_ending(const Contents& files, const std::string& suffix) {
    std::vector<std::string> out;
    for (const auto& [name, _] : files) {
        if (name[0] != '.' && has_suffix(name, suffix)) {
            out.push_back(name);
        }
    }
    return out;
}

std::string manifest_of(const std::string& dump) {
    return dump.substr(0, dump.size() - 5) + ".json";
}

std::vector<std::string> read_lines(const fs::path& path) {
    std::vector<std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

// One walked operation: how to set its directory up, run it, and judge it.
struct Operation {
    std::string name;
    // Fills `work` (a fresh directory) with the state before the operation.
    std::function<void(const fs::path& work)> prepare;
    // The pgward arguments and environment, and the directory whose calls count.
    std::function<std::vector<std::string>(const fs::path& work)> args;
    std::function<Env(const fs::path& work)> env;
    std::function<fs::path(const fs::path& work)> root;
    // Extra checks after a faulted run (the generic ones are in the walk).
    std::function<void(const fs::path& work, const RunResult& r, const Fault& f, long n,
                       const std::string& hit, const std::string& where)>
        check_after;
    // The fault-free run that must follow and succeed, and its checks.
    std::function<void(const fs::path& work, const std::string& where)> check_next;
    // From the dry run's trace: the call (1-based) after which the new file
    // is published for good; a fault after it may leave that file, complete.
    std::function<long(const std::vector<std::string>& calls, const fs::path& work)> publish_point;
    long published_after = 0;
};

struct WalkTotals {
    long calls = 0;
    long runs = 0;
};

class FaultWalkTest : public ScratchDirTest {
  protected:
    FaultWalkTest() : ScratchDirTest("walk") {}

    static void SetUpTestSuite() {
        PgCluster& c = PgCluster::instance();
        c.create_database("walk");
        c.exec("walk", R"SQL(
            CREATE TABLE accounts(id int PRIMARY KEY, owner text);
            INSERT INTO accounts SELECT g, 'owner ' || g FROM generate_series(1, 300) g;
            CREATE TABLE events(id bigint, payload text);
            INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, 3000) g;
        )SQL");
    }

    void SetUp() override {
        ScratchDirTest::SetUp();
#if defined(__SANITIZE_ADDRESS__)
        GTEST_SKIP() << "the fault walks run in the release suite (make test-release, make "
                        "torture): the shim is not loaded under AddressSanitizer";
#endif
        tmp_ = shared_subdir("tmp");
    }

    Env walk_env(const fs::path& backups, Env extra = {}) const {
        extra.insert(extra.begin(), {"TMPDIR", tmp_.string()});
        return pg_env("walk", backups, std::move(extra));
    }

    // A directory with `count` real backups of "walk", taken once per test.
    fs::path baseline(size_t count) {
        fs::path base = dir_ / ("baseline-" + std::to_string(count));
        if (!fs::exists(base)) {
            for (size_t i = 0; i < count; ++i) {
                RunResult r = run_pgward({"backup"}, walk_env(base));
                EXPECT_EQ(r.exit_code, 0) << r.err;
            }
        }
        return base;
    }

    static void copy_dir(const fs::path& from, const fs::path& to) {
        fs::create_directories(to);
        fs::permissions(to, fs::perms::owner_all);
        for (const auto& entry : fs::directory_iterator(from)) {
            fs::copy_file(entry.path(), to / entry.path().filename());
        }
    }

    static Env fault_env(Env env, const fs::path& root, const fs::path& trace, long at,
                         const Fault& f) {
        env.emplace_back("LD_PRELOAD", PGWARD_FAULTFS_LIB);
        env.emplace_back("PGWARD_FAULT_ROOT", root.string());
        env.emplace_back("PGWARD_FAULT_TRACE", trace.string());
        if (at > 0) {
            env.emplace_back("PGWARD_FAULT_AT", std::to_string(at));
            env.emplace_back("PGWARD_FAULT_ACTION", f.action);
            env.emplace_back("PGWARD_FAULT_MODE", f.persist ? "persist" : "once");
        }
        return env;
    }

    void expect_verified(const fs::path& dump, const std::string& where) {
        RunResult v = run_pgward({"verify", dump.string(), "--deep"}, walk_env(dir_ / "none"));
        EXPECT_EQ(v.exit_code, 0) << where << ": " << dump << " fails verify --deep: " << v.err;
    }

    // The checks every backup-writing operation shares after a fault:
    // every older file byte-identical or (after the new one was published)
    // pruned by retention; every new dump complete, with its manifest, proven.
    void check_backup_dir(const fs::path& dir, const Contents& before, const RunResult& r,
                          const Fault& f, bool may_publish, const std::string& call,
                          size_t retention, const std::string& where, bool service = false) {
        Contents after = contents_of(dir);
        std::vector<std::string> new_dumps;
        for (const std::string& name : names_ending(after, ".dump")) {
            if (before.count(name) == 0) {
                new_dumps.push_back(name);
            }
        }
        // Besides shruggable() calls, pgward may shrug off a failure on the
        // globals file, which by design never fails a backup (it is then left
        // out), and on the service's state file (logged, saved again at the
        // next change). The run must then be complete.
        const bool globals = contains(call, ".globals.sql");
        const bool closed_or_opened = shruggable(call);
        const bool shrugged =
            f.action != "kill" && r.exit_code == 0 &&
            (closed_or_opened || globals || (service && contains(call, ".state.json")));
        if (shrugged && globals && !closed_or_opened) {
            for (const std::string& dump : new_dumps) {
                EXPECT_EQ(after.count(dump.substr(0, dump.size() - 5) + ".globals.sql"), 0u)
                    << where << ": a globals file whose writing failed was kept";
            }
        }
        for (const std::string& dump : new_dumps) {
            EXPECT_TRUE(may_publish || f.action == "kill" || shrugged || unlink_failed(dir / dump))
                << where << ": a failed run left a new backup " << dump;
            EXPECT_EQ(after.count(manifest_of(dump)), 1u)
                << where << ": new dump without its manifest: " << dump;
            expect_verified(dir / dump, where);
        }
        if (f.action != "kill" && !may_publish && !shrugged) {
            for (const char* suffix : {".json", ".globals.sql"}) {
                for (const std::string& name : names_ending(after, suffix)) {
                    EXPECT_TRUE(before.count(name) == 1 || unlink_failed(dir / name))
                        << where << ": a failed run left a new file " << name;
                }
            }
        }
        size_t kept_old = 0;
        for (const auto& [name, bytes] : before) {
            if (name[0] == '.') {
                continue;
            }
            auto it = after.find(name);
            if (it == after.end()) {
                EXPECT_FALSE(new_dumps.empty())
                    << where << ": " << name << " was removed, but no new backup was published";
                continue;
            }
            EXPECT_TRUE(it->second == bytes) << where << ": older file changed: " << name;
            if (has_suffix(name, ".dump")) {
                ++kept_old;
            }
        }
        EXPECT_GE(kept_old + new_dumps.size(),
                  std::min(retention, names_ending(before, ".dump").size()))
            << where << ": fewer backups than retention keeps";
        if (f.action == "kill") {
            EXPECT_EQ(r.exit_code, 128 + SIGKILL) << where << ": not killed: " << r.err;
        } else if (shrugged) {
            EXPECT_EQ(new_dumps.size(), 1u) << where << ": exit 0 without a new backup";
        } else {
            EXPECT_EQ(r.exit_code, 1) << where << ": " << r.err;
            expect_one_clear_line(r, f, dir, where, service);
        }
    }

    // The failure names the errno's text and a path in the directory whose
    // call failed, in pgward's one error line (the last line of stderr) or,
    // for the service, in its level=error log line.
    static void expect_one_clear_line(const RunResult& r, const Fault& f, const fs::path& root,
                                      const std::string& where, bool service = false) {
        std::string err = r.err;
        while (!err.empty() && err.back() == '\n') {
            err.pop_back();
        }
        std::string last =
            err.substr(err.rfind('\n') == std::string::npos ? 0 : err.rfind('\n') + 1);
        if (service) {
            last.clear();
            std::istringstream lines(r.out + r.err);
            for (std::string line; std::getline(lines, line);) {
                if (contains(line, "level=error") && contains(line, std::strerror(f.errnum()))) {
                    last = line;
                    break;
                }
            }
            EXPECT_FALSE(last.empty()) << where << ": no level=error line: " << r.out << r.err;
        } else {
            EXPECT_EQ(last.rfind("pgward: ", 0), 0u) << where << ": " << r.err;
        }
        EXPECT_FALSE(contains(last, "internal error")) << where << ": " << last;
        EXPECT_TRUE(contains(last, std::strerror(f.errnum()))) << where << ": " << last;
        EXPECT_TRUE(contains(last, root.string())) << where << ": " << last;
    }

    // The next fault-free backup: succeeds, removes leftovers, keeps `retention`.
    void check_next_backup(const fs::path& dir, size_t retention, const std::string& where,
                           const std::vector<std::string>& args = {"backup"}) {
        std::vector<std::string> argv = args;
        argv.insert(argv.end(), {"--retention", std::to_string(retention)});
        if (args.front() == "prune") {
            argv = {"prune", "--keep", std::to_string(retention)};
        }
        RunResult next = run_pgward(argv, walk_env(dir));
        ASSERT_EQ(next.exit_code, 0) << where << ": the next run failed: " << next.err;
        Contents after = contents_of(dir);
        EXPECT_TRUE(names_ending(after, ".tmp").empty())
            << where << ": leftovers after the next run: "
            << testing::PrintToString(names_ending(after, ".tmp"));
        std::vector<std::string> dumps = names_ending(after, ".dump");
        EXPECT_EQ(dumps.size(), retention) << where << ": " << testing::PrintToString(dumps);
        EXPECT_EQ(names_ending(after, ".json").size(), dumps.size())
            << where << ": " << testing::PrintToString(names_ending(after, ".json"));
    }

    // Dry run, then every call with every fault of faults_at(). Returns the totals.
    WalkTotals walk(Operation& op) {
        WalkTotals totals;
        fs::path dry = dir_ / (op.name + "-dry");
        op.prepare(dry);
        fs::path trace = dir_ / (op.name + "-dry.trace");
        RunResult r = run_pgward(op.args(dry), fault_env(op.env(dry), op.root(dry), trace, 0, {}));
        EXPECT_EQ(r.exit_code, 0) << op.name << " dry run: " << r.err;
        std::vector<std::string> calls = read_lines(trace);
        totals.calls = static_cast<long>(calls.size());
        EXPECT_GT(totals.calls, 0) << op.name << ": the shim counted no calls";
        op.published_after = op.publish_point ? op.publish_point(calls, dry) : totals.calls + 1;
        EXPECT_GT(op.published_after, 0)
            << op.name << ": no publishing call in " << testing::PrintToString(calls);
        for (long n = 1; n <= totals.calls; n += walk_stride()) {
            for (const Fault& f : faults_at(n)) {
                std::string where = op.name + ", call " + std::to_string(n) + " (" +
                                    calls[static_cast<size_t>(n - 1)] + "), " + f.describe();
                fs::path work = dir_ / (op.name + "-" + std::to_string(n) + "-" + f.action +
                                        (f.persist ? "-p" : ""));
                op.prepare(work);
                fs::path case_trace = work.string() + ".trace";
                RunResult faulted = run_pgward(
                    op.args(work), fault_env(op.env(work), op.root(work), case_trace, n, f));
                ++totals.runs;
                // The call the fault hit, from this run's own trace (a run may
                // make more or fewer calls than the dry run did).
                std::string hit;
                last_trace_ = read_lines(case_trace);
                std::string last_rename;
                for (const std::string& line : last_trace_) {
                    if (has_suffix(line, " FAULT")) {
                        // A directory's fsync belongs to the rename before it.
                        hit = line + (last_rename.empty() ? "" : " (after: " + last_rename + ")");
                        break;
                    }
                    if (is_call(line, "rename") || is_call(line, "renameat2")) {
                        last_rename = line;
                    }
                }
                if (hit.empty()) {
                    EXPECT_EQ(faulted.exit_code, 0) << where << ": no fault, yet " << faulted.err;
                } else {
                    where += " [hit: " + hit + "]";
                    op.check_after(work, faulted, f, n, hit, where);
                }
                op.check_next(work, where);
                if (!HasFailure()) {
                    fs::remove_all(work);
                    fs::remove(case_trace);
                } else {
                    ADD_FAILURE() << "walk stopped at " << where << "; left in " << work;
                    return totals;
                }
            }
        }
        return totals;
    }

    // An operation on the backup directory `<work>/backups`, which starts as
    // a copy of `base`; its new backup is published for good once the
    // directory is fsynced after the dump's rename.
    Operation backup_dir_operation(const std::string& name, const fs::path& base,
                                   std::vector<std::string> args) {
        Operation op;
        op.name = name;
        op.prepare = [base](const fs::path& work) { copy_dir(base, work / "backups"); };
        op.args = [args](const fs::path&) { return args; };
        op.env = [this](const fs::path& work) { return walk_env(work / "backups"); };
        op.root = [](const fs::path& work) { return work / "backups"; };
        op.publish_point = [](const std::vector<std::string>& calls, const fs::path& work) {
            return call_after(calls, ".dump.tmp -> ", "fsync " + (work / "backups").string());
        };
        return op;
    }

    static void print_totals(const std::string& name, const WalkTotals& t) {
        std::printf("fault walk: %-28s %3ld calls, %4ld faulted runs (%s)\n", name.c_str(), t.calls,
                    t.runs, full_walk() ? "full walk" : "CI stride: every 3rd call");
    }

    // Whether the last faulted run's trace shows a failed unlink of `path`:
    // with the faults persisting, pgward could not remove what it made.
    bool unlink_failed(const fs::path& path) const {
        for (const std::string& line : last_trace_) {
            if ((is_call(line, "unlink") || is_call(line, "remove")) &&
                has_suffix(line, " " + path.string() + " FAULT")) {
                return true;
            }
        }
        return false;
    }

    fs::path tmp_;
    std::vector<std::string> last_trace_;
};

TEST_F(FaultWalkTest, BackupWithRetentionSurvivesEveryCrashPointAndEveryIoError) {
    const fs::path base = baseline(2);
    Contents before = contents_of(base);
    Operation op = backup_dir_operation("backup", base, {"backup", "--retention", "2"});
    op.check_after = [&](const fs::path& work, const RunResult& r, const Fault& f, long n,
                         const std::string& call, const std::string& where) {
        check_backup_dir(work / "backups", before, r, f, n > op.published_after, call, 2, where);
    };
    op.check_next = [&](const fs::path& work, const std::string& where) {
        check_next_backup(work / "backups", 2, where);
    };
    WalkTotals t = walk(op);
    print_totals("backup --retention 2", t);
}

TEST_F(FaultWalkTest, PruneSurvivesEveryCrashPointAndEveryIoError) {
    const fs::path base = baseline(4);
    const Contents before = contents_of(base);
    std::vector<std::string> dumps = names_ending(before, ".dump");
    ASSERT_EQ(dumps.size(), 4u);
    const std::vector<std::string> newest(dumps.end() - 2, dumps.end());
    Operation op;
    op.name = "prune";
    op.prepare = [&](const fs::path& work) { copy_dir(base, work / "backups"); };
    op.args = [](const fs::path&) { return std::vector<std::string>{"prune", "--keep", "2"}; };
    op.env = [&](const fs::path& work) { return walk_env(work / "backups"); };
    op.root = [](const fs::path& work) { return work / "backups"; };
    op.check_after = [&](const fs::path& work, const RunResult& r, const Fault& f, long,
                         const std::string& call, const std::string& where) {
        const Contents after = contents_of(work / "backups");
        for (const auto& [name, bytes] : after) {
            if (name[0] != '.') {
                EXPECT_TRUE(before.count(name) == 1 && before.at(name) == bytes)
                    << where << ": " << name << " is new or changed";
            }
        }
        for (const std::string& dump : newest) {
            EXPECT_EQ(after.count(dump), 1u) << where << ": a kept backup was removed: " << dump;
            EXPECT_EQ(after.count(manifest_of(dump)), 1u) << where << ": " << dump;
        }
        // A dump goes before its manifest: never a dump without one.
        for (const std::string& dump : names_ending(after, ".dump")) {
            EXPECT_EQ(after.count(manifest_of(dump)), 1u) << where << ": " << dump;
        }
        const bool shrugged = r.exit_code == 0 && shruggable(call);
        if (f.action == "kill") {
            EXPECT_EQ(r.exit_code, 128 + SIGKILL) << where << ": " << r.err;
        } else if (shrugged) {
            EXPECT_EQ(names_ending(after, ".dump").size(), 2u) << where;
        } else {
            EXPECT_EQ(r.exit_code, 1) << where << ": " << r.err;
            expect_one_clear_line(r, f, work / "backups", where);
        }
    };
    op.check_next = [&](const fs::path& work, const std::string& where) {
        check_next_backup(work / "backups", 2, where, {"prune"});
    };
    print_totals("prune --keep 2", walk(op));
}

TEST_F(FaultWalkTest, OneServiceCycleSurvivesEveryCrashPointAndEveryIoError) {
    const fs::path base = baseline(2);
    const Contents before = contents_of(base);
    Operation op = backup_dir_operation("run", base, {"run", "--once", "--retention", "2"});
    op.check_after = [&](const fs::path& work, const RunResult& r, const Fault& f, long n,
                         const std::string& call, const std::string& where) {
        check_backup_dir(work / "backups", before, r, f, n > op.published_after, call, 2, where,
                         true);
        // The state file is replaced whole: the old one or the new one.
        const fs::path state = work / "backups" / ".pgward-walk.state.json";
        if (fs::exists(state)) {
            EXPECT_TRUE(json::accept(slurp(state))) << where << ": torn state file";
        }
    };
    op.check_next = [&](const fs::path& work, const std::string& where) {
        check_next_backup(work / "backups", 2, where, {"run", "--once"});
    };
    print_totals("run --once (one cycle)", walk(op));
}

TEST_F(FaultWalkTest, RestoresSafetyDumpSurvivesEveryCrashPointAndEveryIoError) {
    PgCluster& c = PgCluster::instance();
    c.create_database("walkt");
    const fs::path base = baseline(1);
    ASSERT_EQ(
        run_pgward({"restore", "latest", "--dbname", "walkt", "--from-db", "walk"}, walk_env(base))
            .exit_code,
        0);
    const Contents before = contents_of(base);
    const std::string marked = "SELECT count(*) FROM accounts WHERE owner = 'marker'";
    Operation op = backup_dir_operation("restore", base,
                                        {"restore", "latest", "--dbname", "walkt", "--from-db",
                                         "walk", "--clean", "--if-exists", "--yes"});
    op.prepare = [&](const fs::path& work) {
        copy_dir(base, work / "backups");
        c.exec("walkt", "UPDATE accounts SET owner = 'marker'");
    };
    op.check_after = [&](const fs::path& work, const RunResult& r, const Fault& f, long n,
                         const std::string& call, const std::string& where) {
        check_backup_dir(work / "backups", before, r, f, n > op.published_after, call, 1, where);
        // The target is replaced only after its safety dump is published,
        // and every file the restore touches comes before pg_restore: a
        // failed call leaves the target as it was.
        const std::string left = c.query_value("walkt", marked);
        if (r.exit_code == 0) {
            EXPECT_EQ(left, "0") << where << ": restored, yet the marked rows are still there";
        } else if (f.action != "kill") {
            EXPECT_EQ(left, "300") << where << ": a failed restore changed the target";
        }
    };
    op.check_next = [&](const fs::path& work, const std::string& where) {
        c.exec("walkt", "UPDATE accounts SET owner = 'marker'");
        RunResult next = run_pgward(op.args(work), op.env(work));
        ASSERT_EQ(next.exit_code, 0) << where << ": the next restore failed: " << next.err;
        EXPECT_EQ(c.query_value("walkt", marked), "0") << where;
        const Contents after = contents_of(work / "backups");
        EXPECT_TRUE(names_ending(after, ".tmp").empty()) << where;
        for (const std::string& dump : names_ending(after, ".dump")) {
            EXPECT_EQ(after.count(manifest_of(dump)), 1u) << where << ": " << dump;
        }
    };
    print_totals("restore's safety dump", walk(op));
}

TEST_F(FaultWalkTest, TheDrillsReportSurvivesEveryCrashPointAndEveryIoError) {
    PgCluster& c = PgCluster::instance();
    c.create_database("walkq");
    for (const auto& name : {"0001_initial.sql", "0002_quizzes.sql", "0003_answers.sql"}) {
        c.exec("walkq", slurp(kMigrations / name));
    }
    const fs::path old_report = dir_ / "old-report.json";
    write_text(old_report, "{\"restore_success\": true}\n", 0600);
    Operation op;
    op.name = "drill";
    op.prepare = [&](const fs::path& work) {
        fs::create_directories(work / "reports");
        fs::copy_file(old_report, work / "reports" / "restore_drill_result_20200101T000000Z.json");
    };
    op.args = [](const fs::path& work) {
        return std::vector<std::string>{
            "drill",       "--migrations", kMigrations.string(),       "--drill-db",
            "walkq_drill", "--report-dir", (work / "reports").string()};
    };
    op.env = [&](const fs::path& work) {
        Env e = walk_env(work / "backups");
        for (auto& [k, v] : e) {
            if (k == "POSTGRES_DB") {
                v = "walkq";
            }
        }
        return e;
    };
    op.root = [](const fs::path& work) { return work / "reports"; };
    op.check_after = [&](const fs::path& work, const RunResult& r, const Fault& f, long,
                         const std::string& call, const std::string& where) {
        const Contents after = contents_of(work / "reports");
        EXPECT_EQ(after.at("restore_drill_result_20200101T000000Z.json"), slurp(old_report))
            << where;
        std::vector<std::string> reports;
        for (const std::string& name : names_ending(after, ".json")) {
            if (name != "restore_drill_result_20200101T000000Z.json") {
                reports.push_back(name);
            }
        }
        for (const std::string& name : reports) {
            // A report is whole or absent.
            EXPECT_TRUE(json::accept(after.at(name))) << where << ": torn " << name;
        }
        const bool shrugged = r.exit_code == 0 && shruggable(call);
        if (f.action == "kill") {
            EXPECT_EQ(r.exit_code, 128 + SIGKILL) << where << ": " << r.err;
        } else if (shrugged) {
            EXPECT_EQ(reports.size(), 1u) << where;
        } else {
            EXPECT_EQ(r.exit_code, 1) << where << ": " << r.err;
            EXPECT_TRUE(reports.empty() || unlink_failed(work / "reports" / reports.front()))
                << where << ": a failed drill left a report";
            expect_one_clear_line(r, f, work / "reports", where);
        }
    };
    op.check_next = [&](const fs::path& work, const std::string& where) {
        RunResult next = run_pgward(op.args(work), op.env(work));
        ASSERT_EQ(next.exit_code, 0) << where << ": the next drill failed: " << next.err;
        EXPECT_TRUE(names_ending(contents_of(work / "reports"), ".tmp").empty()) << where;
    };
    print_totals("drill's report", walk(op));
}

// One system call of pgward's own process, from `strace -f -y` output.
struct Syscall {
    std::string name;
    std::vector<std::string> paths;  // the quoted paths and the <path> of fds, in order
    bool ok = false;
    std::string line;
};

Syscall parse_syscall(const std::string& line) {
    Syscall call;
    call.line = line;
    // "<pid> <name>(": strace pads a short pid with more spaces.
    size_t start = line.find_first_not_of(' ', line.find(' '));
    size_t paren = line.find('(', start);
    if (start == std::string::npos || paren == std::string::npos) {
        return call;
    }
    call.name = line.substr(start, paren - start);
    // The arguments up to the first string of data (write's), paths only.
    std::string args = line.substr(paren + 1);
    if (call.name == "write") {
        args = args.substr(0, args.find(','));
    }
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == '<' || args[i] == '"') {
            char close = args[i] == '<' ? '>' : '"';
            size_t end = args.find(close, i + 1);
            if (end == std::string::npos) {
                break;
            }
            std::string text = args.substr(i + 1, end - i - 1);
            // AT_FDCWD</cwd> is the working directory, not an argument.
            const bool cwd = args[i] == '<' && i >= 8 && args.compare(i - 8, 8, "AT_FDCWD") == 0;
            if (!cwd && !text.empty() && text[0] == '/') {
                call.paths.push_back(text);
            }
            i = end;
        }
    }
    size_t eq = line.rfind(" = ");
    call.ok = eq != std::string::npos && line.compare(eq + 3, 2, "-1") != 0;
    return call;
}

// The write-order rules of docs/reliability.md, over one run's calls in `dir`.
// Returns the first violation with the calls that show it, or "".
std::string audit_write_order(const std::vector<Syscall>& calls, const std::string& dir) {
    auto around = [&](size_t i) {
        std::string out;
        for (size_t j = i > 6 ? i - 6 : 0; j <= i && j < calls.size(); ++j) {
            out += "\n    " + calls[j].line.substr(0, 240);
        }
        return out;
    };
    std::map<std::string, size_t> last_write;  // temp path -> index
    std::map<std::string, size_t> last_fsync;
    // A publish whose directory is not yet fsynced (not a std::optional: GCC
    // 12 at -O1 takes its value for uninitialized).
    constexpr size_t kNone = SIZE_MAX;
    size_t undurable_rename = kNone;
    bool manifest_published = false;
    for (size_t i = 0; i < calls.size(); ++i) {
        const Syscall& c = calls[i];
        if (!c.ok || c.paths.empty() || c.paths[0].rfind(dir, 0) != 0) {
            continue;
        }
        const std::string& path = c.paths[0];
        if (c.name == "write") {
            last_write[path] = i;
        } else if (c.name == "fsync" || c.name == "fdatasync") {
            last_fsync[path] = i;
            if (path == dir) {
                undurable_rename = kNone;
            }
        } else if (c.name.rfind("rename", 0) == 0 && c.paths.size() == 2 &&
                   has_suffix(path, ".tmp")) {
            auto w = last_write.find(path);
            auto f = last_fsync.find(path);
            if (w != last_write.end() && (f == last_fsync.end() || f->second < w->second)) {
                return "renamed into place without an fsync after its last write:" + around(i);
            }
            if (undurable_rename != kNone) {
                return "published before the previous publish's directory fsync:" + around(i);
            }
            const std::string& to = c.paths[1];
            if (has_suffix(to, ".json") && to.find("/.pgward-") == std::string::npos) {
                manifest_published = true;
            }
            if (has_suffix(to, ".dump") && !manifest_published) {
                return "a dump published before its manifest:" + around(i);
            }
            undurable_rename = i;
        } else if (c.name == "unlink" || c.name == "unlinkat") {
            if (undurable_rename != kNone && !has_suffix(path, ".tmp")) {
                return "a file unlinked before the new backup's directory fsync:" + around(i);
            }
        }
    }
    if (undurable_rename != kNone) {
        return "a publish never followed by the directory's fsync:" + around(undurable_rename);
    }
    return "";
}

TEST_F(FaultWalkTest, TwentyBackupsAndTwentyPrunesPublishInTheDocumentedOrder) {
    const fs::path strace = "/usr/bin/strace";
    if (!fs::exists(strace)) {
        GTEST_SKIP() << "strace is not installed (scripts/install-deps.sh installs it)";
    }
    const fs::path dir = dir_ / "backups";
    fs::create_directories(dir);
    long published = 0;
    long unlinked = 0;
    for (int i = 0; i < 40; ++i) {
        const bool prune = i % 2 == 1;
        const fs::path log = dir_ / ("strace-" + std::to_string(i) + ".log");
        std::vector<std::string> args = {strace.string(),
                                         "-f",
                                         "-y",
                                         "-qq",
                                         "-s",
                                         "4096",
                                         "-o",
                                         log.string(),
                                         "-e",
                                         "trace=openat,write,fsync,fdatasync,close,rename,"
                                         "renameat,renameat2,unlink,unlinkat",
                                         PGWARD_BINARY};
        if (prune) {
            args.insert(args.end(), {"prune", "--keep", "2"});
        } else {
            args.insert(args.end(), {"backup", "--retention", "4"});
        }
        Command command = pgward_command({}, walk_env(dir));
        command.argv = args;
        CapturedRun run = run_captured(command);
        ASSERT_TRUE(run.status.ok()) << run.err;
        // pgward's own process: the first pid in the log (its children and
        // threads have others; its files are written by the main thread).
        std::vector<std::string> lines = read_lines(log);
        ASSERT_FALSE(lines.empty());
        const std::string pid = lines.front().substr(0, lines.front().find(' ') + 1);
        std::vector<Syscall> calls;
        for (const std::string& line : lines) {
            if (line.rfind(pid, 0) == 0) {
                calls.push_back(parse_syscall(line));
                if (calls.back().ok && calls.back().name.rfind("rename", 0) == 0 &&
                    has_suffix(line, " = 0") && contains(line, dir.string())) {
                    ++published;
                }
                if (calls.back().ok && calls.back().name.rfind("unlink", 0) == 0 &&
                    contains(line, dir.string())) {
                    ++unlinked;
                }
            }
        }
        std::string violation = audit_write_order(calls, dir.string());
        EXPECT_EQ(violation, "") << (prune ? "prune " : "backup ") << i / 2 + 1 << ": "
                                 << violation;
        if (HasFailure()) {
            return;
        }
        fs::remove(log);
    }
    std::printf(
        "write-order audit: 20 backups and 20 prunes, %ld renames into place and %ld "
        "unlinks in order\n",
        published, unlinked);
    EXPECT_GE(published, 60);
    EXPECT_GE(unlinked, 30);
}

// The auditor itself, on hand-made strace lines: it passes the documented
// order and names each kind of violation.
TEST(WriteOrderAuditor, PassesTheDocumentedOrderAndNamesEachViolation) {
    const std::string d = "/b";
    auto calls = [](std::vector<std::string> lines) {
        std::vector<Syscall> out;
        for (const std::string& line : lines) {
            out.push_back(parse_syscall("4569  " + line));  // strace pads a short pid
        }
        return out;
    };
    const std::vector<std::string> manifest = {
        R"(write(4</b/x.json.tmp>, "{}", 2) = 2)", R"(fsync(4</b/x.json.tmp>) = 0)",
        R"(renameat2(AT_FDCWD</root>, "/b/x.json.tmp", AT_FDCWD</root>, "/b/x.json", RENAME_NOREPLACE) = 0)",
        R"(fsync(5</b>) = 0)"};
    std::vector<std::string> good = manifest;
    good.insert(
        good.end(),
        {R"(write(3</b/x.dump.tmp>, "PGDMP", 5) = 5)", R"(fsync(3</b/x.dump.tmp>) = 0)",
         R"(renameat2(AT_FDCWD</root>, "/b/x.dump.tmp", AT_FDCWD</root>, "/b/x.dump", RENAME_NOREPLACE) = 0)",
         R"(fsync(5</b>) = 0)", R"(unlink("/b/old.dump") = 0)"});
    EXPECT_EQ(audit_write_order(calls(good), d), "");

    std::vector<std::string> no_fsync = good;
    no_fsync.erase(no_fsync.begin() + 5);  // the dump's fsync
    EXPECT_TRUE(contains(audit_write_order(calls(no_fsync), d), "without an fsync"));

    std::vector<std::string> early_unlink = good;
    std::swap(early_unlink[7], early_unlink[8]);  // unlink before the directory's fsync
    EXPECT_TRUE(contains(audit_write_order(calls(early_unlink), d), "unlinked before"));

    std::vector<std::string> dump_first(good.begin() + 4, good.end());
    EXPECT_TRUE(contains(audit_write_order(calls(dump_first), d), "before its manifest"));

    std::vector<std::string> no_dir_fsync = manifest;
    no_dir_fsync.pop_back();
    EXPECT_TRUE(contains(audit_write_order(calls(no_dir_fsync), d), "never followed"));
}

}  // namespace
}  // namespace pgward::test
