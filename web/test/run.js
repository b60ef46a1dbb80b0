#!/usr/bin/env node
// The browser test: serve web/ and the reference folders, open test/parity.html in headless Chromium (Debian's),
// check the browser runtime against the Python runtime's answers, optionally measure latency, write results.
//
//   node web/test/run.js --refs fixture=build/web/fixture                 (make test-web, CI)
//   node web/test/run.js --refs int8=build/web/int8 --refs fp32=build/web/fp32 --bench int8 \
//       --results bench/results/web                                      (bench/results/web.json + web.md)
//
// --refs LABEL=DIR: a folder written by `python -m tools.web` (repeatable). --bench LABEL: also time that bundle at
// 1 thread and at all threads (--threads 1,2 to choose), each in a fresh browser so every download and compile is
// cold; --repeat N: N fresh browsers per thread count, medians reported; --python PY: time the Python runtime on the
// same bundle copy and queries right before each browser run (PY -m tools.web --time-only), for paired ratios.
// Exit status 1 when any check fails.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { serve } from '../serve.js';
import { chromiumPath, launch, runPage } from './browser.js';

const WEB = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const REPO = path.dirname(WEB);

function parseArgs(argv) {
  const args = { refs: [], bench: [], results: null, threads: null, repeat: 1, python: null, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const value = argv[i + 1];
    if (key === '--refs') {
      const [label, dir] = value.includes('=') ? value.split(/=(.*)/s) : [path.basename(value), value];
      args.refs.push({ label, dir: path.resolve(dir) });
      i++;
    } else if (key === '--bench') {
      args.bench.push(value);
      i++;
    } else if (key === '--results') {
      args.results = path.resolve(value);
      i++;
    } else if (key === '--threads') {
      args.threads = value.split(',').map(Number);
      i++;
    } else if (key === '--repeat') {
      args.repeat = Number(value);
      i++;
    } else if (key === '--python') {
      args.python = value;
      i++;
    } else if (key === '--verbose') {
      args.verbose = true;
    } else {
      throw new Error(`unknown argument ${key} (see the header of web/test/run.js)`);
    }
  }
  if (!args.refs.length) throw new Error('give at least one --refs LABEL=DIR (written by python -m tools.web)');
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const mounts = Object.fromEntries(args.refs.map(({ label, dir }) => [`/refs/${label}/`, dir]));
  const server = await serve({ port: 0, mounts, quiet: true });
  const out = { parity: {}, bench: {} };
  let failed = 0;
  const started = Date.now();
  try {
    for (const { label } of args.refs) {
      const browser = await launch();
      try {
        console.log(`== parity: ${label}`);
        const result = await runPage(browser.context, `${server.url}test/parity.html?refs=/refs/${label}/`,
          { log: args.verbose || true });
        if (result.error) console.log(`ERROR ${result.error}\n${result.stack ?? ''}`);
        const demo = await demoCheck(browser.context, server.url, label, args.refs.find((r) => r.label === label).dir);
        result.checks.push(demo);
        result.failed += demo.ok ? 0 : 1;
        console.log(`  ${demo.ok ? 'ok  ' : 'FAIL'} ${demo.name} ${JSON.stringify(demo.detail)}`);
        failed += result.failed;
        out.parity[label] = result;
      } finally {
        await browser.close();
      }
    }
    for (const label of args.bench) {
      const all = args.threads ?? [1, cpus().length];
      for (const threads of [...new Set(all)]) {
        const runs = [];
        for (let rep = 0; rep < args.repeat; rep++) {
          const browser = await launch(); // a fresh browser and profile: every download and compile is cold
          try {
            console.log(`== bench: ${label}, ${threads} thread(s), run ${rep + 1}/${args.repeat}`);
            const load = loadavg()[0];
            const python = args.python ? pythonLatency(args, label, threads) : null;
            const result = await runPage(browser.context, `${server.url}test/parity.html?refs=/refs/${label}/&mode=bench&threads=${threads}`,
              { log: args.verbose });
            if (result.error) {
              console.log(`ERROR ${result.error}`);
              failed++;
            }
            runs.push({ ...result, python, loadAverageBefore: load, loadAverageAfter: loadavg()[0] });
            console.log(JSON.stringify({ threads: result.threads, open: result.openMs, first: result.firstQueryMs,
              text: result.textQueryMs, image: result.imageQueryMs }));
          } finally {
            await browser.close();
          }
        }
        out.bench[`${label}@${threads}`] = medianRun(runs);
      }
    }
  } finally {
    await server.close();
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`${failed ? 'FAILED' : 'passed'}: ${failed} failing check(s), ${seconds.toFixed(1)} s`);
  if (args.results) writeResults(args, out, seconds);
  process.exit(failed ? 1 : 0);
}

