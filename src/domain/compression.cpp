#include "domain/compression.hpp"

#include <charconv>

#include <fmt/format.h>

#include "util/error.hpp"

namespace pgward {
namespace {

struct MethodRange {
    std::string_view name;
    int min_level;
    int max_level;
    int since_major;  // the first pg_dump that writes it
};

// The levels pg_dump itself accepts for each method.
constexpr MethodRange kMethods[] = {
    {"gzip", 1, 9, 10},
    {"lz4", 1, 12, 16},
    {"zstd", 1, 22, 16},
    {"none", 0, 0, 10},
};

const MethodRange* find_method(std::string_view name) {
    for (const MethodRange& m : kMethods) {
        if (m.name == name) {
            return &m;
        }
    }
    return nullptr;
}

Error bad_setting(std::string_view text, const std::string& why) {
    return usage_error(fmt::format("compression \"{}\" is not valid: {}", text, why),
                       "use auto, gzip[:1-9], lz4[:1-12], zstd[:1-22] or none");
}

}  // namespace

CompressionSetting CompressionSetting::parse(std::string_view text) {
    CompressionSetting setting;
    if (text == "auto" || text.empty()) {
        return setting;
    }
    setting.automatic = false;
    size_t colon = text.find(':');
    std::string_view name = text.substr(0, colon);
    const MethodRange* method = find_method(name);
    if (method == nullptr) {
        throw bad_setting(text, fmt::format("unknown method \"{}\"", name));
    }
    setting.method = std::string(name);
    if (colon == std::string_view::npos) {
        return setting;
    }
    std::string_view digits = text.substr(colon + 1);
    int level = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), level);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
        throw bad_setting(text, fmt::format("the level \"{}\" is not a number", digits));
    }
    if (method->name == "none") {
        throw bad_setting(text, "none takes no level");
    }
    if (level < method->min_level || level > method->max_level) {
        throw bad_setting(text, fmt::format("{} levels go from {} to {}", method->name,
                                            method->min_level, method->max_level));
    }
    setting.level = level;
    return setting;
}

std::string CompressionSetting::text() const {
    if (automatic) {
        return "auto";
    }
    return level ? fmt::format("{}:{}", method, *level) : method;
}

std::string CompressionChoice::text() const {
    return level ? fmt::format("{}:{}", method, *level) : method;
}

CompressionChoice choose_compression(const CompressionSetting& setting,
                                     const pg::Version& pg_dump) {
    const int major = pg_dump.major();
    CompressionChoice choice;
    if (setting.automatic) {
        // lz4 is as fast as zstd:1 but writes an archive about twice gzip's
        // size; zstd:1 is smaller than gzip and as fast as no compression.
        if (major >= 16) {
            choice.method = "zstd";
            choice.level = kAutoZstdLevel;
        } else {
            choice.method = "gzip";
        }
    } else {
        const MethodRange* method = find_method(setting.method);
        if (major < method->since_major) {
            throw usage_error(
                fmt::format("pg_dump {} cannot write {} archives: {} needs pg_dump {} or newer",
                            pg_dump.text(), setting.method, setting.method, method->since_major),
                fmt::format("with pg_dump {} use auto, gzip[:1-9] or none, or point --pg-bin / "
                            "PGWARD_PG_BIN at pg_dump {} or newer",
                            pg_dump.major_text(), method->since_major));
        }
        choice.method = setting.method;
        choice.level = setting.level;
    }
    if (major >= 16) {
        // Only gzip without a level is pg_dump's own default; say it anyway,
        // so the archive does not depend on that default.
        choice.pg_dump_args = {"--compress=" + choice.text()};
    } else if (choice.method == "none") {
        choice.pg_dump_args = {"--compress=0"};
    } else if (choice.level) {
        choice.pg_dump_args = {"--compress=" + std::to_string(*choice.level)};
    }
    return choice;
}

}  // namespace pgward
