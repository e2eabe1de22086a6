#include "archive/statements.hpp"

#include <charconv>

namespace pgward::archive {
namespace {

// One identifier at `text[pos]`: "quoted" (with "" for a quote) or bare, as
// fmtId writes it. Advances pos past it; nullopt if there is none.
std::optional<std::string> identifier(std::string_view text, size_t& pos) {
    if (pos >= text.size()) {
        return std::nullopt;
    }
    std::string out;
    if (text[pos] == '"') {
        for (size_t i = pos + 1; i < text.size(); ++i) {
            if (text[i] != '"') {
                out += text[i];
            } else if (i + 1 < text.size() && text[i + 1] == '"') {
                out += '"';
                ++i;
            } else {
                pos = i + 1;
                return out;
            }
        }
        return std::nullopt;  // no closing quote
    }
    size_t start = pos;
    while (pos < text.size() && text[pos] != ' ' && text[pos] != ',' && text[pos] != ')' &&
           text[pos] != '.' && text[pos] != '(' && text[pos] != ';') {
        ++pos;
    }
    if (pos == start) {
        return std::nullopt;
    }
    return std::string(text.substr(start, pos - start));
}

bool consume(std::string_view text, size_t& pos, std::string_view expected) {
    if (text.substr(pos, expected.size()) != expected) {
        return false;
    }
    pos += expected.size();
    return true;
}

}  // namespace

std::optional<std::vector<std::string>> parse_copy_columns(std::string_view text) {
    size_t pos = 0;
    if (!consume(text, pos, "COPY ")) {
        return std::nullopt;
    }
    // The table: one or more identifiers joined by dots.
    do {
        if (!identifier(text, pos)) {
            return std::nullopt;
        }
    } while (consume(text, pos, "."));
    if (!consume(text, pos, " ")) {
        return std::nullopt;
    }
    std::vector<std::string> columns;
    if (consume(text, pos, "(")) {
        for (;;) {
            std::optional<std::string> column = identifier(text, pos);
            if (!column) {
                return std::nullopt;
            }
            columns.push_back(std::move(*column));
            if (consume(text, pos, ")")) {
                break;
            }
            if (!consume(text, pos, ", ")) {
                return std::nullopt;
            }
        }
        if (!consume(text, pos, " ")) {
            return std::nullopt;
        }
    } else if (!consume(text, pos, " ")) {
        // No columns: pg_dump writes an empty list, "COPY public.t  FROM stdin;".
        return std::nullopt;
    }
    if (!consume(text, pos, "FROM stdin;")) {
        return std::nullopt;
    }
    return columns;
}

std::optional<SequenceValue> parse_setval(std::string_view text) {
    size_t pos = 0;
    if (!consume(text, pos, "SELECT pg_catalog.setval(")) {
        return std::nullopt;
    }
    // E'...' appears only when standard_conforming_strings is off and the
    // name holds a backslash; pg_dump of a 9.1+ server writes plain '...'.
    bool escaped = consume(text, pos, "E");
    if (!consume(text, pos, "'")) {
        return std::nullopt;
    }
    SequenceValue value;
    for (;; ++pos) {
        if (pos >= text.size()) {
            return std::nullopt;
        }
        char c = text[pos];
        if (c == '\'' && pos + 1 < text.size() && text[pos + 1] == '\'') {
            value.sequence += '\'';
            ++pos;
        } else if (c == '\\' && escaped && pos + 1 < text.size()) {
            value.sequence += text[++pos];
        } else if (c == '\'') {
            ++pos;
            break;
        } else {
            value.sequence += c;
        }
    }
    if (!consume(text, pos, ", ")) {
        return std::nullopt;
    }
    const char* begin = text.data() + pos;
    const char* end = text.data() + text.size();
    auto [next, error] = std::from_chars(begin, end, value.last_value);
    if (error != std::errc()) {
        return std::nullopt;
    }
    pos += static_cast<size_t>(next - begin);
    if (consume(text, pos, ", true);")) {
        value.is_called = true;
    } else if (!consume(text, pos, ", false);")) {
        return std::nullopt;
    }
    return value;
}

}  // namespace pgward::archive
