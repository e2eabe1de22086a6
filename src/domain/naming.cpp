#include "domain/naming.hpp"

#include <algorithm>

namespace pgward {
namespace {

bool is_plain(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;  // lowercase hex is not canonical
}

bool strip_suffix(std::string_view& text, std::string_view suffix) {
    if (text.size() > suffix.size() && text.substr(text.size() - suffix.size()) == suffix) {
        text.remove_suffix(suffix.size());
        return true;
    }
    return false;
}

}  // namespace

std::string encode_db_name(std::string_view name) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(name.size());
    for (size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        if (is_plain(c) && !(i == 0 && c == '.')) {
            out += c;
        } else {
            auto byte = static_cast<unsigned char>(c);
            out += '%';
            out += kHex[byte >> 4];
            out += kHex[byte & 0xf];
        }
    }
    return out;
}

std::optional<std::string> decode_db_name(std::string_view encoded) {
    std::string out;
    for (size_t i = 0; i < encoded.size(); ++i) {
        char c = encoded[i];
        if (c == '%') {
            if (i + 2 >= encoded.size()) {
                return std::nullopt;
            }
            int high = hex_value(encoded[i + 1]);
            int low = hex_value(encoded[i + 2]);
            if (high < 0 || low < 0) {
                return std::nullopt;
            }
            out += static_cast<char>(high * 16 + low);
            i += 2;
        } else if (is_plain(c)) {
            out += c;
        } else {
            return std::nullopt;
        }
    }
    if (out.empty() || encode_db_name(out) != encoded) {
        return std::nullopt;
    }
    return out;
}

std::string BackupId::stem() const {
    return encode_db_name(database) + "_" + format_compact_utc(started) +
           (pre_restore ? std::string(kPreRestoreSuffix) : std::string());
}

std::optional<ParsedFileName> parse_backup_file_name(std::string_view file_name) {
    ParsedFileName parsed{};
    std::string_view rest = file_name;
    parsed.temporary = strip_suffix(rest, ".tmp");
    const bool encrypted = strip_suffix(rest, BackupId::kAgeSuffix);
    if (strip_suffix(rest, ".dump")) {
        parsed.role = FileRole::Dump;
    } else if (strip_suffix(rest, ".globals.sql")) {
        parsed.role = FileRole::Globals;
    } else if (!encrypted && strip_suffix(rest, ".json")) {
        parsed.role = FileRole::Manifest;
    } else {
        return std::nullopt;
    }
    const bool pre_restore = strip_suffix(rest, kPreRestoreSuffix);
    // <encoded db>_<16-char timestamp>
    constexpr size_t kStampLength = 16;
    if (rest.size() < kStampLength + 2 || rest[rest.size() - kStampLength - 1] != '_') {
        return std::nullopt;
    }
    auto started = parse_compact_utc(rest.substr(rest.size() - kStampLength));
    auto database = decode_db_name(rest.substr(0, rest.size() - kStampLength - 1));
    if (!started || !database) {
        return std::nullopt;
    }
    parsed.id = BackupId{*database, *started, pre_restore, encrypted};
    return parsed;
}

std::string lock_file_name(std::string_view database) {
    return ".pgward-" + encode_db_name(database) + ".lock";
}

bool is_future_dated(const BackupId& id, TimePoint now) {
    return id.started > now + kFutureTolerance;
}

void sort_newest_first(std::vector<BackupId>& ids, TimePoint now) {
    std::sort(ids.begin(), ids.end(), [now](const BackupId& a, const BackupId& b) {
        bool a_future = is_future_dated(a, now);
        bool b_future = is_future_dated(b, now);
        if (a_future != b_future) {
            return b_future;
        }
        return a.started > b.started;
    });
}

}  // namespace pgward
