#include "commands/cli.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "domain/repository.hpp"
#include "util/error.hpp"
#include "util/log.hpp"
#include "util/signals.hpp"

namespace pgward::commands {

std::string database_or_only_one(const OptionTable& table, const BackupRepository& repo) {
    if (auto name = database_name(table)) {
        return *name;
    }
    std::vector<std::string> names = repo.databases();
    if (names.size() == 1) {
        return names.front();
    }
    if (names.empty()) {
        throw failure(fmt::format("no backups in {}", repo.dir().string()),
                      "check --dir / POSTGRES_BACKUP_DIR");
    }
    throw usage_error(fmt::format("{} holds backups of {} databases; name one", repo.dir().string(),
                                  names.size()),
                      "pass --dbname (or set POSTGRES_DB)");
}

std::optional<std::string> database_name(const OptionTable& table) {
    auto setting = table.get("dbname");
    if (!setting) {
        return std::nullopt;
    }
    const std::string& value = setting->value;
    bool conninfo = value.find('=') != std::string::npos || value.rfind("postgresql://", 0) == 0 ||
                    value.rfind("postgres://", 0) == 0;
    if (!conninfo) {
        return value;
    }
    char* error = nullptr;
    PQconninfoOption* options = PQconninfoParse(value.c_str(), &error);
    if (options == nullptr) {
        std::string message = error == nullptr ? "out of memory" : error;
        PQfreemem(error);
        while (!message.empty() && message.back() == '\n') {
            message.pop_back();
        }
        throw usage_error(
            fmt::format("invalid connection string in {}: {}", setting->origin, message));
    }
    std::optional<std::string> name;
    for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
        if (std::string_view(o->keyword) == "dbname" && o->val != nullptr && *o->val != '\0') {
            name = o->val;
        }
    }
    PQconninfoFree(options);
    return name;
}

int run_cli(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);
    try {
        const char* format = std::getenv("PGWARD_LOG_FORMAT");
        log::configure(log::parse_format(format == nullptr ? "" : format), stderr);

        CLI::App app{"pgward: PostgreSQL backups you have proven you can restore", "pgward"};
        app.require_subcommand(1);
        // -h is --host, as in every PostgreSQL tool; help is --help only.
        app.set_help_flag("--help", "show this help");
        app.set_help_all_flag("--help-all", "show help for every command");
        app.set_version_flag("--version", "pgward " PGWARD_VERSION, "print pgward's version");
        std::vector<std::unique_ptr<Command>> commands = make_commands();
        Command* selected = nullptr;
        for (auto& command : commands) {
            CLI::App* sub = app.add_subcommand(command->name(), command->summary());
            command->setup(*sub);
            Command* raw = command.get();
            sub->final_callback([&selected, raw] { selected = raw; });
        }
        if (argc > 1 && argv[1][0] != '-') {
            // CLI11 would only say that a command is required.
            std::string names;
            bool known = false;
            for (const auto& command : commands) {
                known = known || std::string_view(command->name()) == argv[1];
                names += (names.empty() ? "" : ", ") + std::string(command->name());
            }
            if (!known) {
                std::fprintf(stderr, "pgward: unknown command \"%s\" (hint: the commands are %s)\n",
                             argv[1], names.c_str());
                return 2;
            }
        }
        try {
            app.parse(argc, argv);
        } catch (const CLI::CallForHelp& e) {
            return app.exit(e);
        } catch (const CLI::CallForAllHelp& e) {
            return app.exit(e);
        } catch (const CLI::CallForVersion& e) {
            return app.exit(e);
        } catch (const CLI::ParseError& e) {
            std::fprintf(stderr, "pgward: %s (hint: see `pgward --help`)\n", e.what());
            return 2;
        }
        install_interrupt_handlers();
        return selected->run();
    } catch (const Error& e) {
        std::fflush(stdout);  // what was printed comes before the error line
        std::fprintf(stderr, "%s\n", format_error_line(e).c_str());
        return exit_code(e.kind());
    } catch (const std::filesystem::filesystem_error& e) {
        // An OS error like any other: the operation, the path, the errno's text.
        std::fflush(stdout);
        std::fprintf(stderr, "%s\n", format_error_line(filesystem_failure(e)).c_str());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pgward: internal error: %s\n", e.what());
        return 1;
    }
}

}  // namespace pgward::commands
