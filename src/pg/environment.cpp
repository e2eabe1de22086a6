#include "pg/environment.hpp"

#include <libpq-fe.h>

#include <cstdlib>
#include <map>
#include <string_view>

extern char** environ;

namespace pgward::pg {
namespace {

struct Captured {
    bool done = false;
    Variables variables;
    Variables connection_defaults;
};

Captured& captured() {
    static Captured state;
    return state;
}

bool is_libpq_variable(std::string_view name) {
    return name.size() > 2 && name.substr(0, 2) == "PG" && name.substr(0, 7) != "PGWARD_";
}

std::map<std::string, std::string> conndefaults() {
    std::map<std::string, std::string> out;
    PQconninfoOption* options = PQconndefaults();
    if (options == nullptr) {
        return out;
    }
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        if (o->val != nullptr) {
            out[o->keyword] = o->val;
        }
    }
    PQconninfoFree(options);
    return out;
}

}  // namespace

std::vector<std::string> libpq_variable_names_in_environment() {
    std::vector<std::string> names;
    for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
        std::string_view text(*entry);
        size_t eq = text.find('=');
        if (eq != std::string_view::npos && is_libpq_variable(text.substr(0, eq))) {
            names.emplace_back(text.substr(0, eq));
        }
    }
    return names;
}

void capture_operator_environment() {
    Captured& state = captured();
    if (state.done) {
        return;
    }
    state.done = true;
    std::vector<std::string> names = libpq_variable_names_in_environment();
    for (const std::string& name : names) {
        state.variables.emplace_back(name, std::getenv(name.c_str()));
    }
    // What libpq makes of the variables and the service they name, against
    // what it makes of nothing: the difference is the operator's.
    std::map<std::string, std::string> with_environment = conndefaults();
    for (const std::string& name : names) {
        ::unsetenv(name.c_str());
    }
    std::map<std::string, std::string> bare = conndefaults();
    for (const auto& [keyword, value] : with_environment) {
        auto it = bare.find(keyword);
        // The service's values are already in; naming it again would make
        // libpq look it up where the removed PGSERVICEFILE no longer says.
        if (keyword != "service" && (it == bare.end() || it->second != value)) {
            state.connection_defaults.emplace_back(keyword, value);
        }
    }
}

const Variables& operator_variables() {
    return captured().variables;
}

std::optional<std::string> operator_variable(const std::string& name) {
    for (const auto& [key, value] : captured().variables) {
        if (key == name) {
            return value;
        }
    }
    return std::nullopt;
}

const Variables& operator_connection_defaults() {
    return captured().connection_defaults;
}

}  // namespace pgward::pg
