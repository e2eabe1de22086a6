#include <filesystem>

#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "crypto/age.hpp"
#include "util/error.hpp"
#include "util/files.hpp"
#include "util/time.hpp"

namespace pgward::commands {
namespace {

// An age identity, in age-keygen's own file format, for the host that may
// read backups; the public key it prints is what the backup host encrypts to.
class KeygenCommand : public Command {
  public:
    const char* name() const override { return "keygen"; }
    const char* summary() const override {
        return "write a new age identity file (0600) and print its public key (age1…)";
    }

    void setup(CLI::App& app) override {
        app.add_option("-o,--output", output_,
                       "the identity file to write; never overwritten (default: print it)");
    }

    int run() override {
        const crypto::AgeIdentity identity = crypto::generate_identity();
        const std::string recipient = identity.recipient().text;
        const std::string text =
            fmt::format("# created: {}\n# public key: {}\n{}\n", format_iso_utc(now_seconds()),
                        recipient, crypto::identity_text(identity));
        if (output_.empty()) {
            fmt::print("{}", text);
            return 0;
        }
        if (std::filesystem::exists(std::filesystem::symlink_status(output_))) {
            throw usage_error(
                fmt::format("{} exists; pgward keygen never overwrites an identity (the backups "
                            "encrypted to it could no longer be read)",
                            output_),
                "choose another file name");
        }
        write_file_atomically(output_, text, AtomicFile::Publish::NoReplace);
        fmt::print(stderr, "Public key: {}\n", recipient);
        fmt::print("{}\n", recipient);
        return 0;
    }

  private:
    std::string output_;
};

}  // namespace

std::unique_ptr<Command> make_keygen_command() {
    return std::make_unique<KeygenCommand>();
}

}  // namespace pgward::commands
