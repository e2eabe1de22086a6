#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace pgward {

// One named check with what was expected and what was found: the unit of
// smoke reports and drill reports.
struct Check {
    std::string name;
    bool passed = false;
    std::string expected;
    std::string actual;
};

inline nlohmann::ordered_json to_json(const Check& c) {
    return {{"name", c.name}, {"passed", c.passed}, {"expected", c.expected}, {"actual", c.actual}};
}

inline bool all_passed(const std::vector<Check>& checks) {
    for (const Check& c : checks) {
        if (!c.passed) {
            return false;
        }
    }
    return true;
}

}  // namespace pgward
