// The live notebook page (`/?notebook=ID`).
//
// Load: GET /api/notebooks/{id}?ystate=1 (cells, outputs, latest executions, each cell's Yjs state),
// then the sync WebSocket from head_seq. Every change the page makes is an event pushed to the log;
// every change it shows comes back from the log through the reducer (source edits are CRDT
// updates, applied locally at once and merged by Yjs).
import * as Y from 'yjs'
import { api, ApiError, notebookPath } from './api.js'
import { AiCells } from './ai.js'
import { ApprovalsPanel } from './approvals.js'
import { loadAuthors, loadSteps, stepsView } from './audit.js'
import { DependencyPanel } from './deps.js'
import { CellView, staticCell, statusText } from './cell.js'
import { CommandMode } from './commands.js'
import { RemoteCursors } from './cursors.js'
import { blockNativeUndo } from './editor.js'
import { HistoryActions } from './history_actions.js'
import { keyBetween } from './order.js'
import { applyEvents, Changes, noteAuthors, noteOwnEdit, REMOTE, stateFromView } from './reducer.js'
import { SyncClient } from './sync.js'
import { PeerDirectory, peerKind } from './presence.js'
import { CellUndo } from './undo.js'
import { colorFor, el, localActor, newId, notice, toBase64 } from './util.js'
import { initWidgets, widgetEvents, widgetHistory } from './widgets.js'

const EXECUTABLE = new Set(['code', 'ai', 'sql'])

export async function notebookPage(root, notebookId) {
  const t0 = performance.now()
  // Open the socket while the state loads; hello goes out once head_seq is known.
  const socket = SyncClient.preconnect(notebookId)
  let view
  try {
    view = await api(`${notebookPath(notebookId)}?ystate=1`)
  } catch (err) {
    socket.close()
    const missing = err instanceof ApiError && err.status === 404
    root.replaceChildren(
      el('header.topbar', null, el('a.brand', { href: '/', text: 'runtimed' })),
      el('main.list-page', null,
        el('h2', { testid: 'load-error', text: missing ? `No notebook “${notebookId}”` : `Could not load the notebook: ${err.message}` }),
        el('p', null, el('a', { href: '/', text: '← all notebooks' }))),
    )
    return null
  }
  const page = new NotebookPage(root, notebookId, view, socket)
  page.timings.loaded = performance.now() - t0
  window.__runtimed = page
  return page
}

class NotebookPage {
  constructor(root, notebookId, view, socket = null) {
    this.root = root
    this.notebookId = notebookId
    this.actor = localActor()
    this.state = stateFromView(view, { live: true })
    initWidgets(this, view)
    this.views = new Map() // cellId -> CellView
    this.peers = new Map() // connectionId -> {actor, cellId}
    this.peerDirectory = new PeerDirectory(this) // every connection's client, for the kind shown
    this.ownSourceIds = new Set()
    this.sourceBuffer = new Map() // cellId -> [Uint8Array]
    this.flushScheduled = false
    this.pendingFocus = null
    this.pendingEdit = true // the pending cell gets an editor (false: command mode on it)
    this.activeCellId = null
    this.readOnly = false
    this.historySeq = null
    this.timings = {}
    this._blurTimer = null

    const t = performance.now()
    this.approvals = new ApprovalsPanel(this)
    this.deps = new DependencyPanel(this)
    blockNativeUndo()
    this._buildChrome()
    this.ai = new AiCells(this)
    this.undo = new CellUndo(this)
    this.commands = new CommandMode(this)
    this.history = new HistoryActions(this)
    this.cursors = new RemoteCursors(this)
    // Editors are created lazily, when a cell nears the viewport. Cells use content-visibility:auto,
    // whose state-change event says exactly that (cheaper than an IntersectionObserver on 500 cells).
    this.cvEvents = 'oncontentvisibilityautostatechange' in document.body
    this.visibility = this.cvEvents
      ? null
      : new IntersectionObserver(
          (entries) => {
            for (const e of entries) if (e.isIntersecting) this._activate(e.target.dataset.cellId)
          },
          { rootMargin: '300px 0px' },
        )
    if (this.cvEvents) requestAnimationFrame(() => requestAnimationFrame(() => this._noteEditors()))
    for (const cellId of this.state.order) this._addView(this.state.cells.get(cellId))
    this._reorder()
    this.ai.render()
    this._renderTitle()
    this._renderRuntime()
    this._renderHistoryBounds()
    this.approvals.renderPolicy()
    this.timings.rendered = performance.now() - t

    this.sync = new SyncClient(notebookId, {
      actor: this.actor,
      since: this.state.headSeq,
      onEvents: (events) => this._onEvents(events),
      onReject: (event, error) => this._onReject(event, error),
      onPresence: (m) => this._onPresence(m),
      onStatus: (status, detail) => this._renderConnection(status, detail),
      onAcked: () => this._renderConnection(this.sync.status),
      onWelcome: () => {
        if (this.timings.live == null) this.timings.live = performance.now()
        this.peers.clear()
        this.cursors.clear()
        this._renderPeers()
        this.peerDirectory.refresh()
      },
      onFatal: (code, message) => this._onFatal(code, message),
    })
    this.sync.connect(socket)
    this.approvals.load()
    this.deps.refresh()
    this.ai.load()
    this._loadAuthors()
    this._tick = setInterval(() => this._tickRunning(), 1000)
    window.addEventListener('beforeunload', (e) => {
      if (this.sync.unacked > 0) e.preventDefault()
    })
  }

