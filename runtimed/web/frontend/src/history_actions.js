// Restore and fork from the history view.
//
// Restoring appends new events that make the live notebook (or one cell) look like the state shown:
// the log keeps both the change and its reversal. A cell that still exists gets its old source (one
// CRDT edit from the live text to the old one), type and outputs; a cell deleted since is re-created
// with its id next to its old neighbours. Forking copies the state shown into a new notebook, through
// the export at that seq and the import endpoint (the fork's log starts at that state).
import { api, notebookPath } from './api.js'
import { cellSource } from './reducer.js'
import { createEvents, outputArgs, Placer, setText, snapshotCell } from './undo.js'
import { el, notice } from './util.js'

function sameOutputs(a, b) {
  const strip = (os) => JSON.stringify(os.map(({ output_id, ...rest }) => rest))
  return strip(a) === strip(b)
}

/**
 * The events (and local CRDT edits) that give the live cell `snap.id` the past content `snap`;
 * `placer` places it when it has to be re-created. Returns the events to push.
 */
function restoreCellEvents(page, snap, placer, { move = false } = {}) {
  const live = page.state.cells.get(snap.id)
  if (!live) {
    const key = placer.place(snap.id, { prevId: snap.prevId, nextId: snap.nextId, fallback: snap.fractional_index })
    return createEvents(snap, key)
  }
  const events = []
  if (live.cell_type !== snap.cell_type) events.push({ name: 'cellTypeChanged', args: { cellId: snap.id, cellType: snap.cell_type } })
  if (move && live.fractional_index !== snap.fractional_index) {
    events.push({ name: 'cellMoved', args: { cellId: snap.id, fractionalIndex: snap.fractional_index } })
  }
  setText(live, snap.source) // a local edit: the page pushes it (before the events below)
  if (!sameOutputs(live.outputs, snap.outputs)) {
    events.push({ name: 'outputsCleared', args: { cellId: snap.id, wait: false } })
    for (const o of snap.outputs) events.push({ name: 'outputAdded', args: outputArgs(o, snap.id) })
  }
  return events
}

export class HistoryActions {
  constructor(page) {
    this.page = page
    this.past = null
    this.seq = null
  }

  /** Called when the history view shows `past` (a read-only state) at `seq`: add the controls. */
  decorate(past, seq, banner, cellsBox) {
    this.past = past
    this.seq = seq
    const head = banner.querySelector('.history-banner-head')
    head?.append(
      el('button', { type: 'button', testid: 'restore-notebook', text: 'Restore this version',
        title: 'Make the live notebook look like this (as new events: the log keeps both)', on: { click: () => this.restoreNotebook() } }),
      el('button', { type: 'button', testid: 'fork-notebook', text: 'Fork from here',
        title: 'A new notebook with this state', on: { click: () => this.fork() } }),
    )
    for (const node of cellsBox.querySelectorAll('[data-testid=history-cell]')) {
      const id = node.dataset.cellId
      const gone = !this.page.state.cells.has(id)
      node.querySelector('.cell-main')?.prepend(el('div.history-cell-actions', null,
        gone ? el('span.badge', { text: 'deleted since' }) : null,
        el('button.ghost', { type: 'button', testid: 'restore-cell', text: gone ? 'Restore this cell' : 'Restore this version of the cell',
          on: { click: () => this.restoreCell(id) } })))
    }
    this.page.exportLink.href = `${notebookPath(this.page.notebookId)}/export?at=${seq}`
    this.page.exportLink.title = `Export the notebook as it was at seq ${seq}`
  }

  /** Back to live: the export link exports the live notebook again. */
  reset() {
    this.past = null
    this.seq = null
    this.page.exportLink.href = `${notebookPath(this.page.notebookId)}/export`
    this.page.exportLink.title = 'Export the live notebook'
  }

  _snap(id, past = this.past) {
    return { ...snapshotCell(past, id), source: cellSource(past.cells.get(id)) }
  }

  restoreCell(id) {
    const page = this.page
    if (!this.past?.cells.has(id)) return
    const snap = this._snap(id)
    const seq = this.seq
    page.showLive()
    const events = restoreCellEvents(page, snap, new Placer(page.state))
    if (events.length || page.sourceBuffer.size) {
      page.pendingFocus = page.state.cells.has(id) ? null : id
      page.pendingEdit = false
      page.push(events)
      notice(`Cell restored from seq ${seq}`, 'info')
    } else notice('This cell is the same now as it was then', 'info')
    page.commands.select(id)
  }

  restoreNotebook() {
    const page = this.page
    const past = this.past
    if (!past) return
    const seq = this.seq
    page.showLive()
    const keep = new Set(past.order)
    const events = page.state.order.filter((id) => !keep.has(id)).map((cellId) => ({ name: 'cellDeleted', args: { cellId } }))
    const placer = new Placer(page.state)
    for (const id of past.order) events.push(...restoreCellEvents(page, { ...this._snap(id, past), prevId: null, nextId: null }, placer, { move: true }))
    if ((past.title || '') !== (page.state.title || '')) {
      events.push({ name: 'notebookMetadataSet', args: { key: 'title', value: past.title || '' } })
    }
    page.push(events)
    notice(`Notebook restored to seq ${seq}`, 'info')
  }

  async fork() {
    const page = this.page
    const seq = this.seq
    const title = `${this.past?.title || page.notebookId} (fork at seq ${seq})`
    let created
    try {
      const ipynb = await api(`${notebookPath(page.notebookId)}/export?at=${seq}`, { raw: true })
      const body = typeof ipynb === 'string' ? ipynb : JSON.stringify(ipynb)
      created = await api(`/api/notebooks/import?title=${encodeURIComponent(title)}`, { method: 'POST', body, raw: true,
        headers: { 'content-type': 'application/x-ipynb+json', 'x-runtimed-actor': page.actor.id } })
    } catch (err) {
      notice(`Fork failed: ${err.message}`)
      return
    }
    location.assign(`/?notebook=${encodeURIComponent(created.id)}`)
  }
}
