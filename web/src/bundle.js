// Reading a bundle: where its files come from (URLs, picked files, a reader callback) and the manifest
// checks of runtime/bundle.py (format, major version, dims, sizes, sha256) and runtime/persist.py (index/).

/** Manifest format name and the version this runtime implements (runtime/bundle.py). */
export const BUNDLE_FORMAT = 'edgeret-bundle';
export const FORMAT_VERSION = '1.1';
export const INDEX_FORMAT = 'edgeret-index';
export const INDEX_VERSION = '1.0';
const SPACES = ['cosine', 'ip', 'l2'];
const GENERATION = /^gen-(\d{6,})$/;

/** A bundle that cannot be used: missing or altered files, a newer format, inconsistent fields. */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = 'BundleError';
  }
}

/**
 * Where a bundle's files come from. Every source reads a path relative to the bundle folder.
 * `bytesRead` counts what was read (the download size for a URL source).
 */
export class BundleSource {
  /** @param {(rel: string) => Promise<Uint8Array|null>} read resolves null for a missing file */
  constructor(read, description) {
    this._read = read;
    this.description = description;
    this.bytesRead = 0;
  }

  /**
   * @param {string} rel path inside the bundle ("manifest.json", "index/gen-000001/hnsw.bin")
   * @param {{optional?: boolean}} [options] optional: resolve null instead of throwing when missing
   * @returns {Promise<Uint8Array|null>}
   */
  async read(rel, { optional = false } = {}) {
    let bytes;
    try {
      bytes = await this._read(rel);
    } catch (err) {
      throw new BundleError(`${this.description}: cannot read ${rel} (${err.message ?? err})`);
    }
    if (bytes == null) {
      if (optional) return null;
      throw new BundleError(`${this.description}: file ${JSON.stringify(rel)} is missing`);
    }
    this.bytesRead += bytes.byteLength;
    return bytes;
  }

