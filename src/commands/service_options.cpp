#include "commands/service_options.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <libpq-fe.h>

#include "commands/command.hpp"
#include "util/error.hpp"

namespace pgward::commands {

void add_health_options(OptionTable& table, CLI::App& app) {
    table.add(app, "interval", "--interval", "POSTGRES_BACKUP_INTERVAL_SECONDS",
              "seconds between backup starts (default 86400)");
    table.add(app, "grace", "--health-grace", "PGWARD_HEALTH_GRACE_SECONDS",
              "seconds of slack for the freshness check and after a start (default 3600)");
    table.add(app, "max_age", "--max-age", "PGWARD_HEALTH_MAX_AGE_SECONDS",
              "unhealthy when the newest backup is older (default interval x 1.5 + grace)");
    table.add(app, "remote_max_age", "--remote-max-age", "PGWARD_HEALTH_REMOTE_MAX_AGE_SECONDS",
              "with an offsite copy: unhealthy when the newest proven copy is older (default: "
              "the --max-age limit)");
}

HealthPolicy health_policy(const OptionTable& table) {
    HealthPolicy policy;
    policy.interval =
        std::chrono::seconds(table.get_number("interval", 1, kTenYears).value_or(86400));
    policy.grace = std::chrono::seconds(table.get_number("grace", 0, kTenYears).value_or(3600));
    if (auto max_age = table.get_number("max_age", 1, kTenYears)) {
        policy.max_age = std::chrono::seconds(*max_age);
    }
    if (auto remote_max_age = table.get_number("remote_max_age", 1, kTenYears)) {
        policy.remote_max_age = std::chrono::seconds(*remote_max_age);
    }
    return policy;
}

bool parse_bool(const Setting& setting) {
    if (setting.from_flag && setting.value.empty()) {
        return true;  // a switch given alone (add_switch): --wal
    }
    std::string v = setting.value;
    std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::tolower(c); });
    if (v == "true" || v == "1" || v == "yes" || v == "on") {
        return true;
    }
    if (v == "false" || v == "0" || v == "no" || v == "off") {
        return false;
    }
    throw usage_error(fmt::format("invalid value \"{}\" for {}: expected true or false",
                                  setting.value, setting.origin),
                      fmt::format("fix {}", setting.origin));
}

void add_switch(OptionTable& table, CLI::App& app, const std::string& key, const std::string& flags,
                const std::string& env, const std::string& help) {
    table.add(app, key, flags, env, help + " (alone: true)")->expected(0, 1);
}

std::string service_database(const OptionTable& table) {
    if (auto name = database_name(table)) {
        return *name;
    }
    std::string fallback;
    if (auto user = table.get("user")) {
        fallback = user->value;
    }
    PQconninfoOption* defaults = PQconndefaults();
    for (PQconninfoOption* o = defaults; o != nullptr && o->keyword != nullptr; ++o) {
        std::string_view key = o->keyword;
        if (o->val != nullptr && *o->val != '\0') {
            if (key == "dbname") {
                PQconninfoFree(defaults);
                return o->val;
            }
            if (key == "user" && fallback.empty()) {
                fallback = o->val;
            }
        }
    }
    PQconninfoFree(defaults);
    if (fallback.empty()) {
        throw usage_error("cannot tell which database to back up",
                          "set POSTGRES_DB (or pass --dbname)");
    }
    return fallback;
}

}  // namespace pgward::commands
