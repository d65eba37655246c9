// Completion (Tab, Ctrl-Space) and inspection (Shift-Tab) from the notebook's kernel, as in JupyterLab.
//
// Both go to the daemon's REST endpoints (POST /api/notebooks/{id}/complete and /inspect), which ask the
// kernel of the notebook's runtime with a complete_request / inspect_request of their own. Nothing of it
// is stored in the log. Positions: the Jupyter protocol counts code points, JavaScript strings UTF-16
// units; both ways are converted here.
import { acceptCompletion, autocompletion, completionStatus, startCompletion } from '@codemirror/autocomplete'
import { keymap, showTooltip } from '@codemirror/view'
import { Prec, StateEffect, StateField } from '@codemirror/state'
import { api, notebookPath } from './api.js'
import { ansiHtml } from './outputs.js'
import { el } from './util.js'

const TIMEOUT = 8

/** UTF-16 offset -> code point offset in `text`. */
function toCodePoints(text, offset) {
  let n = 0
  for (let i = 0; i < offset; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < offset) i++
    n++
  }
  return n
}

/** Code point offset -> UTF-16 offset in `text`. */
function fromCodePoints(text, cp) {
  let i = 0
  for (let n = 0; n < cp && i < text.length; n++) {
    const c = text.charCodeAt(i)
    i += c >= 0xd800 && c <= 0xdbff ? 2 : 1
  }
  return i
}

const TYPE_MAP = { function: 'function', class: 'class', module: 'namespace', keyword: 'keyword', instance: 'variable',
  statement: 'variable', param: 'variable', path: 'text', property: 'property' }

/** A CodeMirror completion source asking the kernel (null when no kernel runs: no popup, no error). */
export function kernelCompletionSource(notebookId, isCode = () => true) {
  return async (context) => {
    if (!isCode()) return null
    const code = context.state.doc.toString()
    const pos = context.pos
    if (!context.explicit) return null
    let reply
    try {
      reply = await api(`${notebookPath(notebookId)}/complete`, { method: 'POST',
        body: { code, cursor_pos: toCodePoints(code, pos), timeout: TIMEOUT } })
    } catch {
      return null
    }
    if (context.aborted || !reply.matches?.length) return null
    const types = new Map()
    for (const item of reply.metadata?._jupyter_types_experimental || []) types.set(item.text, item.type)
    return {
      from: fromCodePoints(code, reply.cursor_start),
      to: fromCodePoints(code, reply.cursor_end),
      options: reply.matches.map((label) => ({ label, type: TYPE_MAP[types.get(label)] || undefined })),
      filter: false,
    }
  }
}

const setHelp = StateEffect.define()
const helpField = StateField.define({
  create: () => null,
  update(value, tr) {
    for (const e of tr.effects) if (e.is(setHelp)) return e.value
    if (value && (tr.docChanged || tr.selection)) return null
    return value
  },
  provide: (f) => showTooltip.from(f),
})

/** The kernel's help at the cursor, in a tooltip under it (Escape or typing closes it). */
async function inspect(view, notebookId) {
  const code = view.state.doc.toString()
  const pos = view.state.selection.main.head
  let reply
  try {
    reply = await api(`${notebookPath(notebookId)}/inspect`, { method: 'POST',
      body: { code, cursor_pos: toCodePoints(code, pos), timeout: TIMEOUT } })
  } catch (err) {
    reply = { found: false, error: err.message }
  }
  if (view.state.selection.main.head !== pos) return
  const text = reply.found ? reply.data?.['text/plain'] || '' : reply.error || 'No help found for this name'
  view.dispatch({ effects: setHelp.of({
    pos,
    above: false,
    create: () => ({ dom: el('div.kernel-help', { testid: 'kernel-help', role: 'tooltip' }, el('pre', { html: ansiHtml(text) })) }),
  }) })
}

/** Editor extensions: kernel completion; Tab completes after a name (else indents), Shift-Tab inspects, Escape closes the help. */
export function kernelHelp(notebookId, isCode = () => true) {
  const afterName = (view) => {
    const sel = view.state.selection.main
    if (!sel.empty) return false
    const before = view.state.sliceDoc(Math.max(0, sel.head - 1), sel.head)
    return /[\w.\])'"/]/.test(before)
  }
  return [
    helpField,
    autocompletion({ activateOnTyping: false, interactionDelay: 0, override: [kernelCompletionSource(notebookId, isCode)] }),
    Prec.highest(keymap.of([
      { key: 'Tab', run: (v) => {
        const status = completionStatus(v.state)
        if (status === 'active') return acceptCompletion(v) || true // never an indent while the list is open
        if (status === 'pending') return true
        return isCode() && afterName(v) ? startCompletion(v) : false
      } },
      { key: 'Shift-Tab', run: (v) => (isCode() ? (inspect(v, notebookId), true) : false) },
      { key: 'Escape', run: (v) => (v.state.field(helpField) ? (v.dispatch({ effects: setHelp.of(null) }), true) : false) },
    ])),
  ]
}
