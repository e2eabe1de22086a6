#include <gtest/gtest.h>

#include "domain/manifest.hpp"
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
    m.tables = {{"public", "users", 3, std::nullopt}, {"Other", "Mixed \"Q\"", 0, "fp1:00"}};
    return m;
}

TEST(Manifest, RoundTripsThroughJson) {
    Manifest m = sample();
    auto doc = manifest_to_json(m);
    EXPECT_EQ(doc["format"], "pgward-manifest/1");
    Manifest back = manifest_from_json(nlohmann::json::parse(doc.dump()), "test");
    EXPECT_EQ(back, m);
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

}  // namespace
}  // namespace pgward
