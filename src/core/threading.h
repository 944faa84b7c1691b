// Thread count for every kernel (ours use OpenMP; oneDNN is built on OpenMP in Debian, so one
// setting governs both).
#pragma once

namespace vs {

void set_num_threads(int n);  // n <= 0: leave the default (all cores)
int num_threads();

}  // namespace vs
