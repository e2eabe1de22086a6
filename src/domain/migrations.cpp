#include "domain/migrations.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "util/error.hpp"
#include "util/files.hpp"
#include "util/log.hpp"
#include "util/process.hpp"

namespace pgward {
namespace {

std::string percent_encode(const std::string& text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : text) {
        if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += kHex[c >> 4];
            out += kHex[c & 0xf];
        }
    }
    return out;
}

}  // namespace

std::vector<std::string> apply_sql_migrations(pg::Connection& conn,
                                              const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
        if (entry.is_regular_file() && entry.path().extension() == ".sql") {
            files.push_back(entry.path());
        }
    }
    if (ec) {
        throw os_error("cannot read the migrations directory", dir.string(), ec.value());
    }
    if (files.empty()) {
        throw failure(fmt::format("no .sql files in {}", dir.string()),
                      "point --migrations at the directory of the app's SQL migrations");
    }
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
        return a.filename().string() < b.filename().string();
    });
    conn.exec(
        "CREATE TABLE IF NOT EXISTS alembic_version (version_num varchar(32) NOT NULL, "
        "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))");
    std::vector<std::string> applied;
    for (const auto& file : files) {
        std::string version = file.stem().string().substr(0, 32);
        std::string sql = read_file(file);
        try {
            conn.exec("BEGIN");
            conn.exec(sql);
            conn.exec("DELETE FROM alembic_version");
            conn.exec("INSERT INTO alembic_version (version_num) VALUES ($1)", {version});
            conn.exec("COMMIT");
        } catch (const Error& e) {
            try {
                conn.exec("ROLLBACK");
            } catch (const Error&) {
            }
            throw failure(
                fmt::format("migration {} failed: {}", file.filename().string(), e.what()),
                "fix the migration; its transaction was rolled back");
        }
        log::info("migration applied", {{"file", file.filename().string()}, {"version", version}});
        applied.push_back(version);
    }
    return applied;
}

void run_migrate_command(const std::string& command_text, const pg::Connection& conn) {
    PGconn* raw = conn.raw();
    std::string host = PQhost(raw);
    std::string port = PQport(raw);
    std::string user = PQuser(raw);
    std::string db = PQdb(raw);
    std::optional<std::string> password = conn.password_used();
    const bool socket = !host.empty() && host.front() == '/';
    std::string url =
        fmt::format("postgresql://{}{}@{}:{}/{}", percent_encode(user),
                    password ? fmt::format(":{}", percent_encode(*password)) : std::string(),
                    socket ? std::string() : host, port, percent_encode(db));
    if (socket) {
        url += fmt::format("?host={}", percent_encode(host));
    }
    Command command;
    command.argv = {"/bin/sh", "-c", command_text};
    command.set_env = {{"DATABASE_URL", url},
                       {"PGHOST", host},
                       {"PGPORT", port},
                       {"PGUSER", user},
                       {"PGDATABASE", db}};
    if (password) {
        command.set_env.emplace_back("PGPASSWORD", *password);
    }
    command.unset_env = {"POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE"};
    log::info("running the migrate command", {{"command", command_text}, {"database", db}});
    Child child = Child::spawn(command);
    PumpHandlers handlers;
    auto relay = [](std::string_view line) {
        if (!line.empty()) {
            log::info("migrate", {{"line", std::string(line)}});
        }
    };
    std::string out_partial;
    handlers.on_stdout = [&](const char* data, size_t size) {
        out_partial.append(data, size);
        size_t start = 0;
        for (size_t nl; (nl = out_partial.find('\n', start)) != std::string::npos; start = nl + 1) {
            relay(std::string_view(out_partial).substr(start, nl - start));
        }
        out_partial.erase(0, start);
    };
    handlers.on_stderr_line = relay;
    ExitStatus status = pump(child, handlers);
    relay(out_partial);
    if (!status.ok()) {
        throw failure(
            fmt::format("the migrate command failed ({}): {}", status.describe(), command_text),
            "see its output above");
    }
}

}  // namespace pgward
