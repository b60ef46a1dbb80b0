// The browser side of the parity check and the latency measurement (loaded by parity.html, driven by run.js).
//
//   parity.html?refs=/refs/                 compare with what `python -m tools.web` wrote (refs.json)
//   parity.html?refs=/refs/&mode=bench&threads=1
//
// The result goes to window.__result ({checks: [{name, ok, ...}], ...}); window.__done = true ends the run.
import {
  BundleError, ImagePreprocessor, Retriever, Tokenizer, compositeRgba, loadImage,
} from '../src/index.js';

const params = new URLSearchParams(location.search);
const base = new URL(params.get('refs') ?? '/refs/', location.href).href;
const threads = params.has('threads') ? Number(params.get('threads')) : undefined;
const log = (...args) => console.log(...args);

async function get(rel, kind = 'json') {
  const response = await fetch(new URL(rel, base), { cache: 'no-store' });
  if (!response.ok) throw new Error(`${rel}: HTTP ${response.status}`);
  if (kind === 'json') return response.json();
  if (kind === 'blob') return response.blob();
  const buffer = await response.arrayBuffer();
  return kind === 'f32' ? new Float32Array(buffer) : new Uint8Array(buffer);
}

const rows = (flat, dim) => Array.from({ length: flat.length / dim }, (_, i) => flat.subarray(i * dim, (i + 1) * dim));
const cosine = (a, b) => {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i] * b[i];
    aa += a[i] * a[i];
    bb += b[i] * b[i];
  }
  return ab / Math.sqrt(aa * bb);
};
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * (sorted.length - 1) + 0.5))];
};
const summary = (values) => ({ min: Math.min(...values), mean: values.reduce((s, v) => s + v, 0) / values.length,
  p01: quantile(values, 0.01), n: values.length });
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

const checks = [];
function check(name, ok, detail = {}) {
  checks.push({ name, ok: Boolean(ok), ...detail });
  log(`${ok ? 'ok  ' : 'FAIL'} ${name} ${JSON.stringify(detail).slice(0, 300)}`);
}

async function rawImage(entry) {
  return { width: entry.width, height: entry.height, data: await get(`raw/${entry.file}.rgba`, 'u8') };
}

function compareHits(js, py) {
  const ids = same(js.map((h) => h.id), py.map((h) => h.id));
  const pyScore = new Map(py.map((h) => [h.id, h.score]));
  // how far the browser's score of an item is from Python's, over the items both lists hold
  const scoreDiff = Math.max(0, ...js.filter((h) => pyScore.has(h.id)).map((h) => Math.abs(h.score - pyScore.get(h.id))));
  return { ids, scoreDiff };
}

async function tokenizerChecks(refs, r) {
  const spec = r.manifest.text_encoder;
  const json = await get(`${refs.bundle}/${spec.tokenizer}`);
  const tok = Tokenizer.fromJSON(json, { maxLength: spec.max_length });
  const bad = refs.tokenizer_cases.filter((c) => !same(tok.encode(c.text).ids, c.ids));
  check('tokenizer: bundle tokenizer.json ids = Python tokenizers ids', !bad.length,
    { cases: refs.tokenizer_cases.length, mismatches: bad.length, first: bad[0]?.text });
  const ids = r.tokenize(refs.texts);
  const badTexts = refs.texts.filter((t, i) => !same(ids[i], refs.text_ids[i]));
  check('tokenizer: runtime ids of the parity texts (truncation at max_length included)', !badTexts.length,
    { texts: refs.texts.length, mismatches: badTexts.length, truncated: refs.text_ids.filter((x) => x.length === spec.max_length).length });
  const rich = refs.rich_tokenizer;
  const richJson = await get(rich.file);
  let richBad = 0;
  for (const c of rich.cases) {
    const t = Tokenizer.fromJSON(richJson, { maxLength: c.max_length });
    richBad += rich.texts.filter((text, i) => !same(t.encode(text).ids, c.ids[i])).length;
  }
  check('tokenizer: rich WordPiece vocabulary (added tokens, ##pieces, CJK, accents), two max_lengths', !richBad,
    { texts: rich.texts.length * rich.cases.length, vocab: rich.vocab_size, mismatches: richBad });
  let policyBad = 0;
  for (const c of refs.runtime_tokenize) {
    let got;
    try {
      got = { ids: r.tokenize([c.text])[0] };
    } catch (err) {
      got = { error: err.message };
    }
    if (c.error ? !got.error : !same(got.ids, c.ids)) policyBad++;
  }
  check('tokenizer: runtime rules (character cap, lone surrogates, nothing readable) as Python',
    !policyBad, { cases: refs.runtime_tokenize.length, mismatches: policyBad });
}