  // -- chrome ------------------------------------------------------------------------------------

  _buildChrome() {
    this.titleInput = el('input.title-input', {
      testid: 'notebook-title', placeholder: 'Untitled notebook', maxlength: 1000,
      on: {
        keydown: (e) => e.key === 'Enter' && e.target.blur(),
        change: () => this.setTitle(this.titleInput.value),
      },
    })
    this.connection = el('span.connection', { testid: 'connection-status', text: 'connecting' })
    this.runtimeBadge = el('span.badge.runtime', { testid: 'runtime-status' })
    this.peerList = el('span.peers', { testid: 'peers' })
    this.you = el('span.peer-chip.you', { testid: 'me', style: `--c:${colorFor(this.actor.id)}`, title: 'you', text: this.actor.name })

    this.slider = el('input.history-slider', { type: 'range', min: 1, max: 1, value: 1, step: 1, testid: 'history-slider', title: 'History: drag to see an earlier state' })
    this.historyLabel = el('span.history-label', { testid: 'history-label' })
    this.liveButton = el('button.ghost', { type: 'button', testid: 'history-live', text: 'Back to live', hidden: true, on: { click: () => this.showLive() } })
    this.slider.addEventListener('input', () => this._sliderMoved())

    const tb = (label, testid, title, onclick, cls = '') =>
      el('button.ghost' + cls, { type: 'button', testid, title, text: label, on: { click: onclick } })
    this.toolbar = el(
      'div.toolbar',
      null,
      tb('▶▶ Run all', 'run-all', 'Run every code cell in order', () => this.runAll()),
      tb('■ Interrupt', 'interrupt', 'Interrupt the kernel', () => this.interrupt()),
      tb('↻ Restart', 'restart', 'Restart the kernel', () => this.restart()),
      tb('⌫ Clear outputs', 'clear-all', 'Clear every output', () => this.clearAll()),
      tb('+ Code', 'add-cell', 'Add a code cell at the end', () => this.addCell(null, 'end', 'code')),
      tb('+ Markdown', 'add-markdown', 'Add a markdown cell at the end', () => this.addCell(null, 'end', 'markdown')),
      el('span.spacer'),
      this.deps.button,
      this.approvals.policy,
      (this.exportLink = el('a.button.ghost', { href: `${notebookPath(this.notebookId)}/export`, download: `${this.notebookId}.ipynb`, testid: 'export-link', text: 'Export .ipynb' })),
    )
    this.historyBar = el('div.history-bar', null, el('span.muted', { text: 'History' }), this.slider, this.historyLabel, this.liveButton)
    this.historyBanner = el('div.history-banner', { testid: 'history-banner', hidden: true })
    this.cellsBox = el('div.cells', { testid: 'cells', role: 'list', 'aria-label': 'Cells' })
    this.historyBox = el('div.cells.history-view', { testid: 'history-view', hidden: true })
    this.addEnd = el('div.add-end', null,
      el('button.ghost', { type: 'button', testid: 'add-cell-end', text: '+ Code', on: { click: () => this.addCell(null, 'end', 'code') } }),
      el('button.ghost', { type: 'button', text: '+ Markdown', on: { click: () => this.addCell(null, 'end', 'markdown') } }))

    // Narrow screens: the toolbar and the history bar fold into a menu (responsive.css).
    this.menuButton = el('button.ghost.menu-button', { type: 'button', testid: 'menu-button', text: '☰', 'aria-label': 'Menu: toolbar and history',
      'aria-expanded': 'false', on: { click: () => {
        const open = this.root.classList.toggle('menu-open')
        this.menuButton.setAttribute('aria-expanded', String(open))
      } } })
    this.root.replaceChildren(
      el('header.topbar', null,
        el('a.brand', { href: '/', title: 'All notebooks', text: 'runtimed' }),
        this.titleInput,
        el('span.spacer'),
        this.approvals.count,
        this.runtimeBadge,
        this.peerList,
        this.you,
        this.connection,
        this.menuButton),
      this.toolbar,
      this.historyBar,
      el('main.notebook', null, this.approvals.node, this.deps.node, this.historyBanner, this.cellsBox, this.addEnd, this.historyBox),
    )
  }

