// Tests for postern/client/media.h: MIME sniffing, image dimensions and thumbnails (pictures made
// here with stb_image_write), a video made with the ffmpeg command line (skipped without it), and
// damaged or hostile files that must give a plain `file`, never a crash.
#include "store/temp_dir.h"
#include "postern/client/media.h"

#include <gtest/gtest.h>
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "postern/client/errors.h"
#include "postern/crypto/random.h"

namespace postern::client {
namespace {

// A temporary directory per test (tests/unit/store/temp_dir.h), its files as std::filesystem::path.
struct TempDir : store::store_test::TempDir {
  std::filesystem::path file(const std::string& name) const { return store::store_test::TempDir::file(name); }
};

void write_file(const std::filesystem::path& p, ByteView data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(out.good());
}

Bytes read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A smooth picture with some structure (gradients and a diagonal), `channels` 3 or 4.
Bytes test_picture(int w, int h, int channels) {
  Bytes px(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * static_cast<std::size_t>(channels));
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      std::uint8_t* p = px.data() + (static_cast<std::size_t>(y) * static_cast<std::size_t>(w) +
                                     static_cast<std::size_t>(x)) *
                                        static_cast<std::size_t>(channels);
      p[0] = static_cast<std::uint8_t>(x * 255 / std::max(w - 1, 1));
      p[1] = static_cast<std::uint8_t>(y * 255 / std::max(h - 1, 1));
      p[2] = static_cast<std::uint8_t>(std::abs(x - y) < 8 ? 255 : 40);
      if (channels == 4) p[3] = static_cast<std::uint8_t>(x < w / 2 ? 255 : 0);
    }
  }
  return px;
}

struct Decoded {
  int w = 0;
  int h = 0;
  bool ok = false;
};

// Checks a thumbnail: a JPEG that stb decodes, at most 256 px on the long side and 32 KiB.
Decoded check_thumbnail(const Bytes& jpeg) {
  Decoded d;
  EXPECT_FALSE(jpeg.empty());
  EXPECT_LE(jpeg.size(), 32u * 1024u);
  if (jpeg.size() < 3) return d;
  EXPECT_EQ(jpeg[0], 0xFF);
  EXPECT_EQ(jpeg[1], 0xD8);
  int comp = 0;
  stbi_uc* px = stbi_load_from_memory(jpeg.data(), static_cast<int>(jpeg.size()), &d.w, &d.h, &comp, 3);
  EXPECT_NE(px, nullptr);
  d.ok = px != nullptr;
  stbi_image_free(px);
  EXPECT_LE(std::max(d.w, d.h), 256);
  EXPECT_GE(std::min(d.w, d.h), 1);
  return d;
}

bool have_ffmpeg() {
  return std::system("command -v ffmpeg >/dev/null 2>&1") == 0;
}

bool run_ffmpeg(const std::string& args, const std::filesystem::path& out) {
  const std::string cmd =
      "ffmpeg -nostdin -hide_banner -loglevel error -y " + args + " '" + out.string() + "'";
  return std::system(cmd.c_str()) == 0 && std::filesystem::exists(out);
}

// --- sniff_mime ------------------------------------------------------------------------------

std::string sniff(std::string_view s) {
  return sniff_mime(as_bytes(s));
}

