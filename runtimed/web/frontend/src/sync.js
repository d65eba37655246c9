// The sync protocol client (DESIGN 4) for one notebook: hello/welcome, catch-up, live events,
// push/ack with idempotent ids, presence, ping, and reconnect with backoff from the last seq.
//
// Authentication is the HttpOnly cookie set by `/?token=…`: the WebSocket is same-origin.
import { newId } from './util.js'

const PING_EVERY = 20000
const BACKOFF_MIN = 250
const BACKOFF_MAX = 10000

export class SyncClient {
  /**
   * @param {string} notebookId
   * @param {object} opts  actor, since, onEvents(events, head), onReject(event, error), onPresence(msg),
   *                       onStatus(status, detail), onWelcome(msg), onFatal(code, message)
   */
  constructor(notebookId, opts) {
    this.notebookId = notebookId
    this.opts = opts
    this.actor = opts.actor
    this.lastSeq = opts.since || 0
    this.head = this.lastSeq
    this.pending = new Map() // id -> event, in push order; kept until acked, re-pushed after reconnect
    this.inflight = new Map() // ref -> [ids]
    this.ws = null
    this.ready = false
    this.closed = false
    this.backoff = BACKOFF_MIN
    this.presence = { cellId: null }
    this.connectionId = null
    this._timer = null
    this._ping = null
  }

  get url() {
    return SyncClient.urlFor(this.notebookId)
  }

  static urlFor(notebookId) {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
    return `${proto}//${location.host}/api/notebooks/${encodeURIComponent(notebookId)}/sync`
  }

  /** A socket opened early (before the notebook state is loaded), for `connect(socket)`. */
  static preconnect(notebookId) {
    try {
      return new WebSocket(SyncClient.urlFor(notebookId))
    } catch {
      return { close() {}, readyState: 3 }
    }
  }

  connect(socket = null) {
    if (this.closed) return
    this._status('connecting')
    let ws = socket && socket.readyState <= 1 ? socket : null
    if (!ws) {
      try {
        ws = new WebSocket(this.url)
      } catch (err) {
        this._scheduleReconnect(String(err))
        return
      }
    }
    this.ws = ws
    const hello = () => ws.send(JSON.stringify({ type: 'hello', since: this.lastSeq, actor: this.actor, client: 'web' }))
    if (ws.readyState === WebSocket.OPEN) hello()
    else ws.onopen = hello
    ws.onmessage = (msg) => {
      let data
      try {
        data = JSON.parse(msg.data)
      } catch {
        return
      }
      this._handle(data)
    }
    ws.onclose = (e) => {
      if (this.ws !== ws) return
      this.ws = null
      this.ready = false
      this.inflight.clear()
      clearInterval(this._ping)
      if (this.closed) return
      if (e.code === 4401) return this._fatal('unauthorized', 'Not signed in: open the URL printed by `runt open`.')
      if (e.code === 4409) return this._fatal('since_ahead', e.reason || 'the notebook changed under this page')
      if (e.code === 4400) return this._fatal('bad_message', e.reason || 'the server closed the connection')
      this._scheduleReconnect(e.reason || `closed (${e.code})`)
    }
    ws.onerror = () => {}
  }

  _handle(m) {
    switch (m.type) {
      case 'welcome':
        this.ready = true
        this.backoff = BACKOFF_MIN
        this.connectionId = m.connectionId
        this.head = m.head
        this._status('live')
        this.opts.onWelcome?.(m)
        this._send({ type: 'presence', ...this.presence })
        this._flush(true)
        clearInterval(this._ping)
        this._ping = setInterval(() => this._send({ type: 'ping' }), PING_EVERY)
        break
      case 'events': {
        const fresh = m.events.filter((e) => e.seq > this.lastSeq)
        this.head = Math.max(this.head, m.head || 0)
        if (fresh.length) {
          this.lastSeq = fresh[fresh.length - 1].seq
          this.opts.onEvents?.(fresh, this.head)
        }
        break
      }
      case 'ack': {
        const ids = this.inflight.get(m.ref)
        this.inflight.delete(m.ref)
        for (const r of m.results || []) {
          const ev = this.pending.get(r.id)
          this.pending.delete(r.id)
          if (r.error && ev) this.opts.onReject?.(ev, r.error)
        }
        if (ids) for (const id of ids) if (!(m.results || []).some((r) => r.id === id)) this.pending.delete(id)
        this.opts.onAcked?.()
        break
      }
      case 'presence':
        this.opts.onPresence?.(m)
        break
      case 'ping':
        this._send({ type: 'pong' })
        break
      case 'error':
        this.lastError = m
        break
      case 'snapshot':
      default:
        break
    }
  }

  _send(obj) {
    if (this.ws && this.ready && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj))
      return true
    }
    return false
  }

  /** Append events ({name, args} or full {id, name, v, args}); returns the events with their ids. */
  push(events) {
    const out = events.map((e) => ({ id: e.id || newId(), name: e.name, v: e.v || 1, args: e.args || {} }))
    for (const e of out) this.pending.set(e.id, e)
    this._flush(false, out)
    return out
  }

  _flush(all, fresh) {
    if (!this.ready) return
    const events = all ? [...this.pending.values()] : fresh
    if (!events || !events.length) return
    for (let i = 0; i < events.length; i += 1000) {
      const chunk = events.slice(i, i + 1000)
      const ref = newId('p-')
      this.inflight.set(ref, chunk.map((e) => e.id))
      this._send({ type: 'push', ref, events: chunk })
    }
  }

  /** Where this page is: a cell (or null), and its cursor there ({anchor, head} Yjs relative positions). */
  setPresence(cellId, cursor = null) {
    const key = JSON.stringify([cellId, cursor])
    if (this._presenceKey === key) return
    this._presenceKey = key
    this.presence = cursor ? { cellId, cursor } : { cellId }
    this._send({ type: 'presence', ...this.presence })
  }

  get unacked() {
    return this.pending.size
  }

  _scheduleReconnect(reason) {
    this._status('reconnecting', reason)
    clearTimeout(this._timer)
    const delay = this.backoff * (0.75 + Math.random() * 0.5)
    this.backoff = Math.min(BACKOFF_MAX, this.backoff * 2)
    this._timer = setTimeout(() => this.connect(), delay)
  }

  _fatal(code, message) {
    this.closed = true
    this._status('closed', message)
    this.opts.onFatal?.(code, message)
  }

  _status(status, detail) {
    this.status = status
    this.opts.onStatus?.(status, detail)
  }

  /** Drop the socket now and reconnect (used by tests and the "reconnect" control). */
  reconnectNow() {
    this.backoff = BACKOFF_MIN
    if (this.ws) this.ws.close()
    else this.connect()
  }

  close() {
    this.closed = true
    clearTimeout(this._timer)
    clearInterval(this._ping)
    if (this.ws) this.ws.close(1000)
    this.ws = null
  }
}
