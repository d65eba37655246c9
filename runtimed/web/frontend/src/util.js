// Small helpers shared by the pages: ids, base64, DOM building, notices.

export function newId(prefix = '') {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return prefix + crypto.randomUUID()
  // crypto.randomUUID needs a secure context (http://127.0.0.1 is one; a LAN address over http is not).
  const b = crypto.getRandomValues(new Uint8Array(16))
  b[6] = (b[6] & 0x0f) | 0x40
  b[8] = (b[8] & 0x3f) | 0x80
  const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
  return `${prefix}${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

export function toBase64(bytes) {
  let s = ''
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000))
  }
  return btoa(s)
}

export function fromBase64(text) {
  const s = atob(text || '')
  const out = new Uint8Array(s.length)
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i)
  return out
}

/** el('div.cls#id', {attrs, on: {click}}, ...children) */
export function el(spec, attrs, ...children) {
  const m = /^([a-z0-9-]+)?((?:[.#][^.#]+)*)$/i.exec(spec)
  const node = document.createElement((m && m[1]) || 'div')
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][^.#]+/g)) {
      if (part[0] === '.') node.classList.add(part.slice(1))
      else node.id = part.slice(1)
    }
  }
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue
      if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn)
      else if (k === 'text') node.textContent = v
      else if (k === 'html') node.innerHTML = v
      else if (k === 'testid') node.dataset.testid = v
      else if (k in node && typeof v !== 'string') node[k] = v
      else node.setAttribute(k, v === true ? '' : v)
    }
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue
    node.append(c instanceof Node ? c : String(c))
  }
  return node
}

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c])
}

let noticeBox = null
export function notice(message, kind = 'error') {
  if (!noticeBox) {
    noticeBox = el('div.notices', { testid: 'notices' })
    document.body.append(noticeBox)
  }
  const item = el('div.notice.' + kind, { testid: 'notice', role: 'alert', text: message })
  item.addEventListener('click', () => item.remove())
  noticeBox.append(item)
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000)
}

export function relativeTime(iso) {
  if (!iso) return ''
  const t = Date.parse(iso)
  if (Number.isNaN(t)) return iso
  const s = Math.round((Date.now() - t) / 1000)
  if (s < 5) return 'just now'
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return new Date(t).toLocaleString()
}

export function formatDuration(ms) {
  if (ms == null) return ''
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`
  const m = Math.floor(ms / 60000)
  return `${m} min ${Math.round((ms % 60000) / 1000)} s`
}

const ACTOR_KEY = 'runtimed.actor'
const ADJECTIVES = ['Amber', 'Brisk', 'Calm', 'Deft', 'Eager', 'Fleet', 'Gentle', 'Keen', 'Lucid', 'Nimble', 'Quiet', 'Swift']
const ANIMALS = ['Otter', 'Heron', 'Lynx', 'Finch', 'Marten', 'Ibex', 'Wren', 'Koala', 'Puffin', 'Gecko', 'Stoat', 'Tern']

/** This browser's actor {id, kind: "human", name}; `?as=Name` in the URL renames it. */
export function localActor() {
  let actor = null
  try {
    actor = JSON.parse(localStorage.getItem(ACTOR_KEY) || 'null')
  } catch {}
  if (!actor || !/^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(actor.id || '')) {
    const pick = (xs) => xs[Math.floor(Math.random() * xs.length)]
    actor = { id: newId('web-'), kind: 'human', name: `${pick(ADJECTIVES)} ${pick(ANIMALS)}` }
  }
  const renamed = new URLSearchParams(location.search).get('as')
  if (renamed) actor.name = renamed.slice(0, 100)
  saveActor(actor)
  return actor
}

export function saveActor(actor) {
  try {
    localStorage.setItem(ACTOR_KEY, JSON.stringify(actor))
  } catch {}
}

/** A stable colour for an actor or connection id. */
export function colorFor(key) {
  let h = 0
  for (const c of String(key)) h = (h * 31 + c.charCodeAt(0)) >>> 0
  return `hsl(${h % 360} 65% 28%)` // white text on it has a contrast of at least 4.5:1 at every hue
}
