#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "domain/checks.hpp"
#include "pg/catalog.hpp"
#include "pg/connection.hpp"

namespace pgward {

struct TableCount {
    std::string schema;
    std::string name;
    uint64_t rows = 0;
    std::optional<std::string> filter;  // an extension configuration table's condition

    pg::DumpedTable dumped() const { return {schema, name, filter, std::nullopt}; }
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

// Conditions a smoke check looks for that a database may have had before
// any backup (a sequence behind its column because the app inserts explicit
// ids, an index left invalid by a failed CREATE INDEX CONCURRENTLY): recorded
// in the manifest, so a drill fails only on what the backup and restore
// changed.
struct SmokeFindings {
    std::vector<std::string> sequences_behind;  // SequenceBehind::describe()
    std::vector<std::string> invalid_indexes;   // regclass text
};

struct SequenceBehind {
    std::string sequence;  // quoted, qualified
    std::string table;     // quoted, qualified
    std::string column;    // quoted
    bool ascending = true;
    long long last_value = 0;
    long long extreme = 0;                 // the column's max (ascending) or min
    std::optional<std::string> extension;  // the extension it belongs to, if any

    std::string describe() const;  // "<seq> at <n> behind <table>.<column> max <m>"
    std::string fix() const;       // the setval() that puts it right
    bool listed_in(const std::vector<std::string>& descriptions) const;
};

struct SmokeReport {
    std::vector<Check> checks;
    std::vector<std::string> warnings;  // conditions that do not fail the check
    std::optional<std::string> schema_version;
    std::vector<TableCount> tables;

    bool passed() const { return all_passed(checks); }
};

// The tables pg_dump dumps (pg::list_dumped_tables), each with the number of
// rows pg_dump writes, in the current snapshot, ordered by name.
std::vector<TableCount> count_tables(pg::Connection& conn);
// The schema version row(s), or nullopt if the table is missing.
std::optional<std::string> read_schema_version(pg::Connection& conn, const VersionTable& table);

// Post-restore checks: the schema version row, every table's row count,
// every column-owned sequence at least its column's max, no invalid index,
// and a write accepted in a rolled-back transaction. With a `baseline` (the
// source's findings), a sequence or index condition the source had too is a
// warning; without one, a sequence behind is a warning and an invalid index
// fails.
SmokeReport run_smoke(pg::Connection& conn, const std::optional<VersionTable>& version_table,
                      const std::optional<SmokeFindings>& baseline = std::nullopt);

std::vector<SequenceBehind> find_sequences_behind(pg::Connection& conn);
std::vector<std::string> find_invalid_indexes(pg::Connection& conn);
SmokeFindings find_preexisting_conditions(pg::Connection& conn);

}  // namespace pgward
