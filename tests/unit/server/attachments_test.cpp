// AttachmentService: size, quota and byte-rate checks at creation; ownership; PATCH writers that
// append at the recorded offset, keep what arrived when cut, and exclude each other; downloads of
// complete uploads only; expiry purges files and records; account deletion removes files. And the
// pure header parsers (decimal, Upload-Metadata, Range) on good and hostile input.
#include "postern/server/attachments.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "postern/crypto/random.h"
#include "postern/server/config.h"
#include "postern/store/sqlite_server_store.h"
#include "store/temp_dir.h"

namespace postern::server {
namespace {

using store::store_test::TempDir;

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed + i * 7);
  return b;
}

class AttachmentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto opened = store::SqliteServerStore::open(dir_.file("postern.db"));
    ASSERT_TRUE(opened.ok()) << opened.error().message();
    store_ = std::move(*opened);
    auto a = store_->create_account("alice@example.com", "hash", 0);
    auto b = store_->create_account("bob@example.com", "hash", 0);
    ASSERT_TRUE(a.ok() && b.ok());
    alice_ = *a;
    bob_ = *b;
    limits_.max_upload_bytes = 1000;
    limits_.quota_bytes = 1500;
    limits_.expiry_ms = 10'000;
    limits_.purge_interval_ms = 1000;
    limits_.bytes_per_account = {100'000, 0};
    make_service();
  }

  void make_service() {
    service_ = std::make_unique<AttachmentService>(*store_, limits_, dir_.file("attachments"), metrics_,
                                                   clock_, rng_);
    ASSERT_TRUE(service_->open_directory().ok());
  }

  std::string file(const std::string& id) const { return dir_.file("attachments/" + id); }

  UploadInfo create(std::int64_t account, std::int64_t length) {
    auto c = service_->create(account, length);
    EXPECT_TRUE(c.ok()) << (c.ok() ? "" : c.error().message);
    return c.ok() ? *c : UploadInfo{};
  }

  // One PATCH of `data` at `offset`, finished.
  Outcome<UploadInfo> patch(std::int64_t account, const std::string& id, std::int64_t offset,
                            const Bytes& data) {
    auto w = service_->begin_patch(account, id, offset, static_cast<std::int64_t>(data.size()));
    if (!w) return w.error();
    EXPECT_TRUE((*w)->write(data).ok());
    return (*w)->finish();
  }

  Bytes read_all(const std::string& id) {
    auto d = service_->open_download(id);
    EXPECT_TRUE(d.ok());
    if (!d) return {};
    Bytes out(static_cast<std::size_t>((*d)->length()));
    std::int64_t at = 0;
    while (at < (*d)->length()) {
      auto n = (*d)->read(at, MutableByteView(out.data() + at, 7));  // small pieces on purpose
      EXPECT_TRUE(n.ok());
      if (!n || *n == 0) break;
      at += static_cast<std::int64_t>(*n);
    }
    return out;
  }

  TempDir dir_;
  std::unique_ptr<store::SqliteServerStore> store_;
  std::int64_t alice_ = 0;
  std::int64_t bob_ = 0;
  AttachmentLimits limits_;
  ServerMetrics metrics_;
  ManualClock clock_{1'000'000};
  crypto::DeterministicRng rng_{7};
  std::unique_ptr<AttachmentService> service_;
};

