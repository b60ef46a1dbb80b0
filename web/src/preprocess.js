// The image transform of runtime/preprocess.py, driven by preprocessor.json, reproducing Pillow bit for bit:
// RGB over `background` (Pillow's alpha_composite integer arithmetic), shorter side to `size` with Pillow's
// two-pass convolution resampling (bicubic a = -0.5 or bilinear; support widened on downscale; 22-bit fixed-point
// coefficients; horizontal pass rounded to 8 bits before the vertical pass), centre crop, /255, mean/std, NCHW.
// Canvas drawImage smoothing is a different filter, so the resize never goes through the canvas.

const FILTERS = {
  bilinear: { support: 1, weight: (x) => (x < 0 ? -x : x) < 1 ? 1 - (x < 0 ? -x : x) : 0 },
  bicubic: {
    support: 2,
    weight: (x) => {
      const a = -0.5;
      if (x < 0) x = -x;
      if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
      if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
      return 0;
    },
  },
};
const PRECISION_BITS = 32 - 8 - 2;

/** Python's round(): half to even. */
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis: per output pixel the first input index,
 * the tap count and the fixed-point weights.
 */
function coefficients(inSize, outSize, filter) {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const weights = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      weights[x] = filter.weight((x + xmin - center + 0.5) * ss);
      ww += weights[x];
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? weights[x] / ww : weights[x];
      kk[xx * ksize + x] = Math.trunc(w < 0 ? -0.5 + w * (1 << PRECISION_BITS) : 0.5 + w * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

function clip8(value) {
  if (value >= 1 << PRECISION_BITS << 8) return 255;
  if (value <= 0) return 0;
  return Math.floor(value / (1 << PRECISION_BITS)); // value >> PRECISION_BITS (value may exceed 2^31 here)
}

/** One convolution pass over packed RGB: along x (horizontal) or y (vertical). */
function pass(src, width, height, outSize, filter, horizontal) {
  const { bounds, kk, ksize } = coefficients(horizontal ? width : height, outSize, filter);
  const outWidth = horizontal ? outSize : width;
  const outHeight = horizontal ? height : outSize;
  const out = new Uint8Array(outWidth * outHeight * 3);
  const half = 1 << (PRECISION_BITS - 1);
  const step = horizontal ? 3 : width * 3; // distance between neighbouring taps
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      const o = horizontal ? x : y;
      const min = bounds[o * 2];
      const taps = bounds[o * 2 + 1];
      let p = horizontal ? (y * width + min) * 3 : (min * width + x) * 3;
      let s0 = half;
      let s1 = half;
      let s2 = half;
      for (let t = 0; t < taps; t++, p += step) {
        const k = kk[o * ksize + t];
        s0 += src[p] * k;
        s1 += src[p + 1] * k;
        s2 += src[p + 2] * k;
      }
      const q = (y * outWidth + x) * 3;
      out[q] = clip8(s0);
      out[q + 1] = clip8(s1);
      out[q + 2] = clip8(s2);
    }
  }
  return out;
}

/**
 * Resize packed RGB (3 bytes per pixel) like Pillow's `Image.resize((w, h), resample)`: a horizontal and a
 * vertical pass, each only when that side changes. Pillow 13 (python-pillow/Pillow#9549, "if height is scaled down
 * significantly more than width, resize vertically first") runs the vertical pass first when the height shrinks by
 * more than twice as many pixels as the width does; earlier Pillow always ran the horizontal pass first. The order
 * changes last bits, so it is followed (`order`: 'pillow13' or 'horizontal'). The condition was read off Pillow
 * 13.0's output, not its source: it holds on ~700 random resizes of both filters and on the parity sweep (it is
 * known to differ for outputs 1-2 pixels wide, which a crop of `size` >= 3 never asks for).
 * @param {Uint8Array} rgb width*height*3
 * @returns {Uint8Array} outWidth*outHeight*3
 */
