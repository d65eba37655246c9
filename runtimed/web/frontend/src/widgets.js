// Widgets (ipywidgets, anywidget) in the page: the document holds every model's state; frames show them.
//
// The page keeps the notebook's widget models (from the REST view, then from comm events) and relays them to
// the sandboxed frames that show widget outputs. Each frame runs its own widget manager
// (static/widgets/widgets.js, built from widgets-frame.js, loaded only by frames that show a widget) on the
// models the page posts it. A change made in a frame (a slider moved) comes back here and is written to the
// log as `commUpdateRequested`; the runtime forwards it to the kernel, and every page gets it as an event,
// so every viewer and the kernel see the same value. Models whose kernel is gone (runtime stopped or
// restarted) keep their last state and are shown as not connected. See docs/widgets.md.
import { artifactUrl } from './artifacts.js'
import { registerMime, sandboxFrame } from './outputs.js'
import { el, escapeHtml, newId } from './util.js'

export const WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json'
const WIDGET_STATE_MIME = 'application/vnd.jupyter.widget-state+json'

const models = new Map() // comm id -> { state, buffers, live, session_id }
const views = new Map() // token -> { wrap, slot, modelId, win }
const origins = new Map() // id of an event this page pushed for a frame -> that frame's token
let page = null
let activeSession = null
let past = null // the models of the history view (the time slider) while it is shown, else null

/** Show the models as they were (the REST view at a seq) in the widget outputs rendered from now on; null: live. */
export function widgetHistory(view) {
  past = view ? modelsOf(view, new Map(), false) : null
}

/** Take the models of a freshly loaded notebook view (imported widget state first, the log's models over it). */
export function initWidgets(notebookPage, view) {
  page = notebookPage
  models.clear()
  activeSession = view.runtime?.session_id ?? null
  modelsOf(view, models)
}

function modelsOf(view, into, live = true) {
  const imported = view.metadata?.widgets?.[WIDGET_STATE_MIME]?.state || {}
  for (const [id, m] of Object.entries(imported)) {
    into.set(id, { state: m.state || {}, buffers: (m.buffers || []).map((b) => ({ path: b.path, data: b.data })), live: false })
  }
  for (const w of view.widgets || []) into.set(w.comm_id, { state: w.state, buffers: w.buffers, live: live && w.live, session_id: w.session_id })
  return into
}

/** Follow the log: keep the models current and tell the frames. */
export function widgetEvents(events) {
  const opened = []
  for (const e of events) {
    const a = e.args || {}
    switch (e.name) {
      case 'runtimeSessionStarted':
        activeSession = a.sessionId
        break
      case 'runtimeSessionEnded':
        for (const m of models.values()) if (m.session_id === a.sessionId) m.live = false
        liveChanged()
        break
      case 'commOpened':
        models.set(a.commId, { state: { ...a.state }, buffers: a.buffers || [], live: true, session_id: activeSession })
        opened.push(a.commId)
        break
      case 'commStateChanged':
      case 'commUpdateRequested': {
        const m = models.get(a.commId)
        if (m && a.state) {
          Object.assign(m.state, a.state)
          m.buffers = (m.buffers || []).filter((b) => !(b.path[0] in a.state)).concat(a.buffers || [])
          const origin = origins.get(e.id)
          origins.delete(e.id)
          void broadcast({ type: 'update', commId: a.commId, state: a.state }, a.buffers || [], origin)
        }
        break // a viewer's custom message (content) is for the kernel only
      }
      case 'commCustomMessage':
        if (models.has(a.commId)) void broadcast({ type: 'custom', commId: a.commId, content: a.content }, a.buffers || [])
        break
      case 'commClosed':
        if (a.keep) {
          const m = models.get(a.commId)
          if (m) m.live = false
        } else models.delete(a.commId)
        liveChanged()
        break
    }
  }
  if (opened.length) {
    void documentOf(opened).then((doc) => {
      for (const v of connectedViews()) post(v, { type: 'open', models: doc })
    })
  }
}

registerMime(WIDGET_VIEW_MIME, (value, node) => node.append(renderWidgetView(value)))

