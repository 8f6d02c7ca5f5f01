// Messenger: attachments. Upload: the file is encrypted as it is read (EncryptedFileReader) and
// sent with TUS PATCH requests; an interrupted upload continues from the server's offset (HEAD),
// in this process or, after a crash, in the next one (the key and IV wait sealed in
// pending_uploads). Download: the blob streams through AttachmentDecryptor into a temporary
// file that becomes the saved file only when the MAC and the digest verify.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <thread>

#include "postern/client/attachment_cipher.h"
#include "postern/client/detail/messenger_impl.h"
#include "postern/client/media.h"
#include "postern/util/bytes.h"

namespace postern::client {
namespace {

namespace pb = content::v1;
constexpr int kMaxAttempts = 6;
constexpr std::uint64_t kMaxUpload = 2ULL << 30;  // the server's default Tus-Max-Size

ByteView view_of(const std::string& s) { return ByteView(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()); }

std::optional<std::uint64_t> header_u64(const HttpResponse& r, std::string_view name) {
  const auto v = r.header(name);
  if (!v) return std::nullopt;
  std::uint64_t out = 0;
  const auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc{} || p != v->data() + v->size()) return std::nullopt;
  return out;
}

std::string safe_file_name(const std::string& name) {
  std::string out;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    out += ok ? c : '_';
  }
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  if (out.size() > 100) out = out.substr(out.size() - 100);
  return out.empty() ? "file" : out;
}

void backoff(int attempt) { std::this_thread::sleep_for(std::chrono::milliseconds(250LL << std::min(attempt, 4))); }

}  // namespace

