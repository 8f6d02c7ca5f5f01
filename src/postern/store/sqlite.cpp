#include "postern/store/sqlite.h"

#include <sqlite3.h>

#include <functional>
#include <limits>
#include <utility>

namespace postern::store {
namespace detail {

struct Connection {
  sqlite3* db = nullptr;
  std::string last_message;
  int last_extended_code = SQLITE_OK;
  // Looks std::string keys up by string_view, so a cache hit allocates nothing.
  struct SqlHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view sql) const noexcept { return std::hash<std::string_view>{}(sql); }
  };
  // Keyed by SQL text. unique_ptr keeps each Statement at a fixed address for its leases.
  std::unordered_map<std::string, std::unique_ptr<Statement>, SqlHash, std::equal_to<>> cache;

  // Records the engine's account of a failure for logs and returns its Errc.
  std::error_code fail(int rc) {
    last_extended_code = db != nullptr ? sqlite3_extended_errcode(db) : rc;
    if (last_extended_code == SQLITE_OK) last_extended_code = rc;
    last_message = sqlite3_errstr(rc);
    if (db != nullptr) {
      last_message += ": ";
      last_message += sqlite3_errmsg(db);
    }
    return error_from_sqlite(rc);
  }

  ~Connection() {
    // Statements first: sqlite3_close refuses a connection with live statements.
    cache.clear();
    if (db != nullptr) sqlite3_close_v2(db);
  }
};

}  // namespace detail

std::error_code error_from_sqlite(int result_code) {
  switch (result_code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Errc::busy;
    case SQLITE_CONSTRAINT:
      return Errc::constraint;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Errc::corrupt;
    case SQLITE_TOOBIG:
      return Errc::too_large;
    case SQLITE_RANGE:
    case SQLITE_MISMATCH:
    case SQLITE_MISUSE:
      return Errc::invalid_argument;
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return Errc::io_error;
    default:
      return Errc::sqlite_error;
  }
}

// ---- Statement ----

Statement::Statement(Statement&& other) noexcept
    : stmt_(std::exchange(other.stmt_, nullptr)), conn_(std::exchange(other.conn_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr) sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
    conn_ = std::exchange(other.conn_, nullptr);
  }
  return *this;
}

Statement::~Statement() {
  if (stmt_ != nullptr) sqlite3_finalize(stmt_);
}

Status Statement::bind_int64(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  return rc == SQLITE_OK ? Status{} : Status{conn_->fail(rc)};
}

// A null destructor is SQLITE_STATIC: SQLite reads the caller's buffer instead of copying it,
// which matters for 256 KiB envelopes in a group commit. reset() unbinds before the buffer can go.
Status Statement::bind_text(int index, std::string_view text) {
  // SQLite binds NULL for a null pointer even with length 0; "" keeps an empty string a string.
  const char* data = text.data() != nullptr ? text.data() : "";
  const int rc = sqlite3_bind_text64(stmt_, index, data, text.size(), nullptr, SQLITE_UTF8);
  return rc == SQLITE_OK ? Status{} : Status{conn_->fail(rc)};
}

Status Statement::bind_blob(int index, ByteView blob) {
  // An empty span may have a null data pointer, which SQLite would bind as NULL.
  const int rc = blob.empty() ? sqlite3_bind_zeroblob(stmt_, index, 0)
                              : sqlite3_bind_blob64(stmt_, index, blob.data(), blob.size(), nullptr);
  return rc == SQLITE_OK ? Status{} : Status{conn_->fail(rc)};
}

Status Statement::bind_null(int index) {
  const int rc = sqlite3_bind_null(stmt_, index);
  return rc == SQLITE_OK ? Status{} : Status{conn_->fail(rc)};
}

Result<bool> Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  std::error_code error = conn_->fail(rc);
  // After a failed step the statement must be reset before it can run again.
  sqlite3_reset(stmt_);
  return error;
}

Status Statement::run() {
  POSTERN_TRY(bool row, step());
  if (row) {
    // A statement that yields rows was used as if it did not: drain it so it does not hold a
    // read lock, and tell the caller (a programming error, not a data error).
    sqlite3_reset(stmt_);
    return Errc::invalid_argument;
  }
  return {};
}

std::int64_t Statement::column_int64(int index) const {
  return sqlite3_column_int64(stmt_, index);
}

std::string Statement::column_text(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_, index);
  const int size = sqlite3_column_bytes(stmt_, index);
  if (text == nullptr || size <= 0) return {};
  return {reinterpret_cast<const char*>(text), static_cast<std::size_t>(size)};
}

Bytes Statement::column_blob(int index) const {
  const void* blob = sqlite3_column_blob(stmt_, index);
  const int size = sqlite3_column_bytes(stmt_, index);
  if (blob == nullptr || size <= 0) return {};
  const auto* begin = static_cast<const std::uint8_t*>(blob);
  return Bytes(begin, begin + size);
}

bool Statement::column_is_null(int index) const {
  return sqlite3_column_type(stmt_, index) == SQLITE_NULL;
}

