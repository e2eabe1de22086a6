#pragma once

#include <chrono>
#include <string>

#include "commands/options.hpp"
#include "domain/health.hpp"

namespace pgward::commands {

// Options that `run`, `status` and `healthcheck` share, so the freshness
// check means the same thing in all three.
void add_health_options(OptionTable& table, CLI::App& app);
HealthPolicy health_policy(const OptionTable& table);

// true/1/yes/on or false/0/no/off, or true for a switch given alone.
bool parse_bool(const Setting& setting);
// A boolean option that may be given alone (--wal) or with a value
// (--wal false), or by its variable; read it with parse_bool.
void add_switch(OptionTable& table, CLI::App& app, const std::string& key, const std::string& flags,
                const std::string& env, const std::string& help);

// The database the service is about, before any connection: -d/POSTGRES_DB,
// else libpq's default (PGDATABASE, then the user name).
std::string service_database(const OptionTable& table);

}  // namespace pgward::commands