TEST(MediaSniff, MagicBytes) {
  using namespace std::string_view_literals;
  EXPECT_EQ(sniff("\xFF\xD8\xFF\xE0\x00\x10JFIF"sv), "image/jpeg");
  EXPECT_EQ(sniff("\x89PNG\r\n\x1A\n\x00\x00\x00\x0DIHDR"sv), "image/png");
  EXPECT_EQ(sniff("GIF89a\x01\x00"sv), "image/gif");
  EXPECT_EQ(sniff("GIF87a"sv), "image/gif");
  EXPECT_EQ(sniff("RIFF\x10\x00\x00\x00WEBPVP8 "sv), "image/webp");
  EXPECT_EQ(sniff("RIFF\x10\x00\x00\x00WAVEfmt "sv), "application/octet-stream");
  EXPECT_EQ(sniff("\x00\x00\x00\x20"
                  "ftypisom\x00\x00\x02\x00"sv),
            "video/mp4");
  EXPECT_EQ(sniff("\x00\x00\x00\x14"
                  "ftypqt  \x00\x00\x00\x00"sv),
            "video/quicktime");
  EXPECT_EQ(sniff("\x00\x00\x00\x20"
                  "ftypM4A \x00\x00\x00\x00"sv),
            "audio/mp4");
  EXPECT_EQ(sniff("\x00\x00\x00\x18"
                  "ftypheic\x00\x00\x00\x00"sv),
            "image/heic");
  EXPECT_EQ(sniff("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm"sv), "video/webm");
  EXPECT_EQ(sniff("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x88matroska"sv), "video/x-matroska");
  EXPECT_EQ(sniff("%PDF-1.7\n"sv), "application/pdf");
  EXPECT_EQ(sniff("PK\x03\x04\x14\x00"sv), "application/zip");
  EXPECT_EQ(sniff("PK\x05\x06\x00\x00"sv), "application/zip");
  EXPECT_EQ(sniff("OggS\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04\x00\x00\x00\x00\x01\x02\x03"
                  "\x04\x01\x13"
                  "OpusHead"sv),
            "audio/ogg");
  EXPECT_EQ(sniff("OggS\x00\x02"sv), "application/ogg");
  EXPECT_EQ(sniff("ID3\x04\x00"sv), "audio/mpeg");
  EXPECT_EQ(sniff("\xFF\xFB\x90\x64"sv), "audio/mpeg");
  EXPECT_EQ(sniff("\xFF\xF1\x50\x80"sv), "application/octet-stream");  // ADTS AAC, not MP3
}

TEST(MediaSniff, Text) {
  using namespace std::string_view_literals;
  EXPECT_EQ(sniff("hello, world\n"), "text/plain");
  EXPECT_EQ(sniff("\xEF\xBB\xBFgr\xC3\xBC\xC3\x9F dich \xF0\x9F\x98\x80\r\n\t"sv), "text/plain");
  EXPECT_EQ(sniff("cut at the end \xE2\x82"sv), "text/plain");
  EXPECT_EQ(sniff("bad \xC0\xAF overlong"sv), "application/octet-stream");
  EXPECT_EQ(sniff("bad \xED\xA0\x80 surrogate"sv), "application/octet-stream");
  EXPECT_EQ(sniff("bad \x80 continuation"sv), "application/octet-stream");
  EXPECT_EQ(sniff("nul \x00 inside"sv), "application/octet-stream");
  EXPECT_EQ(sniff(""), "application/octet-stream");
}

TEST(MediaSniff, RandomBytesNeverCrash) {
  crypto::DeterministicRng rng(11);
  for (int i = 0; i < 2000; ++i) {
    Bytes b(rng.uniform(64));
    rng.fill(b);
    const std::string mime = sniff_mime(b);
    EXPECT_FALSE(mime.empty());
  }
}

// --- images ----------------------------------------------------------------------------------

TEST(MediaImage, PngDimensionsMimeAndThumbnail) {
  TempDir dir;
  const auto path = dir.file("picture.png");
  const Bytes px = test_picture(300, 200, 4);
  ASSERT_NE(stbi_write_png(path.c_str(), 300, 200, 4, px.data(), 300 * 4), 0);
  const Result<MediaInfo> info = inspect_media(path);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, MediaKind::image);
  EXPECT_EQ(info->mime, "image/png");
  EXPECT_EQ(info->width, 300u);
  EXPECT_EQ(info->height, 200u);
  EXPECT_EQ(info->duration_ms, 0u);
  const Decoded t = check_thumbnail(info->thumbnail_jpeg);
  EXPECT_EQ(t.w, 256);
  EXPECT_NEAR(t.h, 171, 1);
}

