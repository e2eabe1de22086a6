#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "archive/fingerprint.hpp"
#include "pg/catalog.hpp"
#include "pg/connection.hpp"

namespace pgward::pg {

// fp1 of a live table, as pg_dump would write its data: `COPY t (columns)
// TO STDOUT` of the columns pg_dump dumps (not dropped, not generated, in
// order), in a session with pg_dump's settings (DateStyle ISO,
// IntervalStyle postgres, extra_float_digits 3, TimeZone UTC, the
// database's encoding), over exactly the rows pg_dump writes (an extension's
// condition applied) and over `columns` in their order: dumped_columns(), or
// the archive's own column list,
// so a restored table whose columns came back in another order (a child of
// a parent that gained a column later) is read as the archive holds it.
archive::TableFingerprint fingerprint_table(Connection& conn, const DumpedTable& table,
                                            const std::vector<std::string>& columns);

// Every large object of the database: how many, and their lo1 content
// fingerprint (archive::LargeObjectHasher), read with lo_get() as pg_dump
// reads them.
struct LargeObjectsContent {
    uint64_t count = 0;
    archive::TableFingerprint fingerprint;
};
LargeObjectsContent large_objects_content(Connection& conn);

// What pg_sequence_last_value() says of a sequence named as pg_dump names it
// in a SEQUENCE SET entry (public."Odd seq"): nullopt when there is no such
// sequence, an empty value when it was never called (setval(..., false)).
std::optional<std::optional<int64_t>> sequence_last_value(Connection& conn,
                                                          const std::string& sequence);

// Pins those settings on the connection (call once before fingerprinting),
// with row_security off as pg_dump has it: a table whose policies would hide
// rows is an error, never a silently smaller count.
void set_dump_session_settings(Connection& conn);

}  // namespace pgward::pg
