// `Retriever`: open a bundle (URL, picked files or a reader), embed texts and images with onnxruntime-web's
// WebAssembly backend, search the bundle's saved index. The shape of the Python runtime's Retriever
// (runtime/retriever.py), read-only: indexes are built with `edgeret index` and shipped in the bundle.
//
//   import { Retriever } from 'edgeret-web';
//   const r = await Retriever.open('/bundle/', { threads: 1 });
//   const hits = await r.search({ text: 'a red heart', k: 5, filter: { year: { gte: 2020 } } });
//   // -> [{ id, score, metadata }]

import {
  BundleError, allowedDims, bundleSource, checkManifest, modelFiles, readSavedIndex, verifyBytes,
} from './bundle.js';
import { HnswIndex } from './hnsw.js';
import { loadImage } from './image.js';
import { ImagePreprocessor } from './preprocess.js';
import { MetadataStore } from './store.js';
import { Tokenizer } from './tokenizer.js';

const EPS = 1e-12;
/** runtime/text.py: a text is cut to this many characters per token of max_length before tokenising. */
const CHARS_PER_TOKEN = 100;

function isWellFormed(text) {
  if (typeof text.isWellFormed === 'function') return text.isWellFormed();
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
}

/** Rows scaled to unit L2 norm, in place (float32). */
function normaliseRows(data, rows, dim, what) {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let d = 0; d < dim; d++) s += data[r * dim + d] * data[r * dim + d];
    const norm = Math.fround(Math.sqrt(s));
    if (norm < EPS) throw new Error(`${what}: row ${r} has zero norm and cannot be normalised`);
    for (let d = 0; d < dim; d++) data[r * dim + d] = Math.fround(data[r * dim + d] / norm);
  }
  return data;
}

/** Matryoshka truncation of an (n, full) row-major matrix to its first `dim` values, renormalised. */
function truncateRows(data, rows, full, dim) {
  if (dim === full) return data;
  const out = new Float32Array(rows * dim);
  for (let r = 0; r < rows; r++) out.set(data.subarray(r * full, r * full + dim), r * dim);
  return normaliseRows(out, rows, dim, `vectors truncated to ${dim} dims`);
}

async function loadOrt(options) {
  if (options.ort) return options.ort;
  try {
    return await import('onnxruntime-web/wasm');
  } catch (err) {
    throw new Error("cannot import 'onnxruntime-web/wasm' (in a page without a bundler, map it in an import map, " +
      `or pass { ort } to open): ${err.message}`);
  }
}

async function loadSqlJs(options) {
  let init = options.initSqlJs ?? globalThis.initSqlJs;
  if (!init) {
    try {
      init = (await import('sql.js')).default;
    } catch (err) {
      throw new Error('cannot load sql.js (in a page without a bundler, load node_modules/sql.js/dist/sql-wasm-browser.js ' +
        `with a <script> tag first, or pass { initSqlJs } to open): ${err.message}`);
    }
  }
  const script = globalThis.document?.querySelector?.('script[src*="sql-wasm"]')?.src;
  const wasm = options.sqlWasmUrl ?? (script ? script.replace(/\.js(\?.*)?$/, '.wasm')
    : new URL('../node_modules/sql.js/dist/sql-wasm-browser.wasm', import.meta.url).href);
  return init({ locateFile: () => wasm });
}

/** One tower's onnxruntime session, from the first of its files that loads. */
async function createSession(ort, source, manifest, spec, modelFormat, verify, checks) {
  const errors = [];
  for (const rel of modelFiles(spec, modelFormat, 'ort')) {
    const bytes = await source.read(rel);
    checks[rel] = await verifyBytes(bytes, manifest.files[rel], rel, verify, 'bundle');
    try {
      const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
      const wanted = [...Object.values(spec.inputs)];
      const missing = wanted.filter((name) => !session.inputNames.includes(name));
      if (missing.length || !session.outputNames.includes(spec.output)) {
        throw new BundleError(`${rel}: graph inputs ${JSON.stringify(session.inputNames)} / outputs ` +
          `${JSON.stringify(session.outputNames)} do not match the manifest (${JSON.stringify(wanted)} -> ${spec.output})`);
      }
      return { session, file: rel };
    } catch (err) {
      if (err instanceof BundleError) throw err;
      errors.push(`${rel}: ${err.message ?? err}`);
    }
  }
  throw new BundleError(`cannot load the model: ${errors.join('; ')}`);
}

