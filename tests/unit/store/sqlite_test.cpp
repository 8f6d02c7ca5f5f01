// Tests for postern/store/sqlite.h: opening and configuring a connection, statements, the
// transaction guard, and errors as values (including files that are not databases).
#include "postern/store/sqlite.h"

#include <gtest/gtest.h>

#include <fstream>

#include "store/temp_dir.h"

namespace postern::store {
namespace {

using store_test::TempDir;

std::string pragma_text(Database& db, const char* sql) {
  auto st = db.prepare(sql);
  EXPECT_TRUE(st.ok());
  auto row = st->step();
  EXPECT_TRUE(row.ok() && *row);
  return st->column_text(0);
}

TEST(StoreSqlite, OpensWithWalFullSyncAndForeignKeys) {
  TempDir dir;
  auto db = Database::open(dir.file("a.db"));
  ASSERT_TRUE(db.ok()) << db.error().message();
  EXPECT_EQ(pragma_text(*db, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(pragma_text(*db, "PRAGMA synchronous"), "2");  // FULL
  EXPECT_EQ(pragma_text(*db, "PRAGMA foreign_keys"), "1");
  EXPECT_EQ(pragma_text(*db, "PRAGMA busy_timeout"), "5000");
}

TEST(StoreSqlite, BindsAndReadsEveryType) {
  TempDir dir;
  auto db = Database::open(dir.file("a.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->exec("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n BLOB)").ok());
  auto ins = db->prepare("INSERT INTO t VALUES (?1, ?2, ?3, ?4)");
  ASSERT_TRUE(ins.ok());
  const Bytes blob{0, 1, 2, 255};
  ASSERT_TRUE(ins->bind_int64(1, -1234567890123).ok());
  ASSERT_TRUE(ins->bind_text(2, std::string_view("h\0llo", 5)).ok());
  ASSERT_TRUE(ins->bind_blob(3, blob).ok());
  ASSERT_TRUE(ins->bind_null(4).ok());
  ASSERT_TRUE(ins->run().ok());
  EXPECT_EQ(db->last_insert_rowid(), 1);
  EXPECT_EQ(db->changes(), 1);

  auto sel = db->prepare("SELECT i, s, b, n FROM t");
  ASSERT_TRUE(sel.ok());
  auto row = sel->step();
  ASSERT_TRUE(row.ok() && *row);
  EXPECT_EQ(sel->column_int64(0), -1234567890123);
  EXPECT_EQ(sel->column_text(1), std::string("h\0llo", 5));
  EXPECT_EQ(sel->column_blob(2), blob);
  EXPECT_TRUE(sel->column_is_null(3));
  EXPECT_FALSE(sel->column_is_null(2));
  row = sel->step();
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(*row);
}

TEST(StoreSqlite, EmptyBlobAndTextAreNotNull) {
  TempDir dir;
  auto db = Database::open(dir.file("a.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->exec("CREATE TABLE t (s TEXT NOT NULL, b BLOB NOT NULL)").ok());
  auto ins = db->prepare("INSERT INTO t VALUES (?1, ?2)");
  ASSERT_TRUE(ins.ok());
  ASSERT_TRUE(ins->bind_all(std::string_view{}, ByteView{}).ok());
  EXPECT_TRUE(ins->run().ok()) << db->last_message();
  auto sel = db->prepare("SELECT typeof(s), typeof(b), length(b) FROM t");
  ASSERT_TRUE(sel.ok());
  ASSERT_TRUE(*sel->step());
  EXPECT_EQ(sel->column_text(0), "text");
  EXPECT_EQ(sel->column_text(1), "blob");
  EXPECT_EQ(sel->column_int64(2), 0);
  auto raw = db->prepare("SELECT s, b FROM t");
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE(*raw->step());
  EXPECT_TRUE(raw->column_text(0).empty());
  EXPECT_TRUE(raw->column_blob(1).empty());
  EXPECT_FALSE(raw->column_is_null(1));
}

TEST(StoreSqlite, CachedStatementIsReusedAndResetBetweenUses) {
  TempDir dir;
  auto db = Database::open(dir.file("a.db"));
  ASSERT_TRUE(db.ok());
  const Statement* first = nullptr;
  for (std::int64_t i = 0; i < 3; ++i) {
    auto st = db->cached("SELECT ?1 + 1");
    ASSERT_TRUE(st.ok());
    if (first == nullptr) first = &**st;
    EXPECT_EQ(&**st, first);
    ASSERT_TRUE((*st)->bind_all(i).ok());
    auto row = (*st)->step();
    ASSERT_TRUE(row.ok() && *row);
    EXPECT_EQ((*st)->column_int64(0), i + 1);
    // Left mid-result on purpose: the lease's reset must make it reusable.
  }
}

TEST(StoreSqlite, ErrorsAreValuesWithTheEngineMessageKept) {
  TempDir dir;
  auto db = Database::open(dir.file("a.db"));
  ASSERT_TRUE(db.ok());
  auto bad = db->prepare("SELEC nonsense");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error(), Errc::sqlite_error);
  EXPECT_NE(db->last_message().find("syntax error"), std::string::npos);

  auto empty = db->prepare("  -- only a comment");
  EXPECT_EQ(empty.error(), Errc::invalid_argument);

  ASSERT_TRUE(db->exec("CREATE TABLE u (k TEXT PRIMARY KEY)").ok());
  ASSERT_TRUE(db->exec("INSERT INTO u VALUES ('x')").ok());
  Status dup = db->exec("INSERT INTO u VALUES ('x')");
  EXPECT_EQ(dup.error(), Errc::constraint);
  EXPECT_NE(db->last_message().find("UNIQUE"), std::string::npos);

  auto st = db->prepare("SELECT ?1");
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->bind_int64(2, 1).error(), Errc::invalid_argument);  // index out of range
  EXPECT_EQ(st->bind_int64(0, 1).error(), Errc::invalid_argument);

  auto rows = db->prepare("SELECT 1");
  ASSERT_TRUE(rows.ok());
  EXPECT_EQ(rows->run().error(), Errc::invalid_argument);  // run() is for statements without rows
}

TEST(StoreSqlite, ForeignKeyViolationIsAConstraintWithItsExtendedCode) {
  TempDir dir;
  auto db = Database::open(dir.file("a.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->exec("CREATE TABLE p (id INTEGER PRIMARY KEY);"
                       "CREATE TABLE c (p INTEGER REFERENCES p (id))")
                  .ok());
  EXPECT_EQ(db->exec("INSERT INTO c VALUES (7)").error(), Errc::constraint);
  EXPECT_EQ(db->last_extended_code(), 787);  // SQLITE_CONSTRAINT_FOREIGNKEY
}

TEST(StoreSqlite, TransactionRollsBackUnlessCommitted) {
  TempDir dir;
  auto db = Database::open(dir.file("a.db"));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->exec("CREATE TABLE t (v INTEGER)").ok());
  {
    auto tx = Transaction::begin(*db);
    ASSERT_TRUE(tx.ok());
    EXPECT_TRUE(db->in_transaction());
    ASSERT_TRUE(db->exec("INSERT INTO t VALUES (1)").ok());
  }
  EXPECT_FALSE(db->in_transaction());
  {
    auto tx = Transaction::begin(*db);
    ASSERT_TRUE(tx.ok());
    ASSERT_TRUE(db->exec("INSERT INTO t VALUES (2)").ok());
    ASSERT_TRUE(tx->commit().ok());
    EXPECT_EQ(tx->commit().error(), Errc::invalid_argument);  // only once
  }
  auto st = db->prepare("SELECT group_concat(v) FROM t");
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(*st->step());
  EXPECT_EQ(st->column_text(0), "2");
}

TEST(StoreSqlite, SecondWriterWaitsThenReportsBusy) {
  TempDir dir;
  OpenOptions quick;
  quick.busy_timeout = std::chrono::milliseconds(50);
  auto a = Database::open(dir.file("a.db"), quick);
  auto b = Database::open(dir.file("a.db"), quick);
  ASSERT_TRUE(a.ok() && b.ok());
  auto tx = Transaction::begin(*a);
  ASSERT_TRUE(tx.ok());
  auto other = Transaction::begin(*b);
  EXPECT_EQ(other.error(), Errc::busy);
  EXPECT_FALSE(b->last_message().empty());
}

TEST(StoreSqlite, GarbageFileIsReportedNotCrashed) {
  TempDir dir;
  const std::string path = dir.file("garbage.db");
  {
    std::ofstream out(path, std::ios::binary);
    for (int i = 0; i < 4096; ++i) out.put(static_cast<char>((i * 131 + 7) & 0xff));
  }
  auto db = Database::open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.error(), Errc::corrupt);
}

TEST(StoreSqlite, TruncatedHeaderIsReportedNotCrashed) {
  TempDir dir;
  const std::string path = dir.file("short.db");
  {
    std::ofstream out(path, std::ios::binary);
    out << "SQLite format 3";  // the magic without the rest of the header
  }
  auto db = Database::open(path);
  EXPECT_FALSE(db.ok());
}

TEST(StoreSqlite, MissingFileOrDirectoryIsAnIoError) {
  TempDir dir;
  OpenOptions no_create;
  no_create.create = false;
  EXPECT_EQ(Database::open(dir.file("absent.db"), no_create).error(), Errc::io_error);
  EXPECT_EQ(Database::open(dir.file("no/such/dir/a.db")).error(), Errc::io_error);
}

TEST(StoreSqlite, ReadOnlyConnectionCannotWrite) {
  TempDir dir;
  {
    auto db = Database::open(dir.file("a.db"));
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->exec("CREATE TABLE t (v INTEGER)").ok());
  }
  OpenOptions ro;
  ro.read_only = true;
  auto db = Database::open(dir.file("a.db"), ro);
  ASSERT_TRUE(db.ok()) << db.error().message();
  EXPECT_EQ(db->exec("INSERT INTO t VALUES (1)").error(), Errc::io_error);
}

TEST(StoreSqlite, MovedDatabaseKeepsItsCachedStatements) {
  TempDir dir;
  auto opened = Database::open(dir.file("a.db"));
  ASSERT_TRUE(opened.ok());
  Database db = std::move(*opened);
  {
    auto st = db.cached("SELECT 41 + 1");
    ASSERT_TRUE(st.ok());
  }
  Database moved = std::move(db);
  auto st = moved.cached("SELECT 41 + 1");
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(*(*st)->step());
  EXPECT_EQ((*st)->column_int64(0), 42);
}

}  // namespace
}  // namespace postern::store