TEST(MediaImage, JpegDimensionsMimeAndThumbnail) {
  TempDir dir;
  const auto path = dir.file("photo.bin");  // the name does not matter
  const Bytes px = test_picture(640, 480, 3);
  ASSERT_NE(stbi_write_jpg(path.c_str(), 640, 480, 3, px.data(), 90), 0);
  const Result<MediaInfo> info = inspect_media(path);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, MediaKind::image);
  EXPECT_EQ(info->mime, "image/jpeg");
  EXPECT_EQ(info->width, 640u);
  EXPECT_EQ(info->height, 480u);
  const Decoded t = check_thumbnail(info->thumbnail_jpeg);
  EXPECT_EQ(t.w, 256);
  EXPECT_EQ(t.h, 192);
}

TEST(MediaImage, SmallImageKeepsItsSize) {
  TempDir dir;
  const auto path = dir.file("small.png");
  const Bytes px = test_picture(40, 90, 3);
  ASSERT_NE(stbi_write_png(path.c_str(), 40, 90, 3, px.data(), 40 * 3), 0);
  const Result<MediaInfo> info = inspect_media(path);
  ASSERT_TRUE(info.ok());
  const Decoded t = check_thumbnail(info->thumbnail_jpeg);
  EXPECT_EQ(t.w, 40);
  EXPECT_EQ(t.h, 90);
}

TEST(MediaImage, LargeImageThumbnailKeepsAspectRatio) {
  TempDir dir;
  const auto path = dir.file("large.jpg");
  const Bytes px = test_picture(4000, 3000, 3);
  ASSERT_NE(stbi_write_jpg(path.c_str(), 4000, 3000, 3, px.data(), 60), 0);
  const Result<MediaInfo> info = inspect_media(path);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, MediaKind::image);
  EXPECT_EQ(info->width, 4000u);
  EXPECT_EQ(info->height, 3000u);
  const Decoded t = check_thumbnail(info->thumbnail_jpeg);
  EXPECT_EQ(t.w, 256);
  EXPECT_EQ(t.h, 192);  // 4:3

  // Portrait too.
  const auto tall = dir.file("tall.png");
  const Bytes tpx = test_picture(300, 1200, 3);
  ASSERT_NE(stbi_write_png(tall.c_str(), 300, 1200, 3, tpx.data(), 300 * 3), 0);
  const Result<MediaInfo> tinfo = inspect_media(tall);
  ASSERT_TRUE(tinfo.ok());
  const Decoded tt = check_thumbnail(tinfo->thumbnail_jpeg);
  EXPECT_EQ(tt.w, 64);
  EXPECT_EQ(tt.h, 256);
}

TEST(MediaImage, NoisyImageThumbnailStillFits) {
  TempDir dir;
  const auto path = dir.file("noise.png");
  crypto::DeterministicRng rng(12);
  Bytes px(512 * 512 * 3);
  rng.fill(px);
  ASSERT_NE(stbi_write_png(path.c_str(), 512, 512, 3, px.data(), 512 * 3), 0);
  const Result<MediaInfo> info = inspect_media(path);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, MediaKind::image);
  check_thumbnail(info->thumbnail_jpeg);
}

TEST(MediaImage, HugeImageIsNotDecoded) {
  // A PNG header announcing 10000 x 6000 (60 megapixels) and nothing after it: the size is
  // reported from the header, no decoding is attempted, so no thumbnail.
  using namespace std::string_view_literals;
  const std::string_view png =
      "\x89PNG\r\n\x1A\n\x00\x00\x00\x0DIHDR\x00\x00\x27\x10\x00\x00\x17\x70\x08\x02\x00\x00\x00\x00\x00\x00\x00"sv;
  TempDir dir;
  const auto path = dir.file("huge.png");
  write_file(path, as_bytes(png));
  const Result<MediaInfo> info = inspect_media(path);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->mime, "image/png");
  EXPECT_EQ(info->kind, MediaKind::image);
  EXPECT_EQ(info->width, 10000u);
  EXPECT_EQ(info->height, 6000u);
  EXPECT_TRUE(info->thumbnail_jpeg.empty());
}

