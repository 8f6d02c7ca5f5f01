// WalCheckpointer: with automatic checkpoints off on the writer, the background connection copies
// the WAL back into the database, so the writer never has to.
#include "postern/store/wal_checkpointer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "postern/store/sqlite.h"
#include "store/temp_dir.h"

namespace postern::store {
namespace {

using store_test::TempDir;

// (busy, frames in the WAL, frames checkpointed) of a PASSIVE checkpoint run now.
std::array<std::int64_t, 3> checkpoint_state(Database& db) {
  auto st = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
  EXPECT_TRUE(st);
  auto row = st->step();
  EXPECT_TRUE(row && *row);
  return {st->column_int64(0), st->column_int64(1), st->column_int64(2)};
}

void write_rows(Database& db, int n) {
  ASSERT_TRUE(db.exec("CREATE TABLE IF NOT EXISTS t (x BLOB)"));
  for (int i = 0; i < n; ++i) ASSERT_TRUE(db.exec("INSERT INTO t VALUES (randomblob(2000))"));
}

TEST(WalCheckpointer, CopiesTheWalBackWhileTheWriterDoesNot) {
  TempDir dir;
  const std::string path = dir.file("db.sqlite");
  auto writer = Database::open(path);
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->exec("PRAGMA wal_autocheckpoint = 0"));
  const auto before = std::filesystem::file_size(path);
  {
    auto checkpointer = WalCheckpointer::start(path, std::chrono::milliseconds(10));
    ASSERT_TRUE(checkpointer);
    write_rows(*writer, 200);  // about 100 pages of WAL
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // Everything in the WAL was checkpointed by the background thread already: the database file
    // grew, and a checkpoint now finds nothing left to copy.
    EXPECT_GT(std::filesystem::file_size(path), before + 200 * 2000);
    auto probe = Database::open(path);
    ASSERT_TRUE(probe);
    const auto state = checkpoint_state(*probe);
    EXPECT_EQ(state[0], 0);
    EXPECT_EQ(state[1], state[2]);
  }
}

TEST(WalCheckpointer, StartFailsCleanlyOnAPathThatIsNotADatabase) {
  TempDir dir;
  EXPECT_FALSE(WalCheckpointer::start(dir.path(), std::chrono::milliseconds(10)));  // a directory
}

}  // namespace
}  // namespace postern::store
