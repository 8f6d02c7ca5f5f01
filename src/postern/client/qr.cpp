#include "postern/client/qr.h"

#include <qrencode.h>

#include "postern/client/errors.h"

namespace postern::client {

Result<std::vector<std::string>> qr_terminal_lines(ByteView data) {
  if (data.size() > 2048) return make_error_code(Errc::too_large);
  QRcode* code = QRcode_encodeData(static_cast<int>(data.size()), data.data(), 0, QR_ECLEVEL_M);
  if (code == nullptr) return make_error_code(Errc::too_large);
  const int width = code->width;
  constexpr int kQuiet = 2;
  const int size = width + 2 * kQuiet;
  auto dark = [&](int x, int y) {
    x -= kQuiet;
    y -= kQuiet;
    if (x < 0 || y < 0 || x >= width || y >= width) return false;
    return (code->data[y * width + x] & 1) != 0;
  };
  // Light text on a dark terminal is the common case; draw light modules as blocks so the code
  // reads as dark-on-light to a camera either way: a block for a light module.
  std::vector<std::string> lines;
  for (int y = 0; y < size; y += 2) {
    std::string line;
    for (int x = 0; x < size; ++x) {
      const bool top_light = !dark(x, y);
      const bool bottom_light = y + 1 < size ? !dark(x, y + 1) : true;
      if (top_light && bottom_light) {
        line += "\u2588";
      } else if (top_light) {
        line += "\u2580";
      } else if (bottom_light) {
        line += "\u2584";
      } else {
        line += " ";
      }
    }
    lines.push_back(std::move(line));
  }
  QRcode_free(code);
  return lines;
}

}  // namespace postern::client