/** Encoders + saved index of one bundle. Create with {@link Retriever.open}. */
export class Retriever {
  /**
   * Verify and open a bundle (and its saved index, if it has one).
   *
   * @param {string|URL|FileList|File[]|Map<string, Blob|ArrayBuffer|Uint8Array>|Function} where the bundle folder:
   *   its URL, the files of a picked or dropped folder, a map of relative path -> bytes, or `(rel) => bytes`
   * @param {object} [options]
   * @param {number} [options.threads] WebAssembly threads (default: navigator.hardwareConcurrency when the page is
   *   cross-origin isolated, else 1). onnxruntime-web reads it once, before its first session: it is global.
   * @param {'auto'|true|'size'|false} [options.verify='auto'] file checks: true = size + sha256 (WebCrypto),
   *   'auto' = sha256 where WebCrypto exists else sizes, 'size', false. Every file the runtime reads is checked.
   * @param {number} [options.dim] Matryoshka dim to search at (default: the saved index's)
   * @param {number} [options.exactThreshold=2048] collections (or filtered subsets) up to this size are searched exactly
   * @param {'auto'|'onnx'|'ort'} [options.modelFormat='auto'] 'auto' loads each tower's ORT-format twin when the
   *   manifest names one (pre-optimised: its session opens 2-3x faster in the browser), falling back to the .onnx
   * @param {boolean} [options.lazyImage=true] download the image tower on the first image
   * @param {object} [options.ort] the onnxruntime-web module (default: import('onnxruntime-web/wasm'))
   * @param {Function} [options.initSqlJs] sql.js's init function (default: globalThis.initSqlJs or import('sql.js'))
   * @param {string} [options.sqlWasmUrl] where sql.js's .wasm file is
   * @param {typeof fetch} [options.fetch] the fetch used for a URL source (default: globalThis.fetch)
   * @returns {Promise<Retriever>}
   */
  static async open(where, options = {}) {
    const {
      threads, verify = 'auto', dim, exactThreshold = 2048, modelFormat = 'auto', lazyImage = true, fetch: fetchFn,
    } = options;
    const started = performance.now();
    const source = bundleSource(where, fetchFn ? { fetch: fetchFn } : {});
    const manifest = await source.readJson('manifest.json', { optional: true });
    if (manifest == null) throw new BundleError(`${source.description}: no manifest.json; not an edgeret bundle`);
    const note = checkManifest(manifest);
    if (note) console.info(note);
    const ort = await loadOrt(options);
    const wanted = threads ?? (globalThis.crossOriginIsolated ? globalThis.navigator?.hardwareConcurrency ?? 1 : 1);
    if (ort.env.wasm.numThreads !== wanted) ort.env.wasm.numThreads = wanted;
    const checks = {};
    const readChecked = async (rel) => {
      const bytes = await source.read(rel);
      checks[rel] = await verifyBytes(bytes, manifest.files[rel], rel, verify, 'bundle');
      return bytes;
    };
    const json = (bytes, rel) => {
      try {
        return JSON.parse(new TextDecoder().decode(bytes));
      } catch (err) {
        throw new BundleError(`${rel}: not valid JSON (${err.message})`);
      }
    };

    const r = new Retriever();
    Object.assign(r, { manifest, source, ort, checks, exactThreshold, _modelFormat: modelFormat, _verify: verify });
    const text = manifest.text_encoder;
    const image = manifest.image_encoder;
    const timings = { manifest: performance.now() - started };
    const timed = (name, promise) => {
      const t0 = performance.now();
      return Promise.resolve(promise).then((value) => {
        timings[name] = performance.now() - t0;
        return value;
      });
    };
    const [textParts, imageConfig, saved] = await Promise.all([
      text && timed('textTower', Promise.all([readChecked(text.tokenizer),
        createSession(ort, source, manifest, text, modelFormat, verify, checks)])),
      image && readChecked(image.preprocessor),
      timed('indexFiles', readSavedIndex(source, manifest.index.path ?? 'index', verify)),
    ]);
    if (text) {
      const [tokenizerBytes, { session, file }] = textParts;
      r.tokenizer = Tokenizer.fromJSON(json(tokenizerBytes, text.tokenizer), { maxLength: text.max_length });
      r._text = { session, file, spec: text };
      await r._probeText();
    }
    if (image) {
      const config = json(imageConfig, image.preprocessor);
      if (config.size !== image.image_size) {
        throw new BundleError(`manifest.json image_encoder: image_size ${image.image_size} != size ${config.size} in ${image.preprocessor}`);
      }
      r.preprocessor = new ImagePreprocessor(config);
      r._image = null;
      if (!lazyImage) await r._imageTower();
    }
    // the index
    const dims = allowedDims(manifest);
    const chosen = dim ?? (saved ? saved.meta.dim : manifest.index.dim);
    if (!dims.includes(chosen)) throw new BundleError(`dim ${chosen} is not one of the bundle's dims ${JSON.stringify(dims)}`);
    r.dim = chosen;
    r.space = manifest.index.space;
    if (saved) {
      for (const key of ['space', 'dim']) {
        if (saved.meta[key] !== manifest.index[key]) {
          throw new BundleError(`${saved.directory}/index.json: index ${key} ${JSON.stringify(saved.meta[key])} does not ` +
            `match manifest.json index ${key} ${JSON.stringify(manifest.index[key])}`);
        }
      }
      if (saved.meta.dim !== chosen) {
        throw new BundleError(`the saved index in ${saved.directory} is ${saved.meta.dim}-d but dim=${chosen} was requested; ` +
          'open with that dim or rebuild the index');
      }
      checks[`${saved.directory}/hnsw.bin`] = checks[`${saved.directory}/meta.sqlite`] = saved.checked;
      let hnsw;
      const t0 = performance.now();
      try {
        hnsw = HnswIndex.parse(saved.hnsw, { space: saved.meta.space, dim: saved.meta.dim });
      } catch (err) {
        throw new BundleError(`${saved.directory}/${err.message}`);
      }
      timings.parseIndex = performance.now() - t0;
      const SQL = await timed('sqlite', loadSqlJs(options));
      let store;
      try {
        store = new MetadataStore(SQL, saved.sqlite);
      } catch (err) {
        throw new BundleError(`${saved.directory}/${err.message}`);
      }
      const problems = [];
      if (store.ids.size !== saved.meta.count) problems.push(`${store.ids.size} ids in meta.sqlite but count ${saved.meta.count}`);
      const missing = [...store.ids.keys()].filter((label) => !hnsw.byLabel.has(label));
      if (missing.length) problems.push('ids in meta.sqlite without a vector in hnsw.bin');
      if (problems.length) throw new BundleError(`index ${saved.directory} is inconsistent: ${problems.join('; ')}`);
      r.index = hnsw;
      r.store = store;
      r.efSearch = saved.meta.ef_search;
      r.savedIndex = { directory: saved.directory, meta: saved.meta };
      r._labels = Float64Array.from([...store.ids.keys()].sort((a, b) => a - b));
    } else {
      if (manifest.index.count > 0) {
        throw new BundleError(`manifest.json index: count ${manifest.index.count} but ${manifest.index.path ?? 'index'} is missing`);
      }
      r.index = null;
      r.store = null;
      r.efSearch = manifest.index.ef_search;
      r.savedIndex = null;
      r._labels = new Float64Array(0);
    }
    r.openMs = performance.now() - started;
    r.timings = timings; // ms of the parts of open (the towers and the index load in parallel)
    return r;
  }

