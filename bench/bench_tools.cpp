// Helpers for bench/bench_proof.sh, linked with pgward_core:
//   bench_tools inflate FILE         read the archive, decompress every block, discard
//   bench_tools fingerprint CONNINFO SCHEMA TABLE   fp1 of a live table
//   bench_tools age FILE             FILE read, then read and age-encrypted, then that
//                                    ciphertext decrypted (in memory): seconds and MiB/s
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "archive/decompressor.hpp"
#include "archive/reader.hpp"
#include "crypto/age.hpp"
#include "pg/fingerprint.hpp"
#include "util/error.hpp"

namespace {

class Discard : public pgward::archive::ArchiveVisitor {};

// Reads `path` in 1 MiB blocks into `sink`; the seconds it took.
template <typename Sink>
double timed_read(const char* path, Sink&& sink) {
    const auto started = std::chrono::steady_clock::now();
    std::ifstream in(path, std::ios::binary);
    std::string block(size_t{1} << 20, '\0');
    while (in.read(block.data(), static_cast<std::streamsize>(block.size())) || in.gcount() > 0) {
        sink(block.data(), static_cast<size_t>(in.gcount()));
    }
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

// The cost of age on this machine: reading the file, reading and encrypting
// it (the ciphertext kept in memory), and decrypting that.
int bench_age(const char* path) {
    uint64_t bytes = 0;
    const double read = timed_read(path, [&](const char*, size_t n) { bytes += n; });
    std::string sealed;
    sealed.reserve(bytes + bytes / 4096 + 4096);
    const pgward::crypto::AgeIdentity identity = pgward::crypto::generate_identity();
    double encrypt = 0;
    {
        pgward::crypto::AgeEncryptor encryptor(
            {identity.recipient()}, [&](const char* d, size_t n) { sealed.append(d, n); });
        encrypt = timed_read(path, [&](const char* d, size_t n) { encryptor.write(d, n); });
        encryptor.finish();
    }
    uint64_t opened = 0;
    const auto started = std::chrono::steady_clock::now();
    pgward::crypto::AgeDecryptor decryptor({identity}, [&](const char*, size_t n) { opened += n; });
    for (size_t at = 0; at < sealed.size(); at += size_t{1} << 20) {
        decryptor.write(sealed.data() + at, std::min(size_t{1} << 20, sealed.size() - at));
    }
    decryptor.finish();
    const double decrypt =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (opened != bytes) {
        std::fprintf(stderr, "bench_tools: age: %llu bytes in, %llu out\n",
                     static_cast<unsigned long long>(bytes),
                     static_cast<unsigned long long>(opened));
        return 1;
    }
    const double mib = static_cast<double>(bytes) / (1 << 20);
    std::printf(
        "read %.3f s (%.0f MiB/s), read+encrypt %.3f s (%.0f MiB/s), decrypt %.3f s "
        "(%.0f MiB/s), %.0f MiB\n",
        read, mib / read, encrypt, mib / encrypt, decrypt, mib / decrypt, mib);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        if (argc == 3 && std::strcmp(argv[1], "inflate-zlib") == 0) {
            pgward::archive::set_gzip_engine(pgward::archive::GzipEngine::Zlib);
            Discard visitor;
            pgward::archive::read_archive_file(argv[2], visitor);
            return 0;
        }
        if (argc == 3 && std::strcmp(argv[1], "inflate") == 0) {
            Discard visitor;
            pgward::archive::read_archive_file(argv[2], visitor);
            return 0;
        }
        if (argc == 5 && std::strcmp(argv[1], "fingerprint") == 0) {
            pgward::pg::ConnectionOptions options;
            options.dbname = pgward::pg::ConnectionOptions::Setting{argv[2], true};
            auto conn = pgward::pg::Connection::open(options, "pgward bench");
            pgward::pg::set_dump_session_settings(conn);
            pgward::pg::DumpedTable table{argv[3], argv[4], std::nullopt, std::nullopt};
            auto fp =
                pgward::pg::fingerprint_table(conn, table, pgward::pg::dumped_columns(conn, table));
            std::printf("%s %llu\n", fp.to_string().c_str(),
                        static_cast<unsigned long long>(fp.rows()));
            return 0;
        }
        if (argc == 3 && std::strcmp(argv[1], "age") == 0) {
            return bench_age(argv[2]);
        }
        std::fprintf(stderr,
                     "usage: bench_tools inflate FILE | fingerprint CONNINFO SCHEMA TABLE | "
                     "age FILE\n");
        return 2;
    } catch (const pgward::Error& e) {
        std::fprintf(stderr, "bench_tools: %s\n", e.what());
        return 1;
    }
}
