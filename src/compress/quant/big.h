// BIG - Bimodal Integration (PTQ4SAM, arXiv 2405.03144). The keys of an attention module can have
// a bimodal per-tensor distribution: some channels sit around +a, others around -a. A per-tensor
// quantizer must then cover [-a, a] plus the spread, wasting most of its grid on the empty middle.
// Flipping the sign of a key channel and of the matching query channel (rows of the qkv
// projection's weight and bias) leaves every score q.k unchanged, exactly, and moves all channels
// to one side: the distribution turns unimodal and the quantizer's range shrinks.
//
// Detector (per attention module, on calibration keys): a Gaussian kernel density estimate of
// the key values (512-bin histogram smoothed with Silverman's bandwidth
// 0.9 min(sd, IQR / 1.34) n^(-1/5)); the module is bimodal when the highest density peak below 0
// and the highest above 0 both reach 10% of the global maximum and the density between them dips
// below half of the smaller peak. Then the channels whose calibration mean has the minority sign
// are flipped.
#pragma once
#include <cstdint>
#include <vector>

#include "compress/quant/observer.h"
#include "nn/attention.h"

namespace vs::quant {

struct BimodalTest {
  bool bimodal = false;
  double left_peak = 0, right_peak = 0;  // positions of the highest peak below / above 0
};
BimodalTest detect_bimodal(const std::vector<float>& values);

struct BigDecision {
  BimodalTest test;
  std::vector<int64_t> flip;           // key channels to flip (0 .. qk_total - 1)
  double mse_before = 0, mse_after = 0;  // per-tensor asymmetric quantisation MSE of the keys
};
// keys: [rows, qk] calibration sample; channel_mean: mean of every key channel over all
// calibration tokens. The MSEs are measured at `bits` with the given observer.
BigDecision decide_big(const std::vector<float>& keys, int64_t qk, const std::vector<double>& channel_mean,
                       int bits, Observer obs);

// Negates rows c (query) and qk_total + c (key) of the dense qkv projection, weight and bias.
void apply_big(nn::Attention& attn, const std::vector<int64_t>& channels);
// The same for any projections: negates the given rows of a dense layer, weight and bias.
void negate_rows(std::unique_ptr<nn::Linear>& layer, const std::vector<int64_t>& rows);

}  // namespace vs::quant
