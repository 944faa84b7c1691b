// A one-line progress bar on stderr, drawn only when stderr is a terminal (logs and CI stay clean).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace vs {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();
  void update(int64_t done, const std::string& extra = "");
  void finish();

 private:
  std::string label_;
  int64_t total_;
  bool tty_, done_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace vs
