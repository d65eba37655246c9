// One cell on the notebook page: toolbar, source (a <pre> until the editor is needed),
// markdown preview, execution state, input prompt and outputs.
import { createEditor } from './editor.js'
import { kernelHelp } from './kernel_help.js'
import { OutputChrome } from './output_view.js'
import { renderMarkdown, updateOutputs, ansiHtml } from './outputs.js'
import { cellSource } from './reducer.js'
import { agentMark } from './audit.js'
import { colorFor, el, formatDuration } from './util.js'

const EXECUTABLE = new Set(['code', 'ai', 'sql'])

export function statusText(q) {
  if (!q) return ''
  switch (q.status) {
    case 'pending':
    case 'assigned':
      return 'queued'
    case 'running': {
      const started = Date.parse(q.started_at || '')
      const secs = Number.isNaN(started) ? null : Math.max(0, (Date.now() - started) / 1000)
      return (q.cancel_requested ? 'cancelling… ' : 'running') + (secs != null ? ` ${secs.toFixed(0)} s` : '')
    }
    case 'success':
      return `✓ ${formatDuration(q.duration_ms)}`
    case 'error':
      return `✗ error · ${formatDuration(q.duration_ms)}`
    case 'cancelled':
      return 'cancelled'
    default:
      return q.status
  }
}

function button(label, testid, title, onclick, cls = '') {
  return el('button.icon' + cls, { type: 'button', testid, title, 'aria-label': title, text: label, on: { click: onclick } })
}

export class CellView {
  constructor(page, cell) {
    this.page = page
    this.cell = cell
    this.id = cell.id
    this.editor = null
    this.editing = false // markdown cells: editing vs rendered
    this.visible = false
    this._mdFrame = 0
    this._build()
    this.update(new Set(['type', 'source', 'outputs', 'status', 'input', 'author']))
    // The <pre> and the rendered markdown follow the Y.Text while no editor shows it.
    this._observer = () => this._sourceChanged()
    cell.text?.observe(this._observer)
  }

  _build() {
    const p = this.page
    const id = this.id
    this.prompt = el('div.prompt', { testid: 'exec-count' })
    this.status = el('span.cell-status', { testid: 'cell-status' })
    this.peers = el('span.cell-peers', { testid: 'cell-peers' })
    this.agent = el('span.agent-badge', { testid: 'agent-badge', hidden: true })
    this.runButton = button('▶', 'run-cell', 'Run (Shift-Enter)', () => p.run(id, false), '.run')
    // The rest of the toolbar is built when the cell first comes near the viewport (or is hovered).
    this.toolbar = el('div.cell-toolbar', null, this.runButton, this.status, this.peers, el('span.spacer'), this.agent)
    this.typeSelect = null
    this.pre = el('pre.source-preview', { testid: 'source-preview', tabindex: 0 })
    this.pre.addEventListener('mousedown', (e) => {
      e.preventDefault()
      this.edit()
    })
    this.pre.addEventListener('focus', () => this.edit())
    this.sourceBox = el('div.cell-source', { testid: 'cell-source' }, this.pre)
    this.rendered = el('div.markdown.markdown-rendered', { testid: 'markdown-rendered', title: 'Double-click to edit' })
    this.rendered.addEventListener('dblclick', () => this.edit())
    this.inputBox = el('div.cell-input')
    this.outputs = el('div.cell-outputs', { testid: 'outputs' })
    this.node = el(
      'div.cell',
      { testid: 'cell', id: 'cell-' + id, 'data-cell-id': id, tabindex: '-1', role: 'listitem' },
      el('div.cell-gutter', null, this.prompt),
      el('div.cell-main', null, this.toolbar, this.sourceBox, this.rendered, this.inputBox, this.outputs),
    )
    this.outputChrome = new OutputChrome(this)
    this.node.addEventListener('focusin', () => p.setActive(id))
    this.node.addEventListener('pointerenter', () => this.buildTools(), { once: true })
  }

