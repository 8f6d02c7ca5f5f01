#include "postern/store/wal_checkpointer.h"

namespace postern::store {

Result<std::unique_ptr<WalCheckpointer>> WalCheckpointer::start(const std::string& path,
                                                                std::chrono::milliseconds interval) {
  POSTERN_TRY(Database db, Database::open(path));
  return std::unique_ptr<WalCheckpointer>(new WalCheckpointer(std::move(db), interval));
}

WalCheckpointer::WalCheckpointer(Database db, std::chrono::milliseconds interval)
    : db_(std::move(db)), interval_(interval) {
  thread_ = std::thread([this] { run(); });
}

WalCheckpointer::~WalCheckpointer() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void WalCheckpointer::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    const bool stop = cv_.wait_for(lock, interval_, [&] { return stopping_; });
    lock.unlock();
    // PASSIVE: copies what it can without waiting for readers or blocking the writer. A busy
    // database is not an error here; the next round continues.
    (void)db_.exec("PRAGMA wal_checkpoint(PASSIVE)");
    if (stop) return;
    lock.lock();
  }
}

}  // namespace postern::store
