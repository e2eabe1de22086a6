#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "harness/pg_cluster.hpp"
#include "harness/runner.hpp"

namespace pgward::test {

// A test with its own scratch directory (`dir_`): removed after a test that
// passed, kept with its path printed after one that failed.
class ScratchDirTest : public ::testing::Test {
  protected:
    explicit ScratchDirTest(std::string tag) : tag_(std::move(tag)) {}

    void SetUp() override { dir_ = make_temp_dir(tag_); }
    void TearDown() override {
        if (HasFailure()) {
            std::fprintf(stderr, "%s: scratch dir kept: %s\n", tag_.c_str(), dir_.c_str());
            return;
        }
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }

    // The test cluster's POSTGRES_* for `db`, backups into `backup_dir`, then `extra`.
    static Env pg_env(const std::string& db, const std::filesystem::path& backup_dir,
                      Env extra = {}) {
        Env e = PgCluster::instance().env(db);
        e.emplace_back("POSTGRES_BACKUP_DIR", backup_dir.string());
        e.insert(e.end(), extra.begin(), extra.end());
        return e;
    }

    // A subdirectory every user may write (TMPDIR for a sandbox run as postgres).
    std::filesystem::path shared_subdir(const std::string& name) const {
        std::filesystem::path path = dir_ / name;
        std::filesystem::create_directories(path);
        std::filesystem::permissions(path, std::filesystem::perms::all);
        return path;
    }

    // A --pg-bin folder in the scratch dir whose pg_dump is `script` (a shell
    // body; $REAL is the real pg_dump, and --version is always answered
    // truthfully); pg_restore and pg_dumpall are the real ones.
    std::filesystem::path fake_pg_dump(const std::string& name, const std::string& script,
                                       int mode = 0755) const {
        std::filesystem::path bin = dir_ / name;
        std::filesystem::create_directory(bin);
        const std::filesystem::path real = PgCluster::instance().client_bin_dir();
        write_text(bin / "pg_dump",
                   "#!/bin/sh\nREAL='" + (real / "pg_dump").string() +
                       "'\nif [ \"$1\" = --version ]; then exec \"$REAL\" --version; fi\n" +
                       script + "\n",
                   mode);
        std::filesystem::create_symlink(real / "pg_restore", bin / "pg_restore");
        std::filesystem::create_symlink(real / "pg_dumpall", bin / "pg_dumpall");
        return bin;
    }

    std::filesystem::path dir_;

  private:
    std::string tag_;
};

}  // namespace pgward::test