  _renderTitle() {
    const title = this.state.title
    if (document.activeElement !== this.titleInput) this.titleInput.value = title
    document.title = `${title || this.notebookId} — runtimed`
  }

  _renderRuntime() {
    const rt = this.state.runtime
    const spec = this.state.metadata.kernelspec
    if (rt && rt.active !== false) {
      this.runtimeBadge.textContent = `${rt.kernel_name || 'kernel'}: ${rt.status}`
      this.runtimeBadge.className = 'badge runtime runtime-' + rt.status
      this.runtimeBadge.title = rt.detail || `runtime ${rt.runtime_id || ''} on ${rt.host || 'this machine'}`
    } else {
      this.runtimeBadge.textContent = `${(spec && (spec.display_name || spec.name)) || 'kernel'}: not started`
      this.runtimeBadge.className = 'badge runtime runtime-none'
      this.runtimeBadge.title = 'A runtime starts on the first run'
    }
    this.root.dataset.runtime = rt && rt.active !== false ? rt.status : 'none'
  }

  _renderConnection(status, detail) {
    // Called on every push and ack: touch the DOM only when the label changes, and show
    // "saving" only for edits that stay unacknowledged for a moment (no flicker per keystroke).
    const n = this.sync ? this.sync.unacked : 0
    if (status === 'live' && n && !this._savingShown && this.connection.textContent === 'live') {
      if (!this._savingTimer) this._savingTimer = setTimeout(() => {
        this._savingTimer = null
        this._savingShown = this.sync.unacked > 0
        this._renderConnection(this.sync.status)
      }, 500)
      return
    }
    if (!n) this._savingShown = false
    let label = status === 'live' ? (n ? `saving ${n}…` : 'live') : status
    if (this.historySeq != null) label = `viewing seq ${this.historySeq} (read-only) · ${label}`
    if (this.connection.textContent !== label) this.connection.textContent = label
    const cls = 'connection conn-' + status
    if (this.connection.className !== cls) this.connection.className = cls
    if (this.connection.title !== (detail || '')) this.connection.title = detail || ''
    if (this.root.dataset.connection !== status) this.root.dataset.connection = status
  }

  _renderPeers() {
    const byCell = new Map()
    const chips = []
    for (const [connectionId, p] of this.peers) {
      const cellIndex = p.cellId ? this.state.order.indexOf(p.cellId) : -1
      const kind = peerKind(p.actor, this.peerDirectory.clientOf(connectionId))
      chips.push(
        el('span.peer-chip.kind-' + (p.actor.kind || 'unknown'), {
          testid: 'peer', 'data-connection-id': connectionId, 'data-cell-id': p.cellId || '', 'data-kind': kind,
          style: `--c:${colorFor(p.actor.id)}`,
          title: `${p.actor.name || p.actor.id} (${kind})${cellIndex >= 0 ? ` in cell ${cellIndex + 1}` : ''}`,
        }, (p.actor.name || p.actor.id) + (cellIndex >= 0 ? ` · ${cellIndex + 1}` : ''),
        el('span.peer-kind', { testid: 'peer-kind', text: kind })),
      )
      if (p.cellId) {
        if (!byCell.has(p.cellId)) byCell.set(p.cellId, [])
        byCell.get(p.cellId).push(p)
      }
    }
    this.peerList.replaceChildren(...chips)
    for (const [id, v] of this.views) {
      const list = byCell.get(id) || []
      if (list.length || v.node.classList.contains('has-peers')) v.setPeers(list)
    }
  }

