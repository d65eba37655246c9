// Who is on the notebook and what they are (issue 19): a person in a browser, a Python session, an agent, a
// runtime... Presence messages carry only the actor, and peers that never send presence (runtimes, a Python
// session that set no cursor) send none at all, so the list is also filled from GET /peers, which knows every
// connection and its client: when the connection (re)opens, when an unknown peer shows up, and every few seconds.
import { api, notebookPath } from './api.js'
import { KIND_LABELS } from './audit.js'
import './presence.css'

const REFRESH_MS = 5000
const CLIENT_KINDS = { python: 'Python session', 'runt-console': 'console', 'runt-run': 'run' }

/** A short name for what a peer is: its actor's kind, refined by the client it connected with. */
export function peerKind(actor, client) {
  const kind = actor?.kind
  if (kind === 'human') return client === 'web' || !client ? 'person' : CLIENT_KINDS[client] || client
  return KIND_LABELS[kind] || kind || 'unknown'
}

export class PeerDirectory {
  constructor(page) {
    this.page = page
    this.clients = new Map() // connectionId -> client name
    this._busy = false
    this._timer = setInterval(() => {
      if (document.visibilityState === 'visible') this.refresh()
    }, REFRESH_MS)
  }

  /** The client of a known connection, or undefined (then a refresh is asked for). */
  clientOf(connectionId) {
    if (!this.clients.has(connectionId)) this.refresh()
    return this.clients.get(connectionId)
  }

  async refresh() {
    if (this._busy) return
    this._busy = true
    const page = this.page
    try {
      const before = new Set(page.peers.keys()) // a peer that joins during the request is not removed
      const listed = await api(`${notebookPath(page.notebookId)}/peers`)
      const self = page.sync?.connectionId
      const ids = new Set()
      let changed = false
      for (const p of listed) {
        if (!p.connectionId || p.connectionId === self) continue
        ids.add(p.connectionId)
        if (this.clients.get(p.connectionId) !== (p.client || '')) changed = true
        this.clients.set(p.connectionId, p.client || '')
        if (!page.peers.has(p.connectionId)) {
          page.peers.set(p.connectionId, { actor: p.actor || {}, cellId: p.cellId || null })
          changed = true
        }
      }
      for (const id of before) {
        if (!ids.has(id) && page.peers.has(id)) {
          page.peers.delete(id)
          changed = true
        }
      }
      if (changed) page._renderPeers()
    } catch {
      // the list waits for the next refresh; presence messages still update it
    } finally {
      this._busy = false
    }
  }
}