async function textChecks(refs, r, label) {
  const py = rows(await get(refs.text_embeddings, 'f32'), refs.dim);
  const t0 = performance.now();
  const js = await r.embedTexts(refs.texts);
  const ms = performance.now() - t0;
  const cos = summary(js.map((v, i) => cosine(v, py[i])));
  const need = refs.min_cosine.text;
  check(`text embeddings (${label}): min cosine >= ${need}`, cos.min >= need, { ...cos, model: r.modelFiles.text, ms });
  return cos;
}

async function imageChecks(refs, r, label) {
  const dim = refs.dim;
  const need = refs.min_cosine.image;
  const raws = new Map();
  for (const entry of refs.raw) raws.set(entry.file, await rawImage(entry));
  // 1. the transform on Pillow-decoded pixels: exact bytes, every setting
  const crops = await get(refs.preprocess.crops, 'u8');
  const configs = refs.preprocess.configs.map((c) => new ImagePreprocessor(c));
  let badBytes = 0;
  let badCases = 0;
  for (const c of refs.preprocess.cases) {
    const pre = configs[c.config];
    const raw = raws.get(c.file);
    const got = pre.resizeCrop({ width: raw.width, height: raw.height, rgb: compositeRgba(raw.data, pre.background) });
    const want = crops.subarray(c.offset, c.offset + c.bytes);
    let diff = 0;
    for (let i = 0; i < want.length; i++) diff += got[i] !== want[i];
    badBytes += diff;
    badCases += diff > 0;
    if (diff) log(`  preprocess mismatch: ${c.file} ${pre.resample}-${pre.size} ${raw.width}x${raw.height}: ${diff} bytes`);
  }
  check('preprocess: resize + crop bytes = Pillow (alpha composite, bicubic/bilinear, every size and mode)', !badBytes,
    { cases: refs.preprocess.cases.length, settings: configs.map((c) => `${c.resample}-${c.size}`), badCases, badBytes });
  const tensors = await get(refs.tensors.data, 'f32');
  const plane = 3 * r.preprocessor.size ** 2;
  let maxDiff = 0;
  for (const [i, file] of refs.tensors.files.entries()) {
    const got = await r.preprocess(raws.get(file));
    for (let j = 0; j < plane; j++) maxDiff = Math.max(maxDiff, Math.abs(got[j] - tensors[i * plane + j]));
  }
  check('preprocess: float32 NCHW tensor = runtime/preprocess.py', maxDiff === 0, { images: refs.tensors.files.length, maxDiff });
  // 2. the browser's decoder against Pillow's
  const decode = { files: 0, exact: 0, byKind: {} };
  const blobs = new Map();
  for (const entry of refs.raw.filter((e) => e.encoded !== false)) {
    const blob = await get(`images/${entry.file}`, 'blob');
    blobs.set(entry.file, blob);
    const raw = raws.get(entry.file);
    const got = await loadImage(blob, r.preprocessor.background);
    const want = compositeRgba(raw.data, r.preprocessor.background);
    let differing = 0;
    let max = 0;
    for (let i = 0; i < want.length; i++) {
      const d = Math.abs(got.rgb[i] - want[i]);
      differing += d > 0;
      max = Math.max(max, d);
    }
    const kind = `${entry.file.split('.').pop()}${/-(rgba|la|pt)-/.test(entry.file) ? '+alpha' : ''}`;
    const k = (decode.byKind[kind] ??= { files: 0, exact: 0, maxDiff: 0, differingShare: 0 });
    k.files++;
    k.exact += differing === 0;
    k.maxDiff = Math.max(k.maxDiff, max);
    k.differingShare = Math.max(k.differingShare, differing / want.length);
    decode.files++;
    decode.exact += differing === 0;
  }
  const pngOpaque = decode.byKind.png;
  check('decode: opaque PNG decoded by the browser = Pillow', !pngOpaque || pngOpaque.exact === pngOpaque.files, decode);
  // 3. embeddings: files through the browser decoder, and Pillow's pixels (the exact path)
  const results = {};
  for (const [setName, files, embFile] of [['parity', refs.images, refs.image_embeddings],
    ['edge', refs.edge_images, refs.edge_image_embeddings]]) {
    const py = rows(await get(embFile, 'f32'), dim);
    const t0 = performance.now();
    const fromFiles = await r.embedImages(files.map((f) => blobs.get(f)));
    const ms = performance.now() - t0;
    const fromPixels = await r.embedImages(files.map((f) => raws.get(f)));
    const cosFiles = summary(fromFiles.map((v, i) => cosine(v, py[i])));
    const cosPixels = summary(fromPixels.map((v, i) => cosine(v, py[i])));
    check(`image embeddings (${label}, ${setName} set, files decoded by the browser): min cosine >= ${need}`,
      cosFiles.min >= need, { ...cosFiles, model: r.modelFiles.image, ms });
    check(`image embeddings (${label}, ${setName} set, Pillow's pixels): min cosine >= ${need}`, cosPixels.min >= need, cosPixels);
    results[setName] = { files: cosFiles, pixels: cosPixels };
  }
  return { results, blobs };
}

