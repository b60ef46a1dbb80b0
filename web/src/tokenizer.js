// The bundle's tokenizer.json (a Hugging Face `tokenizers` file), re-implemented for the pipeline edgeret
// bundles use: added (special) tokens, BertNormalizer, BertPreTokenizer, WordPiece, TemplateProcessing
// (or BertProcessing), and truncation at the manifest's max_length as runtime/text.py sets it. It follows the
// Rust crate step by step and is tested against the Python `tokenizers` ids (web/test, tools/web).
//
// Why not @huggingface/tokenizers (0.2.0)? It matches on ordinary text but (a) has no truncation, (b) lowercases
// the whole string with String.prototype.toLowerCase (final-sigma rule: "ΣΑΣ" -> "σας", the Rust crate gives
// "σασ"), (c) walks UTF-16 code units when spacing out CJK characters, so astral ideographs (U+20000..) are not
// isolated ("a𠀀b": 3 tokens in Python, 1 in tokenizers.js). Each of these changes ids, so the embedding.

import { BundleError } from './bundle.js';

const PAD_TOKENS = ['[PAD]', '<pad>', '<|endoftext|>'];
const CONTROL_EXCEPT_SPACE = /[\t\n\r]/u;
const OTHER = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}]/u; // Rust char::is_other as the crate applies it: unassigned (Cn) code points are kept
const WHITESPACE = /\p{White_Space}/u;
const NONSPACING_MARK = /\p{Mn}/gu;
const PUNCTUATION = /[\p{P}!-/:-@[-`{-~]/u; // Unicode P* or ASCII punctuation

function isChineseChar(cp) {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b920 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/** BertNormalizer: clean text, space out CJK, strip accents (NFD minus Mn), lowercase char by char. */
function bertNormalizer(config) {
  const { clean_text: clean = true, handle_chinese_chars: chinese = true, lowercase = true } = config;
  const stripAccents = config.strip_accents ?? lowercase;
  return (text) => {
    let out = '';
    for (const ch of text) {
      const cp = ch.codePointAt(0);
      if (clean) {
        if (cp === 0 || cp === 0xfffd || (!CONTROL_EXCEPT_SPACE.test(ch) && OTHER.test(ch))) continue;
        if (CONTROL_EXCEPT_SPACE.test(ch) || WHITESPACE.test(ch)) {
          out += ' ';
          continue;
        }
      }
      out += chinese && isChineseChar(cp) ? ` ${ch} ` : ch;
    }
    if (stripAccents) out = out.normalize('NFD').replace(NONSPACING_MARK, '');
    if (lowercase) {
      let lower = '';
      for (const ch of out) lower += ch.toLowerCase(); // per character, like Rust's char::to_lowercase
      out = lower;
    }
    return out;
  };
}

/** BertPreTokenizer: split on whitespace (removed), then isolate every punctuation character. */
function bertPreTokenize(text) {
  const words = [];
  let current = '';
  for (const ch of text) {
    if (WHITESPACE.test(ch)) {
      if (current) words.push(current);
      current = '';
    } else if (PUNCTUATION.test(ch)) {
      if (current) words.push(current);
      words.push(ch);
      current = '';
    } else {
      current += ch;
    }
  }
  if (current) words.push(current);
  return words;
}

/** Split `text` around occurrences of `tokens` (leftmost, then longest, as the Rust crate's Aho-Corasick). */
function splitAdded(text, tokens) {
  if (!tokens.length || !text) return [{ text, token: null }];
  const pieces = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    let best = null;
    for (const token of tokens) {
      if (text.startsWith(token.content, i) && (!best || token.content.length > best.content.length)) best = token;
    }
    if (best) {
      if (i > start) pieces.push({ text: text.slice(start, i), token: null });
      pieces.push({ text: best.content, token: best });
      i += best.content.length;
      start = i;
    } else {
      i += 1;
    }
  }
  if (start < text.length) pieces.push({ text: text.slice(start), token: null });
  return pieces;
}

/** The pipeline of one tokenizer.json. Build with {@link Tokenizer.fromJSON}. */
export class Tokenizer {
  /**
   * @param {object} json parsed tokenizer.json
   * @param {{maxLength: number}} options truncation length (the manifest's text_encoder.max_length)
   */
  static fromJSON(json, { maxLength }) {
    return new Tokenizer(json, maxLength);
  }

  constructor(json, maxLength) {
    const unsupported = (what, value) => new BundleError(
      `tokenizer.json: ${what} ${JSON.stringify(value?.type ?? value)} is not supported by edgeret-web ` +
      '(it implements the BERT WordPiece pipeline of edgeret bundles)');
    const model = json?.model;
    if (model?.type !== 'WordPiece') throw unsupported('model', model);
    this.vocab = new Map(Object.entries(model.vocab));
    this.unk = model.unk_token ?? '[UNK]';
    this.prefix = model.continuing_subword_prefix ?? '##';
    this.maxChars = model.max_input_chars_per_word ?? 100;
    if (json.normalizer == null) this.normalize = (t) => t;
    else if (json.normalizer.type === 'BertNormalizer') this.normalize = bertNormalizer(json.normalizer);
    else throw unsupported('normalizer', json.normalizer);
    if (json.pre_tokenizer != null && json.pre_tokenizer.type !== 'BertPreTokenizer') throw unsupported('pre_tokenizer', json.pre_tokenizer);
    this.added = (json.added_tokens ?? []).map((t) => {
      if (t.single_word || t.lstrip || t.rstrip) throw unsupported('added token option (single_word/lstrip/rstrip) on', t.content);
      return { id: t.id, content: t.content, normalized: Boolean(t.normalized) };
    });
    this.addedIds = new Map(this.added.map((t) => [t.content, t.id]));
    /** Tokens in the vocabulary and the added tokens together (tokenizers' get_vocab_size(with_added_tokens=True)). */
    this.vocabSize = new Set([...this.vocab.keys(), ...this.addedIds.keys()]).size;
    [this.before, this.after] = this._template(json.post_processor, unsupported);
    if (!Number.isInteger(maxLength) || maxLength < this.before.length + this.after.length + 1) {
      throw new BundleError(`text_encoder max_length ${maxLength} leaves no room for text between the special tokens`);
    }
    this.maxLength = maxLength;
    const padId = json.padding?.pad_id;
    this.padId = padId ?? PAD_TOKENS.map((t) => this.tokenToId(t)).find((id) => id !== undefined) ?? 0;
  }

  /** Special-token ids before and after the sequence for a single text. */
  _template(post, unsupported) {
    if (post == null) return [[], []];
    if (post.type === 'BertProcessing') return [[post.cls[1]], [post.sep[1]]];
    if (post.type !== 'TemplateProcessing') throw unsupported('post_processor', post);
    const before = [];
    const after = [];
    let seen = false;
    for (const item of post.single) {
      if (item.Sequence) {
        if (seen) throw unsupported('template with two sequences', 'single');
        seen = true;
      } else {
        const special = post.special_tokens[item.SpecialToken.id];
        if (!special) throw new BundleError(`tokenizer.json: template names unknown special token ${item.SpecialToken.id}`);
        (seen ? after : before).push(...special.ids);
      }
    }
    return [before, after];
  }

  /** The id of a token (added tokens first, then the WordPiece vocabulary), or undefined. */
  tokenToId(token) {
    return this.addedIds.get(token) ?? this.vocab.get(token);
  }

  /** WordPiece: greedy longest-match-first over characters; a word with no full cover is one [UNK]. */
  _wordpiece(word, out) {
    const chars = Array.from(word);
    const unkId = this.vocab.get(this.unk);
    if (chars.length > this.maxChars) {
      out.push(unkId);
      return;
    }
    const pieces = [];
    let start = 0;
    while (start < chars.length) {
      let end = chars.length;
      let found;
      while (start < end) {
        const sub = (start > 0 ? this.prefix : '') + chars.slice(start, end).join('');
        found = this.vocab.get(sub);
        if (found !== undefined) break;
        end -= 1;
      }
      if (found === undefined) {
        out.push(unkId);
        return;
      }
      pieces.push(found);
      start = end;
    }
    out.push(...pieces);
  }

  /**
   * Token ids of one text with the special tokens, truncated to maxLength.
   * @param {string} text
   * @returns {{ids: number[], truncated: boolean, readable: number}} readable: how many ids the text itself gave
   *   (all but the template's special tokens; `tokenizers`' special_tokens_mask marks only those)
   */
  encode(text) {
    const ids = [];
    const raw = this.added.filter((t) => !t.normalized);
    const normalizedTokens = this.added.filter((t) => t.normalized);
    for (const piece of splitAdded(text, raw)) {
      if (piece.token) {
        ids.push(piece.token.id);
        continue;
      }
      for (const sub of splitAdded(this.normalize(piece.text), normalizedTokens)) {
        if (sub.token) ids.push(sub.token.id);
        else for (const word of bertPreTokenize(sub.text)) this._wordpiece(word, ids);
      }
    }
    const room = this.maxLength - this.before.length - this.after.length;
    const truncated = ids.length > room;
    const kept = truncated ? ids.slice(0, room) : ids;
    return { ids: [...this.before, ...kept, ...this.after], truncated, readable: kept.length };
  }
}
