// Undo of cell deletions, moves and merges, and re-creating cells from a snapshot (undo, paste, restore).
//
// Nothing is undone by rewriting the log: an undo appends new events (cellCreated with the old id,
// source, type, metadata, attachments and outputs; cellMoved back to the old place; a merge's appended text
// removed), so the log keeps
// both the deletion and the restore. This page's own deletions go on the
// undo stack when it pushes them (Z in command mode, or "Undo" in the toast); other people's, seen in the
// log's events, get a toast with "Restore".
import { keyBetween } from './order.js'
import { cellSource } from './reducer.js'
import { el, newId } from './util.js'

const MAX_UNDO = 100

/** Replace a Y.Text's content by `target` with one edit (the common prefix and suffix are kept). */
export function setText(cell, target) {
  const text = cell.text
  const now = text.toString()
  if (now === target) return false
  let a = 0
  while (a < now.length && a < target.length && now[a] === target[a]) a++
  let b = 0
  while (b < now.length - a && b < target.length - a && now[now.length - 1 - b] === target[target.length - 1 - b]) b++
  cell.doc.transact(() => {
    if (now.length - a - b) text.delete(a, now.length - a - b)
    if (target.length - a - b) text.insert(a, target.slice(a, target.length - b))
  })
  return true
}

/** What it takes to re-create a cell: its content, outputs and neighbours at the time. */
export function snapshotCell(state, cellId, order = state.order) {
  const cell = state.cells.get(cellId)
  const i = order.indexOf(cellId)
  return {
    id: cell.id,
    cell_type: cell.cell_type,
    source: cellSource(cell),
    metadata: cell.metadata || {},
    attachments: cell.attachments ?? null,
    execution_count: cell.execution_count ?? null,
    outputs: cell.outputs.map((o) => ({ ...o })),
    fractional_index: cell.fractional_index,
    prevId: i > 0 ? order[i - 1] : null,
    nextId: i >= 0 && i + 1 < order.length ? order[i + 1] : null,
  }
}

/** outputAdded args for a copy of a stored output (a new output id; no queue: like an import). */
export function outputArgs(o, cellId) {
  const args = { outputId: newId('o-'), cellId, outputType: o.output_type }
  const fields = { name: 'name', text: 'text', data: 'data', metadata: 'metadata', ename: 'ename', evalue: 'evalue',
    traceback: 'traceback', execution_count: 'executionCount', display_id: 'displayId' }
  for (const [from, to] of Object.entries(fields)) if (o[from] != null) args[to] = o[from]
  if (o.output_type !== 'execute_result') delete args.executionCount
  return args
}

/**
 * Places new cells among the live ones: keys between live neighbours, following the cells placed
 * before it in the same batch (their echo has not arrived yet).
 */
export class Placer {
  constructor(state) {
    this.keys = new Map(state.order.map((id) => [id, state.cells.get(id).fractional_index]))
    this.order = [...state.order]
  }

  has(id) {
    return this.keys.has(id)
  }

  _between(i) {
    // A key just after position i (-1: before the first cell).
    const before = i >= 0 ? this.keys.get(this.order[i]) : null
    const after = i + 1 < this.order.length ? this.keys.get(this.order[i + 1]) : null
    return keyBetween(before, after)
  }

  /** The key that puts a cell after `prevId` (or before `nextId`, or at `fallback`), and note it placed. */
  place(id, { prevId = null, nextId = null, fallback = null } = {}) {
    let key
    let at
    if (prevId && this.keys.has(prevId)) {
      at = this.order.indexOf(prevId)
      key = this._between(at)
    } else if (nextId && this.keys.has(nextId)) {
      at = this.order.indexOf(nextId) - 1
      key = this._between(at)
    } else if (fallback) {
      key = fallback
      at = this.order.findIndex((x) => this.keys.get(x) > key) - 1
      if (at < -1) at = this.order.length - 1
    } else {
      at = this.order.length - 1
      key = this._between(at)
    }
    this.order.splice(at + 1, 0, id)
    this.keys.set(id, key)
    return key
  }
}

/** Events that re-create a snapshot cell (its own id when free, else a new one). */
export function createEvents(snap, key, cellId = snap.id) {
  const args = { cellId, cellType: snap.cell_type, fractionalIndex: key, source: snap.source, metadata: snap.metadata }
  if (snap.attachments != null) args.attachments = snap.attachments
  if (snap.execution_count != null) args.executionCount = snap.execution_count
  return [{ name: 'cellCreated', args }, ...snap.outputs.map((o) => ({ name: 'outputAdded', args: outputArgs(o, cellId) }))]
}

/** Events that re-create deleted cells where they were (their own ids, next to their old neighbours). */
export function restoreDeletedEvents(state, snaps) {
  const placer = new Placer(state)
  const events = []
  for (const snap of snaps) {
    if (state.cells.has(snap.id)) continue // restored already
    const key = placer.place(snap.id, { prevId: snap.prevId, nextId: snap.nextId, fallback: snap.fractional_index })
    events.push(...createEvents(snap, key))
  }
  return events
}

