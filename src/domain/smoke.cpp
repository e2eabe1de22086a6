#include "domain/smoke.hpp"

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward {
namespace {

constexpr const char* kUserTables = R"SQL(
SELECT n.nspname, c.relname
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u')
  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
)SQL";

// Sequences that feed a column (serial / identity), with that column.
constexpr const char* kOwnedSequences = R"SQL(
SELECT sn.nspname, s.relname, tn.nspname, t.relname, a.attname, q.seqincrement
FROM pg_catalog.pg_class s
JOIN pg_catalog.pg_namespace sn ON sn.oid = s.relnamespace
JOIN pg_catalog.pg_sequence q ON q.seqrelid = s.oid
JOIN pg_catalog.pg_depend d ON d.objid = s.oid
  AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
  AND d.deptype IN ('a', 'i')
JOIN pg_catalog.pg_class t ON t.oid = d.refobjid
JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
WHERE s.relkind = 'S'
ORDER BY 1, 2
)SQL";

std::string qualified(const std::string& schema, const std::string& name) {
    return pg::quote_identifier(schema) + "." + pg::quote_identifier(name);
}

}  // namespace

std::optional<VersionTable> VersionTable::parse(const std::string& spec) {
    if (spec == "none") {
        return std::nullopt;
    }
    size_t dot = spec.rfind('.');
    if (dot == std::string::npos || dot == 0 || dot + 1 == spec.size()) {
        throw usage_error("invalid value \"" + spec +
                          "\" for --version-table: expected TABLE.COLUMN "
                          "(or SCHEMA.TABLE.COLUMN, or none)");
    }
    VersionTable v;
    v.column = spec.substr(dot + 1);
    std::string table = spec.substr(0, dot);
    size_t schema_dot = table.rfind('.');
    if (schema_dot != std::string::npos) {
        v.schema = table.substr(0, schema_dot);
        v.table = table.substr(schema_dot + 1);
    } else {
        v.table = table;
    }
    return v;
}

std::string VersionTable::table_display() const {
    return (schema ? *schema + "." : "") + table;
}

std::string VersionTable::display() const {
    return (schema ? *schema + "." : "") + table + "." + column;
}

std::vector<TableCount> count_tables(pg::Connection& conn) {
    std::vector<TableCount> out;
    pg::Result tables = conn.exec(kUserTables);
    for (int i = 0; i < tables.rows(); ++i) {
        TableCount t{tables.get(i, 0), tables.get(i, 1), 0};
        t.rows = std::stoull(
            conn.query_value("SELECT pg_catalog.count(*) FROM ONLY " + qualified(t.schema, t.name))
                .value_or("0"));
        out.push_back(std::move(t));
    }
    return out;
}

std::optional<std::string> read_schema_version(pg::Connection& conn, const VersionTable& v) {
    std::string regclass = v.schema ? qualified(*v.schema, v.table) : pg::quote_identifier(v.table);
    auto exists = conn.query_value("SELECT pg_catalog.to_regclass($1) IS NOT NULL", {regclass});
    if (exists != "t") {
        return std::nullopt;
    }
    return conn
        .query_value(fmt::format("SELECT pg_catalog.string_agg({0}::text, ',' ORDER BY {0}::text) "
                                 "FROM {1}",
                                 pg::quote_identifier(v.column), regclass))
        .value_or("");
}

SmokeReport run_smoke(pg::Connection& conn, const std::optional<VersionTable>& version_table) {
    SmokeReport report;
    if (version_table) {
        report.schema_version = read_schema_version(conn, *version_table);
        bool present = report.schema_version && !report.schema_version->empty();
        report.checks.push_back(
            {"schema_version", present, "a row in " + version_table->display(),
             report.schema_version
                 ? (report.schema_version->empty() ? "the table is empty" : *report.schema_version)
                 : "table " + version_table->table_display() + " does not exist"});
    }

    report.tables = count_tables(conn);
    uint64_t total = 0;
    for (const TableCount& t : report.tables) {
        total += t.rows;
    }
    report.checks.push_back({"table_row_counts", true, "every table countable",
                             fmt::format("{} tables, {} rows", report.tables.size(), total)});

    pg::Result sequences = conn.exec(kOwnedSequences);
    std::vector<std::string> behind;
    for (int i = 0; i < sequences.rows(); ++i) {
        std::string seq = qualified(sequences.get(i, 0), sequences.get(i, 1));
        std::string table = qualified(sequences.get(i, 2), sequences.get(i, 3));
        std::string column = pg::quote_identifier(sequences.get(i, 4));
        bool ascending = std::stoll(sequences.get(i, 5)) > 0;
        pg::Result state = conn.exec(fmt::format(
            "SELECT s.last_value, s.is_called, (SELECT {}({})::bigint FROM {}) FROM {} s",
            ascending ? "max" : "min", column, table, seq));
        if (state.is_null(0, 2)) {
            continue;  // an empty table: any sequence position is fine
        }
        long long last = std::stoll(state.get(0, 0));
        bool called = state.get(0, 1) == "t";
        long long extreme = std::stoll(state.get(0, 2));
        // The next value nextval() hands out must not collide with a row.
        bool ok = ascending ? (called ? last >= extreme : last > extreme)
                            : (called ? last <= extreme : last < extreme);
        if (!ok) {
            behind.push_back(fmt::format("{} at {} behind {}.{} {} {}", sequences.get(i, 1), last,
                                         sequences.get(i, 3), sequences.get(i, 4),
                                         ascending ? "max" : "min", extreme));
        }
    }
    std::string behind_text;
    for (const std::string& b : behind) {
        behind_text += (behind_text.empty() ? "" : "; ") + b;
    }
    report.checks.push_back(
        {"sequences", behind.empty(), "every column-owned sequence past its column's values",
         behind.empty() ? fmt::format("{} sequences ok", sequences.rows()) : behind_text});

    pg::Result invalid = conn.exec(
        "SELECT pg_catalog.string_agg(indexrelid::pg_catalog.regclass::text, ', ') "
        "FROM pg_catalog.pg_index WHERE NOT indisvalid");
    bool no_invalid = invalid.is_null(0, 0);
    report.checks.push_back({"indexes_valid", no_invalid, "no invalid index",
                             no_invalid ? "none invalid" : "invalid: " + invalid.get(0, 0)});

    std::string write_result = "accepted and rolled back";
    bool writable = true;
    try {
        conn.exec("BEGIN");
        conn.exec("CREATE TEMPORARY TABLE pgward_smoke_write(x int)");
        conn.exec("INSERT INTO pgward_smoke_write VALUES (1)");
        conn.exec("ROLLBACK");
    } catch (const Error& e) {
        writable = false;
        write_result = e.what();
        try {
            conn.exec("ROLLBACK");
        } catch (const Error&) {
        }
    }
    report.checks.push_back(
        {"accepts_write", writable, "a write in a rolled-back transaction", write_result});
    return report;
}

}  // namespace pgward