  /** Number of indexed items. */
  get size() {
    return this._labels.length;
  }

  /** The threads onnxruntime-web runs with (1 where the page is not cross-origin isolated). */
  get threads() {
    return globalThis.crossOriginIsolated ? this.ort.env.wasm.numThreads : 1;
  }

  /** Bytes read from the bundle so far (its download size when opened from a URL). */
  get bytesRead() {
    return this.source.bytesRead;
  }

  /** The bundle files the towers run (`{text, image}`; image is null until the image tower is loaded). */
  get modelFiles() {
    return { text: this._text?.file ?? null, image: this._image?.file ?? null };
  }

  async _imageTower() {
    if (!this.manifest.image_encoder) throw new Error('this bundle has no image encoder');
    const t0 = performance.now();
    this._imageLoading ??= createSession(this.ort, this.source, this.manifest, this.manifest.image_encoder,
      this._modelFormat, this._verify, this.checks).then((tower) => {
      this._image = { ...tower, spec: this.manifest.image_encoder };
      this.timings.imageTower = performance.now() - t0;
      return this._image;
    });
    return this._imageLoading;
  }

  /**
   * Run one max_length row of the tokenizer's highest id, as runtime/text.py does at open: a tokenizer whose ids
   * exceed the model's embedding table (or a model that cannot take max_length tokens) fails here, not at the first
   * query. It also warms the session.
   */
  async _probeText() {
    const vocab = this.tokenizer.vocabSize;
    const id = BigInt(Math.max(vocab - 1, this.tokenizer.padId, 0));
    const n = this.tokenizer.maxLength;
    const feeds = {};
    const arrays = { input_ids: new BigInt64Array(n).fill(id), attention_mask: new BigInt64Array(n).fill(1n),
      token_type_ids: new BigInt64Array(n) };
    const { session, spec, file } = this._text;
    for (const [role, name] of Object.entries(spec.inputs)) feeds[name] = new this.ort.Tensor('int64', arrays[role], [1, n]);
    try {
      await this._run(session, feeds, spec.output, 1, 'text encoder');
    } catch (err) {
      throw new BundleError(`text encoder ${file}: the tokenizer's ${vocab} token ids at max_length ${n} do not fit ` +
        `the model (${err.message})`);
    }
  }

