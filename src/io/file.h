// Whole-file reads and atomic writes, with errors that name the file.
#pragma once
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

namespace vs {

std::vector<char> read_file(const std::string& path);
std::string read_text(const std::string& path);

// Calls write(stream) on PATH.tmp.PID, then renames it to PATH; on any failure the temporary
// is removed and nothing appears at PATH.
void write_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace vs