Outcome<pb::AttachmentPointer> Messenger::Impl::upload_file(const std::filesystem::path& file, const ProgressHandler& progress) {
  std::error_code ec;
  const auto absolute = std::filesystem::absolute(file, ec);
  struct stat info {};
  if (ec || ::stat(absolute.c_str(), &info) != 0 || !S_ISREG(info.st_mode))
    return Failure::from(make_error_code(Errc::file_error), "cannot read " + file.string() + ": no such file");
  if (::access(absolute.c_str(), R_OK) != 0)
    return Failure::from(make_error_code(Errc::file_error), "cannot read " + file.string() + ": permission denied");
  const auto size = static_cast<std::uint64_t>(info.st_size);
  if (attachment_blob_size(size) > kMaxUpload)
    return Failure::from(make_error_code(Errc::too_large), file.string() + " is larger than the 2 GiB the server accepts");
  POSTERN_OUTCOME_TRY(auto media, inspect_media(absolute));

  const std::string file_index = store->blind_index(absolute.string() + "\n" + std::to_string(size) + "\n" +
                                                    std::to_string(info.st_mtim.tv_sec) + "." + std::to_string(info.st_mtim.tv_nsec));
  AttachmentSecrets secrets;
  std::string location;
  std::uint64_t offset = 0;
  const std::uint64_t blob_size = attachment_blob_size(size);
  {
    POSTERN_OUTCOME_TRY(auto st, store->db().prepare("SELECT location, secrets FROM pending_uploads WHERE file_index = ?"));
    POSTERN_OUTCOME_CHECK(st.bind_all(std::string_view(file_index)));
    POSTERN_OUTCOME_TRY(bool row, st.step());
    if (row) {
      auto sealed = store->unseal(st.column_blob(1), "pending_uploads.secrets:" + file_index);
      if (sealed.ok() && sealed->size() == kAttachmentKeySize + kAttachmentIvSize) {
        std::copy(sealed->data(), sealed->data() + kAttachmentKeySize, secrets.key.data());
        std::copy(sealed->data() + kAttachmentKeySize, sealed->data() + sealed->size(), secrets.iv.begin());
        HttpRequest head;
        head.method = "HEAD";
        head.target = st.column_text(0);
        head.bearer = *api->token();
        head.headers.push_back({"Tus-Resumable", "1.0.0"});
        auto answer = link->send(head);
        if (answer.ok() && answer->status == 200 && header_u64(*answer, "Upload-Length") == blob_size) {
          location = head.target;
          offset = header_u64(*answer, "Upload-Offset").value_or(0);
        }
      }
    }
  }
  if (location.empty()) {
    secrets = AttachmentSecrets::generate(rng);
    HttpRequest create;
    create.method = "POST";
    create.target = "/v1/attachments";
    create.bearer = *api->token();
    create.headers.push_back({"Tus-Resumable", "1.0.0"});
    create.headers.push_back({"Upload-Length", std::to_string(blob_size)});
    auto answer = link->send(create);
    if (!answer.ok()) return Failure::from(answer.error(), "the upload could not start: " + answer.error().message());
    if (answer->status != 201) return ServerApi::failure_from(*answer);
    const auto loc = answer->header("Location");
    if (!loc || !loc->starts_with("/v1/attachments/"))
      return Failure::from(make_error_code(Errc::protocol_error), "the server's upload answer has no Location");
    location = std::string(*loc);
    Bytes blob_secrets(secrets.key.data(), secrets.key.data() + kAttachmentKeySize);
    blob_secrets.insert(blob_secrets.end(), secrets.iv.begin(), secrets.iv.end());
    auto sealed = store->seal(blob_secrets, "pending_uploads.secrets:" + file_index);
    crypto::wipe(blob_secrets);
    if (!sealed.ok()) return Failure::from(sealed.error());
    POSTERN_OUTCOME_TRY(auto ins, store->db().prepare(
                                      "INSERT OR REPLACE INTO pending_uploads (file_index, location, secrets, created_ms) VALUES (?, ?, ?, ?)"));
    POSTERN_OUTCOME_CHECK(ins.bind_all(std::string_view(file_index), std::string_view(location), ByteView(*sealed), clock.now_ms()));
    POSTERN_OUTCOME_CHECK(ins.run());
  }

  AttachmentDigest digest{};
  int attempt = 0;
  while (true) {
    POSTERN_OUTCOME_TRY(auto reader, EncryptedFileReader::open(absolute, secrets));
    if (reader.blob_size() != blob_size)
      return Failure::from(make_error_code(Errc::file_error), file.string() + " changed while it was being sent");
    POSTERN_OUTCOME_CHECK(reader.skip_to(offset));
    if (offset == blob_size) {
      // Everything is on the server already; the digest needs the whole blob read.
      digest = reader.digest();
      break;
    }
    HttpRequest patch;
    patch.method = "PATCH";
    patch.target = location;
    patch.bearer = *api->token();
    patch.headers.push_back({"Tus-Resumable", "1.0.0"});
    patch.headers.push_back({"Upload-Offset", std::to_string(offset)});
    patch.headers.push_back({"Content-Type", "application/offset+octet-stream"});
    patch.body_length = blob_size - offset;
    std::uint64_t sent = offset;
    patch.body_source = [&reader, &sent, &progress, blob_size](std::span<std::uint8_t> out) -> Result<std::size_t> {
      auto n = reader.read(out);
      if (n.ok()) {
        sent += *n;
        if (progress) progress(sent, blob_size);
      }
      return n;
    };
    auto answer = link->send(patch);
    if (answer.ok() && answer->status == 204) {
      const auto new_offset = header_u64(*answer, "Upload-Offset").value_or(0);
      if (new_offset == blob_size) {
        digest = reader.digest();
        break;
      }
      offset = new_offset;
      continue;
    }
    if (answer.ok() && answer->status != 423 && answer->status != 409 && answer->status < 500)
      return ServerApi::failure_from(*answer);
    // Cut connection, a busy upload (423) or a server error: ask where the server stands, resume.
    if (++attempt >= kMaxAttempts)
      return answer.ok() ? ServerApi::failure_from(*answer)
                         : Failure::from(answer.error(), "the upload was interrupted: " + answer.error().message() +
                                                             " (run the same command again to resume it)");
    backoff(attempt);
    HttpRequest head;
    head.method = "HEAD";
    head.target = location;
    head.bearer = *api->token();
    head.headers.push_back({"Tus-Resumable", "1.0.0"});
    auto where = link->send(head);
    if (where.ok() && where->status == 200) offset = header_u64(*where, "Upload-Offset").value_or(offset);
  }
  {
    POSTERN_OUTCOME_TRY(auto del, store->db().prepare("DELETE FROM pending_uploads WHERE file_index = ?"));
    POSTERN_OUTCOME_CHECK(del.bind_all(std::string_view(file_index)));
    POSTERN_OUTCOME_CHECK(del.run());
  }
  pb::AttachmentPointer pointer;
  pointer.set_upload_id(location.substr(std::string_view("/v1/attachments/").size()));
  pointer.set_key(secrets.key.data(), kAttachmentKeySize);
  pointer.set_digest(digest.data(), digest.size());
  pointer.set_size(size);
  pointer.set_blob_size(blob_size);
  pointer.set_content_type(media.mime);
  pointer.set_file_name(absolute.filename().string());
  pointer.set_width(media.width);
  pointer.set_height(media.height);
  pointer.set_duration_ms(media.duration_ms);
  if (!media.thumbnail_jpeg.empty()) pointer.set_thumbnail(media.thumbnail_jpeg.data(), media.thumbnail_jpeg.size());
  return pointer;
}

