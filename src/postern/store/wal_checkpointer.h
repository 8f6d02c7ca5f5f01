// Checkpoints a WAL database from a background thread, on a connection of its own, so that no
// commit has to do it. By default SQLite checkpoints inside the commit that pushes the WAL over
// 1000 pages: that commit then also writes pages back into the database file and fsyncs it, and
// the sends waiting for it see a latency spike. A PASSIVE checkpoint on another connection does
// the same work without blocking writers (WAL lets one writer and checkpointers run together);
// the writers' connections then turn automatic checkpoints off (`SqliteServerStore::
// set_auto_checkpoint(0)`), once this object runs.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "postern/store/sqlite.h"
#include "postern/util/result.h"

namespace postern::store {

class WalCheckpointer {
 public:
  // Opens its own connection to `path` and starts the thread, which runs a PASSIVE checkpoint
  // every `interval`.
  static Result<std::unique_ptr<WalCheckpointer>> start(const std::string& path,
                                                        std::chrono::milliseconds interval);
  // Runs a last checkpoint, then stops the thread.
  ~WalCheckpointer();
  WalCheckpointer(const WalCheckpointer&) = delete;
  WalCheckpointer& operator=(const WalCheckpointer&) = delete;

 private:
  WalCheckpointer(Database db, std::chrono::milliseconds interval);
  void run();

  Database db_;
  std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace postern::store
