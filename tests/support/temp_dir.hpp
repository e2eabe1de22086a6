// What the unit-level tests share: a fresh directory per test, and the
// message of the pgward::Error a call throws.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "util/error.hpp"

namespace pgward::test {

// A test with its own directory under /tmp (`dir_`), removed afterwards.
class TempDirTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char pattern[] = "/tmp/pgward-unit-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern), nullptr);
        dir_ = pattern;
    }
    void TearDown() override {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    std::filesystem::path dir_;
};

// The message of the Error `call` throws, or "" when it throws none.
template <typename F>
std::string error_message(F&& call) {
    try {
        call();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

}  // namespace pgward::test