  buildTools() {
    if (this.typeSelect) return
    const p = this.page
    const id = this.id
    this.typeSelect = el(
      'select.cell-type',
      { testid: 'cell-type', title: 'Cell type', on: { change: () => p.changeType(id, this.typeSelect.value) } },
      ['code', 'markdown', 'raw', 'ai'].map((t) => el('option', { value: t, text: t })),
    )
    this.typeSelect.value = ['code', 'markdown', 'raw', 'ai'].includes(this.cell.cell_type) ? this.cell.cell_type : 'code'
    this.toolbar.append(
      this.typeSelect,
      button('↑', 'move-up', 'Move up', () => p.move(id, -1)),
      button('↓', 'move-down', 'Move down', () => p.move(id, +1)),
      button('+↑', 'add-above', 'Add a cell above', () => p.addCell(id, 'above')),
      button('+↓', 'add-below', 'Add a cell below', () => p.addCell(id, 'below')),
      button('⌫', 'clear-outputs', 'Clear outputs', () => p.clearOutputs(id)),
      button('✕', 'delete-cell', 'Delete cell', () => p.deleteCell(id), '.danger'),
    )
  }

  get isMarkdown() {
    return this.cell.cell_type === 'markdown'
  }

  /** Re-render the parts the reducer reported as changed. */
  update(parts) {
    const c = this.cell
    if (parts.has('type')) {
      this.node.dataset.cellType = c.cell_type
      if (this.typeSelect) this.typeSelect.value = ['code', 'markdown', 'raw', 'ai'].includes(c.cell_type) ? c.cell_type : 'code'
      this.runButton.hidden = !EXECUTABLE.has(c.cell_type)
      this.editor?.setLanguage(c.cell_type)
      if (!this.isMarkdown) this.editing = false
      this._layoutSource()
      parts.add('status')
    }
    if (parts.has('source') && !this.editor) this._sourceChanged()
    if (parts.has('outputs')) {
      updateOutputs(this.outputs, c.outputs)
    }
    if (parts.has('outputs') || parts.has('meta')) this.outputChrome.update()
    if (parts.has('status')) this.updateStatus()
    if (parts.has('input')) this.updateInput()
    if (parts.has('author')) this.updateAuthor()
  }

  /** The badge of the agent that created or last changed this cell (none for people's cells). */
  updateAuthor() {
    const mark = agentMark(this.cell)
    this.agent.hidden = !mark
    this.agent.textContent = mark ? mark.name : ''
    this.agent.title = mark ? mark.title : ''
    this.node.classList.toggle('by-agent', !!mark)
  }

  _sourceChanged() {
    if (!this.editor) this.pre.textContent = cellSource(this.cell) || '\u200b'
    if (this.isMarkdown && !this.editing && !this._mdFrame) {
      this._mdFrame = requestAnimationFrame(() => {
        this._mdFrame = 0
        this._renderMarkdown()
      })
    }
  }

  _renderMarkdown() {
    const text = cellSource(this.cell)
    if (!this.visible) {
      // Off-screen: plain text now, the sanitized rendering when the cell scrolls into view.
      this._mdStale = true
      this.rendered.textContent = text
      return
    }
    this._mdStale = false
    if (text.trim()) this.rendered.innerHTML = renderMarkdown(text, this.cell.attachments)
    else this.rendered.replaceChildren(el('span.muted', { text: 'Empty markdown cell: double-click to edit' }))
  }

  _layoutSource() {
    const showRendered = this.isMarkdown && !this.editing
    this.rendered.hidden = !showRendered
    this.sourceBox.hidden = showRendered
    if (showRendered) this._renderMarkdown()
    this.node.classList.toggle('editing', this.editing)
  }

  updateStatus() {
    const c = this.cell
    const q = c.execution
    const executable = EXECUTABLE.has(c.cell_type)
    let prompt = ' '
    if (q && (q.status === 'pending' || q.status === 'assigned' || q.status === 'running')) prompt = '*'
    else if (c.execution_count != null) prompt = String(c.execution_count)
    this.prompt.textContent = executable ? `[${prompt}]` : ''
    this.status.textContent = executable ? statusText(q) : ''
    this.node.dataset.status = (executable && q?.status) || ''
    if (q?.status === 'error' && q.error && !c.outputs.some((o) => o.output_type === 'error')) {
      this.status.title = `${q.error.ename}: ${q.error.evalue}`
    } else this.status.title = ''
  }

