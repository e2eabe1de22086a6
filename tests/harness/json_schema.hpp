#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgward::test {

// A small JSON Schema check (type, const, enum, required, properties,
// items): enough to hold the drill report to its published schema.
// Returns the problems found, each with its JSON pointer.
std::vector<std::string> schema_problems(const nlohmann::json& schema, const nlohmann::json& value,
                                         const std::string& where = "");

}  // namespace pgward::test
