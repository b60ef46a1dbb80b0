// The saved index's meta.sqlite (runtime/store.py), read with sql.js (SQLite compiled to WebAssembly): ids,
// labels, metadata, and metadata filters as the same SQL over the same `attrs` table, so a filter means exactly
// what it means in Python:
//
//   {lang: 'en'}                       equality (for a list value: the list contains 'en')
//   {year: {gte: 2000, lt: 2010}}      ranges: gt, gte, lt, lte (numbers; strings compare as text)
//   {kind: {in: ['cat', 'dog']}}       any of
//   {kind: {ne: 'cat'}}                not equal (items without the key match too)
//   {lang: {eq: 'en'}}                 explicit equality
// Booleans are stored as 1/0 ({flag: true} is {flag: 1}); nested objects and nulls are not filterable.

const RANGE = { gt: '>', gte: '>=', lt: '<', lte: '<=' };
export const OPERATORS = ['eq', 'ne', 'in', ...Object.keys(RANGE)];

function column(value, key) {
  if (typeof value === 'string') return ['txt', value];
  if (typeof value === 'boolean') return ['num', value ? 1 : 0];
  if (typeof value === 'number' && Number.isFinite(value)) return ['num', value];
  throw new Error(`filter on '${key}': value ${JSON.stringify(value)} must be a string or a finite number`);
}

function condition(key, cond) {
  const ops = cond && typeof cond === 'object' && !Array.isArray(cond) ? cond : { eq: cond };
  const entries = Object.entries(ops);
  if (!entries.length) throw new Error(`filter on '${key}': empty condition`);
  const parts = [];
  const params = [];
  for (const [op, value] of entries) {
    if (op === 'eq' || op === 'ne') {
      const [col, scalar] = column(value, key);
      parts.push(`label ${op === 'ne' ? 'NOT ' : ''}IN (SELECT label FROM attrs WHERE key = ? AND ${col} = ?)`);
      params.push(key, scalar);
    } else if (op === 'in') {
      if (!Array.isArray(value) || !value.length) throw new Error(`filter on '${key}': 'in' needs a non-empty list`);
      const pairs = value.map((v) => column(v, key));
      parts.push(`label IN (SELECT label FROM attrs WHERE key = ? AND (${pairs.map(([col]) => `${col} = ?`).join(' OR ')}))`);
      params.push(key, ...pairs.map(([, scalar]) => scalar));
    } else if (op in RANGE) {
      const [col, scalar] = column(value, key);
      parts.push(`label IN (SELECT label FROM attrs WHERE key = ? AND ${col} ${RANGE[op]} ?)`);
      params.push(key, scalar);
    } else {
      throw new Error(`filter on '${key}': unknown operator '${op}'; use one of ${OPERATORS.join(', ')}`);
    }
  }
  return [parts.join(' AND '), params];
}

/** ids <-> labels, metadata and filters of one saved index, in memory. */
export class MetadataStore {
  /**
   * @param {object} SQL an initialised sql.js module (`await initSqlJs(...)`)
   * @param {Uint8Array} bytes the meta.sqlite file
   */
  constructor(SQL, bytes) {
    try {
      this.db = new SQL.Database(bytes);
      this.ids = new Map(); // label -> id
      for (const [id, label] of this._rows('SELECT id, label FROM items')) this.ids.set(label, id);
      this.anyMetadata = this._rows('SELECT EXISTS(SELECT 1 FROM items WHERE metadata IS NOT NULL)')[0][0] === 1;
    } catch (err) {
      throw new Error(`meta.sqlite: unreadable metadata database (${err.message})`);
    }
  }

  _rows(sql, params = []) {
    const [result] = this.db.exec(sql, params);
    return result ? result.values : [];
  }

  /** Labels of the items matching a filter. */
  filterLabels(where) {
    if (!where || typeof where !== 'object' || Array.isArray(where) || !Object.keys(where).length) {
      throw new Error(`filter must be a non-empty object, got ${JSON.stringify(where)}`);
    }
    const clauses = [];
    const params = [];
    for (const [key, cond] of Object.entries(where)) {
      const [sql, values] = condition(String(key), cond);
      clauses.push(sql);
      params.push(...values);
    }
    return this._rows(`SELECT label FROM items WHERE ${clauses.join(' AND ')}`, params).map((row) => row[0]);
  }

  /** label -> metadata (null where an item has none) for the given labels. */
  metadata(labels) {
    const out = new Map();
    if (!labels.length || !this.anyMetadata) return out;
    const rows = this._rows(`SELECT label, metadata FROM items WHERE label IN (${labels.map(() => '?').join(',')})`, labels);
    for (const [label, meta] of rows) out.set(label, meta == null ? null : JSON.parse(meta));
    return out;
  }

  close() {
    this.db.close();
  }
}
