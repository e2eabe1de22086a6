#include "pg/catalog.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward::pg {
namespace {

// pg_dump dumps the configuration tables of every extension it dumps: in a
// full dump, every extension created after initdb (oid above the last
// built-in one, 16383); those of a built-in extension only when their schema
// is dumped with its data (not a system schema, not itself an extension
// member). Other extension members are never dumped. unnest() pairs each
// table with its condition, as processExtensionTables pairs extconfig with
// extcondition. On a hot standby pg_dump leaves out the data of unlogged
// tables (it cannot read them there), and so does this list.
constexpr const char* kDumpedTablesQuery = R"SQL(
SELECT n.nspname, c.relname, cfg.condition, cfg.extname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN (
  SELECT x.relid, x.condition, e.extname, e.oid > 16383 AS dumped_extension
  FROM pg_catalog.pg_extension e,
       LATERAL ROWS FROM (pg_catalog.unnest(e.extconfig), pg_catalog.unnest(e.extcondition))
         AS x(relid, condition)
) cfg ON cfg.relid = c.oid
WHERE c.relkind = 'r'
  AND (c.relpersistence = 'p' OR (c.relpersistence = 'u' AND NOT pg_catalog.pg_is_in_recovery()))
  AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\_%'
  AND (cfg.dumped_extension
       OR (cfg.relid IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                           WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                             AND d.objid = n.oid AND d.deptype = 'e'))
       OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                        AND d.objid = c.oid AND d.deptype = 'e'))
ORDER BY 1, 2
)SQL";

}  // namespace

std::string DumpedTable::qualified() const {
    return quote_identifier(schema) + "." + quote_identifier(name);
}

std::map<std::pair<std::string, std::string>, uint64_t> table_write_counters(Connection& conn) {
    // The statistics a transaction reads are cached for its duration.
    conn.exec("SELECT pg_catalog.pg_stat_clear_snapshot()");
    Result r = conn.exec(
        "SELECT schemaname, relname, (n_tup_ins + n_tup_upd + n_tup_del)::text "
        "FROM pg_catalog.pg_stat_all_tables");
    std::map<std::pair<std::string, std::string>, uint64_t> counters;
    for (int row = 0; row < r.rows(); ++row) {
        counters[{r.get(row, 0), r.get(row, 1)}] = std::stoull(r.get(row, 2));
    }
    return counters;
}

std::vector<DumpedTable> list_dumped_tables(Connection& conn) {
    Result rows = conn.exec(kDumpedTablesQuery);
    std::vector<DumpedTable> out;
    out.reserve(static_cast<size_t>(rows.rows()));
    for (int i = 0; i < rows.rows(); ++i) {
        DumpedTable t{rows.get(i, 0), rows.get(i, 1), rows.get_optional(i, 2),
                      rows.get_optional(i, 3)};
        if (t.filter && t.filter->empty()) {
            t.filter.reset();
        }
        out.push_back(std::move(t));
    }
    return out;
}

namespace {

// SELECT count(*) of exactly the rows pg_dump writes, as a scalar subquery.
std::string count_rows_expression(const DumpedTable& table) {
    if (table.filter) {
        // As pg_dump reads it: FROM without ONLY, then the condition.
        return fmt::format("(SELECT pg_catalog.count(*) FROM {} {})", table.qualified(),
                           *table.filter);
    }
    return "(SELECT pg_catalog.count(*) FROM ONLY " + table.qualified() + ")";
}

}  // namespace

std::vector<uint64_t> count_dumped_rows(Connection& conn, const std::vector<DumpedTable>& tables) {
    constexpr size_t kBatch = 500;
    const bool in_transaction = PQtransactionStatus(conn.raw()) == PQTRANS_INTRANS;
    std::vector<uint64_t> rows;
    rows.reserve(tables.size());
    for (size_t first = 0; first < tables.size(); first += kBatch) {
        size_t last = std::min(tables.size(), first + kBatch);
        std::string sql = "SELECT ";
        for (size_t i = first; i < last; ++i) {
            sql += (i == first ? "" : ", ") + count_rows_expression(tables[i]);
        }
        if (in_transaction) {
            conn.exec("SAVEPOINT pgward_count");
        }
        Result counts = conn.exec(sql);
        for (size_t i = first; i < last; ++i) {
            rows.push_back(std::stoull(counts.get(0, static_cast<int>(i - first))));
        }
        if (in_transaction) {
            conn.exec("ROLLBACK TO SAVEPOINT pgward_count");
        }
    }
    return rows;
}

std::vector<std::string> dumped_columns(Connection& conn, const DumpedTable& table) {
    Result columns = conn.exec(
        "SELECT a.attname FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attgenerated = '' ORDER BY a.attnum",
        {table.qualified()});
    std::vector<std::string> out;
    out.reserve(static_cast<size_t>(columns.rows()));
    for (int i = 0; i < columns.rows(); ++i) {
        out.push_back(columns.get(i, 0));
    }
    return out;
}

std::string copy_out_sql(const DumpedTable& table, const std::vector<std::string>& columns) {
    std::string list;
    for (const std::string& column : columns) {
        list += (list.empty() ? "" : ", ") + quote_identifier(column);
    }
    if (table.filter) {
        return fmt::format("COPY (SELECT {} FROM {} {}) TO STDOUT", list.empty() ? "*" : list,
                           table.qualified(), *table.filter);
    }
    return list.empty() ? fmt::format("COPY {} TO STDOUT", table.qualified())
                        : fmt::format("COPY {} ({}) TO STDOUT", table.qualified(), list);
}

std::optional<std::string> system_identifier(Connection& conn) {
    try {
        return conn.query_value(
            "SELECT system_identifier::text FROM pg_catalog.pg_control_system()");
    } catch (const Error&) {
        return std::nullopt;  // an older server or a revoked EXECUTE
    }
}

}  // namespace pgward::pg
