// AI cells on the notebook page (docs/ai.md): adding one (toolbar, Alt-I), the provider/model picker for the
// notebook and for one cell (aiSettingsSet events), the model's tool calls as compact, expandable steps,
// and the approvals those calls wait for, answered in place.
//
// The answer itself is a text/markdown output the daemon updates while it streams (outputs.js renders it).
// Settings are read once (GET /api/notebooks/{id}/ai-settings) and then follow the aiSettingsSet events.
// Settings never hold keys (the event refuses them): the daemon's environment supplies them.
import { api, notebookPath } from './api.js'
import { registerMime } from './outputs.js'
import { pendingApprovals } from './reducer.js'
import { el, notice } from './util.js'

export const TOOL_CALL_MIME = 'application/vnd.runtimed.tool-call+json'
export const PROVIDERS = ['openai', 'anthropic']
const AI_ACTOR_PREFIX = 'agent:ai-' // runtimed.agents.workspace.agent_actor of an AI cell's model
const SUMMARY_CHARS = 120

function shorten(text, n = SUMMARY_CHARS) {
  return text.length > n ? text.slice(0, n - 1) + '…' : text
}

/** One tool call of an AI cell: a one-line summary; arguments and result when opened. */
export function renderToolStep(record, node) {
  const rec = record && typeof record === 'object' ? record : {}
  const status = rec.status || 'running'
  const args = rec.arguments && typeof rec.arguments === 'object' ? rec.arguments : {}
  const done = Object.prototype.hasOwnProperty.call(rec, 'result')
  const icon = { ok: '✓', error: '✗', running: '…' }[status] || '·'
  node.classList.add('ai-step-wrap')
  node.dataset.testid = 'ai-step'
  node.dataset.tool = String(rec.tool || '')
  node.dataset.status = status
  node._record = rec
  node.append(
    el('details.ai-step', null,
      el('summary', { testid: 'ai-step-summary' },
        el('span.ai-step-icon', { text: icon }),
        el('code.ai-step-tool', { text: String(rec.tool || '?') }),
        el('span.ai-step-args', { text: shorten(JSON.stringify(args)) }),
        el('span.ai-step-status', { text: status === 'running' ? 'running…' : status })),
      el('div.ai-step-body', null,
        el('div.muted', { text: 'arguments' }),
        el('pre.ai-step-arguments', { testid: 'ai-step-arguments', text: JSON.stringify(args, null, 2) }),
        done ? el('div.muted', { text: 'result' }) : null,
        done ? el('pre.ai-step-result', { testid: 'ai-step-result', text: String(rec.result) }) : null)),
    el('div.ai-step-approval', { testid: 'ai-step-approval', hidden: true }))
}

registerMime(TOOL_CALL_MIME, renderToolStep)

function sameArguments(asked, called) {
  return Object.entries(called || {}).every(([k, v]) => JSON.stringify(asked?.[k]) === JSON.stringify(v))
}

function label(s) {
  return s && s.provider ? `${s.provider} · ${s.model || '(no model)'}` : 'no model chosen'
}

export class AiCells {
  /** @param page the NotebookPage (state, views, push, addCell, approvals) */
  constructor(page) {
    this.page = page
    this.notebook = null // {provider, model, settings} set for the notebook, or null
    this.cells = new Map() // cellId -> {provider, model, settings} set for that cell
    this.controls = new Map() // cellId -> {chip, form} of an AI cell's view
    this.notebookChip = el('button.ghost.ai-settings', {
      type: 'button', testid: 'ai-settings', title: 'The model that answers this notebook\'s AI cells',
      on: { click: () => this._toggle(this.notebookForm) },
    })
    this.notebookForm = this._form(null)
    this.notebookForm.hidden = true
    const add = (testid) => el('button.ghost', { type: 'button', testid, text: '+ AI', title: 'Add an AI cell (Alt-I)',
      on: { click: () => this.add(testid === 'add-ai' ? null : 'end') } })
    const spacer = page.toolbar.querySelector('.spacer')
    page.toolbar.insertBefore(add('add-ai'), spacer)
    page.toolbar.insertBefore(this.notebookChip, spacer.nextSibling)
    page.addEnd.append(add('add-ai-end'))
    page.approvals.node.before(this.notebookForm)
    document.addEventListener('keydown', (e) => {
      if (e.altKey && !e.ctrlKey && !e.metaKey && !e.shiftKey && e.code === 'KeyI' && page.root.isConnected) {
        e.preventDefault()
        this.add(null)
      }
    }, true)
    this._renderNotebook()
  }

