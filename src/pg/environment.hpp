#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pgward::pg {

using Variables = std::vector<std::pair<std::string, std::string>>;

// The operator's libpq environment (PGHOST, PGPORT, PGSERVICE, PGOPTIONS,
// PGSSLMODE, PGPASSFILE... every PG* variable but PGWARD_*), captured once at
// start-up and then removed from pgward's own environment. It reaches only
// what targets the operator's server: pgward's own connections there take it
// as libpq would have (below flags, POSTGRES_* and a --dbname conninfo), and
// the pg_dump, pg_restore and pg_dumpall that pgward runs against that server
// get the variables back in their environment. A server pgward starts itself
// (the sandbox drill's) and everything that talks to it never sees them, so no
// operator variable can point a sandbox step at another server.
//
// Call first thing in main(), before any thread exists (it edits the
// environment). Calling it again does nothing.
void capture_operator_environment();

// The captured PG* variables, by name.
const Variables& operator_variables();
std::optional<std::string> operator_variable(const std::string& name);

// The libpq keywords those variables (and the service PGSERVICE names) give a
// connection that sets nothing itself: libpq's own resolution, taken before
// the variables were removed. Only keywords that differ from libpq's bare
// defaults. The lowest layer of a connection to the operator's server.
const Variables& operator_connection_defaults();

// Every PG* variable (but PGWARD_*) in the current environment: what a child
// aimed at pgward's own server must not inherit.
std::vector<std::string> libpq_variable_names_in_environment();

}  // namespace pgward::pg