  _fit(data, rows) {
    return truncateRows(data, rows, this.manifest.embedding.dim, this.dim);
  }

  async _run(session, feeds, outputName, rows, what) {
    const result = await session.run(feeds);
    const out = result[outputName];
    const full = this.manifest.embedding.dim;
    if (out.dims.length !== 2 || out.dims[0] !== rows || out.dims[1] !== full) {
      throw new BundleError(`${what}: output has shape [${out.dims}], expected [${rows},${full}]`);
    }
    const data = Float32Array.from(out.data);
    for (const t of Object.values(result)) t.dispose?.();
    if (!data.every(Number.isFinite)) throw new Error(`${what} produced NaN or infinite embeddings`);
    return normaliseRows(data, rows, full, `${what} output`);
  }

  /**
   * Token ids of texts as the text tower sees them (with special tokens, truncated to max_length).
   * @param {string[]} texts
   * @returns {number[][]}
   */
  tokenize(texts) {
    if (!this.tokenizer) throw new Error('this bundle has no text encoder');
    const cap = CHARS_PER_TOKEN * this.tokenizer.maxLength;
    return texts.map((text, i) => {
      const chars = Array.from(text);
      const capped = chars.length > cap ? chars.slice(0, cap).join('') : text;
      if (!isWellFormed(capped)) throw new Error(`texts[${i}] contains a lone surrogate; it is not valid Unicode text`);
      const { ids, readable } = this.tokenizer.encode(capped);
      if (!readable) {
        throw new Error(`texts[${i}] has nothing the tokenizer can read (only control, zero-width or similar ` +
          'characters); there is nothing to embed');
      }
      return ids;
    });
  }

