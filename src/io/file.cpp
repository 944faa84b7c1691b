#include "io/file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace vs {

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(path + ": cannot open (" + std::strerror(errno) + ")");
  check(!std::filesystem::is_directory(path), path + ": is a directory, expected a file");
  std::streamsize n = f.tellg();
  std::vector<char> buf(size_t(n > 0 ? n : 0));
  f.seekg(0);
  if (n > 0 && !f.read(buf.data(), n)) throw Error(path + ": read failed");
  return buf;
}

std::string read_text(const std::string& path) {
  auto b = read_file(path);
  return std::string(b.begin(), b.end());
}

void write_atomic(const std::string& path, const std::function<void(std::ostream&)>& write) {
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  try {
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      if (!f) throw Error(path + ": cannot write (" + std::strerror(errno) + ")");
      write(f);
      f.flush();
      if (!f) throw Error(path + ": write failed (disk full?)");
    }
    std::filesystem::rename(tmp, path);
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
}

}  // namespace vs
