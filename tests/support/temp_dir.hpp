// What the unit-level tests share: a fresh directory per test, and the
// message of the pgward::Error a call throws.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>

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
// The pgward::Error `call` throws, or none.
template <typename F>
std::optional<Error> caught_error(F&& call) {
    try {
        call();
    } catch (const Error& e) {
        return e;
    }
    return std::nullopt;
}

template <typename F>
std::string error_message(F&& call) {
    std::optional<Error> e = caught_error(std::forward<F>(call));
    return e ? e->what() : "";
}

// The working directory for one scope, put back however the scope ends.
class InDirectory {
  public:
    explicit InDirectory(const std::filesystem::path& dir)
        : before_(std::filesystem::current_path()) {
        std::filesystem::current_path(dir);
    }
    ~InDirectory() {
        std::error_code ec;
        std::filesystem::current_path(before_, ec);
    }
    InDirectory(const InDirectory&) = delete;
    InDirectory& operator=(const InDirectory&) = delete;

  private:
    std::filesystem::path before_;
};

}  // namespace pgward::test