  // -- applying events -----------------------------------------------------------------------------

  _onEvents(events) {
    // Our own source edits are already in our documents: skip re-applying their echo (but for who made it).
    const changes = new Changes()
    const todo = events.filter((e) => {
      if (!(e.name === 'cellSourceEdited' && this.ownSourceIds.delete(e.id))) return true
      noteOwnEdit(this.state, e, changes)
      return false
    })
    this.ai.onEvents(todo)
    this.undo.beforeEvents(todo)
    applyEvents(this.state, todo, changes)
    widgetEvents(events)
    const last = events[events.length - 1]
    if (last.seq > this.state.headSeq) this.state.headSeq = last.seq
    this._applyChanges(changes)
    if (!this._boundsFrame) {
      this._boundsFrame = requestAnimationFrame(() => {
        this._boundsFrame = 0
        this._renderHistoryBounds()
      })
    }
  }

  _applyChanges(ch) {
    for (const id of ch.removed) {
      this.views.get(id)?.destroy()
      this.views.delete(id)
    }
    for (const id of ch.added) {
      const cell = this.state.cells.get(id)
      if (cell && !this.views.has(id)) this._addView(cell)
    }
    if (ch.order || ch.added.size || ch.removed.size) this._reorder()
    for (const [id, parts] of ch.cells) {
      if (ch.added.has(id)) continue
      this.views.get(id)?.update(parts)
    }
    if (ch.title) this._renderTitle()
    if (ch.runtime) this._renderRuntime()
    if (ch.metadata) this.approvals.renderPolicy()
    if (ch.approvals || ch.added.size || ch.removed.size) this.approvals.render()
    if (ch.metadata || ch.runtime || ch.approvals) this.deps.changed()
    this.ai.render()
    if (ch.order || ch.removed.size) this._renderPeers()
    if (ch.removed.size) this.commands.prune()
    if (this.pendingFocus && ch.added.has(this.pendingFocus)) {
      const v = this.views.get(this.pendingFocus)
      this.pendingFocus = null
      if (v && !this.readOnly) {
        if (this.pendingEdit) {
          this.commands.select(v.id)
          v.edit()
        } else this.commands.focusCell(v.id)
        v.node.scrollIntoView({ block: 'nearest' })
      }
      this.pendingEdit = true
    }
  }

  _addView(cell) {
    const v = new CellView(this, cell)
    this.views.set(cell.id, v)
    this._watchDoc(cell)
    if (this.cvEvents) {
      const onState = (e) => {
        if (e.skipped) return
        v.node.removeEventListener('contentvisibilityautostatechange', onState)
        this._activate(cell.id)
      }
      v.node.addEventListener('contentvisibilityautostatechange', onState)
    } else this.visibility.observe(v.node)
    return v
  }

  _activate(cellId) {
    const v = this.views.get(cellId)
    if (!v) return
    this.visibility?.unobserve(v.node)
    v.becameVisible()
    this._noteEditors()
  }

  _noteEditors() {
    if (this.timings.editors == null) this.timings.editors = performance.now()
  }

  _reorder() {
    const box = this.cellsBox
    const order = this.state.order
    let ref = box.firstChild
    for (const id of order) {
      const node = this.views.get(id)?.node
      if (!node) continue
      if (node !== ref) box.insertBefore(node, ref)
      else ref = ref.nextSibling
    }
    this.root.dataset.cells = String(order.length)
  }

