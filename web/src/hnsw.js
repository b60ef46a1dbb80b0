// hnswlib's saved index (`hnsw.bin`, hnswlib::HierarchicalNSW::saveIndex), parsed in place, and its search:
// exact (every stored vector) and hnswlib's own greedy descent + base-layer beam search (searchKnn /
// searchBaseLayerST) over the parsed graph, so both answer as the Python runtime's hnswlib does.
//
// Layout (little-endian, size_t = 8 bytes): header
//   size_t offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset, offsetData;
//   int maxlevel; uint32 enterpoint_node; size_t maxM, maxM0, M; double mult; size_t ef_construction
// then cur_element_count level-0 records of size_data_per_element bytes:
//   uint32 (low 16 bits: link count; byte 2, bit 0: deleted mark), maxM0 x uint32 links, dim x float32, size_t label
// then per element: uint32 byte count of its upper levels (level L at (L-1) * (maxM * 4 + 4)), each list
// uint32 count + maxM x uint32 links.

const HEADER_BYTES = 96;

class Heap {
  /** @param {(a: any, b: any) => boolean} above true when a belongs above b */
  constructor(above) {
    this.items = [];
    this.above = above;
  }

  get size() {
    return this.items.length;
  }

  top() {
    return this.items[0];
  }

  push(item) {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(a[i], a[parent])) break;
      [a[i], a[parent]] = [a[parent], a[i]];
      i = parent;
    }
  }

  pop() {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < a.length && this.above(a[l], a[best])) best = l;
        if (r < a.length && this.above(a[r], a[best])) best = r;
        if (best === i) break;
        [a[i], a[best]] = [a[best], a[i]];
        i = best;
      }
    }
    return top;
  }
}

/** A parsed hnswlib index: vectors, labels, deleted marks and the graph. */
export class HnswIndex {
  /**
   * @param {Uint8Array} bytes the hnsw.bin file
   * @param {{space: 'cosine'|'ip'|'l2', dim: number}} options from index.json (hnswlib's file stores neither)
   */
  static parse(bytes, { space, dim }) {
    return new HnswIndex(bytes, space, dim);
  }

  constructor(bytes, space, dim) {
    const fail = (why) => {
      throw new Error(`hnsw.bin: ${why}`);
    };
    if (bytes.byteLength < HEADER_BYTES) fail('too short to be an hnswlib index');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const size = (offset) => Number(view.getBigUint64(offset, true));
    const count = size(16);
    const perElement = size(24);
    const labelOffset = size(32);
    const dataOffset = size(40);
    this.maxLevel = view.getInt32(48, true);
    this.entryPoint = view.getUint32(52, true);
    this.maxM = size(56);
    this.maxM0 = size(64);
    this.M = size(72);
    const storedDim = (labelOffset - dataOffset) / 4;
    if (storedDim !== dim) fail(`holds ${storedDim}-d vectors but index.json says dim ${dim}`);
    if (dataOffset !== 4 + this.maxM0 * 4 || perElement !== labelOffset + 8) fail('unexpected record layout (not a 64-bit hnswlib file?)');
    const level0Bytes = count * perElement;
    if (bytes.byteLength < HEADER_BYTES + level0Bytes) fail('truncated level-0 data');
    Object.assign(this, { space, dim, count });
    this.vectors = new Float32Array(count * dim);
    this.labels = new Float64Array(count); // internal id -> label (hnswlib labels are size_t; ours are small ints)
    this.deleted = new Uint8Array(count);
    this.links0 = new Uint32Array(count * (this.maxM0 + 1)); // per element: count, then links
    this.byLabel = new Map();
    for (let i = 0; i < count; i++) {
      const base = HEADER_BYTES + i * perElement;
      const listCount = view.getUint16(base, true);
      if (listCount > this.maxM0) fail(`element ${i} has ${listCount} level-0 links (at most ${this.maxM0})`);
      this.deleted[i] = view.getUint8(base + 2) & 1;
      const row = i * (this.maxM0 + 1);
      this.links0[row] = listCount;
      for (let j = 0; j < listCount; j++) {
        const link = view.getUint32(base + 4 + j * 4, true);
        if (link >= count) fail(`element ${i} links to element ${link} of ${count}`);
        this.links0[row + 1 + j] = link;
      }
      for (let d = 0; d < dim; d++) this.vectors[i * dim + d] = view.getFloat32(base + dataOffset + d * 4, true);
      const label = size(base + labelOffset);
      this.labels[i] = label;
      if (!this.deleted[i]) {
        if (this.byLabel.has(label)) fail(`label ${label} is stored twice`);
        this.byLabel.set(label, i);
      }
    }
    this.numDeleted = this.deleted.reduce((n, d) => n + d, 0);
    // upper levels
    const listBytes = this.maxM * 4 + 4;
    this.upperOffset = new Float64Array(count);
    this.levels = new Uint8Array(count);
    this.view = view;
    let offset = HEADER_BYTES + level0Bytes;
    for (let i = 0; i < count; i++) {
      if (offset + 4 > bytes.byteLength) fail('truncated upper-level links');
      const n = view.getUint32(offset, true);
      offset += 4;
      if (n % listBytes || n / listBytes > this.maxLevel || offset + n > bytes.byteLength) {
        fail(`element ${i} has a malformed upper-level link block (${n} bytes)`);
      }
      this.levels[i] = n / listBytes;
      this.upperOffset[i] = offset;
      offset += n;
    }
    if (offset !== bytes.byteLength) fail(`${bytes.byteLength - offset} unexpected trailing bytes`);
    if (count && (this.entryPoint >= count || this.levels[this.entryPoint] !== this.maxLevel)) {
      fail('the entry point is out of range or not on the top level');
    }
    for (let i = 0; i < count; i++) { // every upper link within bounds and to an element that has that level
      for (let level = 1; level <= this.levels[i]; level++) {
        const at = this.upperOffset[i] + (level - 1) * listBytes;
        const n = view.getUint32(at, true) & 0xffff;
        if (n > this.maxM) fail(`element ${i} has ${n} links on level ${level} (at most ${this.maxM})`);
        for (let j = 0; j < n; j++) {
          const link = view.getUint32(at + 4 + j * 4, true);
          if (link >= count || this.levels[link] < level) fail(`element ${i} links on level ${level} to element ${link}`);
        }
      }
    }
    this._visited = new Uint32Array(count);
    this._visitTag = 0;
  }

