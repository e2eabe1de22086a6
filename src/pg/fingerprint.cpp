#include "pg/fingerprint.hpp"

#include <memory>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward::pg {

void set_dump_session_settings(Connection& conn) {
    std::string encoding = conn.query_value("SHOW server_encoding").value_or("UTF8");
    conn.exec(
        "SET DateStyle = ISO; SET IntervalStyle = postgres; SET extra_float_digits = 3; "
        "SET TimeZone = 'UTC'; SET bytea_output = hex; SET row_security = off");
    conn.exec("SELECT pg_catalog.set_config('client_encoding', $1, false)", {encoding});
}

archive::TableFingerprint fingerprint_table(Connection& conn, const DumpedTable& dumped,
                                            const std::vector<std::string>& columns) {
    const std::string table = dumped.qualified();
    const std::string sql = copy_out_sql(dumped, columns);
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

namespace {

constexpr int kLargeObjectChunk = 8 << 20;

// One binary-format lo_get() result: the bytes of the chunk.
struct BinaryResult {
    std::unique_ptr<PGresult, void (*)(PGresult*)> result;
    explicit BinaryResult(PGresult* r) : result(r, &PQclear) {}
};

uint32_t read_oid(const char* bytes) {
    auto* b = reinterpret_cast<const unsigned char*>(bytes);
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

void hash_large_object_in_chunks(Connection& conn, uint32_t oid,
                                 archive::LargeObjectHasher& hasher) {
    hasher.begin(oid);
    for (long long offset = 0;; offset += kLargeObjectChunk) {
        std::string oid_text = std::to_string(oid);
        std::string offset_text = std::to_string(offset);
        std::string length_text = std::to_string(kLargeObjectChunk);
        const char* values[] = {oid_text.c_str(), offset_text.c_str(), length_text.c_str()};
        BinaryResult r(PQexecParams(conn.raw(),
                                    "SELECT pg_catalog.lo_get($1::pg_catalog.oid, $2::bigint, "
                                    "$3::integer)",
                                    3, nullptr, values, nullptr, nullptr, 1));
        if (PQresultStatus(r.result.get()) != PGRES_TUPLES_OK) {
            throw failure(fmt::format("cannot read large object {}: {}", oid,
                                      PQresultErrorMessage(r.result.get())));
        }
        int n = PQgetlength(r.result.get(), 0, 0);
        hasher.feed(PQgetvalue(r.result.get(), 0, 0), static_cast<size_t>(n));
        if (n < kLargeObjectChunk) {
            break;
        }
    }
    hasher.end();
}

}  // namespace

LargeObjectsContent large_objects_content(Connection& conn) {
    LargeObjectsContent out;
    archive::LargeObjectHasher hasher(out.fingerprint);
    // One pass in single-row mode for the objects that fit one chunk (almost
    // all); the few larger ones are read chunk by chunk afterwards.
    std::string length_text = std::to_string(kLargeObjectChunk);
    const char* values[] = {length_text.c_str()};
    if (PQsendQueryParams(conn.raw(),
                          "SELECT m.oid, pg_catalog.lo_get(m.oid, 0, $1::integer) "
                          "FROM pg_catalog.pg_largeobject_metadata m",
                          1, nullptr, values, nullptr, nullptr, 1) == 0 ||
        PQsetSingleRowMode(conn.raw()) == 0) {
        throw failure(fmt::format("cannot list large objects: {}", PQerrorMessage(conn.raw())));
    }
    std::vector<uint32_t> larger;
    std::string error;
    while (PGresult* raw = PQgetResult(conn.raw())) {
        BinaryResult r(raw);
        ExecStatusType status = PQresultStatus(raw);
        if (status == PGRES_SINGLE_TUPLE) {
            uint32_t oid = read_oid(PQgetvalue(raw, 0, 0));
            int n = PQgetlength(raw, 0, 1);
            ++out.count;
            if (n >= kLargeObjectChunk) {
                larger.push_back(oid);
                continue;
            }
            hasher.begin(oid);
            hasher.feed(PQgetvalue(raw, 0, 1), static_cast<size_t>(n));
            hasher.end();
        } else if (status != PGRES_TUPLES_OK) {
            error = PQresultErrorMessage(raw);
        }
    }
    if (!error.empty()) {
        throw failure("cannot read the large objects: " + error);
    }
    for (uint32_t oid : larger) {
        hash_large_object_in_chunks(conn, oid, hasher);
    }
    return out;
}

std::optional<std::optional<int64_t>> sequence_last_value(Connection& conn,
                                                          const std::string& sequence) {
    auto exists = conn.query_value("SELECT pg_catalog.to_regclass($1) IS NOT NULL", {sequence});
    if (exists != "t") {
        return std::nullopt;
    }
    auto value = conn.query_value(
        "SELECT pg_catalog.pg_sequence_last_value($1::pg_catalog.regclass)", {sequence});
    if (!value) {
        return std::optional<int64_t>();
    }
    return std::optional<int64_t>(std::stoll(*value));
}

}  // namespace pgward::pg