const q0k = (refs) => refs.queries[0].k;

async function queryChecks(refs, r, blobs) {
  const textVecs = refs.text_embeddings ? rows(await get(refs.text_embeddings, 'f32'), refs.dim) : [];
  const imageVecs = refs.image_embeddings ? rows(await get(refs.image_embeddings, 'f32'), refs.dim) : [];
  const groups = {};
  let maxScoreDiff = 0;
  const firstBad = [];
  for (const q of refs.queries) {
    let kind;
    let hits;
    if (q.text != null) {
      kind = 'text query, end to end';
      hits = await r.search({ text: q.text, k: q.k });
    } else if (q.image != null) {
      kind = 'image query, end to end';
      hits = await r.search({ image: blobs.get(q.image), k: q.k });
    } else {
      const vector = (q.vector_of === 'image' ? imageVecs : textVecs)[q.index];
      kind = `vector query, ${q.filter ? 'filtered, ' : ''}${q.exact == null ? 'default' : q.exact ? 'exact' : 'HNSW'}`;
      hits = r.searchVector(vector, { k: q.k, filter: q.filter ?? null, exact: q.exact ?? undefined });
    }
    const { ids, scoreDiff } = compareHits(hits, q.hits);
    const g = (groups[kind] ??= { queries: 0, identical: 0, maxScoreDiff: 0 });
    g.maxScoreDiff = Math.max(g.maxScoreDiff, scoreDiff);
    g.queries++;
    g.identical += ids;
    const pyIds = q.hits.map((h) => h.id);
    const overlap = hits.filter((h) => pyIds.includes(h.id)).length;
    g.overlap = (g.overlap ?? 0) + (q.hits.length ? overlap / q.hits.length : Number(!hits.length));
    if (!ids) {
      // Where the lists part, the Python score (ranks 1-15) of the browser's item against Python's item at that rank:
      // a near-tie when they are close. null: the browser's item is not in Python's top 15.
      const pyScore = new Map([...q.hits, ...(q.next ?? [])].map((h) => [h.id, h.score]));
      const gaps = hits.map((h, i) => (h.id === pyIds[i] ? 0 : pyScore.has(h.id) ? Math.abs(pyScore.get(h.id) - q.hits[i].score) : null));
      const pythonScoreGap = gaps.includes(null) ? null : Math.max(...gaps);
      g.differ = [...(g.differ ?? []), { q: q.text ?? q.image ?? q.index, rank: hits.findIndex((h, i) => h.id !== pyIds[i]) + 1,
        pythonScoreGap, overlap }];
      if (firstBad.length < 3) firstBad.push({ kind, q: q.text ?? q.image ?? q.index, js: hits.map((h) => [h.id, h.score]), py: q.hits.map((h) => [h.id, h.score]) });
    }
    maxScoreDiff = Math.max(maxScoreDiff, scoreDiff);
  }
  // A quantised tower's embedding drifts a little from Python's (another CPU's kernels), which moves every score by
  // up to maxScoreDiff; two items whose Python scores are closer than twice that may trade places (within the ten
  // or across rank 10). Such near-ties are accepted for end-to-end queries of quantised towers and reported (the
  // strict count stays in `identical`); anything else fails.
  const quantised = Object.values(refs.quantization).some((q) => q && q !== 'fp32');
  for (const [kind, g] of Object.entries(groups)) {
    g.overlap /= g.queries;
    const nearTiesOnly = (g.differ ?? []).every((d) => d.pythonScoreGap != null && d.pythonScoreGap <= 2 * g.maxScoreDiff);
    const ok = g.identical === g.queries || (quantised && kind.includes('end to end') && nearTiesOnly);
    check(`top-${q0k(refs)} identical to Python: ${kind}`, ok, g);
  }
  const scoreLimit = quantised ? 1e-2 : 1e-3;
  check(`search scores within ${scoreLimit} of Python`, maxScoreDiff < scoreLimit, { maxScoreDiff, firstBad });
  let badFilters = 0;
  for (const b of refs.bad_filters) {
    let threw = null;
    try {
      r.searchVector(textVecs[0] ?? imageVecs[0], { k: 3, filter: b.filter });
    } catch (err) {
      threw = err.message;
    }
    if (Boolean(threw) !== Boolean(b.python)) badFilters++;
  }
  check('bad filters refused as in Python', !badFilters, { cases: refs.bad_filters.length, mismatches: badFilters });
  return groups;
}