  /** Stored vector of an internal id (a view, do not modify). */
  vectorAt(id) {
    return this.vectors.subarray(id * this.dim, (id + 1) * this.dim);
  }

  /** hnswlib's distance: 1 - dot for cosine/ip, squared L2 for l2. */
  distance(query, id) {
    const v = this.vectors;
    const base = id * this.dim;
    let s = 0;
    if (this.space === 'l2') {
      for (let d = 0; d < this.dim; d++) {
        const diff = query[d] - v[base + d];
        s += diff * diff;
      }
      return s;
    }
    for (let d = 0; d < this.dim; d++) s += query[d] * v[base + d];
    return 1 - s;
  }

  /** Similarity as the Python runtime's exact search scores it: dot product, or -squared L2 for l2. */
  similarity(query, id) {
    if (this.space === 'l2') return -this.distance(query, id);
    const v = this.vectors;
    const base = id * this.dim;
    let s = 0;
    for (let d = 0; d < this.dim; d++) s += query[d] * v[base + d];
    return s;
  }

  _upperLinks(id, level) {
    const offset = this.upperOffset[id] + (level - 1) * (this.maxM * 4 + 4);
    const n = this.view.getUint32(offset, true) & 0xffff;
    const out = new Array(n);
    for (let j = 0; j < n; j++) out[j] = this.view.getUint32(offset + 4 + j * 4, true);
    return out;
  }

  /**
   * hnswlib searchKnn: greedy descent through the upper levels, then a beam of max(ef, k) on level 0.
   * @param {Float32Array} query prepared as the index expects (normalised for cosine/ip)
   * @param {(label: number) => boolean} [allowed] filter on labels
   * @returns {{label: number, distance: number}[]} up to k, nearest first
   */
  searchKnn(query, k, ef, allowed = null) {
    if (!this.count) return [];
    let current = this.entryPoint;
    let best = this.distance(query, current);
    for (let level = this.maxLevel; level > 0; level--) {
      let changed = true;
      while (changed) {
        changed = false;
        for (const candidate of this._upperLinks(current, level)) {
          const d = this.distance(query, candidate);
          if (d < best) {
            best = d;
            current = candidate;
            changed = true;
          }
        }
      }
    }
    const found = this._searchBaseLayer(current, query, Math.max(ef, k), allowed);
    const hits = found.items.map(([distance, id]) => ({ label: this.labels[id], distance }));
    hits.sort((a, b) => a.distance - b.distance || a.label - b.label);
    return hits.slice(0, k);
  }

  _searchBaseLayer(entry, query, ef, allowed) {
    const visited = this._visited;
    if (++this._visitTag === 0xffffffff) {
      visited.fill(0);
      this._visitTag = 1;
    }
    const tag = this._visitTag;
    const keep = (id) => !this.deleted[id] && (!allowed || allowed(this.labels[id]));
    const bare = !this.numDeleted && !allowed;
    const top = new Heap((a, b) => a[0] > b[0]); // worst result on top
    const candidates = new Heap((a, b) => a[0] < b[0]); // nearest candidate on top
    let lowerBound;
    if (bare || keep(entry)) {
      const d = this.distance(query, entry);
      lowerBound = d;
      top.push([d, entry]);
      candidates.push([d, entry]);
    } else {
      lowerBound = Infinity;
      candidates.push([Infinity, entry]);
    }
    visited[entry] = tag;
    const stride = this.maxM0 + 1;
    while (candidates.size) {
      const [candidateDist, node] = candidates.top();
      if (candidateDist > lowerBound && (bare || top.size === ef)) break;
      candidates.pop();
      const row = node * stride;
      const n = this.links0[row];
      for (let j = 1; j <= n; j++) {
        const id = this.links0[row + j];
        if (visited[id] === tag) continue;
        visited[id] = tag;
        const d = this.distance(query, id);
        if (top.size < ef || lowerBound > d) {
          candidates.push([d, id]);
          if (bare || keep(id)) top.push([d, id]);
          while (top.size > ef) top.pop();
          if (top.size) lowerBound = top.top()[0];
        }
      }
    }
    return top;
  }
}
