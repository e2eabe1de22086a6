#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "pg/tools.hpp"
#include "util/error.hpp"

namespace pgward::commands {
namespace {

class VersionCommand : public Command {
  public:
    const char* name() const override { return "version"; }
    const char* summary() const override {
        return "pgward's version and the pg_dump/pg_restore it will use";
    }

    void setup(CLI::App& app) override {
        options_.add(app, "pg_bin", "--pg-bin", "PGWARD_PG_BIN",
                     "directory of the PostgreSQL tools");
    }

    int run() override {
        fmt::print("pgward {}\n", PGWARD_VERSION);
        std::optional<std::filesystem::path> pg_bin;
        if (auto setting = options_.get("pg_bin")) {
            pg_bin = setting->value;
        }
        pg::ToolFinder finder(pg_bin);
        for (const char* tool : {"pg_dump", "pg_restore", "pg_dumpall"}) {
            try {
                pg::Tool found = finder.find(tool);
                fmt::print("{}: {} ({})\n", tool, found.version.text(), found.path.string());
            } catch (const Error& e) {
                fmt::print("{}: not available: {}\n", tool, e.what());
            }
        }
        return 0;
    }

  private:
    OptionTable options_;
};

}  // namespace

std::unique_ptr<Command> make_version_command() {
    return std::make_unique<VersionCommand>();
}

}  // namespace pgward::commands