  updateInput() {
    const q = this.cell.execution
    const req = q && this.page.state.inputs.get(q.queue_id)
    if (!req) {
      this.inputBox.replaceChildren()
      return
    }
    if (this.inputBox.dataset.queueId === q.queue_id && this.inputBox.firstChild) return
    this.inputBox.dataset.queueId = q.queue_id
    const field = el('input.input-value', { testid: 'input-value', type: req.password ? 'password' : 'text', autocomplete: 'off' })
    const send = () => {
      field.disabled = true
      this.page.replyInput(q.queue_id, field.value)
    }
    field.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') send()
    })
    this.inputBox.replaceChildren(
      el('div.input-request', { testid: 'input-request' },
        el('span.input-prompt', { html: ansiHtml(req.prompt || 'input:') }),
        field,
        el('button', { type: 'button', text: 'Send', testid: 'input-send', on: { click: send } })),
    )
    if (!this.page.hasFocusElsewhere()) field.focus()
  }

  setPeers(peers) {
    this.peers.replaceChildren(
      ...peers.map((p) => el('span.peer-chip.small', { style: `--c:${colorFor(p.actor.id)}`, title: `${p.actor.name} is here`, text: p.actor.name || p.actor.id })),
    )
    this.node.classList.toggle('has-peers', peers.length > 0)
    this.node.style.setProperty('--peer', peers.length ? colorFor(peers[0].actor.id) : 'transparent')
  }

  /** Create the CodeMirror editor (lazily: when visible, clicked or focused). */
  ensureEditor() {
    if (this.editor || !this.cell.text) return this.editor
    const p = this.page
    this.editor = createEditor(this.sourceBox, this.cell.text, this.cell.cell_type, {
      extensions: kernelHelp(p.notebookId, () => this.cell.cell_type === 'code'),
      awareness: p.cursors.awarenessFor(this.cell),
      label: () => `Cell ${p.state.order.indexOf(this.id) + 1} (${this.cell.cell_type})`,
      run: () => p.run(this.id, true),
      runInPlace: () => p.run(this.id, false),
      runInsert: () => {
        p.run(this.id, false)
        p.addCell(this.id, 'below', 'code')
      },
      escape: () => p.commands.enterCommand(this.id),
      next: () => p.commands.editNeighbour(this.id, +1),
      previous: () => p.commands.editNeighbour(this.id, -1),
      focus: () => p.editorFocused(this.id),
      blur: () => p.editorBlurred(this.id),
    })
    this.pre.remove()
    return this.editor
  }

  edit(atEnd = false) {
    if (this.page.readOnly) return
    if (this.isMarkdown && !this.editing) {
      this.editing = true
      this._layoutSource()
    }
    this.ensureEditor()?.focus(atEnd)
  }

  stopEditing() {
    if (this.isMarkdown && this.editing) {
      this.editing = false
      this._layoutSource()
    }
    this.editor?.view.contentDOM.blur()
  }

  becameVisible() {
    this.visible = true
    this.buildTools()
    if (this._mdStale && this.isMarkdown && !this.editing) this._renderMarkdown()
    if (!this.isMarkdown || this.editing) this.ensureEditor()
  }

  destroy() {
    this.cell.text?.unobserve(this._observer)
    if (this._mdFrame) cancelAnimationFrame(this._mdFrame)
    this.editor?.destroy()
    this.page.cursors.forget(this.id)
    this.node.remove()
  }
}

/** A read-only cell for the history view (no editor, no controls). */
export function staticCell(cell) {
  const executable = EXECUTABLE.has(cell.cell_type)
  const outputs = el('div.cell-outputs')
  updateOutputs(outputs, cell.outputs)
  const text = cellSource(cell)
  const source =
    cell.cell_type === 'markdown'
      ? el('div.markdown.markdown-rendered', { html: renderMarkdown(text, cell.attachments) })
      : el('div.cell-source', null, el('pre.source-preview', { text: text || '\u200b' }))
  return el(
    'div.cell.readonly',
    { testid: 'history-cell', 'data-cell-id': cell.id, 'data-cell-type': cell.cell_type },
    el('div.cell-gutter', null, el('div.prompt', { text: executable ? `[${cell.execution_count ?? ' '}]` : '' })),
    el('div.cell-main', null, source, outputs),
  )
}
