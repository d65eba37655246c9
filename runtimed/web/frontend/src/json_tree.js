// application/json outputs as a collapsible tree, as JupyterLab's JSON viewer: the root is open, nested
// objects and arrays are closed (all open with the output metadata `expanded: true`). Children are built when
// a node is first opened, so a 20,000-item array costs nothing until someone looks inside.
// Keys are shown JSON-quoted ("key": value), so the visible text reads like the JSON itself.
import { registerMime } from './outputs.js'
import { el } from './util.js'
import './json_tree.css'

const MIME = 'application/json'

function isBranch(v) {
  return v !== null && typeof v === 'object'
}

function summary(v) {
  if (Array.isArray(v)) return `[…] ${v.length} item${v.length === 1 ? '' : 's'}`
  const n = Object.keys(v).length
  return `{…} ${n} key${n === 1 ? '' : 's'}`
}

function leaf(v) {
  const kind = v === null ? 'null' : typeof v
  return el('span.json-value.json-' + kind, { text: kind === 'string' ? JSON.stringify(v) : String(v) })
}

function label(key) {
  return key == null ? null : el('span.json-key', { text: (typeof key === 'number' ? String(key) : JSON.stringify(key)) + ': ' })
}

function node(key, value, open, expandAll) {
  if (!isBranch(value)) return el('li.json-leaf', null, label(key), leaf(value))
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value)
  const details = el('details.json-branch', { testid: 'json-branch' },
    el('summary', null, label(key), el('span.json-summary.muted', { text: summary(value) })))
  let built = false
  const build = () => {
    if (built || !details.open) return
    built = true
    details.append(el('ul.json-children', null, entries.map(([k, v]) => node(k, v, expandAll, expandAll))))
  }
  details.addEventListener('toggle', build)
  details.open = open && entries.length > 0
  build()
  return el('li.json-item', null, details)
}

/** Render a JSON value (inline, or fetched from an artifact) as a tree into `node`. */
export function renderJsonTree(value, target, metadata) {
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      // not JSON text: show the string itself
    }
  }
  const expandAll = !!(metadata && metadata[MIME] && metadata[MIME].expanded)
  target.append(el('ul.output-json.json-tree', { testid: 'output-json' }, node(null, value, true, expandAll)))
}

registerMime(MIME, (value, target, o) => renderJsonTree(value, target, o?.metadata), { standard: true })