TEST(MediaImage, GarbageWithAJpgNameIsAFile) {
  TempDir dir;
  const auto path = dir.file("holiday.jpg");
  crypto::DeterministicRng rng(13);
  Bytes junk(100000);
  rng.fill(junk);
  junk[0] = 0;
  write_file(path, junk);
  const Result<MediaInfo> info = inspect_media(path);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, MediaKind::file);
  EXPECT_EQ(info->mime, "application/octet-stream");
  EXPECT_TRUE(info->thumbnail_jpeg.empty());
  EXPECT_EQ(info->width, 0u);
}

TEST(MediaImage, TruncatedAndDamagedImagesDoNotCrash) {
  TempDir dir;
  const auto png_path = dir.file("full.png");
  const auto jpg_path = dir.file("full.jpg");
  const Bytes px = test_picture(200, 150, 3);
  ASSERT_NE(stbi_write_png(png_path.c_str(), 200, 150, 3, px.data(), 200 * 3), 0);
  ASSERT_NE(stbi_write_jpg(jpg_path.c_str(), 200, 150, 3, px.data(), 80), 0);
  crypto::DeterministicRng rng(14);
  for (const auto& src : {png_path, jpg_path}) {
    const Bytes full = read_file(src);
    ASSERT_GT(full.size(), 100u);
    const auto cut_path = dir.file("cut");
    // Truncated at many places.
    for (std::size_t cut : {std::size_t{1}, std::size_t{8}, std::size_t{20}, std::size_t{33}, std::size_t{60},
                            full.size() / 3, full.size() / 2, full.size() - 1}) {
      write_file(cut_path, ByteView(full).first(cut));
      const Result<MediaInfo> info = inspect_media(cut_path);
      ASSERT_TRUE(info.ok());
      if (info->kind == MediaKind::file) {
        EXPECT_TRUE(info->thumbnail_jpeg.empty());
      }
    }
    // Random bytes overwritten.
    for (int round = 0; round < 50; ++round) {
      Bytes bad = full;
      for (int k = 0; k < 8; ++k)
        bad[8 + rng.uniform(static_cast<std::uint32_t>(bad.size() - 8))] =
            static_cast<std::uint8_t>(rng.next_u32());
      write_file(cut_path, bad);
      ASSERT_TRUE(inspect_media(cut_path).ok());
    }
  }
  // The truncated PNG named in the brief: still recognised, not an image we can show.
  const Bytes full = read_file(png_path);
  const auto half = dir.file("half.png");
  write_file(half, ByteView(full).first(full.size() / 2));
  const Result<MediaInfo> info = inspect_media(half);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->mime, "image/png");
  EXPECT_TRUE(info->thumbnail_jpeg.empty());
}

TEST(MediaFile, UnreadableFileIsAnError) {
  TempDir dir;
  EXPECT_EQ(inspect_media(dir.file("missing")).error(), make_error_code(Errc::file_error));
  EXPECT_EQ(inspect_media(dir.file("")).error(), make_error_code(Errc::file_error));  // a directory
  const auto empty = dir.file("empty");
  write_file(empty, {});
  const Result<MediaInfo> info = inspect_media(empty);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, MediaKind::file);
  EXPECT_EQ(info->mime, "application/octet-stream");
  const auto text = dir.file("notes.jpg");
  write_file(text, as_bytes("just some notes\n"));
  const Result<MediaInfo> tinfo = inspect_media(text);
  ASSERT_TRUE(tinfo.ok());
  EXPECT_EQ(tinfo->mime, "text/plain");
  EXPECT_EQ(tinfo->kind, MediaKind::file);
}

// --- videos ----------------------------------------------------------------------------------

