#include "domain/smoke.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward {
namespace {

// Sequences that feed a column (serial / identity), with that column.
constexpr const char* kOwnedSequences = R"SQL(
SELECT sn.nspname, s.relname, tn.nspname, t.relname, a.attname, q.seqincrement,
       (SELECT e.extname FROM pg_catalog.pg_depend x
        JOIN pg_catalog.pg_extension e ON e.oid = x.refobjid
        WHERE x.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND x.objid = s.oid
          AND x.deptype = 'e')
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

std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const std::string& item : items) {
        out += (out.empty() ? "" : "; ") + item;
    }
    return out;
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
    std::vector<pg::DumpedTable> tables = pg::list_dumped_tables(conn);
    std::vector<uint64_t> rows = pg::count_dumped_rows(conn, tables);
    std::vector<TableCount> out;
    out.reserve(tables.size());
    for (size_t i = 0; i < tables.size(); ++i) {
        out.push_back({tables[i].schema, tables[i].name, rows[i], tables[i].filter});
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

std::vector<SequenceBehind> find_sequences_behind(pg::Connection& conn) {
    pg::Result sequences = conn.exec(kOwnedSequences);
    std::vector<SequenceBehind> behind;
    for (int i = 0; i < sequences.rows(); ++i) {
        SequenceBehind s;
        s.sequence = qualified(sequences.get(i, 0), sequences.get(i, 1));
        s.table = qualified(sequences.get(i, 2), sequences.get(i, 3));
        s.column = pg::quote_identifier(sequences.get(i, 4));
        s.ascending = std::stoll(sequences.get(i, 5)) > 0;
        s.extension = sequences.get_optional(i, 6);
        pg::Result state = conn.exec(fmt::format(
            "SELECT s.last_value, s.is_called, (SELECT {}({})::bigint FROM {}) FROM {} s",
            s.ascending ? "max" : "min", s.column, s.table, s.sequence));
        if (state.is_null(0, 2)) {
            continue;  // an empty table: any sequence position is fine
        }
        s.last_value = std::stoll(state.get(0, 0));
        bool called = state.get(0, 1) == "t";
        s.extreme = std::stoll(state.get(0, 2));
        // The next value nextval() hands out must not collide with a row.
        bool ok = s.ascending ? (called ? s.last_value >= s.extreme : s.last_value > s.extreme)
                              : (called ? s.last_value <= s.extreme : s.last_value < s.extreme);
        if (!ok) {
            behind.push_back(std::move(s));
        }
    }
    return behind;
}

std::string SequenceBehind::describe() const {
    return fmt::format("{} at {} behind {}.{} {} {}", sequence, last_value, table, column,
                       ascending ? "max" : "min", extreme);
}

std::string SequenceBehind::fix() const {
    return fmt::format("SELECT pg_catalog.setval({}, (SELECT {}({}) FROM {}));",
                       pg::quote_literal(sequence), ascending ? "max" : "min", column, table);
}

bool SequenceBehind::listed_in(const std::vector<std::string>& descriptions) const {
    const std::string prefix = sequence + " at ";
    for (const std::string& d : descriptions) {
        if (d.rfind(prefix, 0) == 0) {
            return true;
        }
    }
    return false;
}

std::vector<std::string> find_invalid_indexes(pg::Connection& conn) {
    pg::Result invalid = conn.exec(
        "SELECT indexrelid::pg_catalog.regclass::text FROM pg_catalog.pg_index "
        "WHERE NOT indisvalid ORDER BY 1");
    std::vector<std::string> out;
    out.reserve(static_cast<size_t>(invalid.rows()));
    for (int i = 0; i < invalid.rows(); ++i) {
        out.push_back(invalid.get(i, 0));
    }
    return out;
}

SmokeFindings find_preexisting_conditions(pg::Connection& conn) {
    SmokeFindings out;
    for (const SequenceBehind& s : find_sequences_behind(conn)) {
        out.sequences_behind.push_back(s.describe());
    }
    out.invalid_indexes = find_invalid_indexes(conn);
    return out;
}

SmokeReport run_smoke(pg::Connection& conn, const std::optional<VersionTable>& version_table,
                      const std::optional<SmokeFindings>& baseline) {
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

    // A condition the source already had is a warning (the restore did not
    // cause it); one it did not have fails. Without a source to compare with
    // (`pgward smoke` after an emergency restore), a sequence behind is a
    // warning with its fix, an invalid index a failure.
    std::vector<std::string> new_behind;
    std::vector<SequenceBehind> behind = find_sequences_behind(conn);
    for (const SequenceBehind& s : behind) {
        bool preexisting = !baseline || s.listed_in(baseline->sequences_behind);
        if (s.extension && !preexisting) {
            // pg_dump writes an extension's sequences only when the extension
            // marks them (pg_extension_config_dump); one it does not mark comes
            // back at its start whatever the backup held. The dump could not
            // have done better: a warning with the fix.
            report.warnings.push_back(fmt::format(
                "sequence {} of extension {} is not in the dump (the extension does not mark "
                "it for pg_dump) and came back behind its column: {}; fix: {}",
                s.sequence, *s.extension, s.describe(), s.fix()));
        } else if (preexisting) {
            report.warnings.push_back(fmt::format("sequence {}{}; fix: {}", s.describe(),
                                                  baseline ? " (so in the source too)" : "",
                                                  s.fix()));
        } else {
            new_behind.push_back(s.describe());
        }
    }
    report.checks.push_back(
        {"sequences", new_behind.empty(),
         "no column-owned sequence behind its column that was not so in the source",
         new_behind.empty() ? fmt::format("{} behind, none caused by the restore", behind.size())
                            : join(new_behind)});

    std::vector<std::string> new_invalid;
    for (const std::string& index : find_invalid_indexes(conn)) {
        bool preexisting = baseline && std::find(baseline->invalid_indexes.begin(),
                                                 baseline->invalid_indexes.end(),
                                                 index) != baseline->invalid_indexes.end();
        if (preexisting) {
            report.warnings.push_back("index " + index + " is invalid, as it was in the source");
        } else {
            new_invalid.push_back(index);
        }
    }
    report.checks.push_back(
        {"indexes_valid", new_invalid.empty(), "no invalid index",
         new_invalid.empty() ? "none invalid" : "invalid: " + join(new_invalid)});

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
