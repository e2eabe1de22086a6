#include "archive/decompressor.hpp"

#include <isa-l.h>
#include <lz4frame.h>
#include <zlib.h>
#include <zstd.h>

#include <array>
#include <stdexcept>

#include <fmt/format.h>

namespace pgward::archive {
namespace {

constexpr size_t kOut = 1 << 16;

class Plain : public Decompressor {
  public:
    std::string feed(const char* data, size_t size, const Sink& sink) override {
        sink(data, size);
        return {};
    }
    std::string finish() override { return {}; }
};

class Zlib : public Decompressor {
  public:
    Zlib() {
        if (inflateInit(&stream_) != Z_OK) {
            throw std::runtime_error("zlib inflateInit failed");
        }
    }
    ~Zlib() override { inflateEnd(&stream_); }

    std::string feed(const char* data, size_t size, const Sink& sink) override {
        if (ended_ && size > 0) {
            return "data after the end of the zlib stream";
        }
        stream_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
        stream_.avail_in = static_cast<uInt>(size);
        // A full output buffer may leave more output inside the inflater.
        bool full = false;
        while ((stream_.avail_in > 0 || full) && !ended_) {
            stream_.next_out = reinterpret_cast<Bytef*>(out_.data());
            stream_.avail_out = static_cast<uInt>(out_.size());
            int rc = inflate(&stream_, Z_NO_FLUSH);
            size_t produced = out_.size() - stream_.avail_out;
            if (produced > 0) {
                sink(out_.data(), produced);
            }
            full = stream_.avail_out == 0;
            if (rc == Z_STREAM_END) {
                ended_ = true;
            } else if (rc == Z_BUF_ERROR) {
                break;  // no progress possible without more input
            } else if (rc != Z_OK) {
                return fmt::format("zlib inflate error: {}",
                                   stream_.msg != nullptr ? stream_.msg : zError(rc));
            }
        }
        if (ended_ && stream_.avail_in > 0) {
            return "data after the end of the zlib stream";
        }
        return {};
    }
    std::string finish() override {
        return ended_ ? std::string() : "the zlib stream ends early (truncated)";
    }

  private:
    z_stream stream_{};
    std::array<char, kOut> out_{};
    bool ended_ = false;
};

// The same zlib streams through ISA-L's inflate, which decodes deflate
// several times faster than zlib on x86 (measured by bench/bench_proof.sh).
// It checks the zlib header and the Adler-32 like zlib does.
class IsalZlib : public Decompressor {
  public:
    IsalZlib() : state_(std::make_unique<inflate_state>()) {
        isal_inflate_init(state_.get());
        state_->crc_flag = IGZIP_ZLIB;
    }

    std::string feed(const char* data, size_t size, const Sink& sink) override {
        if (ended_ && size > 0) {
            return "data after the end of the zlib stream";
        }
        state_->next_in = reinterpret_cast<uint8_t*>(const_cast<char*>(data));
        state_->avail_in = static_cast<uint32_t>(size);
        bool full = false;
        while ((state_->avail_in > 0 || full) && !ended_) {
            state_->next_out = reinterpret_cast<uint8_t*>(out_.data());
            state_->avail_out = static_cast<uint32_t>(out_.size());
            int rc = isal_inflate(state_.get());
            size_t produced = out_.size() - state_->avail_out;
            if (produced > 0) {
                sink(out_.data(), produced);
            }
            if (rc < 0) {
                return fmt::format("deflate stream error {} (ISA-L)", rc);
            }
            full = state_->avail_out == 0;
            ended_ = state_->block_state == ISAL_BLOCK_FINISH;
            if (produced == 0 && state_->avail_in == 0) {
                break;
            }
        }
        if (ended_ && state_->avail_in > 0) {
            return "data after the end of the zlib stream";
        }
        return {};
    }
    std::string finish() override {
        return ended_ ? std::string() : "the zlib stream ends early (truncated)";
    }

  private:
    std::unique_ptr<inflate_state> state_;
    std::array<char, kOut> out_{};
    bool ended_ = false;
};

class Lz4 : public Decompressor {
  public:
    Lz4() {
        if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx_, LZ4F_VERSION))) {
            throw std::runtime_error("LZ4F_createDecompressionContext failed");
        }
    }
    ~Lz4() override { LZ4F_freeDecompressionContext(ctx_); }

    std::string feed(const char* data, size_t size, const Sink& sink) override {
        bool full = false;
        while (size > 0 || full) {
            if (done_ && size > 0) {
                return "data after the end of the lz4 frame";
            }
            size_t in = size;
            size_t out = out_.size();
            size_t hint = LZ4F_decompress(ctx_, out_.data(), &out, data, &in, nullptr);
            if (LZ4F_isError(hint)) {
                return fmt::format("lz4 error: {}", LZ4F_getErrorName(hint));
            }
            if (out > 0) {
                sink(out_.data(), out);
            }
            data += in;
            size -= in;
            done_ = hint == 0;
            // A full output buffer may leave more output inside the decoder.
            full = out == out_.size() && !done_;
            if (in == 0 && out == 0) {
                if (size > 0) {
                    return "lz4 decoder made no progress";
                }
                break;
            }
        }
        return {};
    }
    std::string finish() override {
        return done_ ? std::string() : "the lz4 frame ends early (truncated)";
    }

  private:
    LZ4F_dctx* ctx_ = nullptr;
    std::array<char, kOut> out_{};
    bool done_ = false;
};

class Zstd : public Decompressor {
  public:
    Zstd() : ctx_(ZSTD_createDStream()) {
        if (ctx_ == nullptr) {
            throw std::runtime_error("ZSTD_createDStream failed");
        }
        // Bound the window a damaged frame may ask for (pg_dump uses defaults).
        ZSTD_DCtx_setParameter(ctx_, ZSTD_d_windowLogMax, 27);
    }
    ~Zstd() override { ZSTD_freeDStream(ctx_); }

    std::string feed(const char* data, size_t size, const Sink& sink) override {
        ZSTD_inBuffer in{data, size, 0};
        // A full output buffer may leave more output inside the decoder.
        bool full = true;
        while (in.pos < in.size || full) {
            ZSTD_outBuffer out{out_.data(), out_.size(), 0};
            size_t rc = ZSTD_decompressStream(ctx_, &out, &in);
            if (ZSTD_isError(rc)) {
                return fmt::format("zstd error: {}", ZSTD_getErrorName(rc));
            }
            if (out.pos > 0) {
                sink(out_.data(), out.pos);
            }
            ended_ = rc == 0;
            full = out.pos == out.size;
        }
        return {};
    }
    std::string finish() override {
        return ended_ ? std::string() : "the zstd frame ends early (truncated)";
    }

  private:
    ZSTD_DStream* ctx_;
    std::array<char, kOut> out_{};
    bool ended_ = false;
};

GzipEngine& engine() {
    static GzipEngine value = GzipEngine::Isal;
    return value;
}

}  // namespace

GzipEngine gzip_engine() {
    return engine();
}
void set_gzip_engine(GzipEngine e) {
    engine() = e;
}

std::unique_ptr<Decompressor> Decompressor::create(Compression compression) {
    switch (compression) {
        case Compression::None:
            return std::make_unique<Plain>();
        case Compression::Gzip:
            if (gzip_engine() == GzipEngine::Isal) {
                return std::make_unique<IsalZlib>();
            }
            return std::make_unique<Zlib>();
        case Compression::Lz4:
            return std::make_unique<Lz4>();
        case Compression::Zstd:
            return std::make_unique<Zstd>();
    }
    return std::make_unique<Plain>();
}

}  // namespace pgward::archive