  /** Local edits of a cell's Y.Text become cellSourceEdited events (one per task, merged). */
  _watchDoc(cell) {
    if (!cell.doc || cell._watched) return
    cell._watched = true
    cell.doc.on('update', (update, origin) => {
      if (origin === REMOTE) return
      let buf = this.sourceBuffer.get(cell.id)
      if (!buf) this.sourceBuffer.set(cell.id, (buf = []))
      buf.push(update)
      if (!this.flushScheduled) {
        this.flushScheduled = true
        queueMicrotask(() => this._flushSource())
      }
    })
  }

  _flushSource() {
    this.flushScheduled = false
    const events = []
    for (const [cellId, updates] of this.sourceBuffer) {
      const update = updates.length === 1 ? updates[0] : Y.mergeUpdates(updates)
      events.push({ name: 'cellSourceEdited', args: { cellId, update: toBase64(update) } })
    }
    this.sourceBuffer.clear()
    if (!events.length) return
    for (const e of this.sync.push(events)) this.ownSourceIds.add(e.id)
    this._renderConnection(this.sync.status)
  }

  push(events) {
    if (this.readOnly) {
      // The history view shows the past: nothing done there (by mouse, keyboard or shortcut) reaches the log.
      notice('Viewing an earlier state (read-only): go back to live to make changes', 'info')
      return []
    }
    this._flushSource() // source edits first: a run must see the text typed before it
    const out = this.sync.push(events)
    this._renderConnection(this.sync.status)
    return out
  }

  /** Agents' marks on cells changed before the page opened (later changes come with their events). */
  async _loadAuthors() {
    let rows
    try {
      rows = await loadAuthors(this.notebookId)
    } catch (err) {
      console.warn('runtimed: cannot read who changed the cells', err)
      return
    }
    this._applyChanges(noteAuthors(this.state, rows))
  }

  _onReject(event, error) {
    if (event.name === 'cellSourceEdited') this.ownSourceIds.delete(event.id)
    if (event.name === 'toolApprovalResolved') this.approvals.rejected(event.args.approvalId)
    notice(`${event.name} was rejected: ${error.message}`)
    if (error.code === 'invalid_update') this._resync('a source edit could not be merged')
  }

  _onFatal(code, message) {
    if (code === 'since_ahead') return this._resync(message)
    notice(message)
  }

  _resync(reason) {
    notice(`Reloading the notebook (${reason})`, 'info')
    setTimeout(() => location.reload(), 600)
  }

  _onPresence(m) {
    if (!m.connectionId || m.connectionId === this.sync.connectionId) return
    if (m.left) this.peers.delete(m.connectionId)
    else this.peers.set(m.connectionId, { actor: m.actor || {}, cellId: m.cellId || null })
    this.cursors.onPresence(m)
    const p = this.peers.get(m.connectionId)
    if (!m.left && this._peerCells?.get(m.connectionId) === (p?.cellId ?? null)) return // a cursor move: chips unchanged
    this._peerCells ??= new Map()
    this._peerCells.set(m.connectionId, p?.cellId ?? null)
    this._renderPeers()
  }

  _tickRunning() {
    for (const v of this.views.values()) {
      if (v.cell.execution?.status === 'running') v.status.textContent = statusText(v.cell.execution)
    }
  }

  // -- focus and presence --------------------------------------------------------------------------

  setActive(cellId) {
    if (this.activeCellId === cellId) return
    const old = this.views.get(this.activeCellId)?.node
    old?.classList.remove('active')
    old?.setAttribute('tabindex', '-1')
    this.activeCellId = cellId
    const node = this.views.get(cellId)?.node
    node?.classList.add('active')
    node?.setAttribute('tabindex', '0') // one cell in the tab order: Tab reaches the notebook, then J/K move
  }

  editorFocused(cellId) {
    clearTimeout(this._blurTimer)
    this.setActive(cellId)
    this.sync.setPresence(cellId)
    this.cursors.focused(cellId)
  }

  editorBlurred() {
    clearTimeout(this._blurTimer)
    this._blurTimer = setTimeout(() => this.sync.setPresence(null), 150)
  }

  hasFocusElsewhere() {
    const a = document.activeElement
    return a && a !== document.body && a.closest('.cm-editor, input, textarea')
  }

  // -- actions (each pushes events; the log decides) ---------------------------------------------

  _key(id) {
    return this.state.cells.get(id)?.fractional_index ?? null
  }