  async readJson(rel, options) {
    const bytes = await this.read(rel, options);
    if (bytes == null) return null;
    try {
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (err) {
      throw new BundleError(`${rel}: not valid JSON (${err.message})`);
    }
  }
}

/**
 * A source for what `Retriever.open` accepts:
 * - a URL or string (the bundle folder's address; relative to the page),
 * - a `FileList` or array of `File`s (an `<input type=file webkitdirectory>` pick or a dropped folder),
 * - a `Map` or object of relative path -> `Blob` / `ArrayBuffer` / `Uint8Array`,
 * - a function `(rel) => Promise<ArrayBuffer|Uint8Array|Blob|null>` (Electron's fs, Capacitor's Filesystem),
 * - a `BundleSource`.
 * @returns {BundleSource}
 */
export function bundleSource(where, { fetch: fetchFn = globalThis.fetch } = {}) {
  if (where instanceof BundleSource) return where;
  if (typeof where === 'function') return new BundleSource(async (rel) => toBytes(await where(rel)), 'bundle');
  if (typeof where === 'string' || where instanceof URL) {
    const base = new URL(String(where).endsWith('/') ? String(where) : `${where}/`, globalThis.location?.href);
    return new BundleSource(async (rel) => {
      const response = await fetchFn(new URL(rel, base), { cache: 'no-store' });
      if (response.status === 404) return null;
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    }, `bundle ${base.href}`);
  }
  const files = new Map();
  if (where instanceof Map) {
    for (const [rel, value] of where) files.set(rel, value);
  } else if (typeof where?.length === 'number' && Array.from(where).every((f) => typeof f?.name === 'string')) {
    // picked files: webkitRelativePath is "folder/sub/file"; strip the common top folder
    const list = Array.from(where);
    const paths = list.map((f) => f.webkitRelativePath || f.relativePath || f.name);
    const top = paths.every((p) => p.includes('/')) && new Set(paths.map((p) => p.split('/')[0])).size === 1;
    list.forEach((file, i) => files.set(top ? paths[i].slice(paths[i].indexOf('/') + 1) : paths[i], file));
  } else if (where && typeof where === 'object') {
    for (const [rel, value] of Object.entries(where)) files.set(rel, value);
  } else {
    throw new TypeError('open() takes a URL, a FileList/File[] of the bundle folder, a Map of files or a reader function');
  }
  return new BundleSource(async (rel) => (files.has(rel) ? toBytes(files.get(rel)) : null), 'bundle (files)');
}

async function toBytes(value) {
  if (value == null) return null;
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (typeof value.arrayBuffer === 'function') return new Uint8Array(await value.arrayBuffer());
  throw new TypeError(`cannot read a ${value?.constructor?.name ?? typeof value} as bytes`);
}

/** Hex sha256 via WebCrypto, or null where the platform has none (e.g. a page on plain http off localhost). */
export async function sha256Hex(bytes) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return null;
  const digest = new Uint8Array(await subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Whether sha256 can be checked here. */
export function canHash() {
  return Boolean(globalThis.crypto?.subtle);
}

/**
 * Check one file against its `{sha256, bytes}` entry.
 * @param {'auto'|true|'size'|false} verify true: size + sha256 (fails where WebCrypto is missing);
 *   'auto': sha256 where WebCrypto exists, else size; 'size': size only; false: nothing.
 * @returns {Promise<'sha256'|'size'|'none'>} what was checked
 */
export async function verifyBytes(bytes, entry, rel, verify, what) {
  if (!verify) return 'none';
  if (!entry || typeof entry !== 'object') throw new BundleError(`${what}: file ${JSON.stringify(rel)} has no sha256/size entry`);
  if (bytes.byteLength !== entry.bytes) {
    throw new BundleError(`${what}: file ${JSON.stringify(rel)} has ${bytes.byteLength} bytes, ` +
      `${entry.bytes} were recorded (altered or corrupt)`);
  }
  if (verify === 'size' || (verify === 'auto' && !canHash())) return 'size';
  const hex = await sha256Hex(bytes);
  if (hex === null) {
    throw new BundleError(`${what}: cannot check sha256 of ${rel}: WebCrypto (crypto.subtle) is unavailable here ` +
      "(a page served over plain http from another host); serve it over https or open with verify: 'size'");
  }
  if (hex !== entry.sha256) {
    throw new BundleError(`${what}: file ${JSON.stringify(rel)} does not match its recorded sha256 (altered or corrupt)`);
  }
  return 'sha256';
}

function majorMinor(version, where) {
  const parts = String(version).slice(0, 32).split('.');
  if (parts.length < 2 || !parts.slice(0, 2).every((p) => /^\d{1,6}$/.test(p))) {
    throw new BundleError(`${where}: 'version' ${JSON.stringify(version).slice(0, 40)} is not MAJOR.MINOR`);
  }
  return parts.slice(0, 2).map(Number);
}

/** A path the manifest names must stay inside the bundle: relative, no '..', no empty or '.' parts. */
function checkRelative(rel, where) {
  if (typeof rel !== 'string' || !rel || rel.startsWith('/') || /^[A-Za-z]:/.test(rel) || rel.includes('\\') ||
    rel.split('/').some((part) => part === '..' || part === '.' || part === '')) {
    throw new BundleError(`${where}: ${JSON.stringify(String(rel).slice(0, 80))} must be a relative path inside the bundle`);
  }
  return rel;
}

function isInt(value) {
  return Number.isInteger(value);
}

function requireField(obj, key, kind, where) {
  const value = obj?.[key];
  const ok = kind === 'int' ? isInt(value) : kind === 'object' ? value && typeof value === 'object' && !Array.isArray(value)
    : typeof value === kind;
  if (value == null || !ok) throw new BundleError(`${where}: field '${key}' is missing or not a ${kind === 'int' ? 'int' : kind}`);
  return value;
}

function checkTower(tower, name, roles, sizeKey, fileKey) {
  const where = `manifest.json ${name}`;
  if (!tower || typeof tower !== 'object') throw new BundleError(`${where}: must be an object`);
  requireField(tower, 'file', 'string', where);
  requireField(tower, 'output', 'string', where);
  requireField(tower, fileKey, 'string', where);
  if (requireField(tower, sizeKey, 'int', where) < 1) throw new BundleError(`${where}: '${sizeKey}' must be positive`);
  if (tower.ort_file != null && !String(tower.ort_file).endsWith('.ort')) {
    throw new BundleError(`${where}: 'ort_file' must name an .ort file, got ${JSON.stringify(tower.ort_file)}`);
  }
  const inputs = requireField(tower, 'inputs', 'object', where);
  if (Object.keys(inputs).some((role) => !roles.includes(role)) || !(roles[0] in inputs)) {
    throw new BundleError(`${where}: 'inputs' must map roles ${JSON.stringify(roles)} (first required) to graph input names`);
  }
}

/**
 * The structural checks of runtime/bundle.py `_check_schema`: format, version, dims, towers, index section,
 * file entries. Throws BundleError naming the field. Returns the manifest's minor-version note (or null).
 */
export function checkManifest(data) {
  const where = 'manifest.json';
  if (!data || typeof data !== 'object' || data.format !== BUNDLE_FORMAT) {
    throw new BundleError(`${where}: 'format' is not '${BUNDLE_FORMAT}'; not an edgeret bundle`);
  }
  const [major, minor] = majorMinor(data.version, where);
  const [supMajor, supMinor] = majorMinor(FORMAT_VERSION, 'runtime');
  if (major > supMajor) {
    throw new BundleError(`${where}: bundle format ${data.version} is newer than this runtime supports (${supMajor}.x); ` +
      'upgrade edgeret-web');
  }
  if (major < supMajor) throw new BundleError(`${where}: bundle format ${data.version} is too old for this runtime (${FORMAT_VERSION})`);
  const emb = requireField(data, 'embedding', 'object', where);
  const dim = requireField(emb, 'dim', 'int', `${where} embedding`);
  const dims = emb.matryoshka_dims ?? [];
  if (dim < 1 || !Array.isArray(dims) || dims.some((d) => !isInt(d) || d < 1 || d > dim)) {
    throw new BundleError(`${where} embedding: 'matryoshka_dims' ${JSON.stringify(dims)} must be ints in 1..dim (${dim})`);
  }
  if (data.text_encoder == null && data.image_encoder == null) {
    throw new BundleError(`${where}: needs a 'text_encoder' or an 'image_encoder'`);
  }
  if (data.text_encoder != null) {
    checkTower(data.text_encoder, 'text_encoder', ['input_ids', 'attention_mask', 'token_type_ids'], 'max_length', 'tokenizer');
  }
  if (data.image_encoder != null) checkTower(data.image_encoder, 'image_encoder', ['pixel_values'], 'image_size', 'preprocessor');
  checkIndexSection(requireField(data, 'index', 'object', where), dim, dims);
  const files = requireField(data, 'files', 'object', where);
  for (const [rel, entry] of Object.entries(files)) {
    checkRelative(rel, `${where} files`);
    if (!entry || typeof entry !== 'object' || !isInt(entry.bytes) || entry.bytes < 0 ||
      typeof entry.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(entry.sha256)) {
      throw new BundleError(`${where} files[${rel.slice(0, 80)}]: must be an object with 'sha256' (64 lowercase hex digits) and 'bytes'`);
    }
  }
  for (const key of ['text_encoder', 'image_encoder']) {
    if (data[key] != null && (typeof data[key] !== 'object' || Array.isArray(data[key]))) {
      throw new BundleError(`${where}: '${key}' must be an object or null`);
    }
  }
  checkRelative(data.index.path ?? 'index', `${where} index path`);
  for (const [key, fileKey] of [['text_encoder', 'tokenizer'], ['image_encoder', 'preprocessor']]) {
    const tower = data[key];
    if (!tower) continue;
    for (const rel of [tower.file, tower[fileKey], tower.ort_file].filter(Boolean)) {
      if (!(rel in files)) throw new BundleError(`${where} files: ${key} file '${rel}' has no sha256/size entry`);
    }
  }
  return minor > supMinor ? `bundle format ${data.version} is newer than ${FORMAT_VERSION}; unknown fields are ignored` : null;
}

function checkIndexSection(index, dim, dims) {
  const where = 'manifest.json index';
  if (!SPACES.includes(index.space)) throw new BundleError(`${where}: 'space' must be one of ${SPACES}, got ${JSON.stringify(index.space)}`);
  const indexDim = requireField(index, 'dim', 'int', where);
  if (indexDim !== dim && !dims.includes(indexDim)) {
    throw new BundleError(`${where}: dim ${indexDim} does not match the encoders (embedding dim ${dim}, matryoshka dims ${JSON.stringify(dims)})`);
  }
  for (const key of ['M', 'ef_construction', 'ef_search']) {
    if (requireField(index, key, 'int', where) < 1) throw new BundleError(`${where}: '${key}' must be positive`);
  }
  if (requireField(index, 'count', 'int', where) < 0) throw new BundleError(`${where}: 'count' must be >= 0`);
}

/** Dims an index may use: the Matryoshka prefixes and the full dim, sorted. */
export function allowedDims(manifest) {
  return [...new Set([...(manifest.embedding.matryoshka_dims ?? []), manifest.embedding.dim])].sort((a, b) => a - b);
}

/**
 * The tower files to try, preferred first (runtime/bundle.py `model_files`).
 * @param {'auto'|'onnx'|'ort'} modelFormat
 * @param {'ort'|'onnx'} autoFirst which file 'auto' tries first
 */
export function modelFiles(spec, modelFormat = 'auto', autoFirst = 'onnx') {
  if (!['auto', 'onnx', 'ort'].includes(modelFormat)) throw new TypeError(`modelFormat must be 'auto', 'onnx' or 'ort', got ${modelFormat}`);
  const twin = spec.ort_file;
  if (modelFormat === 'onnx' || spec.file.endsWith('.ort')) return [spec.file];
  if (modelFormat === 'ort' && !twin) {
    throw new BundleError(`manifest.json: ${spec.file} has no ORT-format model ('ort_file'); build the bundle with \`edgeret compress ... --ort\``);
  }
  if (!twin) return [spec.file];
  if (modelFormat === 'ort') return [twin];
  return autoFirst === 'ort' ? [twin, spec.file] : [spec.file, twin];
}

/**
 * Read the saved index generation `index/CURRENT` points at (runtime/persist.py `read_saved_index`):
 * its index.json, checked, and the verified bytes of hnsw.bin and meta.sqlite. Null when none was saved.
 * @returns {Promise<null | {directory: string, meta: object, hnsw: Uint8Array, sqlite: Uint8Array, checked: string}>}
 */
export async function readSavedIndex(source, indexPath, verify) {
  const pointer = await source.readJson(`${indexPath}/CURRENT`, { optional: true });
  if (pointer == null) return null;
  const generation = pointer?.generation;
  if (typeof generation !== 'string' || !GENERATION.test(generation)) {
    throw new BundleError(`index pointer ${indexPath}/CURRENT names an invalid generation ${JSON.stringify(generation)}`);
  }
  const directory = `${indexPath}/${generation}`;
  const meta = await source.readJson(`${directory}/index.json`, { optional: true });
  if (meta == null) throw new BundleError(`index generation ${directory} has no index.json`);
  const where = `${directory}/index.json`;
  if (meta.format !== INDEX_FORMAT) throw new BundleError(`${where}: not an ${INDEX_FORMAT} file`);
  if (String(meta.version ?? '').split('.')[0] !== INDEX_VERSION.split('.')[0]) {
    throw new BundleError(`${where}: index format version ${JSON.stringify(meta.version)} is not supported ` +
      `(this runtime reads ${INDEX_VERSION.split('.')[0]}.x)`);
  }
  const indexFormat = meta.index_format ?? 'hnswlib-f32'; // absent: written before formats existed
  if (indexFormat !== 'hnswlib-f32') {
    throw new BundleError(`${where}: index format ${JSON.stringify(indexFormat)} is not supported by this runtime ` +
      '(it reads hnswlib-f32; save the index with the default format for web apps)');
  }
  const missing = ['space', 'dim', 'M', 'ef_construction', 'ef_search', 'count', 'next_label', 'files'].filter((k) => !(k in meta));
  if (missing.length) throw new BundleError(`${where}: missing field(s) ${missing.join(', ')}`);
  const lacking = ['hnsw.bin', 'meta.sqlite'].filter((f) => !(f in meta.files));
  if (lacking.length) throw new BundleError(`${where}: 'files' lacks ${lacking.join(', ')}`);
  const [hnsw, sqlite] = await Promise.all(['hnsw.bin', 'meta.sqlite'].map((f) => source.read(`${directory}/${f}`)));
  const what = `index ${directory}`;
  let checked = 'none';
  for (const [name, bytes] of [['hnsw.bin', hnsw], ['meta.sqlite', sqlite]]) {
    checked = await verifyBytes(bytes, meta.files[name], name, verify, what);
  }
  return { directory, meta, hnsw, sqlite, checked };
}
