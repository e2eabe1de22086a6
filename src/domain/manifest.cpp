#include "domain/manifest.hpp"

#include "domain/json_fields.hpp"
#include "util/error.hpp"
#include "util/files.hpp"

namespace pgward {

nlohmann::ordered_json manifest_private_to_json(const Manifest& m) {
    nlohmann::ordered_json doc;
    doc["schema_version"] = optional_json(m.schema_version);
    if (m.large_objects_fingerprint) {
        doc["large_objects_fingerprint"] = *m.large_objects_fingerprint;
    }
    if (m.sequences_behind) {
        doc["sequences_behind"] = *m.sequences_behind;
    }
    if (m.invalid_indexes) {
        doc["invalid_indexes"] = *m.invalid_indexes;
    }
    nlohmann::ordered_json tables = nlohmann::ordered_json::array();
    for (const TableEntry& t : m.tables) {
        nlohmann::ordered_json entry;
        entry["schema"] = t.schema;
        entry["name"] = t.name;
        entry["rows"] = optional_json(t.rows);
        entry["fingerprint"] = optional_json(t.fingerprint);
        if (t.extension) {
            entry["extension"] = *t.extension;
        }
        tables.push_back(std::move(entry));
    }
    doc["tables"] = std::move(tables);
    if (m.written_around_restore_point) {
        nlohmann::ordered_json written = nlohmann::ordered_json::array();
        for (const auto& [schema, name] : *m.written_around_restore_point) {
            written.push_back({{"schema", schema}, {"name", name}});
        }
        doc["written_around_restore_point"] = std::move(written);
    }
    return doc;
}

nlohmann::ordered_json manifest_to_json(const Manifest& m) {
    nlohmann::ordered_json doc;
    doc["format"] = kManifestFormat;
    doc["database"] = m.database;
    doc["kind"] = m.kind;
    if (m.restoring) {
        doc["restoring"] = *m.restoring;
    }
    doc["system_identifier"] = optional_json(m.system_identifier);
    doc["file"] = m.file;
    doc["size_bytes"] = m.size_bytes;
    doc["sha256"] = m.sha256;
    doc["started_at"] = m.started_at;
    doc["finished_at"] = m.finished_at;
    doc["duration_seconds"] = m.duration_seconds;
    doc["server_version"] = m.server_version;
    doc["pg_dump_version"] = m.pg_dump_version;
    doc["pgward_version"] = m.pgward_version;
    doc["archive_version"] = m.archive_version;
    doc["compression"] = m.compression;
    doc["large_objects"] = optional_json(m.large_objects);
    if (m.restore_point) {
        doc["restore_point"] = {{"name", m.restore_point->name}, {"lsn", m.restore_point->lsn}};
        if (m.restore_point->gap_ms) {
            doc["restore_point"]["gap_ms"] = *m.restore_point->gap_ms;
        }
        if (m.restore_point->counters_window_ms) {
            doc["restore_point"]["counters_window_ms"] = *m.restore_point->counters_window_ms;
        }
    }
    if (m.encryption) {
        // Nothing that names a table or holds a row stays readable.
        doc["encryption"] = {{"format", m.encryption->format},
                             {"recipients", m.encryption->recipients},
                             {"sealed", m.encryption->sealed}};
        return doc;
    }
    nlohmann::ordered_json private_part = manifest_private_to_json(m);
    for (auto it = private_part.begin(); it != private_part.end(); ++it) {
        doc[it.key()] = std::move(it.value());
    }
    return doc;
}

void manifest_private_from_json(const nlohmann::json& doc, Manifest& m, const std::string& source) {
    try {
        m.schema_version = optional_string(doc, "schema_version");
        m.large_objects_fingerprint = optional_string(doc, "large_objects_fingerprint");
        for (auto [key, field] : {std::pair{"sequences_behind", &m.sequences_behind},
                                  std::pair{"invalid_indexes", &m.invalid_indexes}}) {
            if (doc.contains(key) && !doc.at(key).is_null()) {
                *field = doc.at(key).get<std::vector<std::string>>();
            }
        }
        m.tables.clear();
        for (const auto& t : doc.at("tables")) {
            TableEntry entry;
            entry.schema = t.at("schema").get<std::string>();
            entry.name = t.at("name").get<std::string>();
            if (t.contains("rows") && !t.at("rows").is_null()) {
                entry.rows = t.at("rows").get<uint64_t>();
            }
            entry.fingerprint = optional_string(t, "fingerprint");
            entry.extension = optional_string(t, "extension");
            m.tables.push_back(std::move(entry));
        }
        if (doc.contains("written_around_restore_point")) {
            m.written_around_restore_point.emplace();
            for (const auto& t : doc.at("written_around_restore_point")) {
                m.written_around_restore_point->emplace_back(t.at("schema").get<std::string>(),
                                                             t.at("name").get<std::string>());
            }
        }
    } catch (const nlohmann::json::exception& e) {
        throw failure("manifest " + source + " is malformed: " + e.what(),
                      "the sidecar was edited or damaged; `pgward verify --deep` still reads the "
                      "archive itself");
    }
}

Manifest manifest_from_json(const nlohmann::json& doc, const std::string& source) {
    try {
        if (!doc.is_object() || doc.value("format", "") != kManifestFormat) {
            throw failure("manifest " + source + " is not a " + kManifestFormat + " document");
        }
        Manifest m;
        m.database = doc.at("database").get<std::string>();
        m.kind = doc.value("kind", kKindBackup);
        m.restoring = optional_string(doc, "restoring");
        m.system_identifier = optional_string(doc, "system_identifier");
        m.file = doc.at("file").get<std::string>();
        m.size_bytes = doc.at("size_bytes").get<uint64_t>();
        m.sha256 = doc.at("sha256").get<std::string>();
        m.started_at = doc.at("started_at").get<std::string>();
        m.finished_at = doc.at("finished_at").get<std::string>();
        m.duration_seconds = doc.at("duration_seconds").get<double>();
        m.server_version = doc.at("server_version").get<std::string>();
        m.pg_dump_version = doc.at("pg_dump_version").get<std::string>();
        m.pgward_version = doc.value("pgward_version", "");
        m.archive_version = doc.value("archive_version", "");
        m.compression = doc.value("compression", "");
        if (doc.contains("large_objects") && !doc.at("large_objects").is_null()) {
            m.large_objects = doc.at("large_objects").get<uint64_t>();
        }
        if (doc.contains("restore_point") && !doc.at("restore_point").is_null()) {
            const nlohmann::json& point = doc.at("restore_point");
            m.restore_point = Manifest::RestorePoint{point.at("name").get<std::string>(),
                                                     point.at("lsn").get<std::string>(),
                                                     std::nullopt, std::nullopt};
            if (point.contains("gap_ms")) {
                m.restore_point->gap_ms = point.at("gap_ms").get<double>();
            }
            if (point.contains("counters_window_ms")) {
                m.restore_point->counters_window_ms = point.at("counters_window_ms").get<double>();
            }
        }
        if (doc.contains("encryption")) {
            const nlohmann::json& e = doc.at("encryption");
            ManifestEncryption encryption;
            encryption.format = e.at("format").get<std::string>();
            encryption.recipients = e.at("recipients").get<std::vector<std::string>>();
            encryption.sealed = e.at("sealed").get<std::string>();
            m.encryption = std::move(encryption);
        } else {
            manifest_private_from_json(doc, m, source);
        }
        return m;
    } catch (const nlohmann::json::exception& e) {
        throw failure("manifest " + source + " is malformed: " + e.what(),
                      "the sidecar was edited or damaged; `pgward verify --deep` still reads the "
                      "archive itself");
    }
}

Manifest read_manifest(const std::filesystem::path& path) {
    std::string text = read_file(path);
    nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
        throw failure("manifest " + path.string() + " is not valid JSON",
                      "the sidecar was edited or damaged");
    }
    return manifest_from_json(doc, path.string());
}

