// Turning what an app has (a File from a drop, a URL, an <img>, raw pixels) into packed 8-bit RGB for the
// preprocessor. Encoded images are decoded by the browser (createImageBitmap, no colour management, EXIF
// orientation applied as Pillow's exif_transpose does); transparency is composited over the background with
// Pillow's arithmetic. Raw pixels ({width, height, data}: RGBA, RGB or grey bytes, e.g. an ImageData) skip the
// browser's decoder and are bit-exact with the Python runtime.

import { compositeRgba } from './preprocess.js';

/**
 * @typedef {Blob|ArrayBuffer|ArrayBufferView|string|URL|ImageBitmap|HTMLImageElement|HTMLCanvasElement|
 *   OffscreenCanvas|VideoFrame|{width: number, height: number, data: ArrayLike<number>}} ImageInput
 */

function isRaw(item) {
  return item && typeof item === 'object' && Number.isInteger(item.width) && Number.isInteger(item.height) &&
    item.data && typeof item.data.length === 'number' && !(item instanceof Blob);
}

/** Raw pixels -> packed RGB over `background`. */
function fromRaw({ width, height, data }, background, name) {
  const n = width * height;
  if (!n) throw new Error(`${name}: zero-size image (${width}x${height})`);
  if (data.length === n * 4) return { width, height, rgb: compositeRgba(data, background) };
  if (data.length === n * 3) return { width, height, rgb: Uint8Array.from(data) };
  if (data.length === n) {
    const rgb = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = data[i];
    return { width, height, rgb };
  }
  throw new Error(`${name}: ${data.length} values for ${width}x${height} pixels (need 1, 3 or 4 per pixel)`);
}

async function toBitmapSource(item, name) {
  if (typeof item === 'string' || item instanceof URL) {
    const response = await fetch(item);
    if (!response.ok) throw new Error(`${name}: HTTP ${response.status} for ${item}`);
    return response.blob();
  }
  if (item instanceof ArrayBuffer || ArrayBuffer.isView(item)) {
    if (!item.byteLength) throw new Error(`${name}: empty bytes`);
    return new Blob([item]);
  }
  return item;
}

/**
 * Decode one image to packed RGB.
 * @param {ImageInput} item
 * @param {number[]} background RGB the transparency is composited over (preprocessor.json `background`)
 * @returns {Promise<{width: number, height: number, rgb: Uint8Array}>}
 */
export async function loadImage(item, background = [255, 255, 255], name = 'image') {
  if (item == null) throw new TypeError(`${name}: expected an image, got ${item}`);
  if (isRaw(item)) return fromRaw(item, background, name);
  if (typeof createImageBitmap !== 'function') {
    throw new TypeError(`${name}: decoding needs a browser (createImageBitmap); pass raw pixels {width, height, data} instead`);
  }
  const source = await toBitmapSource(item, name);
  let bitmap;
  try {
    bitmap = await createImageBitmap(source, { colorSpaceConversion: 'none', premultiplyAlpha: 'none', imageOrientation: 'from-image' });
  } catch (err) {
    throw new Error(`${name}: not an image, or truncated or corrupt (${err.message})`);
  }
  const { width, height } = bitmap;
  if (!width || !height) throw new Error(`${name}: zero-size image (${width}x${height})`);
  const canvas = typeof OffscreenCanvas === 'function' ? new OffscreenCanvas(width, height)
    : Object.assign(document.createElement('canvas'), { width, height });
  const ctx = canvas.getContext('2d', { willReadFrequently: true, colorSpace: 'srgb' });
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close?.();
  const { data } = ctx.getImageData(0, 0, width, height, { colorSpace: 'srgb' });
  return { width, height, rgb: compositeRgba(data, background) };
}