async function largeChecks(refs, options) {
  const large = refs.large;
  const r = await Retriever.open(new URL(`${large.bundle}/`, base), options);
  const vecs = rows(await get(large.vectors, 'f32'), large.dim);
  const groups = {};
  for (const c of large.cases) {
    const hits = r.searchVector(vecs[c.vector], { k: c.k, filter: c.filter, exact: c.exact ?? undefined });
    const kind = `${large.count} items, ${c.exact == null ? 'default (HNSW above 2048)' : 'HNSW'}${c.filter ? `, filter ${JSON.stringify(c.filter)}` : ''}`;
    const g = (groups[kind] ??= { queries: 0, identical: 0 });
    g.queries++;
    g.identical += compareHits(hits, c.hits).ids;
  }
  for (const [kind, g] of Object.entries(groups)) check(`HNSW graph walk = hnswlib: ${kind}`, g.identical === g.queries, g);
  await r.close();
}

async function matryoshkaChecks(refs, options) {
  const m = refs.matryoshka;
  const r = await Retriever.open(new URL(`${m.bundle}/`, base), options);
  const vectors = rows(await get(m.query_vectors, 'f32'), m.dim);
  const full = rows(await get(m.full_vectors, 'f32'), m.full_dim);
  let identical = 0;
  for (const c of m.cases) {
    const hits = c.text != null ? await r.search({ text: c.text, k: 10 })
      : c.full_vector != null ? await r.search({ vector: full[c.full_vector], k: 10 })
        : r.searchVector(vectors[c.index], { k: 10 });
    identical += compareHits(hits, c.hits).ids;
  }
  check(`Matryoshka index (${m.dim} of ${m.full_dim} dims): top-10 identical (texts, prefix and full-dim vectors)`,
    identical === m.cases.length && r.dim === m.dim, { queries: m.cases.length, identical, dim: r.dim });
  await r.close();
}

