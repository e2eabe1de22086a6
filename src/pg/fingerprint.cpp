#include "pg/fingerprint.hpp"

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward::pg {

void set_dump_session_settings(Connection& conn) {
    std::string encoding = conn.query_value("SHOW server_encoding").value_or("UTF8");
    conn.exec(
        "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; "
        "SET TimeZone = 'UTC'; SET client_encoding = " +
        quote_conninfo_value(encoding));
}

archive::TableFingerprint fingerprint_table(Connection& conn, const std::string& schema,
                                            const std::string& name) {
    std::string table = quote_identifier(schema) + "." + quote_identifier(name);
    Result columns = conn.exec(
        "SELECT a.attname FROM pg_catalog.pg_attribute a "
        "WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attgenerated = '' ORDER BY a.attnum",
        {table});
    std::string list;
    for (int i = 0; i < columns.rows(); ++i) {
        list += (i == 0 ? "" : ", ") + quote_identifier(columns.get(i, 0));
    }
    std::string sql = list.empty() ? fmt::format("COPY {} TO STDOUT", table)
                                   : fmt::format("COPY {} ({}) TO STDOUT", table, list);
    PGresult* start = PQexec(conn.raw(), sql.c_str());
    ExecStatusType status = PQresultStatus(start);
    std::string start_error = PQresultErrorMessage(start);
    PQclear(start);
    if (status != PGRES_COPY_OUT) {
        throw failure(
            fmt::format("cannot read table {} for its fingerprint: {}", table, start_error));
    }
    archive::TableFingerprint fingerprint;
    archive::RowStream rows(fingerprint);
    for (;;) {
        char* buffer = nullptr;
        int n = PQgetCopyData(conn.raw(), &buffer, 0);
        if (n > 0) {
            rows.feed(buffer, static_cast<size_t>(n));
            PQfreemem(buffer);
            continue;
        }
        if (n == -2) {
            throw failure(
                fmt::format("reading table {} failed: {}", table, PQerrorMessage(conn.raw())));
        }
        break;  // -1: COPY finished
    }
    PGresult* end = PQgetResult(conn.raw());
    bool ok = PQresultStatus(end) == PGRES_COMMAND_OK;
    std::string end_error = PQresultErrorMessage(end);
    PQclear(end);
    while (PGresult* extra = PQgetResult(conn.raw())) {
        PQclear(extra);
    }
    if (!ok || !rows.finish()) {
        throw failure(fmt::format("reading table {} failed: {}", table, end_error));
    }
    return fingerprint;
}

}  // namespace pgward::pg