  async load() {
    let body
    try {
      body = await api(`${notebookPath(this.page.notebookId)}/ai-settings`)
    } catch (err) {
      notice(`Could not read the AI settings: ${err.message}`)
      return
    }
    if (this.notebook == null && body.notebook) this.notebook = body.notebook
    for (const [id, s] of Object.entries(body.cells || {})) if (!this.cells.has(id)) this.cells.set(id, s)
    this._renderAll()
  }

  /** Events from the log (before the reducer applies them): aiSettingsSet changes the pickers. */
  onEvents(events) {
    let changed = false
    for (const e of events) {
      if (e.name !== 'aiSettingsSet') continue
      const a = e.args || {}
      const s = { provider: a.provider, model: a.model, settings: a.settings || {} }
      if (a.cellId) this.cells.set(a.cellId, s)
      else this.notebook = s
      changed = true
    }
    if (changed) this._renderAll()
  }

  /** An AI cell below the active cell (at the end without one), its prompt editor focused. */
  add(where) {
    if (this.page.readOnly) return
    const ref = where === 'end' ? null : this.page.activeCellId
    this.page.addCell(ref, ref ? 'below' : 'end', 'ai')
  }

  /** The settings that apply to a cell: its own over the notebook's, key by key (as views.ai_settings). */
  effective(cellId) {
    const own = this.cells.get(cellId)
    if (!own) return this.notebook
    const base = this.notebook || { provider: '', model: '', settings: {} }
    return { provider: own.provider || base.provider, model: own.model || base.model,
      settings: { ...(base.settings || {}), ...(own.settings || {}) } }
  }

  /** Whether a cell has a model of its own (an empty provider and model keep the notebook's). */
  ownModel(cellId) {
    const own = this.cells.get(cellId)
    return !!(own && (own.provider || own.model))
  }

  /** After the page applied a batch of changes: controls on AI cells, approvals in their tool steps. */
  render() {
    for (const [id, c] of this.controls) {
      const v = this.page.views.get(id)
      if (!v || v.cell.cell_type !== 'ai') {
        c.chip.remove()
        c.form.remove()
        this.controls.delete(id)
      }
    }
    const pending = pendingApprovals(this.page.state).filter((a) => (a.requested_by?.id || '').startsWith(AI_ACTOR_PREFIX))
    for (const v of this.page.views.values()) {
      if (v.cell.cell_type !== 'ai') continue
      if (!this.controls.has(v.id)) this._attach(v)
      this._approvalsIn(v, pending)
    }
  }

  _renderAll() {
    this._renderNotebook()
    for (const id of this.controls.keys()) this._renderCell(id)
  }

  _renderNotebook() {
    this.notebookChip.textContent = `AI: ${label(this.notebook)}`
    this._fill(this.notebookForm, this.notebook)
  }

  _attach(v) {
    const chip = el('button.ghost.ai-model', { type: 'button', testid: 'ai-model', title: 'The model that answers this cell',
      on: { click: () => this._toggle(form) } })
    const form = this._form(v.id)
    form.hidden = true
    v.runButton.after(chip)
    v.sourceBox.before(form)
    this.controls.set(v.id, { chip, form })
    this._renderCell(v.id)
  }

  _renderCell(cellId) {
    const c = this.controls.get(cellId)
    if (!c) return
    const own = this.ownModel(cellId)
    const applies = this.effective(cellId)
    c.chip.textContent = label(applies) + (own ? '' : ' (notebook)')
    c.chip.title = own ? 'This cell\'s model (click to change)' : 'The notebook\'s model (click to choose one for this cell)'
    this._fill(c.form, applies)
  }

  _toggle(form) {
    form.hidden = !form.hidden
    if (!form.hidden) form.querySelector('select, input')?.focus()
  }

