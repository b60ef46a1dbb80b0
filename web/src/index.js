// edgeret-web: an edgeret bundle in a browser, an Electron/Tauri window or a WebView (onnxruntime-web, wasm).
export { Retriever } from './retriever.js';
export { BundleError, BundleSource, bundleSource, checkManifest, FORMAT_VERSION, BUNDLE_FORMAT } from './bundle.js';
export { Tokenizer } from './tokenizer.js';
export { ImagePreprocessor, resizeRgb, compositeRgba } from './preprocess.js';
export { loadImage } from './image.js';
export { HnswIndex } from './hnsw.js';
export { MetadataStore, OPERATORS } from './store.js';