export function resizeRgb(rgb, width, height, outWidth, outHeight, resample = 'bicubic', order = 'pillow13') {
  const filter = FILTERS[resample];
  if (!filter) throw new Error(`resample must be one of ${Object.keys(FILTERS)}, got ${resample}`);
  const verticalFirst = order === 'pillow13' && outHeight < height && 2 * (width - outWidth) < height - outHeight;
  let src = rgb;
  if (verticalFirst) {
    src = pass(src, width, height, outHeight, filter, false);
    if (outWidth !== width) src = pass(src, width, outHeight, outWidth, filter, true);
    return src;
  }
  if (outWidth !== width) src = pass(src, width, height, outWidth, filter, true);
  if (outHeight !== height) src = pass(src, outWidth, height, outHeight, filter, false);
  return src;
}

/**
 * RGBA (straight, not premultiplied) -> RGB composited over `background` with Pillow's `alpha_composite`
 * fixed-point arithmetic (7 extra bits, divisions by 255 as shifts).
 * @param {Uint8Array|Uint8ClampedArray} rgba
 * @returns {Uint8Array}
 */
export function compositeRgba(rgba, background = [255, 255, 255]) {
  const n = rgba.length / 4;
  const out = new Uint8Array(n * 3);
  const shift255 = (a) => ((a >>> 8) + a) >>> 8;
  for (let i = 0; i < n; i++) {
    const a = rgba[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      const src = rgba[i * 4 + c];
      if (a === 255) out[i * 3 + c] = src;
      else if (a === 0) out[i * 3 + c] = background[c];
      else {
        const coef1 = a * 128; // src.a * 255 * 255 * 128 / outa255, with outa255 = 255 * 255 over an opaque canvas
        const coef2 = 255 * 128 - coef1;
        const tmp = src * coef1 + background[c] * coef2;
        out[i * 3 + c] = shift255(tmp + (0x80 << 7)) >>> 7;
      }
    }
  }
  return out;
}

/** The parsed preprocessor.json, with the defaults of runtime/preprocess.py. */
export class ImagePreprocessor {
  constructor({ size = 224, resample = 'bicubic', mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225],
    background = [255, 255, 255] } = {}) {
    if (!FILTERS[resample]) throw new Error(`preprocessor.json: resample must be one of ${Object.keys(FILTERS)}, got ${resample}`);
    if (!(size >= 1)) throw new Error(`preprocessor.json: size must be positive, got ${size}`);
    Object.assign(this, { size, resample, background });
    this.mean = Float32Array.from(mean);
    this.std = Float32Array.from(std);
  }

  /** Output size of the resize step for an image of width x height (runtime/preprocess.py `resize_crop`). */
  resizedSize(width, height) {
    const scale = this.size / Math.min(width, height);
    return [Math.max(this.size, roundHalfEven(width * scale)), Math.max(this.size, roundHalfEven(height * scale))];
  }

  /**
   * Shorter side to `size`, centre crop: packed RGB in, `size` x `size` packed RGB out.
   * @param {{width: number, height: number, rgb: Uint8Array}} image
   */
  resizeCrop({ width, height, rgb }) {
    if (!width || !height) throw new Error('image has zero width or height');
    const [w, h] = this.resizedSize(width, height);
    const resized = w === width && h === height ? rgb : resizeRgb(rgb, width, height, w, h, this.resample);
    const left = Math.floor((w - this.size) / 2);
    const top = Math.floor((h - this.size) / 2);
    const out = new Uint8Array(this.size * this.size * 3);
    for (let y = 0; y < this.size; y++) {
      const from = ((top + y) * w + left) * 3;
      out.set(resized.subarray(from, from + this.size * 3), y * this.size * 3);
    }
    return out;
  }

  /**
   * One image to the float32 CHW tensor data the image tower takes (float32 steps, as numpy computes them).
   * @param {{width: number, height: number, rgb: Uint8Array}} image
   * @param {Float32Array} [out] where to write (3 * size * size values)
   */
  toTensor(image, out = new Float32Array(3 * this.size * this.size)) {
    const pixels = this.resizeCrop(image);
    const plane = this.size * this.size;
    const f = Math.fround;
    for (let c = 0; c < 3; c++) {
      const mean = this.mean[c];
      const std = this.std[c];
      for (let i = 0; i < plane; i++) out[c * plane + i] = f(f(f(pixels[i * 3 + c] / 255) - mean) / std);
    }
    return out;
  }
}