/** A widget output: the frame that shows the model, and a note when its kernel is gone. */
export function renderWidgetView(value) {
  const modelId = String(value?.model_id || '')
  const token = newId('w-')
  const wrap = el('div.widget-view', { testid: 'widget-view', 'data-model-id': modelId })
  const badge = el('div.widget-offline', { testid: 'widget-offline', text: 'Not connected to a live kernel: the last state of this widget' })
  const body = `<div id="runtimed-widget" data-token="${token}" data-model="${escapeHtml(modelId)}"></div>` +
    '<link rel="stylesheet" href="/static/widgets/widgets.css"><script src="/static/widgets/widgets.js"></script>'
  const slot = sandboxFrame(body, 'widget-frame')
  wrap.append(badge, slot)
  const v = { wrap, slot, modelId, badge, win: null, models: past || models }
  views.set(token, v)
  showLive(v)
  return wrap
}

function showLive(v) {
  const m = v.models.get(v.modelId)
  v.badge.hidden = !!m?.live
  v.wrap.dataset.live = m?.live ? '1' : '0'
}

function liveChanged() {
  for (const [token, v] of connectedViews(true)) {
    showLive(v)
    post(v, { type: 'live', live: !!models.get(v.modelId)?.live }, token)
  }
}

function connectedViews(withTokens = false) {
  const out = []
  for (const [token, v] of views) {
    if (!v.wrap.isConnected && v.win) views.delete(token) // its output was replaced
    else if (v.win && v.models === models) out.push(withTokens ? [token, v] : v) // history frames stay as they were
  }
  return out
}

function post(v, message) {
  const token = [...views].find(([, x]) => x === v)?.[0]
  if (token && v.win) v.win.postMessage({ runtimedWidget: token, ...message }, '*')
}

async function broadcast(message, buffers, exceptToken) {
  const resolved = await resolveBuffers(buffers)
  const full = { ...message, bufferPaths: resolved.map((b) => b.path), buffers: resolved.map((b) => b.data) }
  for (const [token, v] of connectedViews(true)) if (token !== exceptToken) post(v, full)
}

/** Buffers as base64: inline ones as they are, artifacts fetched (the frame's opaque origin cannot). */
async function resolveBuffers(buffers) {
  return Promise.all((buffers || []).map(async (b) => {
    if (b.data != null) return { path: b.path, data: b.data }
    const res = await fetch(artifactUrl({ artifact: b.artifact, size: b.size }))
    const bytes = new Uint8Array(await res.arrayBuffer())
    let s = ''
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000))
    return { path: b.path, data: btoa(s) }
  }))
}

/** Models in the widget-state format (what the frame's manager creates them from). */
async function documentOf(ids, source = models) {
  const doc = {}
  for (const id of ids) {
    const m = source.get(id)
    if (!m) continue
    const s = m.state
    doc[id] = { model_name: s._model_name, model_module: s._model_module, model_module_version: s._model_module_version,
      state: { ...s }, buffers: await resolveBuffers(m.buffers) }
  }
  return doc
}

function pushChange(token, v, d) {
  const m = v.models.get(d.commId)
  if (!m || !m.live || !page || !d.data) return
  const paths = d.data.buffer_paths || []
  const buffers = (d.buffers || []).slice(0, Math.max(paths.length, d.data.method === 'custom' ? d.buffers.length : 0))
    .map((data, i) => ({ path: paths[i] || [i], data }))
  const args = d.data.method === 'custom'
    ? { commId: d.commId, content: d.data.content ?? null, buffers }
    : { commId: d.commId, state: d.data.state || {}, buffers }
  const pushed = page.push([{ name: 'commUpdateRequested', args }])
  for (const e of pushed || []) origins.set(e.id, token)
}

window.addEventListener('message', (e) => {
  const d = e.data
  if (!d || typeof d !== 'object' || typeof d.runtimedWidget !== 'string') return
  const v = views.get(d.runtimedWidget)
  const frame = v?.slot.querySelector('iframe')
  if (!v || !frame || e.source !== frame.contentWindow) return // only the frame made for that token
  v.win = e.source
  if (d.type === 'ready') {
    void documentOf([...v.models.keys()], v.models).then((doc) => post(v, { type: 'init', models: doc, live: !!v.models.get(v.modelId)?.live }))
  } else if (d.type === 'rendered') {
    v.wrap.dataset.rendered = d.error ? 'error' : '1'
  } else if (d.type === 'send') {
    pushChange(d.runtimedWidget, v, d)
  }
})
