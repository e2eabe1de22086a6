#include "commands/cli.hpp"

int main(int argc, char** argv) {
    return pgward::commands::run_cli(argc, argv);
}