export class CellUndo {
  constructor(page) {
    this.page = page
    this.stack = []
  }

  /** This page deletes these cells: remember them (one undo step), and offer Undo in a toast. */
  noteDelete(ids) {
    const snaps = this._snaps(ids)
    if (!snaps.length) return
    const entry = { kind: 'delete', snaps }
    this._push(entry)
    toast(`${snaps.length === 1 ? 'Cell' : `${snaps.length} cells`} deleted`, 'Undo', () => this.undo(entry))
  }

  _snaps(ids) {
    const state = this.page.state
    const order = [...state.order]
    const snaps = []
    for (const id of ids) {
      if (!state.cells.has(id)) continue
      snaps.push(snapshotCell(state, id, order))
      order.splice(order.indexOf(id), 1) // the next one's neighbours are those left after this one
    }
    return snaps
  }

  /** Shift-M: `appended` was added to the end of `cellId` and the cells `ids` are about to be deleted. */
  noteMerge(cellId, appended, ids) {
    this._push({ kind: 'merge', cellId, appended, snaps: this._snaps(ids) })
  }

  /** Before the reducer applies log events: someone else's deletions get a toast with "Restore". */
  beforeEvents(events) {
    const state = this.page.state
    const others = new Map() // actor id -> {actor, snaps}
    let order = null
    for (const e of events) {
      if (e.name !== 'cellDeleted' || !state.cells.has(e.args.cellId) || e.actor?.id === this.page.actor.id) continue
      order ??= [...state.order]
      const snap = snapshotCell(state, e.args.cellId, order)
      order.splice(order.indexOf(snap.id), 1)
      const key = e.actor?.id || '?'
      if (!others.has(key)) others.set(key, { actor: e.actor || {}, snaps: [] })
      others.get(key).snaps.push(snap)
    }
    for (const { actor, snaps } of others.values()) {
      const who = actor.name || actor.id || 'Someone'
      toast(`${who} deleted ${snaps.length === 1 ? 'a cell' : `${snaps.length} cells`}`, 'Restore',
        () => this.page.push(restoreDeletedEvents(this.page.state, snaps)))
    }
  }

  /** A move this page made (undone by moving the cell back to its old key). */
  noteMove(cellId, oldKey) {
    this._push({ kind: 'move', cellId, key: oldKey })
  }

  _push(entry) {
    this.stack.push(entry)
    if (this.stack.length > MAX_UNDO) this.stack.shift()
  }

  get size() {
    return this.stack.length
  }

  /** Undo the last (or the given) deletion or move; true when something was pushed. */
  undo(entry = null) {
    const state = this.page.state
    if (entry) {
      const i = this.stack.indexOf(entry)
      if (i < 0) return false // undone already
      this.stack.splice(i, 1)
    } else entry = this.stack.pop()
    if (!entry) return false
    if (entry.kind === 'delete') {
      const events = restoreDeletedEvents(state, entry.snaps)
      if (!events.length) return false
      this.page.push(events)
      this.page.pendingFocus = entry.snaps[0].id
      this.page.pendingEdit = false
      return true
    }
    if (entry.kind === 'merge') {
      // The merged cell loses the text the merge appended (wherever it is now), the others come back.
      const cell = state.cells.get(entry.cellId)
      const now = cell?.text ? cell.text.toString() : null
      const at = now == null ? -1 : now.lastIndexOf(entry.appended)
      if (at >= 0) setText(cell, now.slice(0, at) + now.slice(at + entry.appended.length))
      const events = restoreDeletedEvents(state, entry.snaps)
      if (events.length) this.page.push(events)
      this.page.pendingFocus = entry.cellId
      this.page.pendingEdit = false
      return at >= 0 || events.length > 0
    }
    if (entry.kind === 'move' && state.cells.has(entry.cellId)) {
      this.page.push([{ name: 'cellMoved', args: { cellId: entry.cellId, fractionalIndex: entry.key } }])
      return true
    }
    return this.undo()
  }
}

let toastBox = null

/** A short message with one action button (the action runs at most once). */
export function toast(message, label, action, ms = 10000) {
  if (!toastBox || !toastBox.isConnected) {
    toastBox = el('div.toasts', { testid: 'toasts', role: 'status', 'aria-live': 'polite' })
    document.body.append(toastBox)
  }
  const item = el('div.toast', { testid: 'toast' },
    el('span', { text: message }),
    el('button', { type: 'button', testid: 'toast-action', text: label, on: {
      click: () => {
        item.remove()
        action()
      },
    } }),
    el('button.icon', { type: 'button', 'aria-label': 'Dismiss', text: '✕', on: { click: () => item.remove() } }))
  toastBox.append(item)
  while (toastBox.children.length > 4) toastBox.firstChild.remove()
  setTimeout(() => item.remove(), ms)
  return item
}
