#include "postern/store/migrations.h"

#include <string>

namespace postern::store {

Result<int> schema_version(Database& db) {
  POSTERN_TRY(auto stmt, db.cached("PRAGMA user_version"));
  POSTERN_TRY(bool row, stmt->step());
  if (!row) return Errc::sqlite_error;
  return static_cast<int>(stmt->column_int64(0));
}

Status migrate(Database& db, std::span<const Migration> steps) {
  for (std::size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].version != static_cast<int>(i) + 1) return Errc::invalid_argument;
  }
  const int latest = static_cast<int>(steps.size());

  // Cheap check outside any lock: the common case (already current) takes no write lock.
  POSTERN_TRY(int current, schema_version(db));
  if (current > latest) return Errc::schema_too_new;

  while (current < latest) {
    POSTERN_TRY(Transaction tx, Transaction::begin(db));
    // Another connection may have migrated between our read and the lock.
    POSTERN_TRY(current, schema_version(db));
    if (current > latest) return Errc::schema_too_new;
    if (current == latest) return tx.commit();
    const Migration& step = steps[static_cast<std::size_t>(current)];
    POSTERN_CHECK(db.exec(step.sql));
    // PRAGMA takes no parameters; the version is our own integer, not input.
    POSTERN_CHECK(db.exec("PRAGMA user_version = " + std::to_string(step.version)));
    POSTERN_CHECK(tx.commit());
    current = step.version;
  }
  return {};
}

}  // namespace postern::store
