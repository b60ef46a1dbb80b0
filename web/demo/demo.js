// The demo page: open a bundle, answer typed queries and dropped images with thumbnails of the hits.
import { Retriever } from '../src/index.js';

const params = new URLSearchParams(location.search);
const bundleUrl = params.get('bundle') ?? '/bundle/';
const imagesUrl = params.get('images') ?? '/images/';
const threads = params.has('threads') ? Number(params.get('threads')) : undefined;
const $ = (id) => document.getElementById(id);
let retriever = null;
let pending = 0;

function setStatus(text, error = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
}

async function open(where, label) {
  setStatus(`loading ${label}…`);
  const started = performance.now();
  try {
    await retriever?.close();
    retriever = await Retriever.open(where, { threads });
  } catch (err) {
    setStatus(`${label}: ${err.message}`, true);
    return;
  }
  const m = retriever.manifest;
  const checked = Object.values(retriever.checks);
  setStatus(`${label}: ${retriever.size} items, ${retriever.dim}-d, text tower ${retriever.modelFiles.text ?? 'none'} ` +
    `(${m.text_encoder?.quantization ?? '–'}), image tower ${m.image_encoder ? 'on the first image' : 'none'}; ` +
    `${(retriever.bytesRead / 1e6).toFixed(1)} MB read, files checked by ${checked.includes('sha256') ? 'sha256' : checked[0] ?? '–'}; ` +
    `opened in ${(performance.now() - started).toFixed(0)} ms; ${retriever.threads} wasm thread(s)`);
  for (const id of ['text', 'filter']) $(id).disabled = false;
  $('text').focus();
}

function thumbnail(hit) {
  const path = hit.metadata?.path;
  const li = document.createElement('li');
  if (typeof path === 'string') {
    const img = document.createElement('img');
    img.src = new URL(path.split('/').map(encodeURIComponent).join('/'), new URL(imagesUrl, location.href)).href;
    img.alt = path;
    img.loading = 'lazy';
    li.append(img);
  } else {
    const text = document.createElement('div');
    text.className = 'text';
    text.textContent = hit.metadata?.text ?? hit.id;
    li.append(text);
  }
  const caption = document.createElement('div');
  caption.textContent = hit.id.replace(/\.[a-z]+$/i, '');
  const score = document.createElement('div');
  score.className = 'score';
  score.textContent = hit.score.toFixed(3);
  li.append(caption, score);
  return li;
}

async function search(query) {
  if (!retriever) return;
  const ticket = ++pending;
  let filter = null;
  const raw = $('filter').value.trim();
  try {
    filter = raw ? JSON.parse(raw) : null;
  } catch {
    $('timing').textContent = 'the filter is not valid JSON';
    return;
  }
  const started = performance.now();
  try {
    const hits = await retriever.search({ ...query, k: Number($('k').value) || 12, filter });
    if (ticket !== pending) return; // a newer query is on its way
    $('timing').textContent = `${hits.length} results in ${(performance.now() - started).toFixed(1)} ms`;
    $('results').replaceChildren(...hits.map(thumbnail));
  } catch (err) {
    if (ticket === pending) $('timing').textContent = err.message;
  }
}

let typing;
$('text').addEventListener('input', () => {
  clearTimeout(typing);
  const text = $('text').value;
  if (text.trim()) typing = setTimeout(() => search({ text }), 60);
});
$('query').addEventListener('submit', (event) => {
  event.preventDefault();
  if ($('text').value.trim()) search({ text: $('text').value });
});
$('filter').addEventListener('change', () => $('text').value.trim() && search({ text: $('text').value }));

function searchImage(file) {
  if (!file) return;
  $('preview').src = URL.createObjectURL(file);
  $('preview').hidden = false;
  search({ image: file });
}
const drop = $('drop');
drop.addEventListener('dragover', (event) => {
  event.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.classList.remove('over');
  searchImage(event.dataTransfer.files[0]);
});
$('file').addEventListener('change', (event) => searchImage(event.target.files[0]));
$('folder').addEventListener('change', (event) => event.target.files.length && open(event.target.files, 'the chosen folder'));

open(bundleUrl, bundleUrl);
window.edgeret = { get retriever() { return retriever; }, search };
