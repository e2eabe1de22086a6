// libFuzzer target for the archive reader: any input must end in a clean
// result or a pgward::Error: no crash, no hang, no unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "archive/summary.hpp"
#include "util/error.hpp"

namespace {

class Bytes : public pgward::archive::ByteSource {
  public:
    Bytes(const uint8_t* data, size_t size) : data_(data), size_(size) {}
    size_t read(char* buffer, size_t n) override {
        n = std::min(n, size_ - pos_);
        std::memcpy(buffer, data_ + pos_, n);
        pos_ += n;
        return n;
    }

  private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    Bytes source(data, size);
    try {
        pgward::archive::summarize(source);
    } catch (const pgward::Error&) {
    }
    return 0;
}
