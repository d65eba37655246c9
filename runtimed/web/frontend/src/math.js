// Math in markdown and LaTeX outputs, rendered with KaTeX.
//
// `$…$` and `$$…$$` are cut out of the source before markdown-it sees it (otherwise `\,`, `\\`, `_` and
// `*` inside a formula are read as markdown escapes and emphasis) and put back, rendered, after the
// markdown has been sanitized. KaTeX runs with `trust: false`, so a formula cannot add links or raw HTML.
import katex from 'katex'

const MAX_FORMULA = 20_000 // characters: longer "formulas" are left as text

/** KaTeX HTML for one formula; a formula KaTeX cannot parse shows as its source in red (no exception). */
export function renderTex(tex, displayMode) {
  return katex.renderToString(tex, { displayMode, throwOnError: false, trust: false, output: 'html', maxSize: 50, maxExpand: 1000 })
}

function isFence(line) {
  return /^ {0,3}(```|~~~)/.test(line)
}

/**
 * Replace the formulas of a markdown source with placeholders markdown-it leaves alone (code spans and
 * fenced code keep their dollars). Returns {text, restore(html)}: restore puts the rendered formulas back.
 */
export function protectMath(source) {
  const formulas = []
  const nonce = Math.random().toString(36).slice(2, 10)
  const slot = (tex, display) => {
    formulas.push({ tex, display })
    return `KATEX${nonce}X${formulas.length - 1}X`
  }
  const out = []
  let inFence = false
  // Lines are kept whole so fences can be tracked; display math may span lines, so work on blocks
  // of consecutive non-fenced lines.
  let block = []
  const flush = () => {
    if (block.length) out.push(protectBlock(block.join('\n'), slot))
    block = []
  }
  for (const line of source.split('\n')) {
    if (isFence(line)) {
      if (!inFence) flush()
      inFence = !inFence
      out.push(line)
    } else if (inFence) out.push(line)
    else block.push(line)
  }
  flush()
  const text = out.join('\n')
  const pattern = new RegExp(`KATEX${nonce}X(\\d+)X`, 'g')
  return {
    text,
    restore(html) {
      if (!formulas.length) return html
      return html.replace(pattern, (all, i) => {
        const f = formulas[Number(i)]
        return f ? renderTex(f.tex, f.display) : all
      })
    },
  }
}

function protectBlock(text, slot) {
  let res = ''
  let i = 0
  while (i < text.length) {
    const ch = text[i]
    if (ch === '\\' && i + 1 < text.length) {
      res += text.slice(i, i + 2) // an escaped dollar (or anything else) stays as markdown wrote it
      i += 2
    } else if (ch === '`') {
      // A code span: copy it through its closing run of the same length.
      let n = 0
      while (text[i + n] === '`') n++
      const fence = '`'.repeat(n)
      const end = text.indexOf(fence, i + n)
      const stop = end < 0 ? i + n : end + n
      res += text.slice(i, stop)
      i = stop
    } else if (ch === '$' && text[i + 1] === '$') {
      const end = text.indexOf('$$', i + 2)
      const tex = end < 0 ? '' : text.slice(i + 2, end)
      if (end < 0 || !tex.trim() || tex.length > MAX_FORMULA) {
        res += '$$'
        i += 2
      } else {
        res += slot(tex.trim(), true)
        i = end + 2
      }
    } else if (ch === '$') {
      const end = inlineEnd(text, i + 1)
      if (end < 0) {
        res += '$'
        i += 1
      } else {
        res += slot(text.slice(i + 1, end), false)
        i = end + 1
      }
    } else {
      res += ch
      i += 1
    }
  }
  return res
}

/** The closing `$` of inline math opened before `from`, or -1 (Pandoc's rule: no space inside either
 * delimiter, the closing one not followed by a digit, no blank line inside, so "$5 and $6" stays text). */
function inlineEnd(text, from) {
  if (from >= text.length || /\s/.test(text[from])) return -1
  for (let j = from; j < text.length && j - from <= MAX_FORMULA; j++) {
    const c = text[j]
    if (c === '\\') j++
    else if (c === '\n' && text[j + 1] === '\n') return -1
    else if (c === '$') {
      if (/\s/.test(text[j - 1]) || /[0-9]/.test(text[j + 1] || '')) return -1
      return j
    }
  }
  return -1
}

/** A `text/latex` output: `$$…$$`, `$…$`, `\[…\]` or a bare LaTeX body, rendered as display math. */
export function latexHtml(source) {
  let tex = String(source).trim()
  const m = /^\$\$([\s\S]*)\$\$$/.exec(tex) || /^\$([\s\S]*)\$$/.exec(tex) || /^\\\[([\s\S]*)\\\]$/.exec(tex)
  if (m) tex = m[1].trim()
  return renderTex(tex, true)
}
