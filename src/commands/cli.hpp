#pragma once

namespace pgward::commands {

// Parses the command line and runs one command; returns the exit code
// (0 success, 1 the operation failed, 2 usage or configuration error).
int run_cli(int argc, char** argv);

}  // namespace pgward::commands
