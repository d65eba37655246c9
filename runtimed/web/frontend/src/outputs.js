// Rendering of nbformat outputs and markdown.
//
// Untrusted HTML and JavaScript run only inside <iframe sandbox="allow-scripts"> on /static/frame.html
// (served with its own CSP, `sandbox allow-scripts`: the app page's strict CSP would block their scripts,
// and a srcdoc frame inherits it): an opaque origin that cannot reach the app's DOM, cookies or API.
// SVG is shown as an <img> (no script runs there). Markdown is rendered by markdown-it and sanitized by
// DOMPurify, without forms or form controls (a <form><button> would navigate the app's tab).
import { AnsiUp } from 'ansi_up'
import DOMPurify from 'dompurify'
import MarkdownIt from 'markdown-it'
import { artifactUrl, fetchValue, isArtifact, isDirectImage } from './artifacts.js'
import { whenVisible } from './lazy.js'
import { latexHtml, protectMath } from './math.js'
import { el, escapeHtml, newId } from './util.js'
import { atEnd } from './output_view.js'

const md = new MarkdownIt({ html: true, linkify: true })

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.getAttribute('href') && !node.getAttribute('href').startsWith('#')) {
    node.setAttribute('target', '_blank')
    node.setAttribute('rel', 'noopener noreferrer')
  }
})

const SANITIZE = {
  FORBID_TAGS: ['form', 'button', 'input', 'select', 'option', 'optgroup', 'textarea', 'datalist', 'output', 'meta', 'base'],
  FORBID_ATTR: ['action', 'formaction', 'formmethod', 'formtarget', 'formenctype', 'form', 'http-equiv'],
}

/** Markdown to sanitized HTML; `attachment:name` images resolve from the cell's attachments. */
export function renderMarkdown(source, attachments) {
  const math = protectMath(source || '') // `$…$`/`$$…$$` never reach markdown-it (see math.js)
  let html = md.render(math.text)
  if (attachments) {
    html = html.replace(/(src=")attachment:([^"]+)"/g, (all, pre, name) => {
      const bundle = attachments[decodeURIComponent(name)]
      if (!bundle) return all
      const mime = Object.keys(bundle).find((m) => m.startsWith('image/'))
      if (!mime) return all
      const data = bundle[mime]
      const url = mime === 'image/svg+xml' ? svgUrl(String(data)) : `data:${mime};base64,${String(data).replace(/\s/g, '')}`
      return `${pre}${url}"`
    })
  }
  return math.restore(DOMPurify.sanitize(html, SANITIZE))
}

export function ansiHtml(text) {
  if (!text || text.indexOf('\x1b') < 0) return escapeHtml(text || '')
  const au = new AnsiUp()
  au.use_classes = true
  return au.ansi_to_html(text || '')
}

function svgUrl(svg) {
  return 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg)
}

const MIME_ORDER = [
  'application/javascript',
  'text/html',
  'text/markdown',
  'text/latex',
  'image/svg+xml',
  'image/png',
  'image/jpeg',
  'image/gif',
  'image/webp',
  'application/json',
  'text/plain',
]

function isJsonMime(mime) {
  return mime === 'application/json' || /\+json$/.test(mime)
}

export function pickMime(data) {
  const keys = Object.keys(data || {})
  for (const m of MIME_ORDER) if (keys.includes(m)) return m
  return keys.find(isJsonMime) || keys[0]
}

function joinText(v) {
  return Array.isArray(v) ? v.join('') : typeof v === 'string' ? v : JSON.stringify(v, null, 2)
}

// -- sandboxed frames ----------------------------------------------------------------------------

const FRAME_URL = '/static/frame.html'
const frames = new Map() // token -> iframe
const FRAME_MAX_HEIGHT = 4000

window.addEventListener('message', (e) => {
  const d = e.data
  if (!d || typeof d !== 'object' || typeof d.runtimedFrame !== 'string') return
  const frame = frames.get(d.runtimedFrame)
  if (!frame || e.source !== frame.contentWindow) return
  if (!frame.isConnected) {
    frames.delete(d.runtimedFrame)
    return
  }
  const h = Math.max(20, Math.min(FRAME_MAX_HEIGHT, Math.ceil(Number(d.height) || 0)))
  frame.style.height = h + 'px'
})

const FRAME_STYLE = `body{margin:0;padding:2px 0;display:flow-root;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2328;overflow-x:auto}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:right}
thead th{background:#f6f8fa}tbody tr:nth-child(odd){background:#fbfbfc}img{max-width:100%}pre{margin:0}`

