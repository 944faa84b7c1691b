// Calibration moments of layer inputs and the least-squares refit of a layer on them, shared by
// the methods that correct a layer after changing the model around it (pruning, low rank).
//
// Every accumulator centres each batch on its own mean before its float product and merges
// batches with Chan's update: summing raw X^T X and centring at the end cancels catastrophically
// for the ViT channels whose mean dwarfs their spread (LayerNorm outputs: mean 30-240, spread
// 0.05).
#pragma once
#include <Eigen/Dense>
#include <cstdint>
#include <vector>

namespace vs::compress {

// Mean and centred Gram of one layer's input rows.
struct Moments {
  Eigen::VectorXd mean;   // [n]
  Eigen::MatrixXd cgram;  // [n, n]: sum over rows of (x - mean)(x - mean)^T
  int64_t rows = 0;
  void add(const float* x, int64_t rows, int64_t cols);  // row-major x [rows, cols]
  Eigen::MatrixXd gram() const { return cgram + double(rows) * mean * mean.transpose(); }  // sum of x x^T
};

// Paired inputs of one layer position in two models on the same images and tokens: X' [rows, in_c]
// (the compressed model) and X [rows, in_x] (the original): their means and the centred
// products (X' - mean')^T (X' - mean') and (X' - mean')^T (X - mean).
struct PairedMoments {
  Eigen::MatrixXd cc, cx;  // [in_c, in_c], [in_c, in_x]
  Eigen::VectorXd mean_c, mean_x;
  int64_t rows = 0;
  PairedMoments(int64_t in_c, int64_t in_x)
      : cc(Eigen::MatrixXd::Zero(in_c, in_c)), cx(Eigen::MatrixXd::Zero(in_c, in_x)),
        mean_c(Eigen::VectorXd::Zero(in_c)), mean_x(Eigen::VectorXd::Zero(in_x)) {}
  explicit PairedMoments(int64_t in = 0) : PairedMoments(in, in) {}
  void add(const float* x, const float* x_orig, int64_t n);  // x [n, in_c], x_orig [n, in_x]
  // X' = the columns `cols` (all when empty) of the rows m was accumulated on, paired with all of
  // them: a layer that reads some (pruning) or all (low rank) of the original layer's inputs.
  static PairedMoments of_columns(const Moments& m, const std::vector<int64_t>& cols = {});
};

// The layer y = x W'^T + b' on the compressed model's inputs that best reproduces the original
// layer's outputs X W^T + b, in ridge least squares on centred data:
//   W'^T = (Cc + lambda I)^{-1} Cx W^T,  lambda = damping * mean(diag Cc),
//   b' = b + W mean_x - W' mean_c.
struct LinearFit {
  Eigen::MatrixXd W;
  Eigen::VectorXd b;
};
LinearFit ridge_refit(const Eigen::MatrixXd& W, const Eigen::VectorXd& b, const PairedMoments& m, double damping);

}  // namespace vs::compress
