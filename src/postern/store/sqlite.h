// A thin RAII layer over the sqlite3 C API: Database (one connection), Statement (prepared once,
// bound by index, stepped, reset) and Transaction (BEGIN IMMEDIATE, rolled back unless committed).
// Every failure comes back as a postern::store::Errc value; the engine's message text is kept on
// the connection for logs (last_message()) and never carries user data, because values are always
// bound as parameters, never spliced into SQL.
//
// A Database is one connection and is not thread-safe (it is opened with SQLITE_OPEN_NOMUTEX):
// use one per thread. Several connections, in one process or several, may share a file; SQLite's
// file locks and WAL serialise their writers, and busy_timeout makes a writer wait instead of
// failing at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "postern/store/errors.h"
#include "postern/util/bytes.h"
#include "postern/util/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace postern::store {

namespace detail {
struct Connection;
}

struct OpenOptions {
  bool create = true;      // create the file when it does not exist
  bool read_only = false;  // open read-only (no WAL switch, no writes)
  std::chrono::milliseconds busy_timeout{5000};
};

class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Parameters are numbered from 1, as in SQL's ?1, ?2, ... Text and blobs are bound without a
  // copy: the bytes must stay alive until the statement is stepped to the end or reset.
  Status bind_int64(int index, std::int64_t value);
  Status bind_text(int index, std::string_view text);
  Status bind_blob(int index, ByteView blob);
  Status bind_null(int index);

  // Binds the arguments to ?1, ?2, ... in order (integers, string_view/std::string, byte views,
  // nullptr for NULL).
  template <class... Args>
  Status bind_all(const Args&... args) {
    int index = 0;
    Status status;
    ((status = status.ok() ? bind_value(++index, args) : status), ...);
    return status;
  }

  // true: a row is available through the column getters; false: the statement has finished.
  Result<bool> step();
  // Steps a statement that returns no rows (INSERT, UPDATE, DELETE, DDL) to its end.
  Status run();

  // Columns are numbered from 0. NULL reads as 0, "" or empty bytes.
  std::int64_t column_int64(int index) const;
  std::string column_text(int index) const;
  Bytes column_blob(int index) const;
  bool column_is_null(int index) const;

  // Makes the statement ready to run again and clears its bindings, so no bound buffer is
  // referenced after the call and no read transaction stays open.
  void reset();

 private:
  friend class Database;
  Statement(sqlite3_stmt* stmt, detail::Connection* conn) : stmt_(stmt), conn_(conn) {}

  Status bind_value(int index, std::int64_t v) { return bind_int64(index, v); }
  Status bind_value(int index, std::string_view v) { return bind_text(index, v); }
  Status bind_value(int index, ByteView v) { return bind_blob(index, v); }
  Status bind_value(int index, std::nullptr_t) { return bind_null(index); }

  sqlite3_stmt* stmt_ = nullptr;
  detail::Connection* conn_ = nullptr;  // owned by the Database; outlives cached statements
};

// A cached statement lent to one use; reset when the lease ends (see Statement::reset).
class StatementLease {
 public:
  explicit StatementLease(Statement* stmt) : stmt_(stmt) {}
  StatementLease(StatementLease&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}
  StatementLease& operator=(StatementLease&&) = delete;
  StatementLease(const StatementLease&) = delete;
  StatementLease& operator=(const StatementLease&) = delete;
  ~StatementLease() {
    if (stmt_ != nullptr) stmt_->reset();
  }
  Statement* operator->() const { return stmt_; }
  Statement& operator*() const { return *stmt_; }

 private:
  Statement* stmt_;
};

class Database {
 public:
  // Opens (or creates) the file and sets the connection up: extended result codes, busy timeout,
  // foreign keys on, WAL journal, synchronous=FULL (see sqlite.cpp for why). A file that is not
  // an SQLite database gives Errc::corrupt here, not later.
  static Result<Database> open(const std::string& path, const OpenOptions& options = {});

  Database(Database&& other) noexcept;
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // Runs one or more statements without parameters (schema, PRAGMAs). Never for user data.
  Status exec(std::string_view sql);
  // Compiles one statement.
  Result<Statement> prepare(std::string_view sql);
  // Compiles the statement the first time it is asked for and lends it out after that, so hot
  // paths never parse SQL. The SQL text is the cache key. One statement has one lease at a time:
  // code holding a lease must not ask for the same SQL again before the lease ends.
  Result<StatementLease> cached(std::string_view sql);

  std::int64_t last_insert_rowid() const;
  // Rows changed by the last INSERT, UPDATE or DELETE.
  std::int64_t changes() const;
  // Whether a transaction is open on this connection.
  bool in_transaction() const;

  // The engine's text for the last failure ("UNIQUE constraint failed: accounts.email"), for
  // logs, and its extended result code (e.g. SQLITE_CONSTRAINT_UNIQUE), for callers that must
  // tell constraint kinds apart.
  const std::string& last_message() const;
  int last_extended_code() const;

 private:
  explicit Database(std::unique_ptr<detail::Connection> conn);
  Status configure(const OpenOptions& options);

  // Heap-allocated so that statements can point at it while the Database object moves.
  std::unique_ptr<detail::Connection> conn_;
};

// BEGIN IMMEDIATE takes the write lock at the start, so a transaction that reads and then writes
// (take a prekey, check then insert) cannot fail half-way with SQLITE_BUSY_SNAPSHOT; other
// writers wait for it under busy_timeout. Rolled back on scope exit unless committed.
class Transaction {
 public:
  static Result<Transaction> begin(Database& db);

  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  Status commit();

 private:
  explicit Transaction(Database* db) : db_(db) {}
  Database* db_;  // null once committed or rolled back
};

// The Errc for an SQLite result code (primary or extended).
std::error_code error_from_sqlite(int result_code);

}  // namespace postern::store