TEST_F(AttachmentsTest, CreateMakesAnUnguessableIdAndAnEmptyPrivateFile) {
  const UploadInfo a = create(alice_, 10);
  const UploadInfo b = create(alice_, 10);
  EXPECT_TRUE(valid_upload_id(a.id));
  EXPECT_NE(a.id, b.id);
  EXPECT_EQ(a.offset, 0);
  EXPECT_EQ(a.expires_ms, 1'000'000 + 10'000);
  struct stat st {};
  ASSERT_EQ(::stat(file(a.id).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  struct stat dst {};
  ASSERT_EQ(::stat(dir_.file("attachments").c_str(), &dst), 0);
  EXPECT_EQ(dst.st_mode & 0777, 0700u);
  EXPECT_EQ(metrics_.uploads_created.load(), 2u);
}

TEST_F(AttachmentsTest, CreateRefusesTooLargeOverQuotaAndRateLimited) {
  auto big = service_->create(alice_, 1001);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().status, 413u);
  EXPECT_EQ(big.error().code, "too_large");
  EXPECT_FALSE(service_->create(alice_, -1).ok());

  create(alice_, 1000);
  auto over = service_->create(alice_, 501);
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().status, 413u);
  EXPECT_EQ(over.error().code, "quota_exceeded");
  create(alice_, 500);  // exactly the quota
  create(bob_, 1000);   // quotas are per account

  limits_.quota_bytes = 1'000'000;
  limits_.bytes_per_account = {1000, 10};  // 1000 bytes at once, 10 a second
  make_service();
  create(alice_, 600);
  auto limited = service_->create(alice_, 600);
  ASSERT_FALSE(limited.ok());
  EXPECT_EQ(limited.error().status, 429u);
  EXPECT_EQ(limited.error().code, "rate_limited");
  EXPECT_EQ(limited.error().retry_after_ms, 20'000);  // 200 bytes missing at 10 a second
  create(bob_, 600);                                  // another account's bucket
  clock_.advance_ms(20'000);
  create(alice_, 600);
}

TEST_F(AttachmentsTest, HeadAndPatchBelongToTheCreatingAccount) {
  const UploadInfo u = create(alice_, 10);
  auto h = service_->head(alice_, u.id);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->length, 10);
  EXPECT_EQ(service_->head(bob_, u.id).error().status, 404u);
  EXPECT_EQ(service_->begin_patch(bob_, u.id, 0, 1).error().status, 404u);
  EXPECT_EQ(service_->remove(bob_, u.id).error().status, 404u);
  EXPECT_EQ(service_->head(alice_, "no-such-id").error().status, 404u);
  EXPECT_EQ(service_->head(alice_, "../postern.db").error().status, 404u);
  EXPECT_EQ(service_->head(alice_, std::string(43, 'A')).error().status, 404u);
}

TEST_F(AttachmentsTest, PatchesAppendAtTheOffsetAndCompleteTheUpload) {
  const Bytes data = pattern(100, 3);
  const UploadInfo u = create(alice_, 100);
  EXPECT_EQ(service_->open_download(u.id).error().status, 409u);  // incomplete
  auto first = patch(alice_, u.id, 0, Bytes(data.begin(), data.begin() + 40));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->offset, 40);
  EXPECT_FALSE(first->complete);

  auto wrong = service_->begin_patch(alice_, u.id, 39, 10);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().status, 409u);
  auto past = service_->begin_patch(alice_, u.id, 40, 61);
  ASSERT_FALSE(past.ok());
  EXPECT_EQ(past.error().status, 413u);

  auto second = patch(alice_, u.id, 40, Bytes(data.begin() + 40, data.end()));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->offset, 100);
  EXPECT_TRUE(second->complete);
  EXPECT_EQ(read_all(u.id), data);
  EXPECT_EQ(metrics_.uploads_completed.load(), 1u);
  EXPECT_EQ(metrics_.upload_bytes.load(), 100u);

  // Anyone may download (the id is the capability); a complete upload takes no more bytes.
  EXPECT_TRUE(service_->open_download(u.id).ok());
  EXPECT_EQ(service_->begin_patch(alice_, u.id, 100, 1).error().status, 413u);
}

TEST_F(AttachmentsTest, AWriterNeverGoesPastTheDeclaredLength) {
  const UploadInfo u = create(alice_, 10);
  auto w = service_->begin_patch(alice_, u.id, 0, 10);
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE((*w)->write(pattern(6, 1)).ok());
  EXPECT_FALSE((*w)->write(pattern(5, 1)).ok());
  EXPECT_EQ((*w)->offset(), 6);
}

TEST_F(AttachmentsTest, ACutPatchKeepsWhatArrivedAndTheNextOneContinues) {
  const Bytes data = pattern(1000, 9);
  const UploadInfo u = create(alice_, 1000);
  {
    auto w = service_->begin_patch(alice_, u.id, 0, 1000);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->write(Bytes(data.begin(), data.begin() + 300)).ok());
    // The connection is cut here: the writer goes without an explicit finish().
  }
  auto h = service_->head(alice_, u.id);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->offset, 300);
  ASSERT_TRUE(patch(alice_, u.id, 300, Bytes(data.begin() + 300, data.end())).ok());
  EXPECT_EQ(read_all(u.id), data);
}

