// Issue 18 against a real server: no connection secret on any child's
// command line, pg_dumpall's error text bounded, SQL literals quoted by libpq
// for the connection's encoding, file-system errors named as such.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"
#include "harness/scratch.hpp"
#include "pg/connection.hpp"
#include "util/error.hpp"

namespace pgward::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSecret = "SOMESECRET";

std::vector<std::string> lines_of(const fs::path& path) {
    std::vector<std::string> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        out.push_back(line);
    }
    return out;
}

class EdgesTest : public ScratchDirTest {
  protected:
    EdgesTest() : ScratchDirTest("edges") {}

    static void SetUpTestSuite() {
        PgCluster& c = PgCluster::instance();
        c.create_database("edges_app");
        c.exec("edges_app", "CREATE TABLE t(id int); INSERT INTO t SELECT generate_series(1, 10)");
    }

    // A conninfo for `db` that carries the password and an sslpassword
    // (harmless: sslmode=disable), as an operator's POSTGRES_DB may.
    static std::string secret_conninfo(const std::string& db) {
        return "dbname=" + pg::quote_conninfo_value(db) +
               " sslmode=disable sslpassword=" + kSecret +
               " password=" + pg::quote_conninfo_value(PgCluster::instance().password());
    }

    Env secret_env(const std::string& db) const {
        Env env;
        for (auto& [name, value] : pg_env(db, dir_ / "backups")) {
            if (name == "POSTGRES_PASSWORD") {
                continue;
            }
            env.emplace_back(name, name == "POSTGRES_DB" ? secret_conninfo(db) : value);
        }
        return env;
    }

    // A wrapper for `tool` that appends its own /proc/PID/cmdline and what
    // it finds at PGSERVICEFILE (path, modes of the file and its directory,
    // content) to record/<tool>.*, then execs the real one.
    void wrap(const fs::path& bin, const std::string& tool) const {
        const fs::path real = PgCluster::instance().client_bin_dir() / tool;
        const fs::path record = dir_ / "record";
        fs::create_directories(record);
        fs::remove(bin / tool);
        write_text(bin / tool,
                   "#!/bin/sh\n"
                   "REAL='" +
                       real.string() +
                       "'\n"
                       "if [ \"$1\" = --version ]; then exec \"$REAL\" --version; fi\n" +
                       recorder(record, tool) + "exec \"$REAL\" \"$@\"\n",
                   0755);
    }

    static std::string recorder(const fs::path& record, const std::string& tool) {
        const std::string base = (record / tool).string();
        return "{ tr '\\000' ' ' < /proc/$$/cmdline; echo; } >> '" + base +
               ".cmdline'\n"
               "if [ -n \"$PGSERVICEFILE\" ]; then\n"
               "  { echo \"$PGSERVICEFILE\"; stat -c %a \"$PGSERVICEFILE\"; "
               "stat -c %a \"$(dirname \"$PGSERVICEFILE\")\"; cat \"$PGSERVICEFILE\"; } > '" +
               base +
               ".service' 2>&1\n"
               "fi\n";
    }

    // Checks what the wrapper of `tool` recorded: no secret in its command
    // lines; the secret in a 0600 file in a 0700 directory, both gone now.
    void expect_no_secret_on_command_line(const std::string& tool) const {
        const fs::path record = dir_ / "record";
        std::string cmdlines = slurp(record / (tool + ".cmdline"));
        ASSERT_FALSE(cmdlines.empty()) << tool << " never ran";
        EXPECT_FALSE(contains(cmdlines, kSecret)) << tool << ": " << cmdlines;
        EXPECT_FALSE(contains(cmdlines, PgCluster::instance().password())) << tool;
        std::vector<std::string> service = lines_of(record / (tool + ".service"));
        ASSERT_GE(service.size(), 3U) << tool << " got no PGSERVICEFILE: " << cmdlines;
        const fs::path file = service[0];
        EXPECT_EQ(service[1], "600") << tool << ": " << file;
        EXPECT_EQ(service[2], "700") << tool << ": " << file.parent_path();
        std::string content = slurp(record / (tool + ".service"));
        EXPECT_TRUE(contains(content, std::string("sslpassword=") + kSecret)) << content;
        EXPECT_FALSE(fs::exists(file)) << tool << ": the secrets file outlived pgward: " << file;
        EXPECT_FALSE(fs::exists(file.parent_path())) << file.parent_path();
    }
};

