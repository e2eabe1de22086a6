#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "domain/manifest.hpp"
#include "support/temp_dir.hpp"
#include "util/error.hpp"

namespace pgward {
namespace {

Manifest sample() {
    Manifest m;
    m.database = "quiz arena";
    m.file = "quiz%20arena_20260224T031500Z.dump";
    m.size_bytes = 1234;
    m.sha256 = std::string(64, 'a');
    m.started_at = "2026-02-24T03:15:00Z";
    m.finished_at = "2026-02-24T03:15:02Z";
    m.duration_seconds = 2.5;
    m.server_version = "15.18";
    m.pg_dump_version = "pg_dump (PostgreSQL) 15.18";
    m.schema_version = "a1b2";
    m.pgward_version = "0.1.0";
    m.tables = {{"public", "users", 3, std::nullopt, std::nullopt},
                {"Other", "Mixed \"Q\"", 0, "fp1:00", std::nullopt},
                {"public", "spatial_ref_sys", 1, "fp1:01", "postgis"}};
    m.large_objects = 2;
    m.large_objects_fingerprint = "lo1:0123456789abcdef0123456789abcdef";
    m.sequences_behind = std::vector<std::string>{"public.s at 1 behind public.t.id max 9"};
    m.invalid_indexes = std::vector<std::string>{"public.broken_idx"};
    m.restore_point = Manifest::RestorePoint{"pgward quiz_20261204T030000Z", "0/5A000090",
                                             std::nullopt, std::nullopt};
    return m;
}

TEST(Manifest, RoundTripsThroughJson) {
    Manifest m = sample();
    auto doc = manifest_to_json(m);
    EXPECT_EQ(doc["format"], "pgward-manifest/1");
    Manifest back = manifest_from_json(nlohmann::json::parse(doc.dump()), "test");
    EXPECT_EQ(back, m);
    EXPECT_EQ(doc["restore_point"]["lsn"], "0/5A000090");
    // Older manifests have no restore point.
    doc.erase("restore_point");
    EXPECT_FALSE(manifest_from_json(nlohmann::json::parse(doc.dump()), "test").restore_point);
}

TEST(Manifest, HasTheSpecFields) {
    auto doc = manifest_to_json(sample());
    for (const char* field :
         {"format", "database", "file", "size_bytes", "sha256", "started_at", "finished_at",
          "duration_seconds", "server_version", "pg_dump_version", "schema_version", "tables"}) {
        EXPECT_TRUE(doc.contains(field)) << field;
    }
    for (const char* field : {"schema", "name", "rows", "fingerprint"}) {
        EXPECT_TRUE(doc["tables"][0].contains(field)) << field;
    }
}

TEST(Manifest, RejectsOtherDocuments) {
    EXPECT_THROW(manifest_from_json(nlohmann::json::parse(R"({"format":"x"})"), "t"), Error);
    auto doc = nlohmann::json::parse(manifest_to_json(sample()).dump());
    doc.erase("sha256");
    EXPECT_THROW(manifest_from_json(doc, "t"), Error);
    doc = nlohmann::json::parse(manifest_to_json(sample()).dump());
    doc["size_bytes"] = "big";
    EXPECT_THROW(manifest_from_json(doc, "t"), Error);
}

// A manifest file in a temp dir, removed afterwards.
class ManifestFile : public test::TempDirTest {
  protected:
    std::filesystem::path write(const std::string& text) {
        std::filesystem::path path = dir_ / "m.json";
        std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
        return path;
    }
};

TEST_F(ManifestFile, HeadMatchesTheFullReadInAnyKeyOrder) {
    Manifest m = sample();
    auto as_written = write(manifest_to_json(m).dump(2));
    ManifestHead head = read_manifest_head(as_written);
    EXPECT_EQ(head.database, m.database);
    EXPECT_EQ(head.file, m.file);
    EXPECT_EQ(head.size_bytes, m.size_bytes);

    // The table list first and longer than the first read: the head fields
    // come after 4 KiB, so the whole file is read.
    m.tables.assign(200,
                    TableEntry{"public", "a_table_with_a_long_name", 1, "fp1:00", std::nullopt});
    nlohmann::ordered_json reordered;
    auto doc = manifest_to_json(m);
    reordered["tables"] = doc["tables"];
    for (auto& [key, value] : doc.items()) {
        if (key != "tables") {
            reordered[key] = value;
        }
    }
    std::string text = reordered.dump(2);
    ASSERT_GT(text.find("\"size_bytes\""), 4096u);
    head = read_manifest_head(write(text));
    EXPECT_EQ(head.database, m.database);
    EXPECT_EQ(head.file, m.file);
    EXPECT_EQ(head.size_bytes, m.size_bytes);
}

TEST_F(ManifestFile, HeadOfADamagedOrForeignManifestFailsLikeTheFullRead) {
    try {
        read_manifest_head(write("{\"format\": \"pgward-manifest/1\", \"database\": "));
        ADD_FAILURE() << "truncated JSON was accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("is not valid JSON"), std::string::npos) << e.what();
    }
    auto doc = nlohmann::json::parse(manifest_to_json(sample()).dump());
    doc.erase("size_bytes");
    EXPECT_THROW(read_manifest_head(write(doc.dump())), Error);
    doc = nlohmann::json::parse(manifest_to_json(sample()).dump());
    doc["format"] = "something-else/1";
    EXPECT_THROW(read_manifest_head(write(doc.dump())), Error);
    EXPECT_THROW(read_manifest_head(dir_ / "missing.json"), Error);
}

TEST_F(ManifestFile, TheFullReadNamesDamage) {
    try {
        read_manifest(write("{\"format\": "));
        ADD_FAILURE() << "truncated JSON was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()),
                  "manifest " + (dir_ / "m.json").string() + " is not valid JSON");
        EXPECT_EQ(e.hint(), "the sidecar was edited or damaged");
    }
    auto doc = nlohmann::json::parse(manifest_to_json(sample()).dump());
    doc["tables"][0]["rows"] = "many";
    try {
        read_manifest(write(doc.dump()));
        ADD_FAILURE() << "a row count in words was accepted";
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()).rfind(
                      "manifest " + (dir_ / "m.json").string() + " is malformed: ", 0),
                  0U)
            << e.what();
    }
}

