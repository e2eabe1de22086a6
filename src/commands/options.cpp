#include "commands/options.hpp"

#include <cstdlib>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/files.hpp"

namespace pgward::commands {

CLI::Option* OptionTable::add(CLI::App& app, const std::string& key, const std::string& flags,
                              const std::string& env, const std::string& help) {
    auto entry = std::make_unique<Entry>();
    entry->env = env;
    std::string text = help;
    if (!env.empty()) {
        text += " [env: " + env + "]";
    }
    CLI::Option* option = app.add_option(flags, entry->value, text);
    entry->flag = option->get_name();
    entries_[key] = std::move(entry);
    return option;
}

std::optional<Setting> OptionTable::get(const std::string& key) const {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
        return std::nullopt;
    }
    const Entry& entry = *it->second;
    if (entry.value) {
        return Setting{*entry.value, entry.flag, true};
    }
    if (!entry.env.empty()) {
        const char* value = std::getenv(entry.env.c_str());
        if (value != nullptr && *value != '\0') {
            return Setting{value, entry.env, false};
        }
    }
    return std::nullopt;
}

std::string OptionTable::get_or(const std::string& key, const std::string& fallback) const {
    auto setting = get(key);
    return setting ? setting->value : fallback;
}

uint64_t parse_number(const Setting& setting, uint64_t min, uint64_t max) {
    const std::string& text = setting.value;
    uint64_t value = 0;
    bool ok = !text.empty() && text.size() <= 19;
    for (char c : text) {
        if (c < '0' || c > '9') {
            ok = false;
            break;
        }
        value = value * 10 + static_cast<uint64_t>(c - '0');
    }
    if (!ok || value < min || value > max) {
        throw usage_error(fmt::format("invalid value \"{}\" for {}: expected a whole number from "
                                      "{} to {}",
                                      text, setting.origin, min, max),
                          fmt::format("fix {}", setting.origin));
    }
    return value;
}

std::optional<uint64_t> OptionTable::get_number(const std::string& key, uint64_t min,
                                                uint64_t max) const {
    auto setting = get(key);
    if (!setting) {
        return std::nullopt;
    }
    return parse_number(*setting, min, max);
}

void add_connection_options(OptionTable& table, CLI::App& app) {
    table.add(app, "host", "-h,--host", "POSTGRES_HOST", "server host or socket directory");
    table.add(app, "port", "-p,--port", "POSTGRES_PORT", "server port");
    table.add(app, "user", "-U,--username", "POSTGRES_USER", "user name");
    table.add(app, "dbname", "-d,--dbname", "POSTGRES_DB",
              "database: a name, a key=value conninfo string or a postgresql:// URI");
}

void add_watchdog_options(OptionTable& table, CLI::App& app) {
    table.add(app, "timeout", "--timeout", "POSTGRES_BACKUP_TIMEOUT_SECONDS",
              "kill pg_dump / pg_restore when the operation runs longer (default 21600)");
    table.add(app, "stall", "--stall-timeout", "POSTGRES_BACKUP_STALL_SECONDS",
              "kill pg_dump / pg_restore after this many seconds without progress (default "
              "900)");
}

WatchdogLimits watchdog_limits(const OptionTable& table) {
    return {std::chrono::seconds(table.get_number("timeout", 1, kTenYears).value_or(21600)),
            std::chrono::seconds(table.get_number("stall", 1, kTenYears).value_or(900))};
}

void add_compression_option(OptionTable& table, CLI::App& app) {
    table.add(app, "compression", "--compress", "POSTGRES_BACKUP_COMPRESSION",
              "auto (default: zstd:1 with pg_dump 16+, gzip before), gzip[:N], lz4[:N], "
              "zstd[:N] or none");
}

CompressionSetting compression_setting(const OptionTable& table) {
    auto setting = table.get("compression");
    if (!setting) {
        return {};
    }
    try {
        return CompressionSetting::parse(setting->value);
    } catch (const Error& e) {
        throw usage_error(fmt::format("{}: {}", setting->origin, e.what()), e.hint());
    }
}

std::optional<std::string> secret_from_environment(const std::string& name) {
    const char* value = std::getenv(name.c_str());
    const std::string file_name = name + "_FILE";
    const char* file = std::getenv(file_name.c_str());
    bool has_value = value != nullptr && *value != '\0';
    bool has_file = file != nullptr && *file != '\0';
    if (has_value && has_file) {
        throw usage_error(fmt::format("both {} and {} are set", name, file_name),
                          "set only one of them");
    }
    if (has_value) {
        return std::string(value);
    }
    if (!has_file) {
        return std::nullopt;
    }
    std::string secret;
    try {
        secret = read_file(file);
    } catch (const Error& e) {
        throw usage_error(fmt::format("cannot read {}: {}", file_name, e.what()),
                          fmt::format("point {} at a readable file", file_name));
    }
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) {
        secret.pop_back();
    }
    return secret;
}

pg::ConnectionOptions OptionTable::connection() const {
    pg::ConnectionOptions options;
    auto convert =
        [](const std::optional<Setting>& s) -> std::optional<pg::ConnectionOptions::Setting> {
        if (!s) {
            return std::nullopt;
        }
        return pg::ConnectionOptions::Setting{s->value, s->from_flag};
    };
    options.host = convert(get("host"));
    if (auto port = get("port")) {
        parse_number(*port, 1, 65535);
        options.port = convert(port);
    }
    options.user = convert(get("user"));
    options.dbname = convert(get("dbname"));

    // The password comes only from the environment or a file, never a flag:
    // argv is readable by every user of the machine.
    options.password = secret_from_environment("POSTGRES_PASSWORD");
    return options;
}

}  // namespace pgward::commands
