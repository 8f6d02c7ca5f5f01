// Error codes of the storage layer. Interfaces in server_store.h return these whatever the
// backend (SQLite today, PostgreSQL later), so the API layer maps them to HTTP statuses once.
// The codes say what kind of failure it was; the backend's own message text (never holding user
// data, since every value is bound as a parameter) is kept for logs by Database::last_message().
#pragma once

#include <system_error>

namespace postern::store {

enum class Errc {
  sqlite_error = 1,  // any other failure reported by the database engine
  constraint,        // a uniqueness, foreign-key or CHECK constraint was violated
  not_found,         // the row asked for does not exist
  busy,              // the database stayed locked by another connection past the busy timeout
  corrupt,           // the file is not a database or its content is damaged
  too_large,         // a value or a batch above the documented limit
  invalid_argument,  // a value of the wrong shape (key length, empty id, offset going backwards)
  email_taken,       // an account with this e-mail (compared case-insensitively) exists
  schema_too_new,    // the database was written by a newer version of Postern
  io_error,          // the file could not be opened, read or written (permissions, disk full)
};

std::error_code make_error_code(Errc e);
const std::error_category& store_category();

}  // namespace postern::store

template <>
struct std::is_error_code_enum<postern::store::Errc> : std::true_type {};