TEST_F(EdgesTest, NoConnectionSecretOnAChildsCommandLine) {
    fs::path bin = fake_pg_dump("wrapped-bin", "exit 99");
    for (const char* tool : {"pg_dump", "pg_dumpall", "pg_restore"}) {
        wrap(bin, tool);
    }
    RunResult backup = run_pgward({"backup", "--pg-bin", bin.string()}, secret_env("edges_app"));
    ASSERT_EQ(backup.exit_code, 0) << backup.err;
    EXPECT_FALSE(contains(backup.err, kSecret));
    expect_no_secret_on_command_line("pg_dump");
    expect_no_secret_on_command_line("pg_dumpall");
    auto dump = find_file(dir_ / "backups", ".dump");
    ASSERT_TRUE(dump.has_value());

    PgCluster::instance().create_database("edges_target");
    fs::remove(dir_ / "record" / "pg_restore.cmdline");
    RunResult restore = run_pgward({"restore", dump->string(), "--dbname",
                                    secret_conninfo("edges_target"), "--pg-bin", bin.string()},
                                   secret_env("edges_app"));
    ASSERT_EQ(restore.exit_code, 0) << restore.err;
    EXPECT_FALSE(contains(restore.err, kSecret));
    expect_no_secret_on_command_line("pg_restore");
    EXPECT_EQ(PgCluster::instance().query_value("edges_target", "SELECT count(*) FROM t"), "10");
    PgCluster::instance().drop_database("edges_target");
}

TEST_F(EdgesTest, PgDumpallsErrorTextIsKeptToItsHeadAndTail) {
    // A pg_dumpall that fails with 2 MB of error lines.
    fs::path bin = fake_pg_dump("dumpall-bin", "exec \"$REAL\" \"$@\"");
    fs::remove(bin / "pg_dumpall");
    const fs::path real = PgCluster::instance().client_bin_dir() / "pg_dumpall";
    write_text(bin / "pg_dumpall",
               "#!/bin/sh\nif [ \"$1\" = --version ]; then exec '" + real.string() +
                   "' --version; fi\n"
                   "i=0; while [ $i -lt 20000 ]; do echo \"pg_dumpall: error: line $i "
                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                   "\" >&2; i=$((i+1)); done\nexit 1\n",
               0755);
    RunResult r =
        run_pgward({"backup", "--pg-bin", bin.string()}, pg_env("edges_app", dir_ / "backups"));
    ASSERT_EQ(r.exit_code, 0) << r.err.substr(0, 2000);
    std::string warning;
    std::istringstream lines(r.err);
    for (std::string line; std::getline(lines, line);) {
        if (contains(line, "globals not written")) {
            warning = line;
        }
    }
    ASSERT_FALSE(warning.empty()) << r.err.substr(0, 2000);
    EXPECT_LT(warning.size(), size_t{140} << 10) << "the whole error text was kept";
    EXPECT_TRUE(contains(warning, "bytes elided")) << warning.substr(0, 300);
    EXPECT_TRUE(contains(warning, "line 0 ")) << warning.substr(0, 300);
    EXPECT_TRUE(contains(warning, "line 19999 ")) << warning.substr(warning.size() - 300);
}

TEST_F(EdgesTest, SqlLiteralsAreQuotedByLibpqForTheConnectionsEncoding) {
    // In SJIS, 0x95 0x5C is one character whose second byte is a backslash.
    pg::ConnectionOptions options = PgCluster::instance().options("postgres");
    options.dbname->value += " client_encoding=SJIS";
    pg::Connection conn = pg::Connection::open(options, "pgward tests");
    const std::string values[] = {"it's a \\ back'slash\\", std::string("\x95\x5C") + "'x\\"};
    for (const char* conforming : {"on", "off"}) {
        conn.exec(std::string("SET standard_conforming_strings = ") + conforming);
        for (const std::string& value : values) {
            std::optional<std::string> back;
            try {
                back = conn.query_value("SELECT " + conn.escape_literal(value));
            } catch (const Error& e) {
                ADD_FAILURE() << e.what();
            }
            EXPECT_EQ(back, value) << "standard_conforming_strings=" << conforming;
        }
    }
    // An identifier with a quote, a double quote and a backslash.
    const std::string table = "ta\"b'le\\";
    conn.exec("CREATE TEMP TABLE " + conn.escape_identifier(table) + "(v text)");
    EXPECT_EQ(conn.query_value("SELECT count(*) FROM " + conn.escape_identifier(table)), "0");
}

TEST_F(EdgesTest, AFilesystemErrorNamesItsPathNotAnInternalError) {
    // A name longer than the file system allows: stat() fails (ENAMETOOLONG).
    const std::string name = std::string(300, 'n') + ".dump";
    RunResult r = run_pgward({"verify", name, "--dir", dir_.string()});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_FALSE(contains(r.err, "internal error")) << r.err;
    EXPECT_TRUE(contains(r.err, "pgward: cannot access " + name + ": File name too long")) << r.err;
}

}  // namespace
}  // namespace pgward::test
