#!/usr/bin/env node
// A small static file server for the demo page and the browser tests (node only, no dependencies).
//
//   node web/serve.js [--port 8080] [--host 127.0.0.1] [--bundle DIR] [--images DIR] [--mount /url/=DIR ...]
//
// Serves web/ at /, the bundle folder at /bundle/ (default: artifacts/demo_bundle) and an image folder at
// /images/ (default: artifacts/demo_images, the thumbnails of the demo's index). Every response carries the
// cross-origin isolation headers (COOP/COEP) that multi-threaded WebAssembly needs, and `no-store`, so the
// browser downloads the bundle afresh on every load (what the download and first-query figures measure).
import { createServer } from 'node:http';
import { createReadStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const WEB = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.dirname(WEB);

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm', '.map': 'application/json',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp',
  '.bmp': 'image/bmp', '.svg': 'image/svg+xml', '.txt': 'text/plain; charset=utf-8', '.md': 'text/plain; charset=utf-8',
};

const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Cache-Control': 'no-store',
};

/**
 * Start the server.
 * @param {{port?: number, host?: string, mounts?: Record<string, string>, quiet?: boolean}} options
 *   mounts: URL prefix (ending in "/") -> folder; "/" is web/ unless given.
 * @returns {Promise<{server: import('node:http').Server, url: string, close: () => Promise<void>}>}
 */
export async function serve({ port = 8080, host = '127.0.0.1', mounts = {}, quiet = false } = {}) {
  const table = Object.entries({ '/': WEB, ...mounts })
    .map(([prefix, dir]) => [prefix.endsWith('/') ? prefix : `${prefix}/`, path.resolve(dir)])
    .sort((a, b) => b[0].length - a[0].length); // longest prefix first
  const server = createServer(async (req, res) => {
    const started = Date.now();
    let status = 200;
    try {
      const url = new URL(req.url, 'http://localhost');
      const pathname = decodeURIComponent(url.pathname);
      if (pathname === '/') {
        res.writeHead((status = 302), { Location: '/demo/', ...ISOLATION }).end();
        return;
      }
      const mount = table.find(([prefix]) => pathname.startsWith(prefix) || `${pathname}/` === prefix);
      if (!mount) return send(res, (status = 404), 'not found');
      const [prefix, dir] = mount;
      let file = path.resolve(dir, `.${path.sep}${pathname.slice(prefix.length)}`);
      if (file !== dir && !file.startsWith(dir + path.sep)) return send(res, (status = 403), 'forbidden');
      let stat = await fs.stat(file).catch(() => null);
      if (stat?.isDirectory()) {
        if (!pathname.endsWith('/')) {
          res.writeHead((status = 301), { Location: `${url.pathname}/`, ...ISOLATION }).end();
          return;
        }
        file = path.join(file, 'index.html');
        stat = await fs.stat(file).catch(() => null);
      }
      if (!stat?.isFile()) return send(res, (status = 404), 'not found');
      const type = TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': stat.size, ...ISOLATION });
      if (req.method === 'HEAD') return res.end();
      createReadStream(file).pipe(res);
    } catch (err) {
      send(res, (status = 500), String(err));
    } finally {
      if (!quiet) console.log(`${status} ${req.method} ${req.url} ${Date.now() - started} ms`);
    }
  });
  await new Promise((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  const { port: bound } = server.address();
  return {
    server,
    url: `http://${host}:${bound}/`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function send(res, status, text) {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...ISOLATION }).end(text);
}

function parseArgs(argv) {
  const args = { port: 8080, host: '127.0.0.1', bundle: path.join(REPO, 'artifacts/demo_bundle'),
    images: path.join(REPO, 'artifacts/demo_images'), mounts: {} };
  for (let i = 0; i < argv.length; i++) {
    const [key, value] = [argv[i], argv[i + 1]];
    if (key === '--port') args.port = Number(value);
    else if (key === '--host') args.host = value;
    else if (key === '--bundle') args.bundle = path.resolve(value);
    else if (key === '--images') args.images = path.resolve(value);
    else if (key === '--mount') {
      const [prefix, dir] = value.split('=');
      args.mounts[prefix] = path.resolve(dir);
    } else if (key === '--help' || key === '-h') {
      console.log('node web/serve.js [--port 8080] [--host 127.0.0.1] [--bundle DIR] [--images DIR] [--mount /url/=DIR]');
      process.exit(0);
    } else throw new Error(`unknown argument ${key}`);
    i++;
  }
  return args;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = parseArgs(process.argv.slice(2));
  const { url } = await serve({
    port: args.port, host: args.host,
    mounts: { '/bundle/': args.bundle, '/images/': args.images, ...args.mounts },
  });
  console.log(`serving ${WEB} at ${url} (bundle ${args.bundle}, images ${args.images}); demo: ${url}demo/`);
}
