#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "domain/checks.hpp"
#include "pg/connection.hpp"

namespace pgward {

struct TableCount {
    std::string schema;
    std::string name;
    uint64_t rows = 0;
};

// "TABLE.COLUMN" (TABLE may be schema-qualified) or none.
struct VersionTable {
    std::optional<std::string> schema;
    std::string table;
    std::string column;

    static std::optional<VersionTable> parse(const std::string& spec);  // nullopt for "none"
    std::string display() const;
    std::string table_display() const;
};

struct SmokeReport {
    std::vector<Check> checks;
    std::optional<std::string> schema_version;
    std::vector<TableCount> tables;

    bool passed() const { return all_passed(checks); }
};

// The user tables pg_dump dumps, in the current snapshot, ordered by name.
std::vector<TableCount> count_tables(pg::Connection& conn);
// The schema version row(s), or nullopt if the table is missing.
std::optional<std::string> read_schema_version(pg::Connection& conn, const VersionTable& table);

// Post-restore checks: the schema version row, every table's row count,
// every column-owned sequence at least its column's max, no invalid index,
// and a write accepted in a rolled-back transaction.
SmokeReport run_smoke(pg::Connection& conn, const std::optional<VersionTable>& version_table);

}  // namespace pgward
