#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pg/connection.hpp"

namespace pgward::pg {

// A table whose rows pg_dump writes into a full-database dump, by pg_dump's
// own rules (getTables, makeTableDataInfo, processExtensionTables): ordinary
// tables (partitions hold the data of partitioned ones), permanent or
// unlogged, outside the system schemas; of the members of an extension, only
// its configuration tables (pg_extension_config_dump), and of those only the
// rows the extension's condition keeps.
struct DumpedTable {
    std::string schema;
    std::string name;
    // The extension's condition, e.g. "WHERE NOT (srid BETWEEN 2000 AND 2217 ...)",
    // for a configuration table that has one; pg_dump then writes
    // COPY (SELECT columns FROM table condition) TO stdout, children included.
    std::optional<std::string> filter;
    // The extension whose configuration table this is, if any.
    std::optional<std::string> extension;

    std::string qualified() const;  // "schema"."name", quoted
};

// Every such table of the connected database, ordered by schema and name,
// as the current snapshot sees it.
std::vector<DumpedTable> list_dumped_tables(Connection& conn);

// The number of rows pg_dump writes of each table, in the order given: many
// tables per statement (10,000 small tables in 20 round trips). Inside a
// transaction each statement runs in a savepoint rolled back afterwards, which
// releases its ACCESS SHARE locks (the snapshot stays): a backup's counts
// must not need a lock table as large again as pg_dump's own.
std::vector<uint64_t> count_dumped_rows(Connection& conn, const std::vector<DumpedTable>& tables);

// The columns pg_dump copies, in its order: not dropped, not generated, by
// attribute number.
std::vector<std::string> dumped_columns(Connection& conn, const DumpedTable& table);

// The COPY ... TO STDOUT that yields the rows pg_dump writes, over `columns`
// in that order (the archive's column list, or dumped_columns()).
std::string copy_out_sql(const DumpedTable& table, const std::vector<std::string>& columns);

// Every table's count of rows inserted, updated and deleted as the server's
// statistics have it now (pg_stat_all_tables, read afresh even inside a
// transaction), by schema and name. Each backend reports its counts when a
// transaction ends, at most once a second (when idle, up to some seconds
// later): a write seen here happened, a write not seen yet may have.
std::map<std::pair<std::string, std::string>, uint64_t> table_write_counters(Connection& conn);

// The cluster's pg_control system identifier, in decimal: one per initdb, so
// two servers that both have a database "app" are told apart. nullopt when
// the role may not read it.
std::optional<std::string> system_identifier(Connection& conn);

}  // namespace pgward::pg
