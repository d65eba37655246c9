// The widget manager of one widget output, inside its sandboxed output frame (opaque origin).
//
// Bundled separately (static/widgets.js + widgets.css, an IIFE loaded with a classic <script>: the frame's
// opaque origin cannot load module scripts without CORS) and fetched only by frames that show a widget, so
// the app bundle does not carry @jupyter-widgets/html-manager.
//
// The frame knows nothing but what the parent page posts it: the notebook's widget models (the document's
// state), then their changes. The kernel is never reached from here: a change made in the frame (a slider
// moved) is posted to the parent, which writes it to the log (commUpdateRequested); the runtime forwards it
// to the kernel, and every page, this one included, gets it back as an event. See docs/widgets.md.
import { HTMLManager } from '@jupyter-widgets/html-manager/lib/htmlmanager.js'
import * as base from '@jupyter-widgets/base'
import '@fortawesome/fontawesome-free/css/all.min.css'
import '@lumino/widgets/style/index.css'
import '@jupyter-widgets/controls/css/widgets-base.css'
import '@jupyter-widgets/controls/css/labvariables.css'

const SEND_INTERVAL = 100 // ms between two changes a model sends (ipywidgets buffers what comes meanwhile)

const slot = document.getElementById('runtimed-widget')
const token = slot.dataset.token
const modelId = slot.dataset.model

function post(message) {
  parent.postMessage({ runtimedWidget: token, ...message }, '*')
}

function toBase64(buffer) {
  const bytes = buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
  let s = ''
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000))
  return btoa(s)
}

function fromBase64(text) {
  const raw = atob(text)
  const bytes = new Uint8Array(raw.length)
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i)
  return new DataView(bytes.buffer)
}

/** A comm that talks to the parent page instead of a kernel. */
class FrameComm {
  constructor(commId) {
    this.comm_id = commId
    this.target_name = 'jupyter.widget'
    this._onMsg = null
    this._onClose = null
  }

  send(data, callbacks, metadata, buffers) {
    if (!live) return '' // not connected to a live kernel: the document keeps the last state
    const msgId = `${this.comm_id}-${Date.now()}-${Math.random().toString(36).slice(2)}`
    post({ type: 'send', commId: this.comm_id, data, buffers: (buffers || []).map(toBase64) })
    // The log took the change (the parent pushed it): let the model send what it buffered meanwhile, but not
    // more often than SEND_INTERVAL, so a dragged slider writes a bounded number of events.
    const status = callbacks && callbacks.iopub && callbacks.iopub.status
    if (status) setTimeout(() => status({ content: { execution_state: 'idle' }, parent_header: { msg_id: msgId } }), SEND_INTERVAL)
    return msgId
  }

  deliver(data, buffers) {
    this._onMsg?.({ content: { comm_id: this.comm_id, data }, buffers: (buffers || []).map(fromBase64) })
  }

  on_msg(cb) { this._onMsg = cb }
  on_close(cb) { this._onClose = cb }
  close() {}
  open() { return '' }
}

// -- anywidget: its model is a plain widget model; its view imports the model's ESM and calls render() --------

class AnyModel extends base.DOMWidgetModel {}

class AnyView extends base.DOMWidgetView {
  async render() {
    const css = this.model.get('_css')
    if (css) document.head.append(Object.assign(document.createElement('style'), { textContent: css }))
    const esm = this.model.get('_esm') || ''
    const url = /^(https?:)?\/\//.test(esm) ? esm : URL.createObjectURL(new Blob([esm], { type: 'text/javascript' }))
    const mod = await import(/* @vite-ignore */ url)
    let widget = mod.default ?? mod
    if (typeof widget === 'function') widget = await widget()
    if (!this.model._anyInitialized && widget.initialize) {
      this.model._anyInitialized = true
      await widget.initialize({ model: this.model })
    }
    const cleanup = await widget.render?.({ model: this.model, el: this.el })
    if (typeof cleanup === 'function') this.once('remove', cleanup)
  }
}

const anywidget = { AnyModel, AnyView }

// -- the manager --------------------------------------------------------------------------------------------

class FrameManager extends HTMLManager {
  constructor() {
    super({ loader: (name) => (name === 'anywidget' ? Promise.resolve(anywidget) : Promise.reject(new Error(`widget module ${name} is not available here (only @jupyter-widgets and anywidget are)`))) })
    this.comms = new Map()
  }

  _get_comm_info() {
    return Promise.resolve(Object.fromEntries([...this.comms.keys()].map((id) => [id, { target_name: 'jupyter.widget' }])))
  }

  _create_comm(target, id) {
    let comm = this.comms.get(id)
    if (!comm) this.comms.set(id, (comm = new FrameComm(id)))
    return Promise.resolve(comm)
  }

  /** Create the models of a widget-state document that this manager does not have yet (references between
   * them resolve: every model is registered before any state is deserialized). */
  async add(models) {
    const created = []
    for (const [id, m] of Object.entries(models)) {
      if (this.has_model(id)) continue
      const state = { ...m.state }
      if (m.buffers?.length) base.put_buffers(state, m.buffers.map((b) => b.path), m.buffers.map((b) => fromBase64(b.data)))
      let comm = this.comms.get(id)
      if (!comm) this.comms.set(id, (comm = new FrameComm(id)))
      created.push(this.new_model({ model_id: id, model_name: m.model_name, model_module: m.model_module,
        model_module_version: m.model_module_version, comm }, state))
    }
    await Promise.allSettled(created)
  }
}

const manager = new FrameManager()
let live = false

function setLive(value) {
  live = !!value
  document.documentElement.classList.toggle('widget-offline', !live)
}

addEventListener('message', async (e) => {
  const d = e.data
  if (e.source !== parent || !d || d.runtimedWidget !== token) return
  if (d.type === 'init') {
    setLive(d.live)
    await manager.add(d.models)
    try {
      const model = await manager.get_model(modelId)
      await manager.display_view(manager.create_view(model), slot)
      post({ type: 'rendered' })
    } catch (err) {
      slot.textContent = `Could not show widget ${modelId}: ${err && err.message ? err.message : err}`
      post({ type: 'rendered', error: String(err) })
    }
  } else if (d.type === 'open') {
    await manager.add(d.models)
  } else if (d.type === 'update') {
    manager.comms.get(d.commId)?.deliver({ method: 'update', state: d.state, buffer_paths: d.bufferPaths || [] }, d.buffers)
  } else if (d.type === 'custom') {
    manager.comms.get(d.commId)?.deliver({ method: 'custom', content: d.content }, d.buffers)
  } else if (d.type === 'live') {
    setLive(d.live)
  }
})

const style = document.createElement('style')
style.textContent = 'html.widget-offline .lm-Widget{pointer-events:none}html.widget-offline body{opacity:.75}'
document.head.append(style)
post({ type: 'ready' })
