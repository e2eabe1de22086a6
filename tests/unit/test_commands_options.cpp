#include <gtest/gtest.h>

#include <cstdlib>

#include "commands/options.hpp"
#include "commands/service_options.hpp"
#include "pg/tools.hpp"
#include "util/error.hpp"

namespace pgward::commands {
namespace {

class ScopedEnv {
  public:
    ScopedEnv(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) {
            old_ = old;
        }
        if (value == nullptr) {
            ::unsetenv(name);
        } else {
            ::setenv(name, value, 1);
        }
    }
    ~ScopedEnv() {
        if (old_) {
            ::setenv(name_, old_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }

  private:
    const char* name_;
    std::optional<std::string> old_;
};

struct Parsed {
    CLI::App app;
    OptionTable table;
};

void parse(Parsed& p, std::vector<std::string> args) {
    p.app.set_help_flag("--help");
    add_connection_options(p.table, p.app);
    p.table.add(p.app, "retention", "--retention", "POSTGRES_BACKUP_RETENTION_COUNT", "");
    std::vector<const char*> argv = {"pgward"};
    for (const auto& a : args) {
        argv.push_back(a.c_str());
    }
    p.app.parse(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
}

TEST(OptionPrecedence, FlagBeatsVariableBeatsNothing) {
    ScopedEnv env("POSTGRES_BACKUP_RETENTION_COUNT", "5");
    {
        Parsed p;
        parse(p, {"--retention", "3"});
        auto s = p.table.get("retention");
        ASSERT_TRUE(s);
        EXPECT_EQ(s->value, "3");
        EXPECT_EQ(s->origin, "--retention");
        EXPECT_TRUE(s->from_flag);
    }
    {
        Parsed p;
        parse(p, {});
        auto s = p.table.get("retention");
        ASSERT_TRUE(s);
        EXPECT_EQ(s->value, "5");
        EXPECT_EQ(s->origin, "POSTGRES_BACKUP_RETENTION_COUNT");
    }
}

TEST(OptionPrecedence, EmptyVariableCountsAsUnset) {
    ScopedEnv env("POSTGRES_BACKUP_RETENTION_COUNT", "");
    Parsed p;
    parse(p, {});
    EXPECT_FALSE(p.table.get("retention"));
}

TEST(OptionPrecedence, ConnectionSettingsLeaveTheRestToLibpq) {
    ScopedEnv host("POSTGRES_HOST", "db.internal");
    ScopedEnv port("POSTGRES_PORT", nullptr);
    ScopedEnv user("POSTGRES_USER", "quiz");
    ScopedEnv db("POSTGRES_DB", nullptr);
    ScopedEnv pass("POSTGRES_PASSWORD", "s3cret");
    ScopedEnv file("POSTGRES_PASSWORD_FILE", nullptr);
    Parsed p;
    parse(p, {"-U", "admin"});
    pg::ConnectionOptions c = p.table.connection();
    ASSERT_TRUE(c.host);
    EXPECT_EQ(c.host->value, "db.internal");
    EXPECT_FALSE(c.host->from_flag);
    EXPECT_EQ(c.user->value, "admin");
    EXPECT_TRUE(c.user->from_flag);
    EXPECT_FALSE(c.port);  // PGPORT / libpq's default decide
    EXPECT_FALSE(c.dbname);
    EXPECT_EQ(c.password, "s3cret");
}

TEST(OptionPrecedence, PasswordFileIsReadAndBothAtOnceIsAnError) {
    std::string path = ::testing::TempDir() + "/pgward-pass";
    FILE* f = std::fopen(path.c_str(), "w");
    std::fputs("from-file\n", f);
    std::fclose(f);
    ScopedEnv pass("POSTGRES_PASSWORD", nullptr);
    ScopedEnv file("POSTGRES_PASSWORD_FILE", path.c_str());
    {
        Parsed p;
        parse(p, {});
        EXPECT_EQ(p.table.connection().password, "from-file");
    }
    ScopedEnv both("POSTGRES_PASSWORD", "x");
    Parsed p;
    parse(p, {});
    try {
        p.table.connection();
        FAIL() << "expected a usage error";
    } catch (const Error& e) {
        EXPECT_EQ(e.kind(), ErrorKind::Usage);
        EXPECT_NE(std::string(e.what()).find("POSTGRES_PASSWORD_FILE"), std::string::npos);
    }
}

TEST(NumberParsing, RejectsWithTheOriginNamed) {
    for (const char* bad : {"abc", "-1", "0", "1.5", " 3", "3 ", "", "99999999999999999999"}) {
        try {
            parse_number(Setting{bad, "POSTGRES_BACKUP_RETENTION_COUNT", false}, 1, 1000);
            FAIL() << bad;
        } catch (const Error& e) {
            EXPECT_EQ(e.kind(), ErrorKind::Usage);
            EXPECT_NE(std::string(e.what()).find("POSTGRES_BACKUP_RETENTION_COUNT"),
                      std::string::npos);
        }
    }
    EXPECT_EQ(parse_number(Setting{"7", "--retention", true}, 1, 1000), 7u);
    EXPECT_EQ(parse_number(Setting{"1000", "--retention", true}, 1, 1000), 1000u);
}

TEST(NumberParsing, PortRangeIsChecked) {
    ScopedEnv port("POSTGRES_PORT", "70000");
    Parsed p;
    parse(p, {});
    EXPECT_THROW(p.table.connection(), Error);
}

TEST(ToolVersion, ParsesWhatPgToolsPrint) {
    auto v = pg::parse_tool_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n");
    ASSERT_TRUE(v);
    EXPECT_EQ(v->major(), 15);
    EXPECT_EQ(v->text(), "15.18");
    auto beta = pg::parse_tool_version("pg_dump (PostgreSQL) 18beta1");
    ASSERT_TRUE(beta);
    EXPECT_EQ(beta->major(), 18);
    auto old = pg::parse_tool_version("pg_dump (PostgreSQL) 9.6.24");
    ASSERT_TRUE(old);
    EXPECT_EQ(old->major_text(), "9.6");
    EXPECT_LT(old->major_key(), pg::Version{150000}.major_key());
    EXPECT_LT(pg::Version{90500}.major_key(), old->major_key());
    EXPECT_FALSE(pg::parse_tool_version("something else 15.1"));
    EXPECT_EQ(pg::Version{150018}.major(), 15);
    EXPECT_EQ(pg::Version{170002}.major_text(), "17");
}

}  // namespace
}  // namespace pgward::commands

namespace pgward::commands {
namespace {

// A switch: alone it is true; with a value or by its variable it is read as
// any boolean, and a bad value names where it came from.
TEST(Switch, AloneIsTrueAndAValueOrAVariableIsRead) {
    auto parse = [](std::vector<std::string> args) {
        CLI::App app;
        OptionTable table;
        add_switch(table, app, "wal", "--wal", "PGWARD_TEST_SWITCH", "stream");
        std::vector<std::string> reversed(args.rbegin(), args.rend());
        app.parse(reversed);
        auto setting = table.get("wal");
        return setting ? std::optional<bool>(parse_bool(*setting)) : std::nullopt;
    };
    ScopedEnv unset("PGWARD_TEST_SWITCH", nullptr);
    EXPECT_EQ(parse({"--wal"}), true);
    EXPECT_EQ(parse({"--wal", "false"}), false);
    EXPECT_EQ(parse({}), std::nullopt);
    {
        ScopedEnv set("PGWARD_TEST_SWITCH", "yes");
        EXPECT_EQ(parse({}), true);
    }
    {
        ScopedEnv bad("PGWARD_TEST_SWITCH", "maybe");
        EXPECT_THROW(parse({}), Error);
    }
}

}  // namespace
}  // namespace pgward::commands