function frameDoc(token, body) {
  // The resize script reports only a height; the parent trusts nothing else from the frame.
  const resize = `<script>(function(){var t=${JSON.stringify(token)},last=0;function p(){var b=document.body;if(!b)return;var h=Math.ceil(b.getBoundingClientRect().bottom);if(h!==last){last=h;try{parent.postMessage({runtimedFrame:t,height:h},"*")}catch(e){}}}
function w(){try{new ResizeObserver(p).observe(document.body)}catch(e){}p()}if(document.body)w();else addEventListener("DOMContentLoaded",w);addEventListener("load",p);setTimeout(p,300)})()</script>`
  return `<!doctype html><html><head><meta charset="utf-8"><base target="_blank"><style>${FRAME_STYLE}</style>${resize}</head><body>${body}</body></html>`
}

/** <iframe sandbox="allow-scripts"> on the frame document, which the output's document then replaces:
 * an opaque origin (never allow-same-origin). */
export function sandboxFrame(body, testid = 'output-frame') {
  const slot = el('div.frame-slot')
  whenVisible(slot, () => {
    const token = newId('f-')
    const frame = el('iframe.output-frame', { sandbox: 'allow-scripts', testid, title: 'output', loading: 'eager' })
    frame.setAttribute('sandbox', 'allow-scripts')
    const doc = frameDoc(token, body)
    // '*': an opaque origin has no name to target; the frame accepts a document only from its parent.
    frame.addEventListener('load', () => frame.contentWindow?.postMessage({ runtimedDoc: doc }, '*'), { once: true })
    frame.src = FRAME_URL
    frames.set(token, frame)
    slot.replaceChildren(frame)
  })
  return slot
}

// -- outputs -------------------------------------------------------------------------------------

function renderMime(mime, value, metadata, node) {
  const meta = (metadata && metadata[mime]) || {}
  const module = STANDARD.get(mime)
  if (module) {
    module(value, node, { metadata })
  } else if (mime === 'text/html') {
    node.append(sandboxFrame(joinText(value)))
  } else if (mime === 'application/javascript') {
    node.append(sandboxFrame(`<div id="output"></div><script>${joinText(value).replace(/<\/script/gi, '<\\/script')}</script>`))
  } else if (mime === 'image/svg+xml') {
    node.append(el('img.output-image', { src: svgUrl(joinText(value)), alt: 'SVG output', testid: 'output-svg' }))
  } else if (mime.startsWith('image/')) {
    const img = el('img.output-image', { src: `data:${mime};base64,${joinText(value).replace(/\s/g, '')}`, alt: mime, testid: 'output-image' })
    if (meta.width) img.width = meta.width
    if (meta.height) img.height = meta.height
    node.append(img)
  } else if (mime === 'text/markdown') {
    node.append(el('div.markdown.output-markdown', { html: renderMarkdown(joinText(value)) }))
  } else if (mime === 'text/latex') {
    node.append(el('div.output-latex', { testid: 'output-latex', html: latexHtml(joinText(value)) }))
  } else if (isJsonMime(mime)) {
    const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2)
    node.append(el('pre.output-json', { testid: 'output-json', text }))
  } else {
    node.append(el('pre.output-text', { html: ansiHtml(joinText(value)) }))
  }
}

const RENDERERS = new Map() // MIME -> render(value, node, output), preferred over the built-in ones
const STANDARD = new Map() // MIME -> render(value, node, {metadata}), in MIME_ORDER's rank, inline or from an artifact

/** Render a MIME type of the project's own (e.g. an AI cell's tool steps, ai.js) with `render(value, node, o)`.
 * `standard: true`: a standard MIME type (e.g. JSON, json_tree.js), chosen in the usual order over the others
 * and given its value once an artifact-backed one is fetched. */
export function registerMime(mime, render, { standard = false } = {}) {
  ;(standard ? STANDARD : RENDERERS).set(mime, render)
}

/** Render one output into a fresh element (its content signature lets callers skip unchanged ones). */
export function renderOutput(o) {
  const node = el('div.output.output-' + o.output_type, { testid: 'output', 'data-output-id': o.output_id })
  if (o.output_type === 'stream') {
    node.classList.add('stream-' + (o.name || 'stdout'))
    if (o.omitted) node.append(omittedNote(o))
    node.append(el('pre.output-stream', { testid: 'output-stream', html: ansiHtml(o.text) }))
  } else if (o.output_type === 'error') {
    const tb = o.traceback && o.traceback.length ? o.traceback.join('\n') : `${o.ename}: ${o.evalue}`
    node.append(el('pre.output-error', { testid: 'output-error', html: ansiHtml(tb) }))
  } else {
    const data = o.data || {}
    const own = Object.keys(data).find((m) => RENDERERS.has(m))
    if (own) {
      node.dataset.mime = own
      RENDERERS.get(own)(data[own], node, o)
      return node
    }
    const mime = pickMime(data)
    if (!mime) return node
    node.dataset.mime = mime
    const value = data[mime]
    if (isArtifact(value)) renderArtifact(mime, value, o.metadata, node)
    else renderMime(mime, value, o.metadata, node)
    // An image's alt text: the bundle's text/plain (e.g. "<Figure size 640x480 with 1 Axes>"), as a screen reader would want.
    const plain = data['text/plain']
    if (plain != null && !isArtifact(plain)) for (const img of node.querySelectorAll('img')) img.alt = joinText(plain)
  }
  return node
}