async function tamperChecks(refs, options) {
  for (const t of refs.tampered) {
    let error = null;
    try {
      const r = await Retriever.open(new URL(`${t.path}/`, base), { ...options, verify: true });
      await r.close();
    } catch (err) {
      error = err;
    }
    check(`refused: ${t.name}`, error instanceof BundleError && error.message.includes(t.expect),
      { expect: t.expect, got: error ? `${error.name}: ${error.message}`.slice(0, 200) : 'opened' });
  }
}

async function sourceChecks(refs, r, options) {
  // the same bundle as picked files (a Map of Blobs) and through a reader function
  const names = [...Object.keys(r.manifest.files), 'manifest.json', 'index/CURRENT'];
  if (r.savedIndex) names.push(...['hnsw.bin', 'meta.sqlite', 'index.json'].map((f) => `${r.savedIndex.directory}/${f}`));
  const files = new Map();
  for (const rel of names) files.set(rel, await get(`${refs.bundle}/${rel}`, 'blob'));
  const query = refs.texts?.[0];
  const want = query ? await r.search({ text: query, k: 5 }) : null;
  for (const [label, where] of [['a Map of Blobs', files], ['a reader function', async (rel) => files.get(rel) ?? null],
    ['File objects of a picked folder', [...files].map(([rel, blob]) => Object.assign(new File([blob], rel.split('/').pop()), { relativePath: `bundle/${rel}` }))]]) {
    const other = await Retriever.open(where, options);
    const got = query ? await other.search({ text: query, k: 5 }) : [];
    check(`open from ${label}`, !query || same(got.map((h) => h.id), want.map((h) => h.id)), { files: files.size });
    await other.close();
  }
}

async function apiChecks(r) {
  const refuses = async (fn) => {
    try {
      await fn();
      return false;
    } catch {
      return true;
    }
  };
  const cases = {
    'no query': () => r.search({}),
    'two queries': () => r.search({ text: 'a', vector: new Float32Array(r.dim) }),
    'empty text': () => r.search({ text: '   ' }),
    'k = 0': () => r.search({ vector: new Float32Array(r.dim).fill(1), k: 0 }),
    'wrong dim': () => r.search({ vector: new Float32Array(r.dim + 1) }),
    'NaN vector': () => r.search({ vector: new Float32Array(r.dim).fill(NaN) }),
    'not an image': () => r.embedImages([new Blob([new Uint8Array([1, 2, 3])])]),
    'texts not an array': () => r.embedTexts('a'),
  };
  const failed = [];
  for (const [name, fn] of Object.entries(cases)) if (!(await refuses(fn))) failed.push(name);
  check('bad calls get a clear error', !failed.length, { cases: Object.keys(cases).length, failed });
}

async function parity() {
  const refs = await get('refs.json');
  const options = { threads };
  const r = await Retriever.open(new URL(`${refs.bundle}/`, base), options);
  const out = { mode: 'parity', bundle: refs.source_bundle, quantization: refs.quantization, threads: r.threads,
    crossOriginIsolated, count: r.size, checksDone: r.checks, ua: navigator.userAgent };
  if (r.tokenizer) {
    await tokenizerChecks(refs, r);
    out.text = { [r.modelFiles.text]: await textChecks(refs, r, r.modelFiles.text) };
  }
  let blobs = new Map();
  if (r.preprocessor) {
    const images = await imageChecks(refs, r, 'default model');
    blobs = images.blobs;
    out.image = { [r.modelFiles.image]: images.results };
  }
  out.queries = await queryChecks(refs, r, blobs);
  // the other model format of each tower (the .onnx when the default took the .ort twin)
  const twin = r.manifest.text_encoder?.ort_file || r.manifest.image_encoder?.ort_file;
  if (twin) {
    const other = await Retriever.open(new URL(`${refs.bundle}/`, base), { ...options, modelFormat: 'onnx' });
    if (other.tokenizer && r.manifest.text_encoder.ort_file) out.text[other.modelFiles.text] = await textChecks(refs, other, 'onnx');
    if (other.preprocessor && r.manifest.image_encoder.ort_file) {
      await other._imageTower();
      const py = rows(await get(refs.image_embeddings, 'f32'), refs.dim);
      const js = await other.embedImages(refs.images.map((f) => blobs.get(f)));
      const cos = summary(js.map((v, i) => cosine(v, py[i])));
      check(`image embeddings (onnx, parity set, files): min cosine >= ${refs.min_cosine.image}`, cos.min >= refs.min_cosine.image,
        { ...cos, model: other.modelFiles.image });
      out.image[other.modelFiles.image] = { parity: { files: cos } };
    }
    out.openTimings = { default: r.timings, onnx: other.timings };
    await other.close();
  }
  if (refs.large) await largeChecks(refs, options);
  if (refs.tampered) await tamperChecks(refs, options);
  if (refs.matryoshka) await matryoshkaChecks(refs, options);
  await sourceChecks(refs, r, options);
  await apiChecks(r);
  await r.close();
  return out;
}

