#include "harness/json_schema.hpp"

namespace pgward::test {
namespace {

bool has_type(const nlohmann::json& value, const std::string& type) {
    if (type == "null") {
        return value.is_null();
    }
    if (type == "boolean") {
        return value.is_boolean();
    }
    if (type == "integer") {
        return value.is_number_integer();
    }
    if (type == "number") {
        return value.is_number();
    }
    if (type == "string") {
        return value.is_string();
    }
    if (type == "array") {
        return value.is_array();
    }
    if (type == "object") {
        return value.is_object();
    }
    return false;
}

}  // namespace

std::vector<std::string> schema_problems(const nlohmann::json& schema, const nlohmann::json& value,
                                         const std::string& where) {
    std::vector<std::string> problems;
    std::string at = where.empty() ? "/" : where;
    if (schema.contains("type")) {
        bool ok = false;
        if (schema["type"].is_array()) {
            for (const auto& t : schema["type"]) {
                ok = ok || has_type(value, t.get<std::string>());
            }
        } else {
            ok = has_type(value, schema["type"].get<std::string>());
        }
        if (!ok) {
            problems.push_back(at + ": wrong type " + value.type_name());
            return problems;
        }
    }
    if (schema.contains("const") && value != schema["const"]) {
        problems.push_back(at + ": not " + schema["const"].dump());
    }
    if (schema.contains("enum")) {
        bool found = false;
        for (const auto& option : schema["enum"]) {
            found = found || option == value;
        }
        if (!found) {
            problems.push_back(at + ": " + value.dump() + " not in enum");
        }
    }
    if (schema.contains("required") && value.is_object()) {
        for (const auto& key : schema["required"]) {
            if (!value.contains(key.get<std::string>())) {
                problems.push_back(at + ": missing " + key.get<std::string>());
            }
        }
    }
    if (schema.contains("properties") && value.is_object()) {
        for (const auto& [key, sub] : schema["properties"].items()) {
            if (value.contains(key)) {
                auto more = schema_problems(sub, value[key], where + "/" + key);
                problems.insert(problems.end(), more.begin(), more.end());
            }
        }
    }
    if (schema.contains("items") && value.is_array()) {
        for (size_t i = 0; i < value.size(); ++i) {
            auto more = schema_problems(schema["items"], value[i], where + "/" + std::to_string(i));
            problems.insert(problems.end(), more.begin(), more.end());
        }
    }
    return problems;
}

}  // namespace pgward::test