  /** The provider / model / base URL form, for the notebook (cellId null) or one cell. */
  _form(cellId) {
    const provider = el('select.ai-provider', { testid: 'ai-provider' }, PROVIDERS.map((p) => el('option', { value: p, text: p })))
    const model = el('input.ai-model-name', { testid: 'ai-model-name', placeholder: 'model, e.g. gpt-4o-mini', maxlength: 256 })
    const baseUrl = el('input.ai-base-url', { testid: 'ai-base-url', placeholder: 'base URL (default: the daemon\'s environment)' })
    const form = el('form.ai-settings-form', { testid: cellId ? 'ai-cell-settings' : 'ai-notebook-settings' },
      el('span.muted', { text: cellId ? 'This cell:' : 'AI cells of this notebook:' }),
      provider, model, baseUrl,
      el('button.primary', { type: 'submit', testid: 'ai-save', text: 'Save' }),
      el('button.ghost', { type: 'button', text: 'Cancel', on: { click: () => (form.hidden = true) } }),
      cellId
        ? el('button.ghost', { type: 'button', testid: 'ai-use-notebook', text: 'Use the notebook\'s',
            title: 'This cell answers with the notebook\'s provider and model again',
            on: { click: () => {
              this._reset(cellId)
              form.hidden = true
            } } })
        : null,
      el('span.muted.ai-keys-note', { text: 'Keys come from the daemon\'s environment, never from here.' }))
    form._fields = { provider, model, baseUrl }
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      this._save(cellId, provider.value, model.value.trim(), baseUrl.value.trim())
      form.hidden = true
    })
    return form
  }

  _fill(form, s) {
    const { provider, model, baseUrl } = form._fields
    if (form.contains(document.activeElement)) return // do not overwrite what the person is typing
    provider.value = s && PROVIDERS.includes(s.provider) ? s.provider : PROVIDERS[0]
    model.value = (s && s.model) || ''
    baseUrl.value = (s && s.settings && typeof s.settings.base_url === 'string' && s.settings.base_url) || ''
  }

  _save(cellId, provider, model, baseUrl) {
    if (this.page.readOnly) return
    if (!model) {
      notice('Choose a model (e.g. gpt-4o-mini, or the name your local server serves)')
      return
    }
    const current = (cellId ? this.cells.get(cellId) : this.notebook) || { settings: {} }
    const settings = { ...(current.settings || {}) }
    if (baseUrl) settings.base_url = baseUrl
    else delete settings.base_url
    const args = { provider, model, settings }
    if (cellId) args.cellId = cellId
    this.page.push([{ name: 'aiSettingsSet', args }])
  }

  /** Back to the notebook's provider and model: an empty provider and model keep the notebook's (views.ai_settings). */
  _reset(cellId) {
    if (this.page.readOnly || !this.cells.has(cellId)) return
    this.page.push([{ name: 'aiSettingsSet', args: { cellId, provider: '', model: '', settings: {} } }])
  }

  /** Approve / Always / Deny next to the running step whose call waits for a person. */
  _approvalsIn(v, pending) {
    for (const step of v.outputs.querySelectorAll('.ai-step-wrap')) {
      const rec = step._record || {}
      const slot = step.querySelector('.ai-step-approval')
      const asked = rec.status ? null : pending.find((a) => a.tool === rec.tool && sameArguments(a.arguments, rec.arguments))
      if (!asked) {
        if (!slot.hidden) slot.replaceChildren()
        slot.hidden = true
        continue
      }
      if (slot.dataset.approvalId === asked.approval_id && !slot.hidden) continue
      slot.dataset.approvalId = asked.approval_id
      const answer = (decision, text, testid, cls) => el('button' + cls, { type: 'button', testid, text,
        on: { click: () => {
          for (const b of slot.querySelectorAll('button')) b.disabled = true
          this.page.approvals.resolve(asked.approval_id, decision)
        } } })
      slot.replaceChildren(
        el('span', { text: `${rec.tool} waits for your approval ` }),
        answer('approved', 'Approve', 'ai-approve', '.primary'),
        answer('approved_always', 'Always', 'ai-approve-always', ''),
        answer('denied', 'Deny', 'ai-deny', '.danger'))
      slot.hidden = false
    }
  }
}