namespace {

bool is_encrypted(const std::string& file) {
    return file.size() > 4 && file.compare(file.size() - 4, 4, ".age") == 0;
}

// Collects the top-level scalars a ManifestHead needs and stops the parse at
// the first nested value once it has them ("tables" comes last).
class HeadCollector : public nlohmann::json_sax<nlohmann::json> {
  public:
    bool null() override { return scalar({}); }
    bool boolean(bool) override { return scalar({}); }
    bool number_integer(number_integer_t) override { return scalar({}); }
    bool number_unsigned(number_unsigned_t value) override {
        if (depth_ == 1 && key_ == "size_bytes") {
            size_ = value;
        }
        return scalar({});
    }
    bool number_float(number_float_t, const string_t&) override { return scalar({}); }
    bool string(string_t& value) override { return scalar(value); }
    // JSON text has no binary values (only CBOR, MessagePack and the like
    // do), so sax_parse of a manifest never calls this; the interface needs it.
    bool binary(binary_t&) override { return scalar({}); }  // GCOVR_EXCL_LINE
    bool start_object(std::size_t) override { return open(); }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(); }
    bool end_array() override { return close(); }
    bool key(string_t& value) override {
        if (depth_ == 1) {
            key_ = value;
        }
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
        malformed_ = true;
        return false;
    }

