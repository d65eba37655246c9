// Other people's cursors and selections inside a cell, drawn by y-codemirror.next's remote selections.
//
// y-codemirror.next reads cursors from a Yjs "awareness". There is no awareness protocol between pages
// here: presence goes through the sync connection (`{type: "presence", cellId, cursor}`, relayed by the
// server with the sender's actor and connection id, never stored). CellAwareness is the small part of
// the awareness interface the editor binding uses, fed by those presence messages. Cursors are Yjs
// relative positions, so they stay on the right character while everyone types.
import * as Y from 'yjs'
import { colorFor } from './util.js'

const SEND_EVERY = 60 // ms: at most one cursor message per this interval while selecting

/** A peer's numeric id for the awareness map (the connection id hashed, never the local doc's id). */
function numericId(connectionId, avoid) {
  let h = 2166136261
  for (const c of String(connectionId)) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0
  return h === avoid ? h + 1 : h
}

class CellAwareness {
  constructor(doc, onLocal) {
    this.doc = doc
    this.states = new Map()
    this._local = { cursor: null }
    this.states.set(doc.clientID, this._local)
    this._handlers = new Set()
    this._onLocal = onLocal
  }

  getLocalState() {
    return this._local
  }

  setLocalStateField(key, value) {
    this._local = { ...this._local, [key]: value }
    this.states.set(this.doc.clientID, this._local)
    this._onLocal(this._local)
  }

  getStates() {
    return this.states
  }

  on(name, fn) {
    if (name === 'change') this._handlers.add(fn)
  }

  off(name, fn) {
    this._handlers.delete(fn)
  }

  setRemote(id, state) {
    const had = this.states.has(id)
    if (state) this.states.set(id, state)
    else if (had) this.states.delete(id)
    else return
    const change = { added: !had && state ? [id] : [], updated: had && state ? [id] : [], removed: state ? [] : [id] }
    for (const fn of this._handlers) fn(change, 'presence')
  }
}

const toJSON = (c) => c && { anchor: Y.relativePositionToJSON(c.anchor), head: Y.relativePositionToJSON(c.head) }

export class RemoteCursors {
  constructor(page) {
    this.page = page
    this.byCell = new Map() // cellId -> CellAwareness (cells with an editor)
    this.peers = new Map() // connectionId -> {cellId, state}
    this._timer = null
    this._pending = null
  }

  /** The awareness for a cell's editor (created with the editor). */
  awarenessFor(cell) {
    let a = this.byCell.get(cell.id)
    if (!a || a.doc !== cell.doc) {
      a = new CellAwareness(cell.doc, (local) => this._sendLocal(cell.id, local))
      this.byCell.set(cell.id, a)
      for (const [connectionId, p] of this.peers) if (p.cellId === cell.id) a.setRemote(numericId(connectionId, a.doc.clientID), p.state)
    }
    return a
  }

  /** The cell's editor got the focus: say where the cursor is (it may not move again soon). */
  focused(cellId) {
    const a = this.byCell.get(cellId)
    if (a?._local.cursor) this._sendLocal(cellId, a._local)
  }

  forget(cellId) {
    this.byCell.delete(cellId)
  }

  _sendLocal(cellId, local) {
    // Only the cell whose editor has the focus reports a cursor (presence says which cell that is).
    if (this.page.sync.presence.cellId !== cellId) return
    this._pending = { cellId, cursor: toJSON(local.cursor) }
    if (this._timer) return
    this._timer = setTimeout(() => {
      this._timer = null
      const p = this._pending
      if (p && this.page.sync.presence.cellId === p.cellId) this.page.sync.setPresence(p.cellId, p.cursor)
    }, SEND_EVERY)
  }

  /** A presence message from another connection: move its cursor (or remove it). */
  onPresence(m) {
    const old = this.peers.get(m.connectionId)
    let state = null
    if (!m.left && m.cellId && m.cursor?.anchor && m.cursor?.head) {
      try {
        const actor = m.actor || {}
        const color = colorFor(actor.id || m.connectionId)
        state = {
          user: { name: actor.name || actor.id || 'someone', color, colorLight: color.replace(')', ' / 0.22)') },
          cursor: { anchor: Y.createRelativePositionFromJSON(m.cursor.anchor), head: Y.createRelativePositionFromJSON(m.cursor.head) },
        }
      } catch {
        state = null // a malformed cursor is not drawn
      }
    }
    if (old && old.cellId !== m.cellId) {
      const a = this.byCell.get(old.cellId)
      a?.setRemote(numericId(m.connectionId, a.doc.clientID), null)
    }
    if (m.left || !m.cellId) this.peers.delete(m.connectionId)
    else this.peers.set(m.connectionId, { cellId: m.cellId, state })
    const a = m.cellId ? this.byCell.get(m.cellId) : null
    a?.setRemote(numericId(m.connectionId, a.doc.clientID), m.left ? null : state)
  }

  /** The connection was replaced (reconnect): every remote cursor goes until presence is sent again. */
  clear() {
    for (const [connectionId, p] of this.peers) {
      const a = this.byCell.get(p.cellId)
      a?.setRemote(numericId(connectionId, a.doc.clientID), null)
    }
    this.peers.clear()
  }
}
