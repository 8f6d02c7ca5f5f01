// What the client learns from a file before sending it: the MIME type (from the first bytes,
// not the name), image or video dimensions, a video's duration, and a small JPEG thumbnail (at
// most 256 px on the long side, at most 32 KiB) for pictures (stb) and a poster frame for videos
// (libavformat/libavcodec from Debian). Files it cannot decode get a generic preview: no
// thumbnail, mime "application/octet-stream" unless recognised.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::client {

enum class MediaKind { image, video, file };

struct MediaInfo {
  MediaKind kind = MediaKind::file;
  std::string mime = "application/octet-stream";
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::uint32_t duration_ms = 0;  // video only, 0 when unknown
  Bytes thumbnail_jpeg;           // empty when none could be made
};

// Never fails on undecodable content (that is a `file`); fails only when the file cannot be read
// (Errc::file_error).
Result<MediaInfo> inspect_media(const std::filesystem::path& file);

// The MIME type from the first bytes (JPEG, PNG, GIF, WebP, MP4/MOV, WebM/Matroska, PDF, ZIP,
// Ogg, MP3, plain UTF-8 text), "application/octet-stream" otherwise.
std::string sniff_mime(ByteView head);

}  // namespace postern::client
