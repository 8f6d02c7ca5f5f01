// The schema of the client's profile database (PROFILE/profile.db), as ordered migrations.
// Sealed columns (BLOB, XChaCha20-Poly1305 under the data key, see local_store.h) are marked
// "sealed" with their context string in schema.cpp. docs/client-storage.md explains each table.
#pragma once

#include <span>

#include "postern/store/migrations.h"

namespace postern::client {

std::span<const store::Migration> client_schema();

}  // namespace postern::client
