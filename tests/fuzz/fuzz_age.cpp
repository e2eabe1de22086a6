// libFuzzer target for the age decrypting reader: any input, pushed in
// pieces whose sizes the input's first byte chooses, must end in plaintext
// or a pgward::Error: no crash, no hang, no unbounded allocation. The
// identity is the CCTV testkit's, so the seeds (tests/fuzz/corpus-age, from
// tests/unit/data/age-testkit) get past the header MAC into the payload.
#include <cstddef>
#include <cstdint>

#include "crypto/age.hpp"
#include "util/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const std::vector<pgward::crypto::AgeIdentity> identities =
        pgward::crypto::parse_identities(
            "AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM0", "fuzz");
    if (size == 0) {
        return 0;
    }
    const size_t piece = size_t{1} << (data[0] % 18);
    ++data;
    --size;
    try {
        pgward::crypto::AgeDecryptor decryptor(identities, [](const char*, size_t) {});
        for (size_t at = 0; at < size; at += piece) {
            decryptor.write(reinterpret_cast<const char*>(data) + at, std::min(piece, size - at));
        }
        decryptor.finish();
    } catch (const pgward::Error&) {
    }
    return 0;
}
