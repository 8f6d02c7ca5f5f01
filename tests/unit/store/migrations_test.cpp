// Tests for postern/store/migrations.h: versions in PRAGMA user_version, one transaction per
// step, refusing databases from the future.
#include "postern/store/migrations.h"

#include <gtest/gtest.h>

#include <vector>

#include "store/temp_dir.h"

namespace postern::store {
namespace {

using store_test::TempDir;

const std::vector<Migration> kSteps = {
    {1, "t1", "CREATE TABLE t1 (v INTEGER);"},
    {2, "t2", "CREATE TABLE t2 (v INTEGER); INSERT INTO t2 VALUES (2);"},
    {3, "t1 index", "CREATE INDEX t1_v ON t1 (v);"},
};

bool table_exists(Database& db, const char* name) {
  auto st = db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = ?1");
  EXPECT_TRUE(st.ok());
  EXPECT_TRUE(st->bind_text(1, name).ok());
  auto row = st->step();
  return row.ok() && *row && st->column_int64(0) == 1;
}

TEST(StoreMigrations, FreshDatabaseGetsEveryStep) {
  TempDir dir;
  auto db = Database::open(dir.file("m.db"));
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(*schema_version(*db), 0);
  ASSERT_TRUE(migrate(*db, kSteps).ok());
  EXPECT_EQ(*schema_version(*db), 3);
  EXPECT_TRUE(table_exists(*db, "t1"));
  EXPECT_TRUE(table_exists(*db, "t2"));
  EXPECT_TRUE(table_exists(*db, "t1_v"));
}

TEST(StoreMigrations, ReopeningIsANoOpAndLaterStepsApplyOnTop) {
  TempDir dir;
  const std::vector<Migration> first(kSteps.begin(), kSteps.begin() + 2);
  {
    auto db = Database::open(dir.file("m.db"));
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(migrate(*db, first).ok());
  }
  {
    auto db = Database::open(dir.file("m.db"));
    ASSERT_TRUE(db.ok());
    // Re-running step 2 would insert a second row; a no-op leaves one.
    ASSERT_TRUE(migrate(*db, first).ok());
    auto st = db->prepare("SELECT count(*) FROM t2");
    ASSERT_TRUE(st.ok() && *st->step());
    EXPECT_EQ(st->column_int64(0), 1);
  }
  auto db = Database::open(dir.file("m.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(migrate(*db, kSteps).ok());
  EXPECT_EQ(*schema_version(*db), 3);
  EXPECT_TRUE(table_exists(*db, "t1_v"));
}

TEST(StoreMigrations, FutureVersionIsRefused) {
  TempDir dir;
  auto db = Database::open(dir.file("m.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->exec("PRAGMA user_version = 9").ok());
  EXPECT_EQ(migrate(*db, kSteps).error(), Errc::schema_too_new);
  EXPECT_EQ(*schema_version(*db), 9);
  EXPECT_FALSE(table_exists(*db, "t1"));
}

TEST(StoreMigrations, FailingStepRollsBackAndKeepsTheVersion) {
  TempDir dir;
  auto db = Database::open(dir.file("m.db"));
  ASSERT_TRUE(db.ok());
  const std::vector<Migration> broken = {
      kSteps[0],
      {2, "half-good",
       "CREATE TABLE half (v INTEGER); INSERT INTO half VALUES (1); CREATE TABLE t1 (v INTEGER);"},
  };
  Status s = migrate(*db, broken);
  EXPECT_EQ(s.error(), Errc::sqlite_error);
  EXPECT_NE(db->last_message().find("already exists"), std::string::npos);
  EXPECT_EQ(*schema_version(*db), 1);  // step 1 committed, step 2 not
  EXPECT_TRUE(table_exists(*db, "t1"));
  EXPECT_FALSE(table_exists(*db, "half"));
  EXPECT_FALSE(db->in_transaction());
  // The fixed step then applies.
  ASSERT_TRUE(migrate(*db, kSteps).ok());
  EXPECT_EQ(*schema_version(*db), 3);
}

TEST(StoreMigrations, StepsMustBeNumberedInOrder) {
  TempDir dir;
  auto db = Database::open(dir.file("m.db"));
  ASSERT_TRUE(db.ok());
  const std::vector<Migration> gap = {kSteps[0], kSteps[2]};
  EXPECT_EQ(migrate(*db, gap).error(), Errc::invalid_argument);
  EXPECT_EQ(*schema_version(*db), 0);
  EXPECT_TRUE(migrate(*db, std::span<const Migration>{}).ok());
}

}  // namespace
}  // namespace postern::store
