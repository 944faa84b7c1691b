#include "compress/prune/taylor.h"

#include <cmath>
#include <cstring>
#include <map>

#include "core/error.h"
#include "core/progress.h"
#include "kernels/elementwise.h"
#include "train/vit.h"

namespace vs::prune {
namespace {

// dL/dlogits of L = -log softmax(z)[argmax z] for one row of logits: softmax(z) - onehot(argmax).
Tensor self_label_grad(const Tensor& logits) {
  const int64_t K = logits.numel();
  Tensor g = logits.clone();
  int64_t top = 0;
  for (int64_t i = 1; i < K; ++i)
    if (logits.f32()[i] > logits.f32()[top]) top = i;
  kernels::softmax_rows(g.f32(), 1, K);
  g.f32()[top] -= 1.f;
  return g;
}

// t[j] += sum over the slot's slice j of value * grad.
void add_slot(const Slot& sl, const train::Param& p, std::vector<double>& t) {
  const float *w = p.value.f32(), *gr = p.grad.f32();
  for (size_t j = 0; j < t.size(); ++j)
    for_each_run(p.value, sl, int64_t(j), [&](int64_t at, int64_t n) {
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += double(w[at + i]) * gr[at + i];
      t[j] += s;
    });
}

}  // namespace

TaylorScores taylor_scores(const models::ViT& model, const Graph& g, const std::vector<Tensor>& calib,
                           bool progress) {
  check(!calib.empty(), "taylor scores need calibration images (--calib)");
  train::TrainViT net(model);
  std::map<std::string, train::Param*> by_name;
  for (train::Param* p : net.params()) by_name[p->name] = p;
  for (const Group& grp : g.groups)
    for (const Slot& sl : grp.slots)
      check(by_name.count(sl.tensor), "taylor: no trainable parameter '" + sl.tensor + "'");

  TaylorScores ts;
  for (const Group& grp : g.groups) ts.index.emplace_back(size_t(grp.size), 0.0);
  for (const auto& blk : model.blocks) ts.head.emplace_back(blk.attn.heads.v_dim.size(), 0.0);
  int64_t total = 0;
  for (const Tensor& b : calib) total += b.dim(0);
  Progress bar("taylor", total);
  for (const Tensor& batch : calib) {
    const int64_t per = batch.numel() / batch.dim(0);
    for (int64_t n = 0; n < batch.dim(0); ++n) {
      Tensor x = Tensor::empty({1, batch.dim(1), batch.dim(2), batch.dim(3)});
      std::memcpy(x.f32(), batch.f32() + n * per, size_t(per) * sizeof(float));
      net.backward(self_label_grad(net.forward(x)));
      std::vector<std::vector<double>> t;
      for (const Group& grp : g.groups) {
        t.emplace_back(size_t(grp.size), 0.0);
        for (const Slot& sl : grp.slots) add_slot(sl, *by_name.at(sl.tensor), t.back());
        for (size_t j = 0; j < t.back().size(); ++j) ts.index[t.size() - 1][j] += std::abs(t.back()[j]);
      }
      for (size_t b = 0; b < ts.head.size(); ++b)
        for (size_t h = 0; h < ts.head[b].size(); ++h) {
          double s = 0;
          for (DimKind k : {DimKind::qk, DimKind::v}) {
            const int gi = g.find(k, int(b), int(h));
            for (double v : t[size_t(gi)]) s += v;
          }
          ts.head[b][h] += std::abs(s);
        }
      ++ts.images;
      if (progress) bar.update(ts.images);
    }
  }
  if (progress) bar.finish();
  return ts;
}

}  // namespace vs::prune
