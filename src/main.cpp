#include "commands/cli.hpp"
#include "pg/environment.hpp"

int main(int argc, char** argv) {
    // Before anything else, and before any thread: see pg/environment.hpp.
    pgward::pg::capture_operator_environment();
    return pgward::commands::run_cli(argc, argv);
}