TEST(MediaVideo, Mp4DimensionsDurationAndPosterFrame) {
  if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg is not installed";
  TempDir dir;
  const auto path = dir.file("clip.mp4");
  ASSERT_TRUE(run_ffmpeg("-f lavfi -i testsrc=size=320x240:rate=10 -t 2 -pix_fmt yuv420p", path));
  const Result<MediaInfo> info = inspect_media(path);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, MediaKind::video);
  EXPECT_EQ(info->mime, "video/mp4");
  EXPECT_EQ(info->width, 320u);
  EXPECT_EQ(info->height, 240u);
  EXPECT_NEAR(static_cast<double>(info->duration_ms), 2000.0, 150.0);
  const Decoded t = check_thumbnail(info->thumbnail_jpeg);
  EXPECT_EQ(t.w, 256);
  EXPECT_EQ(t.h, 192);
}

TEST(MediaVideo, MatroskaAndWebm) {
  if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg is not installed";
  TempDir dir;
  const auto mkv = dir.file("clip.mkv");
  ASSERT_TRUE(run_ffmpeg("-f lavfi -i testsrc=size=160x120:rate=10 -t 1 -pix_fmt yuv420p -c:v mpeg4", mkv));
  const Result<MediaInfo> info = inspect_media(mkv);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->kind, MediaKind::video);
  EXPECT_EQ(info->mime, "video/x-matroska");
  EXPECT_EQ(info->width, 160u);
  EXPECT_EQ(info->height, 120u);
  EXPECT_NEAR(static_cast<double>(info->duration_ms), 1000.0, 150.0);
  check_thumbnail(info->thumbnail_jpeg);

  const auto webm = dir.file("clip.webm");
  if (!run_ffmpeg("-f lavfi -i testsrc=size=160x120:rate=10 -t 1 -c:v libvpx -b:v 200k", webm)) {
    GTEST_SKIP() << "this ffmpeg cannot write VP8";
  }
  const Result<MediaInfo> winfo = inspect_media(webm);
  ASSERT_TRUE(winfo.ok());
  EXPECT_EQ(winfo->kind, MediaKind::video);
  EXPECT_EQ(winfo->mime, "video/webm");
  EXPECT_EQ(winfo->width, 160u);
  check_thumbnail(winfo->thumbnail_jpeg);
}

TEST(MediaVideo, TruncatedAndDamagedVideosDoNotCrash) {
  if (!have_ffmpeg()) GTEST_SKIP() << "ffmpeg is not installed";
  TempDir dir;
  const auto path = dir.file("clip.mp4");
  // moov first, so that a truncated file still has its header and reaches the decoder.
  ASSERT_TRUE(run_ffmpeg(
      "-f lavfi -i testsrc=size=320x240:rate=10 -t 2 -pix_fmt yuv420p -movflags +faststart", path));
  const Bytes full = read_file(path);
  ASSERT_GT(full.size(), 2000u);
  const auto cut_path = dir.file("cut.mp4");
  for (std::size_t cut : {std::size_t{12}, std::size_t{100}, std::size_t{1000}, full.size() / 4,
                          full.size() / 2, full.size() - 1}) {
    write_file(cut_path, ByteView(full).first(cut));
    const Result<MediaInfo> info = inspect_media(cut_path);
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->mime, "video/mp4");
    if (info->kind == MediaKind::video) {
      EXPECT_EQ(info->width, 320u);
    }
    if (!info->thumbnail_jpeg.empty()) check_thumbnail(info->thumbnail_jpeg);
  }
  crypto::DeterministicRng rng(15);
  for (int round = 0; round < 30; ++round) {
    Bytes bad = full;
    for (int k = 0; k < 16; ++k)
      bad[12 + rng.uniform(static_cast<std::uint32_t>(bad.size() - 12))] =
          static_cast<std::uint8_t>(rng.next_u32());
    write_file(cut_path, bad);
    const Result<MediaInfo> info = inspect_media(cut_path);
    ASSERT_TRUE(info.ok());
    if (!info->thumbnail_jpeg.empty()) check_thumbnail(info->thumbnail_jpeg);
  }
}

}  // namespace
}  // namespace postern::client