  addCell(refId, where = 'below', cellType = 'code', { edit = true } = {}) {
    const order = this.state.order
    const i = refId ? order.indexOf(refId) : -1
    let before = null
    let after = null
    if (where === 'end' || i < 0) before = order.length ? this._key(order[order.length - 1]) : null
    else if (where === 'above') {
      before = i > 0 ? this._key(order[i - 1]) : null
      after = this._key(order[i])
    } else {
      before = this._key(order[i])
      after = i + 1 < order.length ? this._key(order[i + 1]) : null
    }
    const cellId = newId()
    this.pendingFocus = cellId
    this.pendingEdit = edit
    this.push([{ name: 'cellCreated', args: { cellId, cellType, fractionalIndex: keyBetween(before, after) } }])
    return cellId
  }

  deleteCell(cellId) {
    const order = this.state.order
    const i = order.indexOf(cellId)
    if (this.readOnly) return
    this.undo.noteDelete([cellId])
    this.push([{ name: 'cellDeleted', args: { cellId } }])
    const next = order[i + 1] || order[i - 1]
    if (next) this.setActive(next)
  }

  move(cellId, delta) {
    const order = this.state.order
    const i = order.indexOf(cellId)
    let before
    let after
    if (delta < 0) {
      if (i <= 0) return
      before = i >= 2 ? this._key(order[i - 2]) : null
      after = this._key(order[i - 1])
    } else {
      if (i < 0 || i >= order.length - 1) return
      before = this._key(order[i + 1])
      after = i + 2 < order.length ? this._key(order[i + 2]) : null
    }
    this.undo.noteMove(cellId, this._key(cellId))
    this.push([{ name: 'cellMoved', args: { cellId, fractionalIndex: keyBetween(before, after) } }])
  }

  changeType(cellId, cellType) {
    const cell = this.state.cells.get(cellId)
    if (!cell || cell.cell_type === cellType) return
    this.push([{ name: 'cellTypeChanged', args: { cellId, cellType } }])
  }

  run(cellId, advance) {
    const cell = this.state.cells.get(cellId)
    if (!cell || this.readOnly) return
    const v = this.views.get(cellId)
    if (cell.cell_type === 'markdown') v?.stopEditing()
    else if (EXECUTABLE.has(cell.cell_type)) {
      this.push([{ name: 'executionRequested', args: { queueId: newId(), cellId } }])
    }
    if (!advance) return
    const order = this.state.order
    const next = order[order.indexOf(cellId) + 1]
    if (next) {
      const nv = this.views.get(next)
      nv.node.scrollIntoView({ block: 'nearest' })
      if (nv.isMarkdown) {
        v?.editor?.view.contentDOM.blur()
        this.commands.focusCell(next)
      } else {
        this.commands.select(next)
        nv.edit(true)
      }
    } else this.addCell(cellId, 'below', 'code')
  }

  runAll() {
    const batchId = newId()
    const events = this.state.order
      .map((id) => this.state.cells.get(id))
      .filter((c) => EXECUTABLE.has(c.cell_type))
      .map((c) => ({ name: 'executionRequested', args: { queueId: newId(), cellId: c.id, batchId } }))
    if (events.length) this.push(events)
  }

  _requireRuntime(what) {
    const rt = this.state.runtime
    if (rt && rt.active !== false) return true
    notice(`${what}: no runtime is running (one starts on the first run)`, 'info')
    return false
  }

  interrupt() {
    if (this._requireRuntime('Interrupt')) this.push([{ name: 'runtimeInterruptRequested', args: {} }])
  }

  restart() {
    if (!this._requireRuntime('Restart')) return
    // As in JupyterLab: a restart loses every variable of the kernel, so it is never one stray click.
    if (!window.confirm('Restart the kernel? Every variable and import in it is lost.')) return
    this.push([{ name: 'runtimeRestartRequested', args: {} }])
  }

  clearOutputs(cellId) {
    this.push([{ name: 'outputsCleared', args: { cellId, wait: false, execution: true } }])
  }

  clearAll() {
    const events = [...this.state.cells.values()]
      .filter((c) => c.outputs.length || c.execution_count != null || c.execution)
      .map((c) => ({ name: 'outputsCleared', args: { cellId: c.id, wait: false, execution: true } }))
    if (events.length) this.push(events)
  }

