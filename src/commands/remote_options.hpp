#pragma once

#include <optional>
#include <string>

#include "commands/options.hpp"
#include "domain/offsite.hpp"
#include "storage/s3_client.hpp"

namespace pgward::commands {

// Where the offsite copy goes and how: --remote s3://BUCKET/PREFIX and its
// settings. Credentials only from the environment (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, each also as *_FILE): argv is
// readable by every user of the machine.
using RemoteConfig = OffsiteTarget;

// `backup` and `run` take the store as --remote URL; the commands that read
// from it (list, verify, prune, restore, drill) have a --remote flag of their
// own, and take the URL as --remote-url.
enum class RemoteFlag { IsTheUrl, SelectsTheStore };
void add_remote_options(OptionTable& table, CLI::App& app, RemoteFlag flag = RemoteFlag::IsTheUrl);
// nullopt when no remote is set; a usage error naming the setting when one is
// wrong or a credential is missing.
std::optional<RemoteConfig> remote_config(const OptionTable& table);
// For the commands with a --remote flag: the store, or a usage error saying
// where to set it.
RemoteConfig required_remote_config(const OptionTable& table);

}  // namespace pgward::commands
