// First-order Taylor importance (Molchanov et al. 2017/2019 style) of every index of the
// dependency graph, from real gradients of the training engine (src/train).
//
// Each index j of a group gets a mask m_j = 1 multiplying every parameter slice it owns (all the
// group's slots: e.g. q row + k row with their biases; v row + bias + proj column; fc1 row + bias
// + fc2 column; every residual slice). Its first-order effect on the loss of image n is
//   t_nj = dL_n/dm_j = sum over its slices of (w . dL_n/dw),
// and its score is sum_n |t_nj| over the calibration images (|dL/dm * m| accumulated per image,
// so that opposite signs on different images do not cancel). A head: the same with one mask on
// all its q/k and v indices, |sum of its t_nj| per image.
//
// Loss: the unpruned model is the teacher, but its KD loss KL(teacher || student) and the gradient
// of that are exactly zero at the unpruned model (student == teacher), so first-order scores of it
// vanish. We use its zero-temperature limit instead: cross-entropy against the teacher's own
// top-1 class, L_n = -log softmax(z_n)[argmax z_n] (no labels needed, like distillation).
// One forward + backward per image (batch 1), deterministic.
#pragma once
#include <vector>

#include "compress/prune/graph.h"
#include "models/vit.h"

namespace vs::prune {

struct TaylorScores {
  std::vector<std::vector<double>> index;  // per group of the graph, per index
  std::vector<std::vector<double>> head;   // per block, per head
  int64_t images = 0;
};

// calib: batches of preprocessed images [B, 3, S, S]. The model needs dense layers.
TaylorScores taylor_scores(const models::ViT& model, const Graph& g, const std::vector<Tensor>& calib,
                           bool progress = true);

}  // namespace vs::prune
