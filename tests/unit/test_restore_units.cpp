// Issue 18's pure pieces: safety dumps' names, the manifest's kind and server,
// and the sandbox's server user.
#include <gtest/gtest.h>

#include "domain/manifest.hpp"
#include "domain/naming.hpp"
#include "pg/sandbox.hpp"
#include "util/error.hpp"

namespace pgward {
namespace {

TEST(SafetyDumpNames, AreToldApartFromBackupsByName) {
    BackupId backup{"app.pre-restore", *parse_compact_utc("20261202T101500Z")};
    BackupId safety{"app", *parse_compact_utc("20261202T101500Z"), true};
    EXPECT_EQ(safety.dump_file(), "app_20261202T101500Z.pre-restore.dump");
    EXPECT_EQ(safety.manifest_file(), "app_20261202T101500Z.pre-restore.json");
    // A database whose own name ends in .pre-restore is still a backup.
    EXPECT_EQ(backup.dump_file(), "app.pre-restore_20261202T101500Z.dump");
    for (const BackupId& id : {backup, safety}) {
        for (const std::string& name :
             {id.dump_file(), id.manifest_file(), id.dump_file() + ".tmp"}) {
            auto parsed = parse_backup_file_name(name);
            ASSERT_TRUE(parsed) << name;
            EXPECT_EQ(parsed->id, id) << name;
        }
    }
    EXPECT_FALSE(parse_backup_file_name("app_20261202T101500Z.pre-restore"));
    EXPECT_FALSE(parse_backup_file_name("app_20261202T101500Z.pre-restore.pre-restore.dump"));
}

TEST(SafetyDumpNames, TheManifestRecordsKindServerAndWhatWasRestored) {
    Manifest m;
    m.database = "app";
    m.kind = kKindPreRestore;
    m.restoring = "app_20261201T030000Z.dump";
    m.system_identifier = "7714711677237641643";
    m.file = "app_20261202T101500Z.pre-restore.dump";
    Manifest back = manifest_from_json(nlohmann::json::parse(manifest_to_json(m).dump()), "m");
    EXPECT_EQ(back, m);
    // A manifest from before the fields: a backup from an unknown server.
    nlohmann::json old = manifest_to_json(Manifest{});
    old.erase("kind");
    old.erase("system_identifier");
    Manifest legacy = manifest_from_json(old, "old");
    EXPECT_EQ(legacy.kind, kKindBackup);
    EXPECT_FALSE(legacy.system_identifier);
}

TEST(SandboxUser, IsPostgresAndNeverNobody) {
    EXPECT_EQ(pg::sandbox_server_user([](const std::string& name) { return name == "postgres"; }),
              "postgres");
    try {
        pg::sandbox_server_user([](const std::string&) { return false; });
        FAIL() << "a host without a postgres user must be refused, not given nobody";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("has none"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace pgward