TEST_F(AttachmentsTest, BytesPastTheRecordedOffsetAreDroppedByTheNextPatch) {
  const UploadInfo u = create(alice_, 10);
  ASSERT_TRUE(patch(alice_, u.id, 0, pattern(4, 1)).ok());
  {  // a crash after writing and before recording: the file is longer than the record says
    std::ofstream f(file(u.id), std::ios::binary | std::ios::app);
    f << "garbage";
  }
  const Bytes rest = pattern(6, 50);
  ASSERT_TRUE(patch(alice_, u.id, 4, rest).ok());
  Bytes want = pattern(4, 1);
  want.insert(want.end(), rest.begin(), rest.end());
  EXPECT_EQ(read_all(u.id), want);
}

TEST_F(AttachmentsTest, TwoPatchesOfOneUploadExcludeEachOther) {
  const UploadInfo u = create(alice_, 10);
  auto first = service_->begin_patch(alice_, u.id, 0, 5);
  ASSERT_TRUE(first.ok());
  auto second = service_->begin_patch(alice_, u.id, 0, 5);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().status, 423u);
  EXPECT_EQ(service_->remove(alice_, u.id).error().status, 423u);
  first.value().reset();  // released
  EXPECT_TRUE(service_->begin_patch(alice_, u.id, 0, 5).ok());
}

TEST_F(AttachmentsTest, RemoveDeletesFileAndRecord) {
  const UploadInfo u = create(alice_, 10);
  auto removed = service_->remove(alice_, u.id);
  ASSERT_TRUE(removed.ok());
  EXPECT_FALSE(std::filesystem::exists(file(u.id)));
  EXPECT_EQ(service_->head(alice_, u.id).error().status, 404u);
}

