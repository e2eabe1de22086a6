// Helpers for bench/bench_proof.sh, linked with pgward_core:
//   bench_tools inflate FILE         read the archive, decompress every block, discard
//   bench_tools fingerprint CONNINFO SCHEMA TABLE   fp1 of a live table
#include <cstdio>
#include <cstring>
#include <string>

#include "archive/decompressor.hpp"
#include "archive/reader.hpp"
#include "pg/fingerprint.hpp"
#include "util/error.hpp"

namespace {

class Discard : public pgward::archive::ArchiveVisitor {};

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
        std::fprintf(stderr,
                     "usage: bench_tools inflate FILE | fingerprint CONNINFO SCHEMA TABLE\n");
        return 2;
    } catch (const pgward::Error& e) {
        std::fprintf(stderr, "bench_tools: %s\n", e.what());
        return 1;
    }
}
