#include "pg/tools.hpp"

#include <unistd.h>

#include <cstdlib>
#include <regex>

#include <fmt/format.h>

#include "pg/connection.hpp"
#include "util/error.hpp"
#include "util/process.hpp"

namespace pgward::pg {
namespace {

bool is_executable_file(const std::filesystem::path& path) {
    std::error_code ec;
    return std::filesystem::is_regular_file(path, ec) && ::access(path.c_str(), X_OK) == 0;
}

std::optional<std::filesystem::path> search_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    if (path == nullptr) {
        return std::nullopt;
    }
    std::string_view rest(path);
    while (!rest.empty()) {
        size_t colon = rest.find(':');
        std::string_view dir = rest.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
        if (dir.empty()) {
            continue;
        }
        std::filesystem::path candidate = std::filesystem::path(dir) / name;
        if (is_executable_file(candidate)) {
            return candidate;
        }
    }
    return std::nullopt;
}

}  // namespace

std::string Version::major_text() const {
    if (num >= 100000) {
        return std::to_string(major());
    }
    return fmt::format("{}.{}", num / 10000, (num / 100) % 100);
}

std::string Version::text() const {
    if (num >= 100000) {
        return fmt::format("{}.{}", num / 10000, num % 10000);
    }
    return fmt::format("{}.{}.{}", num / 10000, (num / 100) % 100, num % 100);
}

std::optional<Version> parse_tool_version(std::string_view text) {
    static const std::regex pattern(R"(\(PostgreSQL\) (\d+)(?:\.(\d+))?(?:\.(\d+))?)");
    std::match_results<std::string_view::const_iterator> m;
    if (!std::regex_search(text.begin(), text.end(), m, pattern)) {
        return std::nullopt;
    }
    int first = std::stoi(m[1].str());
    int second = m[2].matched ? std::stoi(m[2].str()) : 0;
    int third = m[3].matched ? std::stoi(m[3].str()) : 0;
    if (first >= 10) {
        return Version{first * 10000 + second};
    }
    return Version{first * 10000 + second * 100 + third};
}

std::filesystem::path ToolFinder::locate(const std::string& name) const {
    if (pg_bin_) {
        std::filesystem::path candidate = *pg_bin_ / name;
        if (is_executable_file(candidate)) {
            return candidate;
        }
        std::error_code ec;
        if (std::filesystem::is_regular_file(candidate, ec)) {
            throw failure(fmt::format("{} is not executable (from --pg-bin/PGWARD_PG_BIN)",
                                      candidate.string()),
                          "make it executable (chmod +x) or point --pg-bin at another client");
        }
        throw failure(fmt::format("{} not found in {} (from --pg-bin/PGWARD_PG_BIN)", name,
                                  pg_bin_->string()),
                      "point --pg-bin at the bin directory of a PostgreSQL client installation");
    }
    if (auto found = search_path(name)) {
        return *found;
    }
    if (auto pg_config = search_path("pg_config")) {
        CapturedRun run = run_captured(Command{{pg_config->string(), "--bindir"}, {}, {}},
                                       std::chrono::seconds(30));
        std::string dir = run.out.substr(0, run.out.find('\n'));
        if (run.status.ok() && is_executable_file(std::filesystem::path(dir) / name)) {
            return std::filesystem::path(dir) / name;
        }
    }
    throw failure(fmt::format("{} not found on PATH", name),
                  "install the PostgreSQL client tools (postgresql-client) or set PGWARD_PG_BIN");
}

Tool ToolFinder::find(const std::string& name) const {
    Tool tool;
    tool.path = locate(name);
    CapturedRun run =
        run_captured(Command{{tool.path.string(), "--version"}, {}, {}}, std::chrono::seconds(30));
    tool.version_line = run.out.substr(0, run.out.find('\n'));
    std::optional<Version> version = parse_tool_version(run.out);
    if (!run.status.ok() || !version) {
        throw failure(fmt::format("{} --version did not report a PostgreSQL version ({}): {}",
                                  tool.path.string(), run.status.describe(),
                                  tool.version_line.empty() ? run.err : tool.version_line),
                      "point --pg-bin/PGWARD_PG_BIN at a working PostgreSQL client installation");
    }
    tool.version = *version;
    return tool;
}

Command list_archive_command(const Tool& pg_restore, const std::filesystem::path& archive) {
    Command command{{pg_restore.path.string(), "--list"}, {{"LC_MESSAGES", "C"}}, {"LC_ALL"}};
    if (!archive.empty()) {
        command.argv.push_back(archive.string());
    }
    return command;
}

Command server_tool_command(const Tool& tool, std::vector<std::string> args, const Connection& conn,
                            const std::string& application_name) {
    Command command;
    command.argv.push_back(tool.path.string());
    command.argv.insert(command.argv.end(), args.begin(), args.end());
    command.argv.push_back("--no-password");
    command.argv.push_back("--dbname=" + conn.child_conninfo());
    for (const auto& [name, value] : conn.child_environment()) {
        if (name != "PGPASSWORD" && name != "PGAPPNAME") {
            command.set_env.emplace_back(name, value);
        }
    }
    command.set_env.emplace_back("PGAPPNAME", application_name);
    if (auto password = conn.password_used()) {
        command.set_env.emplace_back("PGPASSWORD", *password);
    }
    command.set_env.emplace_back("LC_MESSAGES", "C");
    command.unset_env = {"POSTGRES_PASSWORD", "POSTGRES_PASSWORD_FILE", "LC_ALL"};
    return command;
}

}  // namespace pgward::pg
