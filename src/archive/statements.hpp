#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pgward::archive {

// The few SQL texts of a pg_dump archive that pgward reads, parsed as
// pg_dump writes them (fmtId quoting, appendStringLiteralAH literals).

// The column list of a TABLE DATA entry's COPY statement,
// `COPY public.child (a, "B c", d) FROM stdin;` -> {a, B c, d}; an empty list
// for a table with no columns (`COPY public.t  FROM stdin;`); nullopt when the
// text is not such a statement.
std::optional<std::vector<std::string>> parse_copy_columns(std::string_view copy_stmt);

// A SEQUENCE SET entry: `SELECT pg_catalog.setval('public.s', 42, true);`.
struct SequenceValue {
    std::string sequence;  // the qualified name as pg_dump wrote it, e.g. public."Odd seq"
    int64_t last_value = 0;
    bool is_called = false;

    bool operator==(const SequenceValue&) const = default;
};
std::optional<SequenceValue> parse_setval(std::string_view defn);

}  // namespace pgward::archive
