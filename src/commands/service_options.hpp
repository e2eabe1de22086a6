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

bool parse_bool(const Setting& setting);

// The database the service is about, before any connection: -d/POSTGRES_DB,
// else libpq's default (PGDATABASE, then the user name).
std::string service_database(const OptionTable& table);

}  // namespace pgward::commands
