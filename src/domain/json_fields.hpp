#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace pgward {

// A value, or JSON null when it is absent: how manifests, state files and
// reports write a field that may be unknown.
template <typename T>
nlohmann::ordered_json optional_json(const std::optional<T>& value) {
    return value ? nlohmann::ordered_json(*value) : nlohmann::ordered_json();
}

// The string at `key`, or nullopt when the key is missing or null.
inline std::optional<std::string> optional_string(const nlohmann::json& doc, const char* key) {
    if (!doc.contains(key) || doc.at(key).is_null()) {
        return std::nullopt;
    }
    return doc.at(key).get<std::string>();
}

}  // namespace pgward
