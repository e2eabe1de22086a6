#include "domain/verify_encrypted.hpp"

#include <thread>

#include <fmt/format.h>

#include "archive/reader.hpp"
#include "crypto/age.hpp"
#include "util/error.hpp"
#include "util/files.hpp"

namespace pgward {

std::optional<ArchiveVersion> encrypted_archive_version(const std::filesystem::path& file,
                                                        const DecryptionKeys& keys,
                                                        const std::optional<Manifest>& manifest) {
    if (!keys.present()) {
        const std::string head = read_file_start(file, size_t{64} << 10);
        try {
            crypto::inspect_age_header(head);
        } catch (const Error& e) {
            throw failure(fmt::format("{}: {}", file.filename().string(), e.what()),
                          "the file was changed or is not an age file");
        }
        return std::nullopt;
    }
    return archive_version_of(decrypt_head(file, keys, manifest),
                              file.filename().string() + " (decrypted)");
}

CapturedRun list_encrypted_archive(const pg::Tool& pg_restore, const std::filesystem::path& file,
                                   const DecryptionKeys& keys,
                                   const std::optional<Manifest>& manifest) {
    DecryptingPipe pipe(file, keys, manifest);
    Command command = pg::list_archive_command(pg_restore, {});
    command.stdin_fd = pipe.child_stdin();
    CapturedRun run;
    {
        Child child = Child::spawn(command);
        pipe.start();
        PumpHandlers handlers;
        handlers.on_stdout = [&](const char* data, size_t size) { run.out.append(data, size); };
        handlers.on_stderr_line = [&](std::string_view line) {
            run.err += std::string(line) + "\n";
        };
        run.status = pump(child, handlers);
    }
    try {
        pipe.finish();
    } catch (const Error& e) {
        // What pg_restore said (an archive cut short) follows from this.
        run.err = std::string(e.what()) + "\n" + run.err;
        if (run.status.ok()) {
            run.status.code = 1;
        }
    }
    return run;
}

archive::ArchiveSummary summarize_encrypted(const std::filesystem::path& file,
                                            const DecryptionKeys& keys,
                                            const std::optional<Manifest>& manifest) {
    archive::QueueSource queue;
    std::optional<archive::ArchiveSummary> summary;
    std::exception_ptr reader_failure;
    std::thread reader([&] {
        try {
            summary = archive::summarize(queue);
        } catch (...) {
            reader_failure = std::current_exception();
        }
        queue.abort();  // what follows the archive's end is not read
    });
    try {
        decrypt_file(file, keys, manifest,
                     [&](const char* data, size_t size) { queue.push(data, size); });
        queue.close();
    } catch (...) {
        queue.abort();
        reader.join();
        throw;
    }
    reader.join();
    if (reader_failure) {
        std::rethrow_exception(reader_failure);
    }
    return *summary;
}

void require_keys_for(const std::filesystem::path& file, const DecryptionKeys& keys) {
    if (is_encrypted_file(file) && !keys.present()) {
        throw_cannot_open(file, "no identity was given", manifest_beside(file), keys);
    }
}

DeepReport deep_verify_encrypted(const std::filesystem::path& file,
                                 const std::optional<Manifest>& manifest,
                                 const DecryptionKeys& keys) {
    try {
        std::optional<Manifest> opened = manifest;
        if (opened) {
            open_manifest(*opened, keys, file.string());
        }
        return deep_verify_stream(
            [&](const std::function<void(const char*, size_t)>& sink) {
                decrypt_file(file, keys, opened, sink);
            },
            opened);
    } catch (const Error& e) {
        DeepReport report;
        report.problems.push_back(e.what());
        return report;
    }
}

}  // namespace pgward
