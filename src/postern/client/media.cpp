// Media inspection (see media.h). Everything here reads bytes someone else made, so:
// - the MIME type comes from magic bytes, and a decoder only ever sees the format its magic
//   announced (stb decodes JPEG, PNG and GIF only; libavformat is given the demuxer by name and
//   may open nothing but local files);
// - sizes are checked before any pixel is decoded (stbi_info, the codec parameters), and above
//   kMaxPixels there is no decoding at all;
// - any failure of a decoder turns into a less detailed MediaInfo, never into an error: the only
//   error is a file that cannot be read.
// Both paths end in the same thumbnail code: resize to at most 256 px on the long side, then
// JPEG at falling quality until it fits 32 KiB.
#include "postern/client/media.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/log.h>
#include <libavutil/mathematics.h>
#include <libswscale/swscale.h>
}

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <string_view>

#include "postern/client/errors.h"

namespace postern::client {
namespace {

constexpr std::size_t kSniffBytes = 4096;
constexpr std::uint64_t kMaxPixels = 50'000'000;
constexpr int kThumbLongSide = 256;
constexpr std::size_t kThumbMaxBytes = 32 * 1024;
// A poster frame must show up within this many packets of the video stream.
constexpr int kMaxVideoPackets = 600;

bool starts_with(ByteView b, std::string_view magic, std::size_t at = 0) {
  if (b.size() < at + magic.size()) return false;
  return std::equal(magic.begin(), magic.end(), b.begin() + static_cast<std::ptrdiff_t>(at),
                    [](char m, std::uint8_t c) { return static_cast<std::uint8_t>(m) == c; });
}

bool contains(ByteView b, std::string_view needle) {
  const auto* first = reinterpret_cast<const char*>(b.data());
  const std::string_view hay(first, b.size());
  return hay.find(needle) != std::string_view::npos;
}

// MPEG audio frame header: 11 sync bits, then a version, a layer (not the reserved 00, which is
// ADTS AAC) and a bitrate index that is not "bad".
bool mp3_frame(ByteView b) {
  if (b.size() < 3 || b[0] != 0xFF || (b[1] & 0xE0) != 0xE0) return false;
  const int version = (b[1] >> 3) & 3;
  const int layer = (b[1] >> 1) & 3;
  const int bitrate = (b[2] >> 4) & 0xF;
  const int rate = (b[2] >> 2) & 3;
  return version != 1 && layer != 0 && bitrate != 0xF && rate != 3;
}

// UTF-8 without control characters other than the usual whitespace (and form feed, escape). A
// sequence cut by the end of `head` is accepted: head is usually the first bytes of a file.
bool utf8_text(ByteView b) {
  if (b.empty()) return false;
  std::size_t i = 0;
  if (starts_with(b, "\xEF\xBB\xBF")) i = 3;
  while (i < b.size()) {
    const std::uint8_t c = b[i];
    if (c < 0x80) {
      if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1B) return false;
      if (c == 0x7F) return false;
      ++i;
      continue;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    std::size_t k = 1;
    for (; k < len && i + k < b.size(); ++k) {
      if ((b[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b[i + k] & 0x3Fu);
    }
    if (k < len) return true;  // cut by the end of the head
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) {
      return false;
    }
    i += len;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Thumbnails

void append_to_bytes(void* context, void* data, int size) {
  if (size <= 0) return;
  auto* out = static_cast<Bytes*>(context);
  const auto* p = static_cast<const std::uint8_t*>(data);
  out->insert(out->end(), p, p + size);
}

struct Dimensions {
  int w;
  int h;
};

Dimensions fit_long_side(int w, int h, int long_side) {
  if (w <= long_side && h <= long_side) return {w, h};
  if (w >= h) {
    const auto th = static_cast<int>((static_cast<std::int64_t>(h) * long_side + w / 2) / w);
    return {long_side, std::max(th, 1)};
  }
  const auto tw = static_cast<int>((static_cast<std::int64_t>(w) * long_side + h / 2) / h);
  return {std::max(tw, 1), long_side};
}

// Tightly packed RGB of w x h to a JPEG of at most kThumbMaxBytes: lower quality first, then
// smaller. Empty when even that fails.
Bytes encode_thumbnail(std::vector<std::uint8_t> rgb, int w, int h) {
  static constexpr std::array<int, 7> kQualities = {85, 75, 65, 50, 40, 30, 20};
  for (;;) {
    for (const int q : kQualities) {
      Bytes jpeg;
      if (stbi_write_jpg_to_func(append_to_bytes, &jpeg, w, h, 3, rgb.data(), q) == 0) return {};
      if (!jpeg.empty() && jpeg.size() <= kThumbMaxBytes) return jpeg;
    }
    if (w <= 16 || h <= 16) return {};
    const int nw = std::max(w / 2, 1);
    const int nh = std::max(h / 2, 1);
    std::vector<std::uint8_t> smaller(static_cast<std::size_t>(nw) * static_cast<std::size_t>(nh) * 3);
    if (stbir_resize_uint8(rgb.data(), w, h, 0, smaller.data(), nw, nh, 0, 3) == 0) return {};
    rgb = std::move(smaller);
    w = nw;
    h = nh;
  }
}

// The thumbnail of an image with 3 (RGB) or 4 (RGBA) channels per pixel, `stride` bytes a row.
// Transparent pixels are shown on white.
Bytes make_thumbnail(const std::uint8_t* pixels, int w, int h, int stride, int channels) {
  if (pixels == nullptr || w <= 0 || h <= 0 || (channels != 3 && channels != 4)) return {};
  const Dimensions t = fit_long_side(w, h, kThumbLongSide);
  const auto tw = static_cast<std::size_t>(t.w);
  const auto th = static_cast<std::size_t>(t.h);
  const auto ch = static_cast<std::size_t>(channels);
  std::vector<std::uint8_t> scaled(tw * th * ch);
  if (t.w == w && t.h == h) {
    for (std::size_t y = 0; y < th; ++y) {
      std::copy_n(pixels + y * static_cast<std::size_t>(stride), tw * ch, scaled.data() + y * tw * ch);
    }
  } else if (stbir_resize_uint8_generic(pixels, w, h, stride, scaled.data(), t.w, t.h, 0, channels,
                                        channels == 4 ? 3 : STBIR_ALPHA_CHANNEL_NONE, 0, STBIR_EDGE_CLAMP,
                                        STBIR_FILTER_DEFAULT, STBIR_COLORSPACE_LINEAR, nullptr) == 0) {
    return {};
  }
  if (channels == 4) {
    std::vector<std::uint8_t> rgb(tw * th * 3);
    for (std::size_t i = 0; i < tw * th; ++i) {
      const unsigned a = scaled[i * 4 + 3];
      for (std::size_t c = 0; c < 3; ++c) {
        rgb[i * 3 + c] = static_cast<std::uint8_t>((scaled[i * 4 + c] * a + 255u * (255u - a) + 127u) / 255u);
      }
    }
    scaled = std::move(rgb);
  }
  return encode_thumbnail(std::move(scaled), t.w, t.h);
}

// ---------------------------------------------------------------------------------------------
// Images (stb)

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileCloser>;

struct StbiFree {
  void operator()(stbi_uc* p) const { stbi_image_free(p); }
};

void inspect_image(std::FILE* f, MediaInfo& info) {
  if (std::fseek(f, 0, SEEK_SET) != 0) return;
  int w = 0;
  int h = 0;
  int comp = 0;
  if (stbi_info_from_file(f, &w, &h, &comp) == 0 || w <= 0 || h <= 0) return;
  const std::uint64_t pixels = static_cast<std::uint64_t>(w) * static_cast<std::uint64_t>(h);
  if (pixels > kMaxPixels) {
    // Too big to decode here; the header's size is all we say.
    info.kind = MediaKind::image;
    info.width = static_cast<std::uint32_t>(w);
    info.height = static_cast<std::uint32_t>(h);
    return;
  }
  const int channels = (comp == 2 || comp == 4) ? 4 : 3;
  if (std::fseek(f, 0, SEEK_SET) != 0) return;
  int lw = 0;
  int lh = 0;
  int lcomp = 0;
  const std::unique_ptr<stbi_uc, StbiFree> px(stbi_load_from_file(f, &lw, &lh, &lcomp, channels));
  // The decoder must agree with the header it was allowed to decode under.
  if (!px || lw != w || lh != h) return;
  info.kind = MediaKind::image;
  info.width = static_cast<std::uint32_t>(w);
  info.height = static_cast<std::uint32_t>(h);
  info.thumbnail_jpeg = make_thumbnail(px.get(), w, h, w * channels, channels);
}

// ---------------------------------------------------------------------------------------------
// Videos (libavformat, libavcodec, libswscale)

struct FormatCloser {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct CodecCloser {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct PacketFree {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameFree {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct SwsFree {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};

void quiet_libav() {
  static std::once_flag once;
  std::call_once(once, [] { av_log_set_level(AV_LOG_QUIET); });
}

std::uint32_t clamp_ms(std::int64_t ms) {
  if (ms <= 0) return 0;
  return static_cast<std::uint32_t>(std::min<std::int64_t>(ms, std::numeric_limits<std::uint32_t>::max()));
}

// The first frame of the stream that decodes, or null.
std::unique_ptr<AVFrame, FrameFree> first_frame(AVFormatContext* fc, int stream, AVCodecContext* cc) {
  std::unique_ptr<AVPacket, PacketFree> pkt(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFree> frame(av_frame_alloc());
  if (!pkt || !frame) return nullptr;
  int packets = 0;      // of the video stream
  int all_packets = 0;  // of every stream
  bool flushed = false;
  while (!flushed) {
    const int r = av_read_frame(fc, pkt.get());
    if (r < 0) {
      flushed = true;
      if (avcodec_send_packet(cc, nullptr) < 0) return nullptr;  // drain what the decoder holds
    } else {
      if (++all_packets > 8 * kMaxVideoPackets) return nullptr;
      const bool ours = pkt->stream_index == stream;
      const int sent = ours ? avcodec_send_packet(cc, pkt.get()) : 0;
      av_packet_unref(pkt.get());
      if (!ours) continue;
      if (++packets > kMaxVideoPackets) return nullptr;
      if (sent < 0 && sent != AVERROR(EAGAIN)) continue;  // a damaged packet: try the next
    }
    for (;;) {
      const int got = avcodec_receive_frame(cc, frame.get());
      if (got == 0) {
        if (frame->width > 0 && frame->height > 0 && frame->format >= 0) return frame;
        av_frame_unref(frame.get());
        continue;
      }
      if (got == AVERROR(EAGAIN)) break;
      if (got == AVERROR_EOF) return nullptr;
      break;  // a decoding error on this frame: go on with the next packets
    }
  }
  return nullptr;
}

Bytes poster_thumbnail(const AVFrame& frame) {
  const auto format = static_cast<AVPixelFormat>(frame.format);
  if (sws_isSupportedInput(format) == 0) return {};
  const std::uint64_t pixels =
      static_cast<std::uint64_t>(frame.width) * static_cast<std::uint64_t>(frame.height);
  if (pixels > kMaxPixels) return {};
  const Dimensions t = fit_long_side(frame.width, frame.height, kThumbLongSide);
  const std::unique_ptr<SwsContext, SwsFree> sws(sws_getContext(
      frame.width, frame.height, format, t.w, t.h, AV_PIX_FMT_RGB24, SWS_AREA, nullptr, nullptr, nullptr));
  if (!sws) return {};
  // Rows aligned and padded: swscale's SIMD paths may write a little past a row's last pixel.
  const int stride = (t.w * 3 + 63) & ~63;
  std::vector<std::uint8_t> rgb(static_cast<std::size_t>(stride) * static_cast<std::size_t>(t.h) + 64);
  std::array<std::uint8_t*, 4> dst = {rgb.data(), nullptr, nullptr, nullptr};
  std::array<int, 4> dst_stride = {stride, 0, 0, 0};
  const int rows =
      sws_scale(sws.get(), frame.data, frame.linesize, 0, frame.height, dst.data(), dst_stride.data());
  if (rows != t.h) return {};
  return make_thumbnail(rgb.data(), t.w, t.h, stride, 3);
}

// Poster frames come only from the codecs phones and cameras write: FFmpeg's rarely used
// decoders are the ones with the most bugs, and a hostile file may name any of them.
bool common_video_codec(AVCodecID id) {
  switch (id) {
    case AV_CODEC_ID_H264:
    case AV_CODEC_ID_HEVC:
    case AV_CODEC_ID_VP8:
    case AV_CODEC_ID_VP9:
    case AV_CODEC_ID_AV1:
    case AV_CODEC_ID_MPEG4:
    case AV_CODEC_ID_H263:
    case AV_CODEC_ID_MPEG1VIDEO:
    case AV_CODEC_ID_MPEG2VIDEO:
    case AV_CODEC_ID_MJPEG:
    case AV_CODEC_ID_THEORA:
    case AV_CODEC_ID_PRORES:
      return true;
    default:
      return false;
  }
}

void inspect_video(const std::filesystem::path& file, MediaInfo& info) {
  quiet_libav();
  // The demuxer is chosen by the magic bytes: no probing through every format libavformat knows.
  const bool iso = info.mime == "video/mp4" || info.mime == "video/quicktime";
  const AVInputFormat* demuxer = av_find_input_format(iso ? "mov" : "matroska");
  if (demuxer == nullptr) return;

  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(file, ec);
  if (ec) return;
  // "file:" so that a name with a colon is never read as another protocol.
  const std::string url = "file:" + absolute.string();

  AVFormatContext* raw = avformat_alloc_context();
  if (raw == nullptr) return;
  raw->probesize = 8 << 20;
  raw->max_analyze_duration = 5 * static_cast<std::int64_t>(AV_TIME_BASE);
  AVDictionary* opts = nullptr;
  av_dict_set(&opts, "protocol_whitelist", "file", 0);
  const int opened = avformat_open_input(&raw, url.c_str(), demuxer, &opts);
  av_dict_free(&opts);
  if (opened < 0) return;  // avformat_open_input frees the context on failure
  const std::unique_ptr<AVFormatContext, FormatCloser> fc(raw);
  // No avformat_find_stream_info: MP4 and Matroska headers carry the sizes and durations, and
  // it would run a decoder of whatever codec each stream names.

  const AVCodec* decoder = nullptr;
  const int stream = av_find_best_stream(fc.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &decoder, 0);
  if (stream < 0 || static_cast<unsigned>(stream) >= fc->nb_streams) {
    if (av_find_best_stream(fc.get(), AVMEDIA_TYPE_AUDIO, -1, -1, nullptr, 0) >= 0) {
      info.mime = iso ? "audio/mp4" : (info.mime == "video/webm" ? "audio/webm" : "audio/x-matroska");
    }
    return;
  }
  const AVStream* st = fc->streams[stream];
  const AVCodecParameters* par = st->codecpar;
  if (par == nullptr || par->width <= 0 || par->height <= 0) return;
  info.kind = MediaKind::video;
  info.width = static_cast<std::uint32_t>(par->width);
  info.height = static_cast<std::uint32_t>(par->height);
  if (fc->duration != AV_NOPTS_VALUE && fc->duration > 0) {
    info.duration_ms = clamp_ms(av_rescale(fc->duration, 1000, AV_TIME_BASE));
  } else if (st->duration != AV_NOPTS_VALUE && st->duration > 0 && st->time_base.den > 0 &&
             st->time_base.num > 0) {
    info.duration_ms = clamp_ms(av_rescale_q(st->duration, st->time_base, AVRational{1, 1000}));
  }

  const std::uint64_t pixels =
      static_cast<std::uint64_t>(par->width) * static_cast<std::uint64_t>(par->height);
  if (decoder == nullptr || pixels > kMaxPixels || !common_video_codec(par->codec_id)) return;
  const std::unique_ptr<AVCodecContext, CodecCloser> cc(avcodec_alloc_context3(decoder));
  if (!cc || avcodec_parameters_to_context(cc.get(), par) < 0) return;
  cc->thread_count = 1;
  cc->max_pixels = static_cast<std::int64_t>(kMaxPixels);
  if (avcodec_open2(cc.get(), decoder, nullptr) < 0) return;
  const auto frame = first_frame(fc.get(), stream, cc.get());
  if (!frame) return;
  info.thumbnail_jpeg = poster_thumbnail(*frame);
}

}  // namespace

std::string sniff_mime(ByteView b) {
  if (starts_with(b, "\xFF\xD8\xFF")) return "image/jpeg";
  if (starts_with(b, "\x89PNG\r\n\x1A\n")) return "image/png";
  if (starts_with(b, "GIF87a") || starts_with(b, "GIF89a")) return "image/gif";
  if (starts_with(b, "RIFF") && starts_with(b, "WEBP", 8)) return "image/webp";
  if (starts_with(b, "ftyp", 4)) {
    // ISO base media: the major brand tells MP4 from QuickTime, audio and HEIF.
    const auto brand = [&](std::string_view x) { return starts_with(b, x, 8); };
    if (brand("qt  ")) return "video/quicktime";
    if (brand("M4A ") || brand("M4B ")) return "audio/mp4";
    if (brand("heic") || brand("heix") || brand("heim") || brand("heis") || brand("hevc") || brand("mif1") ||
        brand("msf1")) {
      return "image/heic";
    }
    if (brand("avif") || brand("avis")) return "image/avif";
    return "video/mp4";
  }
  // Old QuickTime files begin with another atom.
  if (starts_with(b, "moov", 4) || starts_with(b, "mdat", 4) || starts_with(b, "wide", 4))
    return "video/quicktime";
  if (starts_with(b, "\x1A\x45\xDF\xA3"))
    return contains(b.first(std::min<std::size_t>(b.size(), 64)), "webm") ? "video/webm" : "video/x-matroska";
  if (starts_with(b, "%PDF-")) return "application/pdf";
  if (starts_with(b, std::string_view("PK\x03\x04", 4)) ||
      starts_with(b, std::string_view("PK\x05\x06", 4)) ||
      starts_with(b, std::string_view("PK\x07\x08", 4))) {
    return "application/zip";
  }
  if (starts_with(b, "OggS")) {
    if (starts_with(b, "OpusHead", 28) || starts_with(b, "\x01vorbis", 28) ||
        starts_with(b,
                    "\x7F"
                    "FLAC",
                    28))
      return "audio/ogg";
    if (starts_with(b, "\x80theora", 28)) return "video/ogg";
    return "application/ogg";
  }
  if (starts_with(b, "ID3") || mp3_frame(b)) return "audio/mpeg";
  if (utf8_text(b)) return "text/plain";
  return "application/octet-stream";
}

Result<MediaInfo> inspect_media(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec) || ec) return Errc::file_error;
  const File f(std::fopen(file.c_str(), "rb"));
  if (!f) return Errc::file_error;
  std::array<std::uint8_t, kSniffBytes> head{};
  const std::size_t n = std::fread(head.data(), 1, head.size(), f.get());
  if (std::ferror(f.get()) != 0) return Errc::file_error;

  MediaInfo info;
  info.mime = sniff_mime(ByteView(head.data(), n));
  if (info.mime == "image/jpeg" || info.mime == "image/png" || info.mime == "image/gif") {
    inspect_image(f.get(), info);
  } else if (info.mime == "video/mp4" || info.mime == "video/quicktime" || info.mime == "video/webm" ||
             info.mime == "video/x-matroska") {
    inspect_video(file, info);
  }
  return info;
}

}  // namespace postern::client
