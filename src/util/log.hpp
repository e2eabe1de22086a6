#pragma once

#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>

namespace pgward::log {

enum class Level { Debug, Info, Warn, Error };
enum class Format { Logfmt, Json };

struct Field {
    std::string key;
    std::string value;
};

// One line per event, with a UTC timestamp: logfmt by default, JSON lines
// with PGWARD_LOG_FORMAT=json. One-shot commands log to stderr so their
// stdout stays for results; the service logs to stdout for `docker logs`.
void configure(Format format, std::FILE* stream);
Format parse_format(std::string_view text);  // throws a usage error
void set_quiet(bool quiet);                  // only warnings and errors

void write(Level level, std::string_view message, std::initializer_list<Field> fields = {});

inline void info(std::string_view message, std::initializer_list<Field> fields = {}) {
    write(Level::Info, message, fields);
}
inline void warn(std::string_view message, std::initializer_list<Field> fields = {}) {
    write(Level::Warn, message, fields);
}
inline void error(std::string_view message, std::initializer_list<Field> fields = {}) {
    write(Level::Error, message, fields);
}

// While one is alive, lines are collected and written together when it ends
// (or every 64 KiB): a prune plan of 10,000 lines costs a few writes, not 10,000.
class Batch {
  public:
    Batch();
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
};

// The text one line would have, for tests.
std::string render(Format format, std::string_view timestamp, Level level, std::string_view message,
                   std::initializer_list<Field> fields);

}  // namespace pgward::log
