// QR codes for terminals (libqrencode): safety numbers (`postern verify`), device link codes and
// relay links, drawn with Unicode half blocks, two modules per character cell, with the quiet zone.
#pragma once

#include <string>
#include <vector>

#include "postern/util/bytes.h"
#include "postern/util/result.h"

namespace postern::client {

// Lines of text that show the QR code of `data` (byte mode, error correction level M).
// Errc::too_large when the data does not fit in a QR code.
Result<std::vector<std::string>> qr_terminal_lines(ByteView data);

}  // namespace postern::client
