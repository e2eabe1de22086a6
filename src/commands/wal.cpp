#include <fmt/format.h>

#include "commands/command.hpp"
#include "commands/registry.hpp"
#include "domain/wal_archive.hpp"
#include "util/error.hpp"
#include "util/log.hpp"

namespace pgward::commands {
namespace {

// `pgward wal stream`: the WAL streamer in the foreground (what `run --wal`
// supervises); `pgward wal fetch`: PostgreSQL's restore_command.
class WalCommand : public Command {
  public:
    const char* name() const override { return "wal"; }
    const char* summary() const override {
        return "stream the server's WAL into the backup directory (stream), or hand a segment "
               "to a recovering server (fetch, its restore_command)";
    }

    void setup(CLI::App& app) override {
        app.require_subcommand(1);
        stream_ = app.add_subcommand(
            "stream",
            "run pg_receivewal on a replication slot until stopped, checking each segment");
        add_connection_options(options_, *stream_);
        options_.add(*stream_, "dir", "--dir", "POSTGRES_BACKUP_DIR",
                     "backup directory (default /backups): WAL goes to wal/<system id>/");
        options_.add(*stream_, "slot", "--slot", "POSTGRES_BACKUP_WAL_SLOT",
                     "the physical replication slot (default pgward; created if missing)");
        stream_->add_flag("--synchronous", synchronous_,
                          "flush every write at once (for synchronous_standby_names: no loss)");
        options_.add(*stream_, "stall", "--stall-timeout", "POSTGRES_BACKUP_WAL_STALL_SECONDS",
                     "kill pg_receivewal, and start it again, when it writes nothing this long "
                     "while the server writes WAL (default 300; 0: never)");
        options_.add(*stream_, "pg_bin", "--pg-bin", "PGWARD_PG_BIN", "directory of pg_receivewal");

        fetch_ = app.add_subcommand(
            "fetch",
            "copy one WAL file from the archive to where PostgreSQL asks (restore_command)");
        fetch_->add_option("file", file_, "the WAL file PostgreSQL asks for (%f)")->required();
        fetch_->add_option("destination", destination_, "where it goes (%p)")->required();
        fetch_->add_option("--archive", archive_, "the WAL archive folder (<dir>/wal/<system id>)")
            ->required();
    }

    int run() override {
        if (fetch_->parsed()) {
            const WalArchive archive = WalArchive::at(archive_);
            if (!archive.fetch(file_, destination_)) {
                // PostgreSQL asks for files that may not exist (the next
                // timeline's history, the segment after the last): exit 1,
                // which it takes for "not in the archive".
                log::info("not in the WAL archive", {{"file", file_}, {"archive", archive_}});
                return 1;
            }
            return 0;
        }
        WalStreamRequest request;
        request.connection = options_.connection();
        request.dir = options_.get_or("dir", "/backups");
        request.slot = options_.get_or("slot", "pgward");
        check_slot_name(request.slot);
        request.synchronous = synchronous_;
        if (auto stall = options_.get_number("stall", 0, kTenYears)) {
            request.stall_timeout = std::chrono::seconds(*stall);
        }
        if (auto pg_bin = options_.get("pg_bin")) {
            request.pg_bin = pg_bin->value;
        }
        stream_wal(request);
        return 0;
    }

  private:
    OptionTable options_;
    CLI::App* stream_ = nullptr;
    CLI::App* fetch_ = nullptr;
    bool synchronous_ = false;
    std::string file_;
    std::string destination_;
    std::string archive_;
};

}  // namespace

std::unique_ptr<Command> make_wal_command() {
    return std::make_unique<WalCommand>();
}

}  // namespace pgward::commands