TEST_F(ManifestFile, HeadSkipsValuesOfEveryKind) {
    // Fields a later pgward may add, of every JSON type, before the head's.
    Manifest m = sample();
    m.compression = "zstd";
    auto doc = manifest_to_json(m);
    nlohmann::ordered_json extended;
    extended["note"] = nullptr;
    extended["checked"] = true;
    extended["offset"] = -3;
    extended["ratio"] = 0.5;
    extended["nested"] = {{"database", "not this one"}, {"size_bytes", 1}};
    extended["list"] = {1, "two", nullptr};
    for (auto& [key, value] : doc.items()) {
        extended[key] = value;
    }
    ManifestHead head = read_manifest_head(write(extended.dump()));
    EXPECT_EQ(head.database, m.database);
    EXPECT_EQ(head.file, m.file);
    EXPECT_EQ(head.size_bytes, m.size_bytes);
    EXPECT_EQ(head.compression, "zstd");
}

TEST_F(ManifestFile, AHeadTheQuickReadCannotTakeComesFromTheFullRead) {
    // A size written as 1234.0 is a number the full reader converts; the
    // quick read only takes unsigned integers, so it hands over.
    auto doc = nlohmann::json::parse(manifest_to_json(sample()).dump());
    doc["size_bytes"] = 1234.0;
    ManifestHead head = read_manifest_head(write(doc.dump()));
    EXPECT_EQ(head.size_bytes, 1234U);
    EXPECT_EQ(head.database, "quiz arena");
}

}  // namespace
}  // namespace pgward
