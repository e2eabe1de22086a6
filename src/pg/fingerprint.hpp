#pragma once

#include <string>

#include "archive/fingerprint.hpp"
#include "pg/connection.hpp"

namespace pgward::pg {

// fp1 of a live table, as pg_dump would write its data: `COPY t (columns)
// TO STDOUT` of the columns pg_dump dumps (not dropped, not generated, in
// order), in a session with pg_dump's settings (DateStyle ISO,
// IntervalStyle postgres, extra_float_digits 3, TimeZone UTC, the
// database's encoding). See docs/fingerprint.md.
archive::TableFingerprint fingerprint_table(Connection& conn, const std::string& schema,
                                            const std::string& name);

// Pins those settings on the connection (call once before fingerprinting).
void set_dump_session_settings(Connection& conn);

}  // namespace pgward::pg