TEST_F(AttachmentsTest, ExpiredUploadsAreGoneAndPurged) {
  const UploadInfo old = create(alice_, 4);
  ASSERT_TRUE(patch(alice_, old.id, 0, pattern(4, 1)).ok());
  clock_.advance_ms(5'000);
  const UploadInfo young = create(alice_, 4);
  clock_.advance_ms(5'000);  // `old` expires now
  EXPECT_EQ(service_->head(alice_, old.id).error().status, 404u);
  EXPECT_EQ(service_->open_download(old.id).error().status, 404u);
  EXPECT_EQ(service_->purge_expired(true), 1u);
  EXPECT_FALSE(std::filesystem::exists(file(old.id)));
  EXPECT_TRUE(std::filesystem::exists(file(young.id)));
  EXPECT_EQ(metrics_.uploads_expired.load(), 1u);
  // Expired uploads no longer count against the quota once purged.
  auto used = store_->account_upload_bytes(alice_);
  ASSERT_TRUE(used.ok());
  EXPECT_EQ(*used, 4);
}

TEST_F(AttachmentsTest, PurgeSkipsAnUploadBeingWrittenAndRunsAtMostOncePerInterval) {
  const UploadInfo u = create(alice_, 4);
  auto w = service_->begin_patch(alice_, u.id, 0, 4);
  ASSERT_TRUE(w.ok());
  clock_.advance_ms(10'000);
  EXPECT_EQ(service_->purge_expired(true), 0u);
  EXPECT_TRUE(std::filesystem::exists(file(u.id)));
  w.value().reset();
  EXPECT_EQ(service_->purge_expired(false), 0u);  // within the interval
  clock_.advance_ms(1'000);
  EXPECT_EQ(service_->purge_expired(false), 1u);
}

TEST_F(AttachmentsTest, AccountDeletionRemovesTheFiles) {
  const UploadInfo u = create(alice_, 4);
  auto ids = store_->delete_account(alice_);
  ASSERT_TRUE(ids.ok());
  ASSERT_EQ(ids->size(), 1u);
  service_->delete_files(*ids);
  EXPECT_FALSE(std::filesystem::exists(file(u.id)));
  service_->delete_files({"../postern.db", ""});  // ignored, never a path outside the directory
  EXPECT_TRUE(std::filesystem::exists(dir_.file("postern.db")));
}

TEST_F(AttachmentsTest, AnEmptyUploadIsCompleteAtOnce) {
  const UploadInfo u = create(alice_, 0);
  EXPECT_TRUE(u.complete);
  EXPECT_TRUE(service_->open_download(u.id).ok());
  auto done = patch(alice_, u.id, 0, {});  // an empty PATCH changes nothing
  ASSERT_TRUE(done.ok());
  EXPECT_TRUE(done->complete);
  auto d = service_->open_download(u.id);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ((*d)->length(), 0);
}

TEST(AttachmentHeaders, ParseDecimal) {
  EXPECT_EQ(parse_decimal("0"), 0);
  EXPECT_EQ(parse_decimal("2147483648"), 2147483648LL);
  EXPECT_EQ(parse_decimal("999999999999999999"), 999999999999999999LL);
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "1.0", "0x10", "1e3", "abc", "9999999999999999999"}) {
    EXPECT_FALSE(parse_decimal(bad).has_value()) << bad;
  }
}

TEST(AttachmentHeaders, UploadMetadata) {
  EXPECT_TRUE(valid_upload_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"));
  EXPECT_TRUE(valid_upload_metadata("a YQ==, b"));
  for (const char* bad : {"", ",", "a YQ=", "a Y!==", "a,a", "a YQ==,", "a Y=Q="}) {
    EXPECT_FALSE(valid_upload_metadata(bad)) << bad;
  }
}

TEST(AttachmentHeaders, Ranges) {
  auto r = parse_range("bytes=0-9", 100);
  EXPECT_EQ(r.kind, RangeKind::partial);
  EXPECT_EQ(r.range.first, 0);
  EXPECT_EQ(r.range.last, 9);
  r = parse_range("bytes=50-", 100);
  EXPECT_EQ(r.kind, RangeKind::partial);
  EXPECT_EQ(r.range.first, 50);
  EXPECT_EQ(r.range.last, 99);
  r = parse_range("bytes=-30", 100);
  EXPECT_EQ(r.kind, RangeKind::partial);
  EXPECT_EQ(r.range.first, 70);
  r = parse_range("bytes=-300", 100);
  EXPECT_EQ(r.range.first, 0);
  r = parse_range("bytes=90-500", 100);
  EXPECT_EQ(r.range.last, 99);
  EXPECT_EQ(parse_range("bytes=100-", 100).kind, RangeKind::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=-0", 100).kind, RangeKind::unsatisfiable);
  EXPECT_EQ(parse_range("bytes=0-", 0).kind, RangeKind::unsatisfiable);
  for (const char* ignored : {"", "bytes", "items=0-1", "bytes=5-4", "bytes=a-b", "bytes=-", "bytes=0-1,5-6",
                              "bytes=--1", "bytes=99999999999999999999-"}) {
    EXPECT_EQ(parse_range(ignored, 100).kind, RangeKind::whole) << ignored;
  }
}

TEST(AttachmentConfig, DefaultsAndTheAttachmentsSection) {
  const ServerConfig defaults;
  EXPECT_EQ(defaults.attachments.max_upload_bytes, 2LL * 1024 * 1024 * 1024);
  EXPECT_EQ(defaults.attachments.quota_bytes, 10LL * 1024 * 1024 * 1024);
  EXPECT_EQ(defaults.attachments.expiry_ms, 30LL * 24 * 3600 * 1000);

  TempDir dir;
  const std::string path = dir.file("server.toml");
  {
    std::ofstream f(path);
    f << "[attachments]\nmax_upload_bytes = 1000\nquota_bytes = 5000\nexpiry_ms = 60000\n"
         "purge_interval_ms = 0\nbytes_per_account = { capacity = 3000, refill_per_second = 0.5 }\n";
  }
  ServerConfig config;
  load_config(path, config);
  EXPECT_EQ(config.attachments.max_upload_bytes, 1000);
  EXPECT_EQ(config.attachments.quota_bytes, 5000);
  EXPECT_EQ(config.attachments.expiry_ms, 60000);
  EXPECT_EQ(config.attachments.purge_interval_ms, 0);
  EXPECT_EQ(config.attachments.bytes_per_account.capacity, 3000);
  EXPECT_EQ(config.attachments.bytes_per_account.refill_per_second, 0.5);

  for (const char* bad : {"[attachments]\nmax_upload_bytes = -1\n", "[attachments]\nunknown = 1\n",
                          "[attachments]\nexpiry_ms = \"long\"\n", "attachments = 3\n"}) {
    std::ofstream(path) << bad;
    ServerConfig c;
    EXPECT_THROW(load_config(path, c), std::runtime_error) << bad;
  }
}

}  // namespace
}  // namespace postern::server
