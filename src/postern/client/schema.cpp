#include "postern/client/schema.h"

namespace postern::client {
namespace {

// Sealing contexts ("table.column:" + row key) are given next to each sealed column.
constexpr store::Migration kSteps[] = {
    {1, "profile: settings, protocol stores, contacts, history, groups, attachments",
     R"sql(
CREATE TABLE settings (                      -- value sealed: "settings.value:" || name
  name TEXT PRIMARY KEY,
  value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE identities (                    -- key sealed: "identities.key:" || name || "." || device_id || "#state=" || state
  name TEXT NOT NULL,                        -- the account id as decimal text
  device_id INTEGER NOT NULL,
  key BLOB NOT NULL,
  state INTEGER NOT NULL,                    -- TrustState
  first_seen_ms INTEGER NOT NULL,
  previous_key BLOB,                         -- "identities.previous_key:" || name || "." || device_id
  PRIMARY KEY (name, device_id)
) WITHOUT ROWID;

CREATE TABLE pre_keys (                      -- record sealed: "pre_keys.record:" || id
  id INTEGER PRIMARY KEY,
  record BLOB NOT NULL
);

CREATE TABLE signed_pre_keys (               -- record sealed: "signed_pre_keys.record:" || id
  id INTEGER PRIMARY KEY,
  record BLOB NOT NULL,
  created_ms INTEGER NOT NULL
);

CREATE TABLE sessions (                      -- record sealed: "sessions.record:" || name || "." || device_id
  name TEXT NOT NULL,
  device_id INTEGER NOT NULL,
  record BLOB NOT NULL,
  PRIMARY KEY (name, device_id)
) WITHOUT ROWID;

CREATE TABLE sender_keys (                   -- record sealed: "sender_keys.record:" || group_id || "/" || sender_name || "." || sender_device
  group_id TEXT NOT NULL,
  sender_name TEXT NOT NULL,
  sender_device INTEGER NOT NULL,
  record BLOB NOT NULL,
  PRIMARY KEY (group_id, sender_name, sender_device)
) WITHOUT ROWID;

CREATE TABLE contacts (                      -- email sealed: "contacts.email:" || account_id
  account_id INTEGER PRIMARY KEY,
  email_index TEXT NOT NULL UNIQUE,          -- LocalStore::blind_index(normalised e-mail)
  email BLOB NOT NULL,
  added_ms INTEGER NOT NULL
);

CREATE TABLE conversations (
  id TEXT PRIMARY KEY,                       -- "u:<account_id>" or "g:<group id hex>"
  expire_timer_s INTEGER NOT NULL DEFAULT 0, -- disappearing messages, 0 = off
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE messages (                      -- body sealed: "messages.body:" || id
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conversation TEXT NOT NULL,
  outgoing INTEGER NOT NULL,                 -- 1 sent by this account (from any of its devices)
  sender_account INTEGER NOT NULL,
  sender_device INTEGER NOT NULL,
  sent_ms INTEGER NOT NULL,                  -- the sender's timestamp: the message's id for receipts
  received_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,                        -- text, image, video, file
  body BLOB NOT NULL,                        -- the serialised DataMessage (content.proto)
  status INTEGER NOT NULL,                   -- MessageStatus
  expire_timer_s INTEGER NOT NULL DEFAULT 0,
  expires_at_ms INTEGER,                     -- set when the timer starts (sent / read)
  read_ms INTEGER,
  notified INTEGER NOT NULL DEFAULT 0,       -- 1 once shown to the user (an event was delivered)
  UNIQUE (conversation, sender_account, sent_ms)
);
CREATE INDEX messages_by_conversation ON messages (conversation, sent_ms);
CREATE INDEX messages_unnotified ON messages (id) WHERE notified = 0;
CREATE INDEX messages_by_expiry ON messages (expires_at_ms) WHERE expires_at_ms IS NOT NULL;

CREATE TABLE message_recipients (            -- per-recipient state of an outgoing message
  message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  account_id INTEGER NOT NULL,
  status INTEGER NOT NULL,                   -- MessageStatus
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (message_id, account_id)
) WITHOUT ROWID;

CREATE TABLE processed_envelopes (           -- server ids already handled (a redelivery is dropped)
  server_id INTEGER PRIMARY KEY,
  processed_ms INTEGER NOT NULL
);

CREATE TABLE groups (                        -- name sealed: "groups.name:" || id
  id TEXT PRIMARY KEY,                       -- 16 random bytes, hex
  name BLOB NOT NULL,
  revision INTEGER NOT NULL,
  creator INTEGER NOT NULL,
  active INTEGER NOT NULL,                   -- 0 after this account was removed or left
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE group_members (
  group_id TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
  account_id INTEGER NOT NULL,
  PRIMARY KEY (group_id, account_id)
) WITHOUT ROWID;

CREATE TABLE sender_key_shared (             -- devices that hold this device's current sender key
  group_id TEXT NOT NULL,
  account_id INTEGER NOT NULL,
  device_id INTEGER NOT NULL,
  PRIMARY KEY (group_id, account_id, device_id)
) WITHOUT ROWID;

CREATE TABLE attachments (                   -- pointer, path sealed: "attachments.pointer:" || id, "attachments.path:" || id
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  pointer BLOB NOT NULL,                     -- the AttachmentPointer (content.proto)
  path BLOB,                                 -- where the decrypted file was saved
  state INTEGER NOT NULL                     -- 0 pending download, 1 saved, 2 failed
);

CREATE TABLE outbox (                        -- payload sealed: "outbox.payload:" || id
  id TEXT PRIMARY KEY,                       -- random hex
  seq INTEGER NOT NULL UNIQUE,               -- send order
  message_id INTEGER,                        -- the history row it delivers, if any
  account_id INTEGER NOT NULL,               -- recipient account
  payload BLOB NOT NULL,                     -- the encrypted envelopes (JSON), resent unchanged
  created_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE pending_uploads (               -- secrets sealed: "pending_uploads.secrets:" || file_index
  file_index TEXT PRIMARY KEY,               -- blind index of (absolute path, size, mtime)
  location TEXT NOT NULL,                    -- the TUS upload URL
  secrets BLOB NOT NULL,                     -- key and IV, so a resumed upload continues the same ciphertext
  created_ms INTEGER NOT NULL
) WITHOUT ROWID;
)sql"},
};

}  // namespace

std::span<const store::Migration> client_schema() { return kSteps; }

}  // namespace postern::client
