// Versioned schema migrations. A schema is an ordered list of steps numbered 1, 2, 3, ...; the
// version a database has reached is kept in the file itself (PRAGMA user_version, a header field
// that costs no table). Each step runs in its own transaction together with the version bump, so
// a database is always exactly at some step: a step that fails leaves no trace and the version
// where it was. Steps are append-only: once released, a step is never edited, only followed.
#pragma once

#include <span>
#include <string_view>

#include "postern/store/sqlite.h"
#include "postern/util/result.h"

namespace postern::store {

struct Migration {
  int version;                   // 1 for the first step, each next one +1
  std::string_view description;  // for logs and docs/storage.md
  std::string_view sql;          // one or more statements, no parameters
};

// The version recorded in the file (0 for a new database).
Result<int> schema_version(Database& db);

// Brings the database up to the last step. Errors: Errc::invalid_argument when the steps are not
// numbered 1..N in order; Errc::schema_too_new when the file is at a version above N (written by
// a newer program: refusing is safer than writing rows it does not understand); the error of a
// failing step, after rolling that step back. Safe when several connections open the same new
// file at once: the version is read again under the write lock before each step.
Status migrate(Database& db, std::span<const Migration> steps);

}  // namespace postern::store