    bool complete() const { return format_ && database_ && file_ && size_; }
    bool malformed() const { return malformed_; }
    bool right_format() const { return format_ == kManifestFormat; }
    ManifestHead head() const {
        return ManifestHead{*database_,          *file_, *size_,
                            compression_,        kind_,  system_identifier_,
                            is_encrypted(*file_)};
    }

  private:
    bool scalar(const std::string& value) {
        if (depth_ == 1) {
            if (key_ == "format") {
                format_ = value;
            } else if (key_ == "database") {
                database_ = value;
            } else if (key_ == "file") {
                file_ = value;
            } else if (key_ == "compression") {
                compression_ = value;
            } else if (key_ == "kind") {
                kind_ = value;
            } else if (key_ == "system_identifier" && !value.empty()) {
                system_identifier_ = value;
            }
        }
        return true;
    }
    bool open() {
        ++depth_;
        return depth_ == 1 || !complete();
    }
    bool close() {
        --depth_;
        return true;
    }

    int depth_ = 0;
    std::string key_;
    std::optional<std::string> format_, database_, file_;
    std::string compression_;
    std::string kind_ = kKindBackup;
    std::optional<std::string> system_identifier_;
    std::optional<uint64_t> size_;
    bool malformed_ = false;
};

}  // namespace

ManifestHead read_manifest_head(const std::filesystem::path& path) {
    // The head fields come first: one read of the start of the file is
    // usually all it takes (open, read, close: three system calls).
    std::string text = read_file_start(path, 4096);
    HeadCollector collector;
    nlohmann::json::sax_parse(text, &collector);
    if (collector.complete() && collector.right_format()) {
        return collector.head();
    }
    HeadCollector whole;
    text = read_file(path);
    nlohmann::json::sax_parse(text, &whole);
    if (whole.complete() && whole.right_format()) {
        return whole.head();
    }
    if (whole.malformed()) {
        throw failure("manifest " + path.string() + " is not valid JSON",
                      "the sidecar was edited or damaged");
    }
    // Not a manifest, or one missing a field: the full reader names the problem.
    Manifest full = read_manifest(path);
    return ManifestHead{full.database,
                        full.file,
                        full.size_bytes,
                        full.compression,
                        full.kind,
                        full.system_identifier,
                        full.encryption.has_value()};
}

}  // namespace pgward