Outcome<Done> Messenger::Impl::download_attachment(std::int64_t attachment_id, const ProgressHandler& progress) {
  pb::AttachmentPointer pointer;
  {
    POSTERN_OUTCOME_TRY(auto st, store->db().prepare("SELECT pointer FROM attachments WHERE id = ?"));
    POSTERN_OUTCOME_CHECK(st.bind_all(attachment_id));
    POSTERN_OUTCOME_TRY(bool row, st.step());
    if (!row) return Failure::from(make_error_code(Errc::invalid_argument), "no such attachment");
    POSTERN_OUTCOME_TRY(auto bytes, store->unseal(st.column_blob(0), "attachments.pointer:" + std::to_string(attachment_id)));
    if (!pointer.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
      return Failure::from(make_error_code(Errc::corrupt_record));
  }
  auto mark = [&](int state, const std::string& path_record) -> Status {
    POSTERN_TRY(auto st, store->db().prepare("UPDATE attachments SET state = ?, path = ? WHERE id = ?"));
    POSTERN_CHECK(st.bind_int64(1, state));
    Bytes sealed;  // bound by reference: must outlive run()
    if (path_record.empty()) {
      POSTERN_CHECK(st.bind_null(2));
    } else {
      POSTERN_TRY(auto s, store->seal(view_of(path_record), "attachments.path:" + std::to_string(attachment_id)));
      sealed = std::move(s);
      POSTERN_CHECK(st.bind_blob(2, sealed));
    }
    POSTERN_CHECK(st.bind_int64(3, attachment_id));
    return st.run();
  };
  const bool id_ok = !pointer.upload_id().empty() && pointer.upload_id().size() <= 64 &&
                     pointer.upload_id().find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
                         std::string::npos;
  if (!id_ok || pointer.key().size() != kAttachmentKeySize || pointer.digest().size() != 32 ||
      pointer.blob_size() != attachment_blob_size(pointer.size())) {
    (void)mark(2, "");
    return Failure::from(make_error_code(Errc::bad_attachment), "the attachment's description is invalid");
  }
  std::error_code ec;
  std::filesystem::create_directories(attachments_dir(), ec);
  const std::string base = std::to_string(attachment_id) + "-" + safe_file_name(pointer.file_name());
  const auto final_path = attachments_dir() / base;
  const auto temp_path = attachments_dir() / (base + ".part");
  AttachmentDigest expected{};
  std::copy(pointer.digest().begin(), pointer.digest().end(), expected.begin());

  for (int attempt = 0;; ++attempt) {
    const int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Failure::from(make_error_code(Errc::file_error), "cannot write " + temp_path.string());
    AttachmentDecryptor decryptor(ByteView(reinterpret_cast<const std::uint8_t*>(pointer.key().data()), pointer.key().size()),
                                  expected, pointer.blob_size());
    EVP_MD_CTX* sha = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha, EVP_sha256(), nullptr);
    std::uint64_t received = 0;
    Bytes plain;
    auto write_all = [fd, sha](const Bytes& data) -> Status {
      EVP_DigestUpdate(sha, data.data(), data.size());
      std::size_t done = 0;
      while (done < data.size()) {
        const auto n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) return make_error_code(Errc::file_error);
        done += static_cast<std::size_t>(n);
      }
      return {};
    };
    HttpRequest get;
    get.method = "GET";
    get.target = "/v1/attachments/" + pointer.upload_id();
    get.bearer = *api->token();
    get.body_sink = [&](ByteView piece) -> Status {
      received += piece.size();
      plain.clear();
      POSTERN_CHECK(decryptor.update(piece, plain));
      POSTERN_CHECK(write_all(plain));
      if (progress) progress(received, pointer.blob_size());
      return {};
    };
    auto answer = link->send(get);
    Status finished = make_error_code(Errc::bad_attachment);
    if (answer.ok() && answer->status == 200) {
      plain.clear();
      finished = decryptor.finish(plain);
      if (finished.ok()) finished = write_all(plain);
      if (finished.ok() && ::fdatasync(fd) != 0) finished = make_error_code(Errc::file_error);
    }
    unsigned char hash[32];
    unsigned hash_len = 0;
    EVP_DigestFinal_ex(sha, hash, &hash_len);
    EVP_MD_CTX_free(sha);
    ::close(fd);
    if (answer.ok() && answer->status == 200 && finished.ok()) {
      std::filesystem::rename(temp_path, final_path, ec);
      if (ec) return Failure::from(make_error_code(Errc::file_error), "cannot save " + final_path.string());
      std::string thumb;
      if (!pointer.thumbnail().empty() && pointer.thumbnail().size() <= 64 * 1024) {
        const auto thumb_path = attachments_dir() / (base + ".thumb.jpg");
        if (FILE* f = std::fopen(thumb_path.c_str(), "wb")) {
          std::fwrite(pointer.thumbnail().data(), 1, pointer.thumbnail().size(), f);
          std::fclose(f);
          thumb = thumb_path.string();
        }
      }
      POSTERN_OUTCOME_CHECK(mark(1, final_path.string() + "\n" + to_hex(ByteView(hash, 32)) + "\n" + thumb));
      return Done{};
    }
    std::filesystem::remove(temp_path, ec);
    if (answer.ok() && answer->status == 200) {
      // Downloaded whole and it does not verify: altered or damaged. Refused, never retried.
      (void)mark(2, "");
      return Failure::from(make_error_code(Errc::bad_attachment),
                           "the attachment " + pointer.file_name() + " failed verification (altered or damaged) and was refused");
    }
    if (answer.ok() && answer->status == 404) {
      (void)mark(2, "");
      return Failure::from(make_error_code(Errc::server_error), "the attachment is no longer on the server (expired or deleted)");
    }
    if (attempt + 1 >= kMaxAttempts) {
      return answer.ok() ? ServerApi::failure_from(*answer)
                         : Failure::from(answer.error(), "the download was interrupted: " + answer.error().message());
    }
    backoff(attempt);
  }
}

}  // namespace postern::client