/** An artifact-backed value, rendered like an inline one once it scrolls near the viewport. Until then an
 * image keeps its place empty and a text shows its preview (the head the event carries). */
function renderArtifact(mime, ref, metadata, node) {
  node.dataset.artifact = ref.artifact
  if (isDirectImage(mime, ref)) {
    // The store holds the decoded bytes: the browser fetches them itself (cookie auth, cached: immutable).
    const meta = (metadata && metadata[mime]) || {}
    const img = el('img.output-image', { alt: mime, testid: 'output-image' })
    if (meta.width) img.width = meta.width
    if (meta.height) img.height = meta.height
    img.addEventListener('error', () => node.replaceChildren(loadError(ref, 'image')), { once: true })
    whenVisible(img, () => {
      img.src = artifactUrl(ref)
    })
    node.append(img)
    return
  }
  const pending = typeof ref.preview === 'string' && ref.preview
    ? el('pre.output-text.output-pending', { html: ansiHtml(ref.preview) })
    : el('div.output-loading', { text: `${mime} (${ref.size} bytes)…` })
  node.append(pending)
  whenVisible(pending, () => {
    fetchValue(mime, ref, isJsonMime).then(
      (value) => {
        node.replaceChildren()
        renderMime(mime, value, metadata, node)
      },
      (err) => node.replaceChildren(loadError(ref, String(err.message || err))),
    )
  })
}

/** A spilled stream (past the stream cap): the text between the output above and this tail is an artifact,
 * linked once stored (when the stream ends); until then the note only counts it. */
function omittedNote(o) {
  const ref = o.data && o.data['text/plain']
  const bytes = isArtifact(ref) ? ref.size : o.omitted_bytes || o.omitted
  const note = el('div.output-omitted', { testid: 'output-omitted', text: `… ${bytes.toLocaleString('en-US')} bytes omitted ` })
  if (isArtifact(ref)) {
    note.append(el('a', { href: artifactUrl(ref), target: '_blank', rel: 'noopener', text: '(open full text)' }))
  } else {
    note.append(el('span.muted', { text: '(stored when the stream ends)' }))
  }
  return note
}

function loadError(ref, what) {
  const text = what === 'image' ? `artifact ${ref.artifact.slice(0, 12)}… could not be loaded` : what
  return el('pre.output-error', { testid: 'output-artifact-error', text })
}

export function outputSignature(o) {
  if (o.output_type === 'stream') return o.omitted ? `${o.omitted}|${o.data?.['text/plain']?.artifact}|${o.text}` : o.text
  if (o.output_type === 'error') return o.traceback
  return o.data
}

/** Keyed update of an outputs container: unchanged outputs keep their DOM (iframes do not reload). */
export function updateOutputs(container, outputs) {
  const existing = new Map()
  for (const child of container.children) existing.set(child.dataset.outputId, child)
  const nodes = []
  for (const o of outputs) {
    let node = existing.get(o.output_id)
    const sig = outputSignature(o)
    if (!node || node._sig !== sig) {
      if (node && o.output_type === 'stream' && !o.omitted && node._sig !== sig) {
        const pre = node.firstChild
        const follow = atEnd(pre) // a stream scrolled to its end follows new lines; scrolled up, it stays
        pre.innerHTML = ansiHtml(o.text)
        if (follow) pre.scrollTop = pre.scrollHeight
      } else {
        node = renderOutput(o)
      }
      node._sig = sig
    }
    nodes.push(node)
  }
  // Replace only when the list differs, so a frame is not re-attached (which would reload it).
  const same = nodes.length === container.children.length && nodes.every((n, i) => container.children[i] === n)
  if (!same) {
    for (const child of [...container.children]) if (!nodes.includes(child)) child.remove()
    nodes.forEach((n, i) => {
      if (container.children[i] !== n) container.insertBefore(n, container.children[i] || null)
    })
  }
}