async function bench() {
  const refs = await get('refs.json');
  const t0 = performance.now(); // ms since navigation start: the page and its modules are loaded by now
  const r = await Retriever.open(new URL(`${refs.bundle}/`, base), { threads });
  const tOpen = performance.now();
  const first = await r.search({ text: refs.texts[0], k: 10 });
  const tFirst = performance.now();
  const bytesText = r.bytesRead;
  const blobs = await Promise.all(refs.images.map((f) => get(`images/${f}`, 'blob')));
  const tImage0 = performance.now();
  await r.search({ image: blobs[0], k: 10 });
  const tImage = performance.now();
  const bytesAll = r.bytesRead;
  const time = async (fn) => {
    const s = performance.now();
    await fn();
    return performance.now() - s;
  };
  const textMs = [];
  const embedMs = [];
  const searchMs = [];
  for (let rep = 0; rep < 3; rep++) {
    for (const text of refs.texts.slice(0, 100)) {
      textMs.push(await time(() => r.search({ text, k: 10 })));
      let v;
      embedMs.push(await time(async () => { [v] = await r.embedTexts([text]); }));
      searchMs.push(await time(() => r.searchVector(v, { k: 10 })));
    }
  }
  const imageMs = [];
  const preprocessMs = [];
  for (const blob of blobs) {
    imageMs.push(await time(() => r.search({ image: blob, k: 10 })));
    preprocessMs.push(await time(() => r.preprocess(blob)));
  }
  const stats = (v) => ({ p50: quantile(v, 0.5), p95: quantile(v, 0.95), n: v.length });
  const resources = performance.getEntriesByType('resource');
  const runtimeBytes = {};
  for (const e of resources) {
    const path = new URL(e.name).pathname;
    if (path.includes('/node_modules/') || path.includes('/src/')) runtimeBytes[path] = e.encodedBodySize || e.decodedBodySize;
  }
  return {
    mode: 'bench', threads: r.threads, requestedThreads: threads ?? null, crossOriginIsolated,
    hardwareConcurrency: navigator.hardwareConcurrency, ua: navigator.userAgent, count: r.size,
    models: r.modelFiles, firstHit: first[0]?.id, openTimings: r.timings,
    pageReadyMs: t0, openMs: tOpen - t0, firstQueryMs: tFirst - tOpen, openPlusFirstQueryMs: tFirst - t0,
    pageToFirstResultMs: tFirst, firstImageQueryMs: tImage - tImage0,
    bundleBytesTextStart: bytesText, bundleBytesAfterImage: bytesAll, runtimeBytes,
    textQueryMs: stats(textMs), textEmbedMs: stats(embedMs), indexSearchMs: stats(searchMs),
    imageQueryMs: stats(imageMs), imagePreprocessMs: stats(preprocessMs),
  };
}

try {
  const result = params.get('mode') === 'bench' ? await bench() : await parity();
  window.__result = { ...result, checks, failed: checks.filter((c) => !c.ok).length };
} catch (err) {
  console.error(err.stack ?? String(err));
  window.__result = { error: `${err.name}: ${err.message}`, stack: err.stack, checks, failed: checks.filter((c) => !c.ok).length + 1 };
}
window.__done = true;
