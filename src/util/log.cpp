#include "util/log.hpp"

#include <nlohmann/json.hpp>

#include <mutex>

#include "util/error.hpp"
#include "util/time.hpp"

namespace pgward::log {
namespace {

struct Sink {
    Format format = Format::Logfmt;
    std::FILE* stream = stderr;
    bool quiet = false;
    int batches = 0;
    std::string pending;  // lines held while a Batch is alive
    std::mutex mutex;
};

void flush_pending(Sink& s) {
    if (!s.pending.empty()) {
        std::fwrite(s.pending.data(), 1, s.pending.size(), s.stream);
        std::fflush(s.stream);
        s.pending.clear();
    }
}

Sink& sink() {
    static Sink instance;
    return instance;
}

const char* level_name(Level level) {
    switch (level) {
        case Level::Debug:
            return "debug";
        case Level::Info:
            return "info";
        case Level::Warn:
            return "warn";
        case Level::Error:
            return "error";
    }
    return "info";
}

bool needs_quotes(std::string_view value) {
    if (value.empty()) {
        return true;
    }
    for (char c : value) {
        if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
            return true;
        }
    }
    return false;
}

void append_logfmt_value(std::string& out, std::string_view value) {
    if (!needs_quotes(value)) {
        out += value;
        return;
    }
    out += '"';
    for (char c : value) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                out += c;
        }
    }
    out += '"';
}

}  // namespace

void configure(Format format, std::FILE* stream) {
    std::lock_guard lock(sink().mutex);
    sink().format = format;
    sink().stream = stream;
}

void set_quiet(bool quiet) {
    std::lock_guard lock(sink().mutex);
    sink().quiet = quiet;
}

Format parse_format(std::string_view text) {
    if (text.empty() || text == "logfmt" || text == "text") {
        return Format::Logfmt;
    }
    if (text == "json") {
        return Format::Json;
    }
    throw usage_error("invalid value \"" + std::string(text) +
                          "\" for PGWARD_LOG_FORMAT: expected logfmt or json",
                      "unset it or set it to json");
}

std::string render(Format format, std::string_view timestamp, Level level, std::string_view message,
                   std::initializer_list<Field> fields) {
    if (format == Format::Json) {
        nlohmann::ordered_json line;
        line["ts"] = timestamp;
        line["level"] = level_name(level);
        line["msg"] = message;
        for (const Field& field : fields) {
            line[field.key] = field.value;
        }
        return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    std::string out = "ts=";
    out += timestamp;
    out += " level=";
    out += level_name(level);
    out += " msg=";
    append_logfmt_value(out, message);
    for (const Field& field : fields) {
        out += ' ';
        out += field.key;
        out += '=';
        append_logfmt_value(out, field.value);
    }
    return out;
}

void write(Level level, std::string_view message, std::initializer_list<Field> fields) {
    Sink& s = sink();
    std::lock_guard lock(s.mutex);
    if (s.quiet && (level == Level::Debug || level == Level::Info)) {
        return;
    }
    std::string line =
        render(s.format, format_iso_utc_millis(Clock::now()), level, message, fields);
    line += '\n';
    if (s.batches > 0) {
        s.pending += line;
        if (s.pending.size() >= 65536) {
            flush_pending(s);
        }
        return;
    }
    std::fwrite(line.data(), 1, line.size(), s.stream);
    std::fflush(s.stream);
}

Batch::Batch() {
    Sink& s = sink();
    std::lock_guard lock(s.mutex);
    ++s.batches;
}

Batch::~Batch() {
    Sink& s = sink();
    std::lock_guard lock(s.mutex);
    if (--s.batches == 0) {
        flush_pending(s);
    }
}

}  // namespace pgward::log