void Statement::reset() {
  // The return value repeats the last step's error, which the caller has already seen.
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

// ---- Database ----

Database::Database(std::unique_ptr<detail::Connection> conn) : conn_(std::move(conn)) {}
Database::Database(Database&& other) noexcept = default;
Database& Database::operator=(Database&& other) noexcept = default;
Database::~Database() = default;

Result<Database> Database::open(const std::string& path, const OpenOptions& options) {
  auto conn = std::make_unique<detail::Connection>();
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  flags |= options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (options.create && !options.read_only) flags |= SQLITE_OPEN_CREATE;
  // Even on failure sqlite3_open_v2 usually returns a handle (to carry the message); the
  // Connection's destructor closes it either way.
  const int rc = sqlite3_open_v2(path.c_str(), &conn->db, flags, nullptr);
  if (rc != SQLITE_OK) return conn->fail(rc);
  Database db(std::move(conn));
  POSTERN_CHECK(db.configure(options));
  return db;
}

Status Database::configure(const OpenOptions& options) {
  sqlite3* db = conn_->db;
  sqlite3_extended_result_codes(db, 1);
  const auto timeout_ms = options.busy_timeout.count();
  sqlite3_busy_timeout(db, timeout_ms > std::numeric_limits<int>::max() ? std::numeric_limits<int>::max()
                                                                        : static_cast<int>(timeout_ms));
  // Defensive mode: SQL cannot corrupt the file on purpose (writable_schema, shadow tables), and
  // the schema is not trusted to run functions with side effects, should the file be tampered with.
  sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);

  // Reading the schema forces SQLite to read the file header now, so a file that is not a
  // database is reported by open() rather than by the first query of some later request.
  POSTERN_CHECK(exec("SELECT count(*) FROM sqlite_schema"));
  POSTERN_CHECK(exec("PRAGMA foreign_keys = ON"));
  if (options.read_only) return {};

  // WAL: readers never block the writer and the writer never blocks readers, and a commit is one
  // sequential append to the -wal file (plus its fsync) instead of rewriting pages in place.
  POSTERN_TRY(Statement journal, prepare("PRAGMA journal_mode = WAL"));
  POSTERN_TRY(bool row, journal.step());
  const std::string mode = row ? journal.column_text(0) : std::string{};
  journal.reset();
  if (mode != "wal" && mode != "memory") {
    conn_->last_message = "journal_mode stayed '" + mode + "', WAL required";
    return Errc::sqlite_error;
  }
  // synchronous=FULL: in WAL mode NORMAL only fsyncs at checkpoints, so the last commits can be
  // lost on power failure even though they were reported committed. The server acknowledges a
  // message only once it is durable, and an acknowledged message must survive power loss, so each
  // commit fsyncs the WAL. Group commit (many envelopes per transaction) pays that fsync once per
  // batch rather than once per message.
  return exec("PRAGMA synchronous = FULL");
}

Status Database::exec(std::string_view sql) {
  const std::string text(sql);
  const int rc = sqlite3_exec(conn_->db, text.c_str(), nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? Status{} : Status{conn_->fail(rc)};
}

Result<Statement> Database::prepare(std::string_view sql) {
  if (sql.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return Errc::too_large;
  sqlite3_stmt* stmt = nullptr;
  // PERSISTENT: these statements live for the connection's lifetime (cached), which SQLite
  // allocates differently from one-shot statements.
  const int rc = sqlite3_prepare_v3(conn_->db, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    if (stmt != nullptr) sqlite3_finalize(stmt);
    return conn_->fail(rc);
  }
  if (stmt == nullptr) {  // empty SQL or only a comment
    conn_->last_message = "empty statement";
    return Errc::invalid_argument;
  }
  return Statement(stmt, conn_.get());
}

Result<StatementLease> Database::cached(std::string_view sql) {
  auto& cache = conn_->cache;
  auto it = cache.find(sql);
  if (it == cache.end()) {
    POSTERN_TRY(Statement stmt, prepare(sql));
    it = cache.emplace(std::string(sql), std::make_unique<Statement>(std::move(stmt))).first;
  }
  Statement* stmt = it->second.get();
  // A lease left over from an error path would have reset it already; this keeps a statement
  // that was stepped but never reset from carrying stale bindings into this use.
  stmt->reset();
  return StatementLease(stmt);
}

std::int64_t Database::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(conn_->db);
}

std::int64_t Database::changes() const {
  return sqlite3_changes64(conn_->db);
}

bool Database::in_transaction() const {
  return sqlite3_get_autocommit(conn_->db) == 0;
}

const std::string& Database::last_message() const {
  return conn_->last_message;
}

int Database::last_extended_code() const {
  return conn_->last_extended_code;
}

// ---- Transaction ----

Result<Transaction> Transaction::begin(Database& db) {
  POSTERN_TRY(auto begin, db.cached("BEGIN IMMEDIATE"));
  POSTERN_CHECK(begin->run());
  return Transaction(&db);
}

Status Transaction::commit() {
  if (db_ == nullptr) return Errc::invalid_argument;
  POSTERN_TRY(auto commit, db_->cached("COMMIT"));
  Status status = commit->run();
  // On failure (e.g. SQLITE_BUSY while readers hold the WAL) the transaction is still open; the
  // destructor rolls it back so the connection is usable again.
  if (status.ok()) db_ = nullptr;
  return status;
}

Transaction::~Transaction() {
  if (db_ == nullptr || !db_->in_transaction()) return;
  // Rolling back cannot be reported from a destructor; if it fails SQLite has already rolled
  // back (ROLLBACK fails only when no transaction is active).
  if (auto rollback = db_->cached("ROLLBACK"); rollback.ok()) {
    Status ignored = (*rollback)->run();
    (void)ignored;
  }
}

}  // namespace postern::store