  /**
   * L2-normalised embeddings of texts, as runtime/text.py computes them (length-sorted batches padded to
   * their longest text, so INT8 dynamic quantisation sees the same batches as Python).
   * @param {string[]} texts non-empty strings
   * @param {{batchSize?: number}} [options]
   * @returns {Promise<Float32Array[]>} one vector of `dim` values per text
   */
  async embedTexts(texts, { batchSize = 64 } = {}) {
    if (!this._text) throw new Error('this bundle has no text encoder');
    if (typeof texts === 'string' || !Array.isArray(texts)) throw new TypeError('texts must be an array of strings');
    texts.forEach((t, i) => {
      if (typeof t !== 'string') throw new TypeError(`texts[${i}] is a ${typeof t}, not a string`);
      if (!t.trim()) throw new Error(`texts[${i}] is empty or whitespace-only; there is nothing to embed`);
    });
    const ids = this.tokenize(texts);
    const order = ids.map((row, i) => i);
    if (ids.length > 1) order.sort((a, b) => ids[a].length - ids[b].length || a - b); // numpy's stable argsort
    const full = this.manifest.embedding.dim;
    const out = new Array(texts.length);
    const { session, spec } = this._text;
    const { Tensor } = this.ort;
    for (let start = 0; start < texts.length; start += batchSize) {
      const rows = order.slice(start, start + batchSize);
      const longest = Math.max(...rows.map((r) => ids[r].length));
      const inputIds = new BigInt64Array(rows.length * longest).fill(BigInt(this.tokenizer.padId));
      const mask = new BigInt64Array(rows.length * longest);
      rows.forEach((r, row) => ids[r].forEach((id, j) => {
        inputIds[row * longest + j] = BigInt(id);
        mask[row * longest + j] = 1n;
      }));
      const arrays = { input_ids: inputIds, attention_mask: mask, token_type_ids: new BigInt64Array(rows.length * longest) };
      const feeds = {};
      for (const [role, name] of Object.entries(spec.inputs)) feeds[name] = new Tensor('int64', arrays[role], [rows.length, longest]);
      const emb = this._fit(await this._run(session, feeds, spec.output, rows.length, 'text encoder'), rows.length);
      rows.forEach((r, row) => { out[r] = emb.slice(row * this.dim, (row + 1) * this.dim); });
    }
    return out;
  }

  /**
   * The float32 NCHW tensor data of one image (the bundle's preprocessor.json transform).
   * @param {import('./image.js').ImageInput} image
   */
  async preprocess(image, name = 'image') {
    if (!this.preprocessor) throw new Error('this bundle has no image encoder');
    const rgb = await loadImage(image, this.preprocessor.background, name);
    return this.preprocessor.toTensor(rgb);
  }

  /**
   * L2-normalised embeddings of images: Files/Blobs, URLs, encoded bytes, <img>/canvas/ImageBitmap, or raw
   * pixels `{width, height, data}` (RGBA/RGB/grey bytes, e.g. an ImageData; bit-exact with Python).
   * @param {Array<import('./image.js').ImageInput>} images
   * @param {{batchSize?: number}} [options]
   * @returns {Promise<Float32Array[]>}
   */
  async embedImages(images, { batchSize = 32 } = {}) {
    if (!Array.isArray(images)) throw new TypeError('images must be an array');
    const { session, spec } = await this._imageTower();
    const size = this.preprocessor.size;
    const plane = 3 * size * size;
    const out = [];
    for (let start = 0; start < images.length; start += batchSize) {
      const chunk = images.slice(start, start + batchSize);
      const pixels = new Float32Array(chunk.length * plane);
      for (let i = 0; i < chunk.length; i++) {
        pixels.set(await this.preprocess(chunk[i], `images[${start + i}]`), i * plane);
      }
      const feeds = { [spec.inputs.pixel_values]: new this.ort.Tensor('float32', pixels, [chunk.length, 3, size, size]) };
      const emb = this._fit(await this._run(session, feeds, spec.output, chunk.length, 'image encoder'), chunk.length);
      for (let i = 0; i < chunk.length; i++) out.push(emb.slice(i * this.dim, (i + 1) * this.dim));
    }
    return out;
  }

