#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace vs {

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total), tty_(isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

Progress::~Progress() { finish(); }

void Progress::update(int64_t done, const std::string& extra) {
  if (!tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  double secs = std::chrono::duration<double>(now - start_).count();
  double frac = total_ > 0 ? double(done) / double(total_) : 1.0;
  int width = 30, filled = int(frac * width);
  std::string bar(size_t(filled), '#');
  bar.append(size_t(width - filled), '.');
  double eta = done > 0 ? secs / double(done) * double(total_ - done) : 0.0;
  std::fprintf(stderr, "\r%s [%s] %lld/%lld %.0fs eta %.0fs %s\033[K", label_.c_str(), bar.c_str(),
               (long long)done, (long long)total_, secs, eta, extra.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (tty_ && !done_) std::fprintf(stderr, "\n");
  done_ = true;
}

}  // namespace vs
