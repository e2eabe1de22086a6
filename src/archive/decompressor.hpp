#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "archive/reader.hpp"

namespace pgward::archive {

// One compressed stream of a data block. feed() passes the decompressed
// bytes to `sink` as they come; errors and a truncated stream are reported
// as a message (the reader adds where).
// Which inflate decodes gzip (zlib-format) blocks: ISA-L by default, zlib
// for comparison (bench) and as the reference the tests hold ISA-L to.
enum class GzipEngine { Isal, Zlib };
GzipEngine gzip_engine();
void set_gzip_engine(GzipEngine engine);

class Decompressor {
  public:
    using Sink = std::function<void(const char*, size_t)>;
    virtual ~Decompressor() = default;
    // Returns an error message, or empty.
    virtual std::string feed(const char* data, size_t size, const Sink& sink) = 0;
    // After the last chunk: an error if the stream did not end cleanly.
    virtual std::string finish() = 0;

    static std::unique_ptr<Decompressor> create(Compression compression);
};

}  // namespace pgward::archive