  /**
   * The top `k` items for one query (exactly one of text, image, vector), best first.
   *
   * @param {object} query
   * @param {string} [query.text]
   * @param {import('./image.js').ImageInput} [query.image]
   * @param {ArrayLike<number>} [query.vector] `dim` values, or the full embedding dim (truncated)
   * @param {number} [query.k=10]
   * @param {object} [query.filter] metadata filter (see store.js; the language of runtime/store.py)
   * @param {boolean} [query.exact] true: brute force; false: HNSW; default: by collection size (exactThreshold)
   * @returns {Promise<Array<{id: string, score: number, metadata: object|null}>>}
   */
  async search({ text, image, vector, k = 10, filter = null, exact } = {}) {
    const given = Object.entries({ text, image, vector }).filter(([, v]) => v != null).map(([name]) => name);
    if (given.length !== 1) throw new Error(`search needs exactly one of text, image, vector (got ${given.join(', ') || 'none'})`);
    let query;
    if (text != null) {
      if (typeof text !== 'string' || !text.trim()) throw new Error(`search text must be a non-empty string, got ${JSON.stringify(text)}`);
      [query] = await this.embedTexts([text]);
    } else if (image != null) {
      [query] = await this.embedImages([image]);
    } else {
      query = Float32Array.from(vector);
      if (query.length === this.manifest.embedding.dim && query.length !== this.dim) {
        query = truncateRows(query, 1, query.length, this.dim);
      }
    }
    return this.searchVector(query, { k, filter, exact });
  }

  /** {@link Retriever#search} for a prepared vector (runtime/index.py `VectorIndex.search`). */
  searchVector(vector, { k = 10, filter = null, exact } = {}) {
    if (!Number.isInteger(k) || k < 1) throw new Error(`k must be a positive int, got ${k}`);
    if (vector.length !== this.dim) throw new Error(`query vector must have ${this.dim} values, got ${vector.length}`);
    if (!Array.prototype.every.call(vector, Number.isFinite)) throw new Error('query vector contains NaN or infinite values');
    let query = Float32Array.from(vector);
    if (this.space !== 'l2') query = normaliseRows(query, 1, this.dim, 'query vector');
    if (!this.index) return [];
    const allowed = filter == null ? null : this.store.filterLabels(filter);
    const live = allowed == null ? this._labels.length : allowed.length;
    if (live === 0) return [];
    const useExact = exact ?? live <= this.exactThreshold;
    let hits = null;
    if (!useExact) {
      const set = allowed && new Set(allowed);
      const want = Math.min(k, live);
      const found = this.index.searchKnn(query, want, this.efSearch, set && ((label) => set.has(label)));
      if (found.length === want) { // hnswlib raises when it finds fewer; Python then searches exactly
        hits = found.map(({ label, distance }) => [label, this.space === 'l2' ? -distance : 1 - distance]);
      }
    }
    hits ??= this._exact(query, k, allowed);
    hits = hits.filter(([label]) => this.store.ids.has(label));
    const meta = this.store.metadata(hits.map(([label]) => label));
    return hits.map(([label, score]) => ({ id: this.store.ids.get(label), score, metadata: meta.get(label) ?? null }));
  }

  _exact(query, k, allowed) {
    const labels = allowed == null ? this._labels : allowed;
    const index = this.index;
    const scored = Array.from(labels, (label) => [label, index.similarity(query, index.byLabel.get(label))]);
    scored.sort((a, b) => b[1] - a[1] || a[0] - b[0]); // by score, ties by label
    return scored.slice(0, k);
  }

  /** Release the sessions and the metadata database. */
  async close() {
    await this._text?.session.release?.();
    await this._image?.session.release?.();
    this.store?.close();
  }
}