  replyInput(queueId, value) {
    this.push([{ name: 'inputReplied', args: { queueId, value } }])
  }

  setTitle(title) {
    title = title.trim()
    if (title === this.state.title) return
    this.push([{ name: 'notebookMetadataSet', args: { key: 'title', value: title } }])
  }

  // -- history -------------------------------------------------------------------------------------

  _renderHistoryBounds() {
    const head = this.state.headSeq
    this.slider.max = String(Math.max(1, head))
    if (this.historySeq == null) {
      this.slider.value = String(head)
      this.historyLabel.textContent = `live · seq ${head}`
    } else {
      this.historyLabel.textContent = `seq ${this.historySeq} of ${head}`
      if (this.historyHead) this.historyHead.textContent = this._historyText()
    }
    this.root.dataset.head = String(head)
  }

  _sliderMoved() {
    const seq = Number(this.slider.value)
    if (this.historySeq == null && seq >= this.state.headSeq) return
    this.historySeq = seq
    this.historyLabel.textContent = `seq ${seq} of ${this.state.headSeq}`
    clearTimeout(this._historyTimer)
    this._historyTimer = setTimeout(() => this.showAt(seq), 120)
  }

  /** Show the notebook as it was after `seq`, read-only. */
  async showAt(seq) {
    this.historySeq = seq
    this.slider.value = String(seq)
    this.historyLabel.textContent = `seq ${seq} of ${this.state.headSeq}`
    this._setReadOnly(true)
    const token = (this._historyToken = {})
    let view
    let steps
    try {
      ;[view, steps] = await Promise.all([api(`${notebookPath(this.notebookId)}?at=${seq}`), loadSteps(this.notebookId, seq)])
    } catch (err) {
      notice(err.message)
      if (token === this._historyToken) this.showLive()
      return
    }
    if (token !== this._historyToken || this.historySeq == null) return
    const past = stateFromView(view, { live: false })
    this._pastTitle = past.title
    widgetHistory(view) // widget outputs of the past show the models as they were then
    this.historyBox.replaceChildren(...past.order.map((id) => staticCell(past.cells.get(id))))
    widgetHistory(null)
    this.historyHead = el('span', { testid: 'history-heading', text: this._historyText() })
    this.historyBanner.replaceChildren(
      el('div.history-banner-head', null,
        this.historyHead,
        el('button.ghost', { type: 'button', text: 'Back to live', on: { click: () => this.showLive() } })),
      stepsView(steps, seq, (s) => this.showAt(s)),
    )
    this.history.decorate(past, seq, this.historyBanner, this.historyBox)
    this.historyBanner.dataset.seq = String(seq)
    this.historyBanner.hidden = this.historyBox.hidden = this.liveButton.hidden = false
    this.cellsBox.hidden = this.addEnd.hidden = true
  }

  _historyText() {
    const title = this._pastTitle ? ` · “${this._pastTitle}”` : ''
    return `Viewing seq ${this.historySeq} of ${this.state.headSeq}${title} (read-only)`
  }

  /** The history view is read-only for the keyboard too: the live controls leave the tab order
   * (`inert`), and push() refuses anything that slips through. */
  _setReadOnly(on) {
    this.readOnly = on
    if (on && this.root.contains(document.activeElement) && document.activeElement.closest('.cells, .toolbar, .title-input')) {
      document.activeElement.blur()
    }
    const live = [this.titleInput, this.cellsBox, this.addEnd, this.approvals.node,
      ...[...this.toolbar.children].filter((n) => !n.hasAttribute('download'))]
    for (const n of live) n.inert = on
    this.root.classList.toggle('history-mode', on)
    this.root.dataset.view = on ? 'history' : 'live'
    this._renderConnection(this.sync.status)
  }

  showLive() {
    this.historySeq = null
    this._historyToken = null
    this.historyHead = null
    this.historyBox.replaceChildren()
    this.history.reset()
    this.historyBanner.hidden = this.historyBox.hidden = this.liveButton.hidden = true
    this.cellsBox.hidden = this.addEnd.hidden = false
    this._setReadOnly(false)
    this._renderHistoryBounds()
  }
}