/** The Python runtime timed on the same bundle copy and queries right before a browser run (tools.web --time-only). */
function pythonLatency(args, label, threads) {
  const dir = args.refs.find((r) => r.label === label).dir;
  const all = threads === cpus().length;
  const stdout = execFileSync(args.python, ['-m', 'tools.web', '--out', dir, '--time-only', String(all ? 0 : threads)],
    { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  return JSON.parse(stdout.trim().split('\n').pop());
}

const TIMED = ['textQueryMs.p50', 'textQueryMs.p95', 'textEmbedMs.p50', 'textEmbedMs.p95', 'indexSearchMs.p50',
  'indexSearchMs.p95', 'imageQueryMs.p50', 'imageQueryMs.p95', 'imagePreprocessMs.p50', 'imagePreprocessMs.p95', 'openMs',
  'firstQueryMs', 'openPlusFirstQueryMs', 'pageToFirstResultMs', 'firstImageQueryMs', 'loadAverageBefore', 'loadAverageAfter',
  'python.text_query_ms.p50', 'python.text_query_ms.p95', 'python.image_query_ms.p50', 'python.image_query_ms.p95'];

/** One result whose timings are the medians over repeated runs (each run's figures kept under `runs`). */
function medianRun(runs) {
  const get = (obj, key) => key.split('.').reduce((o, k) => o?.[k], obj);
  const median = (values) => {
    const sorted = values.filter((v) => typeof v === 'number').sort((a, b) => a - b);
    return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
  };
  const out = structuredClone(runs[0]);
  for (const key of TIMED) {
    const parts = key.split('.');
    const target = parts.slice(0, -1).reduce((o, k) => o?.[k], out);
    if (target) target[parts.at(-1)] = median(runs.map((r) => get(r, key)));
  }
  out.runs = runs.map((r) => Object.fromEntries(TIMED.map((key) => [key, get(r, key)])));
  return out;
}

/** The demo page on the reference bundle: a typed query and a chosen image both show result tiles. */
async function demoCheck(context, base, label, dir) {
  const refs = JSON.parse(readFileSync(path.join(dir, 'refs.json'), 'utf8'));
  const page = await context.newPage();
  const detail = {};
  try {
    await page.goto(`${base}demo/?bundle=/refs/${label}/${refs.bundle}/&images=/refs/${label}/images/`);
    await page.waitForFunction(() => !document.getElementById('text').disabled, null, { timeout: 120_000 });
    detail.status = (await page.textContent('#status')).slice(0, 160);
    if (refs.texts) {
      await page.fill('#text', refs.texts[0]);
      await page.waitForSelector('#results li', { timeout: 60_000 });
      detail.textResults = await page.locator('#results li').count();
    }
    if (refs.images) {
      await page.evaluate(() => document.getElementById('results').replaceChildren());
      await page.setInputFiles('#file', path.join(dir, 'images', refs.images[0]));
      await page.waitForSelector('#results li', { timeout: 60_000 });
      detail.imageResults = await page.locator('#results li').count();
    }
    if (process.env.EDGERET_WEB_SCREENSHOT) await page.screenshot({ path: process.env.EDGERET_WEB_SCREENSHOT, fullPage: true });
  } catch (err) {
    detail.error = err.message.split('\n')[0];
  } finally {
    await page.close();
  }
  const ok = !detail.error && (detail.textResults ?? 1) > 0 && (detail.imageResults ?? 1) > 0;
  return { name: 'demo page answers a typed query and a chosen image', ok, detail };
}

function versions() {
  const pkg = (name) => JSON.parse(readFileSync(path.join(WEB, 'node_modules', name, 'package.json'), 'utf8')).version;
  let chromium = null;
  try {
    chromium = execFileSync(chromiumPath(), ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch { /* recorded as null */ }
  return { node: process.version, chromium, 'onnxruntime-web': pkg('onnxruntime-web'), 'sql.js': pkg('sql.js'),
    'playwright-core': pkg('playwright-core') };
}

function fileBytes(file) {
  const data = readFileSync(file);
  return { bytes: data.length, gzip: gzipSync(data, { level: 9 }).length };
}

function writeResults(args, out, seconds) {
  const refs = Object.fromEntries(args.refs.map(({ label, dir }) => [label, JSON.parse(readFileSync(path.join(dir, 'refs.json'), 'utf8'))]));
  const rel = (p) => path.relative(REPO, p) || '.';
  const command = ['node', 'web/test/run.js', ...args.refs.flatMap(({ label, dir }) => ['--refs', `${label}=${rel(dir)}`]),
    ...args.bench.flatMap((b) => ['--bench', b]), ...(args.threads ? ['--threads', args.threads.join(',')] : []),
    ...(args.repeat > 1 ? ['--repeat', args.repeat] : []), ...(args.python ? ['--python', args.python] : []),
    '--results', rel(args.results)].join(' ');
  const data = {
    command,
    references: Object.fromEntries(Object.entries(refs).map(([label, r]) => [label, { command: r.command, bundle: r.source_bundle,
      python_versions: r.python_versions, quantization: r.quantization }])),
    created: new Date().toISOString(),
    machine: { cpu: cpus()[0]?.model, cores: cpus().length, platform: `${process.platform} ${process.arch}` },
    versions: versions(),
    seconds,
    repeat: args.repeat,
    parity: Object.fromEntries(Object.entries(out.parity).map(([label, p]) => [label, {
      ok: !p.failed && !p.error, error: p.error ?? null, threads: p.threads, count: p.count, text: p.text, image: p.image,
      openTimings: p.openTimings ?? null,
      queries: p.queries, checks: p.checks.map(({ name, ok, ...detail }) => ({ name, ok, detail })),
    }])),
    bench: {},
  };
  for (const [key, b] of Object.entries(out.bench)) {
    const runtime = {};
    for (const p of Object.keys(b.runtimeBytes ?? {})) {
      const local = path.join(WEB, p.replace(/^\//, ''));
      try {
        runtime[p] = fileBytes(local);
      } catch {
        runtime[p] = { bytes: b.runtimeBytes[p], gzip: null };
      }
    }
    const label = key.split('@')[0];
    const bundleDir = path.join(args.refs.find((r) => r.label === label).dir, refs[label].bundle);
    const manifest = JSON.parse(readFileSync(path.join(bundleDir, 'manifest.json'), 'utf8'));
    const gz = (files) => files.reduce((s, f) => s + fileBytes(path.join(bundleDir, f)).gzip, 0);
    const textFiles = ['manifest.json', manifest.text_encoder.ort_file ?? manifest.text_encoder.file, manifest.text_encoder.tokenizer,
      manifest.image_encoder.preprocessor, 'index/CURRENT', ...['index.json', 'hnsw.bin', 'meta.sqlite'].map((f) => `index/${
        JSON.parse(readFileSync(path.join(bundleDir, 'index/CURRENT'), 'utf8')).generation}/${f}`)];
    const imageFile = manifest.image_encoder.ort_file ?? manifest.image_encoder.file;
    const py = refs[label].python_latency;
    data.bench[key] = {
      ...b,
      python: b.python ?? (py ? py[Number(key.split('@')[1]) === 1 ? '1' : 'None'] : null),
      runtimeBytes: runtime,
      runtimeBytesTotal: Object.values(runtime).reduce((s, r) => s + r.bytes, 0),
      runtimeBytesGzip: Object.values(runtime).reduce((s, r) => s + (r.gzip ?? r.bytes), 0),
      bundleGzipTextStart: gz(textFiles),
      bundleGzipAfterImage: gz([...textFiles, imageFile]),
    };
  }
  mkdirSync(path.dirname(args.results), { recursive: true });
  writeFileSync(`${args.results}.json`, `${JSON.stringify(data, null, 1)}\n`);
  writeFileSync(`${args.results}.md`, markdown(data));
  console.log(`wrote ${rel(args.results)}.json and .md`);
}

const fmt = (v, digits = 2) => (v == null ? '–' : typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(digits)) : String(v));
const mb = (b) => (b / 1e6).toFixed(2);

function markdown(d) {
  const lines = ['# The bundle in a browser (web/)', '', `\`${d.command}\``, '',
    `References: ${Object.entries(d.references).map(([l, r]) => `${l}: \`${r.command}\``).join('; ')}.`, '',
    `${d.created}; ${d.machine.cpu}, ${d.machine.cores} cores; ${d.versions.chromium}; onnxruntime-web ${d.versions['onnxruntime-web']} ` +
    `(wasm); node ${d.versions.node}. Python side: onnxruntime ${Object.values(d.references)[0]?.python_versions?.onnxruntime}.`, ''];
  lines.push('## Parity with the Python runtime', '', '| bundle | check | result |', '|---|---|---|');
  for (const [label, p] of Object.entries(d.parity)) {
    for (const c of p.checks) {
      const x = c.detail;
      const detail = x.min != null ? `min cosine ${x.min.toFixed(6)}, mean ${x.mean.toFixed(6)} (n ${x.n}${x.model ? `, ${x.model}` : ''})`
        : x.queries != null ? `${x.identical}/${x.queries} identical`
          : x.mismatches != null ? `${x.mismatches} mismatches in ${x.cases ?? x.texts}`
            : x.badBytes != null ? `${x.badBytes} differing bytes in ${x.cases} cases`
              : x.maxDiff != null && x.images != null ? `max difference ${x.maxDiff}`
                : x.maxScoreDiff != null ? `max score difference ${x.maxScoreDiff.toExponential(1)}`
                  : x.byKind ? Object.entries(x.byKind).map(([k, v]) => `${k}: ${v.exact}/${v.files} exact, max diff ${v.maxDiff}`).join('; ')
                    : x.expect ? `refused (${x.expect})` : x.failed ? `${x.cases - x.failed.length}/${x.cases}`
                      : x.textResults != null ? `${x.textResults} tiles for a typed query, ${x.imageResults ?? '–'} for an image`
                        : x.files != null ? `same top-5 as from the URL (${x.files} files)` : '';
      const near = x.differ?.length ? ` (the other ${x.differ.length}: near-ties, Python score gaps ` +
        `${x.differ.map((d) => d.pythonScoreGap?.toFixed(4) ?? 'n/a').join(', ')} against a drift of ${x.maxScoreDiff.toFixed(4)})` : '';
      lines.push(`| ${label} | ${c.name} | ${c.ok ? 'ok' : '**FAIL**'}: ${detail}${near} |`);
    }
  }
  const benches = Object.entries(d.bench);
  if (benches.length) {
    lines.push('', '## Latency and bytes in the browser', '',
      'Per query: tokenise/preprocess + encode + search (median and p95 of 300 text / 50 image queries, after the first). ' +
      `Each figure is the median over ${d.repeat} fresh browser(s) per row. ` +
      'First query = `Retriever.open` (download, sha256, session creation) + the first text query, in a fresh browser.', '',
      '| run | threads | text query ms p50 / p95 | text encode ms p50 | search ms p50 | image query ms p50 / p95 | preprocess ms p50 | open ms | first query ms | open + first query ms | first image query ms | bundle MB (text start / +image tower) | gzip MB | runtime MB (gzip) |',
      '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const [key, b] of benches) {
      lines.push(`| ${key} | ${b.threads} | ${fmt(b.textQueryMs.p50)} / ${fmt(b.textQueryMs.p95)} | ${fmt(b.textEmbedMs.p50)} | ${fmt(b.indexSearchMs.p50, 3)} | ` +
        `${fmt(b.imageQueryMs.p50)} / ${fmt(b.imageQueryMs.p95)} | ${fmt(b.imagePreprocessMs.p50)} | ${fmt(b.openMs)} | ${fmt(b.firstQueryMs)} | ` +
        `${fmt(b.openPlusFirstQueryMs)} | ${fmt(b.firstImageQueryMs)} | ${mb(b.bundleBytesTextStart)} / ${mb(b.bundleBytesAfterImage)} | ` +
        `${mb(b.bundleGzipTextStart)} / ${mb(b.bundleGzipAfterImage)} | ${mb(b.runtimeBytesTotal)} (${mb(b.runtimeBytesGzip)}) |`);
    }
    const withPython = benches.filter(([, b]) => b.python);
    if (withPython.length) {
      lines.push('', 'The Python runtime (`edgeret.runtime`, onnxruntime on x86) on the same bundle copy and queries, timed right ' +
        'before each browser run (`run.js --python`: `python -m tools.web --time-only`; medians over the runs). The machine is ' +
        'shared: its other tenants slow both, so the ratio is the figure to read:', '', '| run | Python threads | text query ms p50 / p95 | image query ms p50 / p95 | browser / Python (text, image p50) | load average |',
      '|---|---|---|---|---|---|');
      for (const [key, b] of withPython) {
        const p = b.python;
        lines.push(`| ${key} | ${p.threads ?? 'all'} | ${fmt(p.text_query_ms?.p50)} / ${fmt(p.text_query_ms?.p95)} | ` +
          `${fmt(p.image_query_ms?.p50)} / ${fmt(p.image_query_ms?.p95)} | ${fmt(b.textQueryMs.p50 / p.text_query_ms?.p50, 1)}x, ` +
          `${fmt(b.imageQueryMs.p50 / p.image_query_ms?.p50, 1)}x | ${fmt(b.loadAverageBefore, 1)} -> ${fmt(b.loadAverageAfter, 1)} |`);
      }
    }
    const [, b] = benches[0];
    lines.push('', `Runtime files (served as is; gzip -9 sizes beside): ${Object.entries(b.runtimeBytes)
      .map(([p, r]) => `\`${p.split('/').pop()}\` ${mb(r.bytes)} MB (${r.gzip == null ? '–' : mb(r.gzip)})`).join(', ')}.`);
  }
  return `${lines.join('\n')}\n`;
}

main().catch((err) => {
  console.error(err.stack ?? String(err));
  process.exit(1);
});
