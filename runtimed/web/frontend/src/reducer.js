// The page's view of a notebook, and the one reducer that applies log events to it.
//
// The Python materializer is the authority: the server validates every event before it is
// stored, so this reducer only mirrors what the page shows and never rejects anything.
// It is table-driven by event name (HANDLERS); events the page does not show are ignored.
// Each handler records what it changed in a `Changes` object so the view re-renders only that.
import * as Y from 'yjs'
import { compareCells } from './order.js'
import { fromBase64 } from './util.js'

/** Transaction origin of updates that came from the log (never pushed back). */
export const REMOTE = 'runtimed-remote'
export const TEXT_KEY = 'source'
const SEED_CLIENT_ID = 1
const EXECUTABLE = new Set(['code', 'ai', 'sql'])
const TERMINAL = new Set(['success', 'error', 'cancelled'])
// An error (a KeyboardInterrupt too) or a cancel of the running cell stops its run-all batch (as materializer.py).
const STOPS_BATCH = new Set(['error', 'cancelled'])

export class Changes {
  constructor() {
    this.cells = new Map() // cellId -> Set of parts: source, outputs, status, type, meta, input
    this.added = new Set()
    this.removed = new Set()
    this.order = false
    this.title = false
    this.runtime = false
    this.inputs = false
    this.metadata = false
    this.approvals = false
  }
  cell(cellId, part) {
    let parts = this.cells.get(cellId)
    if (!parts) this.cells.set(cellId, (parts = new Set()))
    parts.add(part)
  }
  get empty() {
    return !(this.cells.size || this.added.size || this.removed.size || this.order || this.title || this.runtime || this.inputs ||
      this.metadata || this.approvals)
  }
}

/** The CRDT document of a cell whose cellCreated carried `source` (identical on every replica). */
export function seededDoc(source, guid) {
  const doc = new Y.Doc({ guid })
  if (source) {
    const seed = new Y.Doc({ guid })
    seed.clientID = SEED_CLIENT_ID
    seed.getText(TEXT_KEY).insert(0, source)
    Y.applyUpdate(doc, Y.encodeStateAsUpdate(seed), REMOTE)
    seed.destroy()
  }
  return doc
}

function docFromState(b64, guid) {
  const doc = new Y.Doc({ guid }) // a guid given: no random uuid per cell (500 cells load faster)
  if (b64) Y.applyUpdate(doc, fromBase64(b64), REMOTE)
  return doc
}

function makeCell(fields, doc) {
  const cell = {
    id: fields.id,
    cell_type: fields.cell_type,
    fractional_index: fields.fractional_index,
    metadata: fields.metadata || {},
    attachments: fields.attachments ?? null,
    execution_count: fields.execution_count ?? null,
    outputs: [],
    execution: null,
    clear_pending: !!fields.clear_pending, // a clear_output(wait=True) waiting for the next output
    doc: doc || null,
    text: doc ? doc.getText(TEXT_KEY) : null,
    plainSource: fields.source ?? '',
    // who created the cell and who changed it last ({actor, seq}), as cells.created_seq / updated_seq
    createdBy: null,
    editedBy: null,
  }
  return cell
}

/** The source text of a cell (its Y.Text when live, the REST text for a read-only view). */
export function cellSource(cell) {
  return cell.text ? cell.text.toString() : cell.plainSource
}

/**
 * Build a state from `GET /api/notebooks/{id}` (with `ystate=1` for a live, editable view).
 * `live: false` builds a read-only state without CRDT documents (history view).
 */
export function stateFromView(view, { live = true } = {}) {
  const state = {
    id: view.id,
    title: view.title || '',
    headSeq: view.head_seq || 0,
    createdAt: view.created_at,
    updatedAt: view.updated_at,
    metadata: { ...(view.metadata || {}) },
    cells: new Map(),
    order: [],
    outputIndex: new Map(), // outputId -> cellId
    queues: new Map(), // queueId -> execution entry
    runtime: view.runtime ? { ...view.runtime, active: true } : null,
    inputs: new Map(),
    approvals: new Map(), // approvalId -> request, as runtimed.schema.approvals.list_approvals
    live,
  }
  for (const c of view.cells || []) {
    const doc = live ? docFromState(c.ystate, c.id) : null
    if (live && !c.ystate && c.source) doc.getText(TEXT_KEY).insert(0, c.source) // never: the server sends ystate
    const cell = makeCell(c, doc)
    for (const o of c.outputs || []) {
      cell.outputs.push(o)
      state.outputIndex.set(o.output_id, cell.id)
    }
    if (c.execution) {
      cell.execution = { ...c.execution }
      state.queues.set(cell.execution.queue_id, cell.execution)
    }
    state.cells.set(cell.id, cell)
  }
  for (const q of view.queue || []) {
    // unfinished executions that are not their cell's latest (a cell queued again while it runs)
    if (!state.queues.has(q.queue_id)) state.queues.set(q.queue_id, { ...q })
  }
  for (const i of view.inputs || []) state.inputs.set(i.queue_id, { ...i })
  sortOrder(state)
  return state
}

export function sortOrder(state) {
  state.order = [...state.cells.values()].sort(compareCells).map((c) => c.id)
}

export function destroyState(state) {
  for (const cell of state.cells.values()) cell.doc?.destroy()
}

// -- helpers used by handlers ----------------------------------------------------------------------

/** Who changed a cell last: every event that moves the projection's cells.updated_seq. */
function touched(cell, env, ch) {
  cell.editedBy = { actor: env.actor || null, seq: env.seq }
  ch.cell(cell.id, 'author')
}

/** A cell source edit this page made itself (its echo is not re-applied): only its authorship. */
export function noteOwnEdit(state, env, changes) {
  const cell = state.cells.get(env.args?.cellId)
  if (cell) touched(cell, env, changes)
}

/**
 * Authorship read from the server for cells loaded from the REST view (which has none):
 * rows of {cell_id, created_by, created_seq, edited_by, edited_seq}; a newer live event wins.
 */
export function noteAuthors(state, rows, changes = new Changes()) {
  for (const r of rows) {
    const cell = state.cells.get(r.cell_id)
    if (!cell) continue
    if (r.created_by && !(cell.createdBy && cell.createdBy.seq >= r.created_seq)) {
      cell.createdBy = { actor: r.created_by, seq: r.created_seq }
      changes.cell(cell.id, 'author')
    }
    if (r.edited_by && !(cell.editedBy && cell.editedBy.seq >= r.edited_seq)) {
      cell.editedBy = { actor: r.edited_by, seq: r.edited_seq }
      changes.cell(cell.id, 'author')
    }
  }
  return changes
}

/** As runtimed.schema.approvals.status: a requester's own denial is a withdrawal (e.g. its timeout). */
export function approvalStatus(decision, requestedBy, resolvedBy) {
  if (decision == null) return 'pending'
  if (decision === 'denied' && resolvedBy && requestedBy && resolvedBy.id === requestedBy.id) return 'withdrawn'
  return decision
}

/**
 * Requests listed by GET /api/notebooks/{id}/approvals, added where the log has not told us more:
 * an approval already known (or seen resolved) stays as the events left it.
 */
export function mergeApprovals(state, list, changes = new Changes()) {
  for (const a of list) {
    if (state.approvals.has(a.approval_id)) continue
    state.approvals.set(a.approval_id, { ...a })
    changes.approvals = true
  }
  return changes
}

/** Requests still waiting for a person, oldest first. */
export function pendingApprovals(state) {
  return [...state.approvals.values()]
    .filter((a) => a.tool && a.status === 'pending')
    .sort((x, y) => x.requested_seq - y.requested_seq)
}


function clearOutputs(s, cell, ch) {
  for (const o of cell.outputs) s.outputIndex.delete(o.output_id)
  if (cell.outputs.length) ch.cell(cell.id, 'outputs')
  cell.outputs = []
  cell.clear_pending = false
}

/** Cancel pending work (ended at `ts`); flag running work for the runtime to interrupt. Claimed work
 * (`assigned`) is flagged too, for its runtime to complete as cancelled, except when a failed completion stops
 * its batch (`claimed` = 'cancel'). As the materializer's `_cancel_queue`. */
/** The active session a new request is assigned to at once (runtimed.schema.materializer._idle_assignable_session):
 * one whose runtime declared assign_when_idle, while nothing is pending, claimed or running. */
function idleAssignableSession(s) {
  if (!s.runtime?.active || !s.runtime.assign_when_idle) return null
  for (const q of s.queues.values()) {
    if (q.status === 'pending' || q.status === 'assigned' || q.status === 'running') return null
  }
  return s.runtime.session_id
}

function cancelQueue(s, pred, ts, ch, claimed = 'flag') {
  for (const q of s.queues.values()) {
    if (!pred(q)) continue
    if (q.status === 'pending' || (q.status === 'assigned' && claimed === 'cancel')) {
      q.status = 'cancelled'
      q.session_id = null
      q.completed_at = ts
      ch.cell(q.cell_id, 'status')
    } else if (q.status === 'running' || q.status === 'assigned') {
      q.cancel_requested = true
      ch.cell(q.cell_id, 'status')
    }
  }
}

/** Claimed work whose runtime is gone goes back to the queue, unless a cancel was asked for it. */
function releaseClaim(q, ts, ch) {
  if (q.cancel_requested) {
    q.status = 'cancelled'
    q.completed_at = ts
  } else {
    q.status = 'pending'
  }
  q.session_id = null
  ch.cell(q.cell_id, 'status')
}

function dropInput(s, queueId, ch) {
  if (s.inputs.delete(queueId)) {
    ch.inputs = true
    const q = s.queues.get(queueId)
    if (q) ch.cell(q.cell_id, 'input')
  }
}

/** Python-style slice by code points (stream offsets count characters, not UTF-16 units). */
function sliceCodePoints(text, end) {
  if (!/[\uD800-\uDFFF]/.test(text)) return text.slice(0, end)
  return Array.from(text).slice(0, end).join('')
}

function outputContent(a) {
  const content = { output_type: a.outputType }
  if (a.outputType === 'stream') Object.assign(content, { name: a.name, text: a.text })
  else if (a.outputType === 'error') Object.assign(content, { ename: a.ename, evalue: a.evalue, traceback: a.traceback })
  else {
    Object.assign(content, { data: a.data, metadata: a.metadata || {} })
    if (a.outputType === 'execute_result') content.execution_count = a.executionCount ?? null
  }
  content.output_id = a.outputId
  if (a.displayId != null) content.display_id = a.displayId
  return content
}

// -- the table -----------------------------------------------------------------------------------

export const HANDLERS = {
  notebookCreated(s, a, env, ch) {
    s.title = a.title || ''
    if (a.kernelspec) s.metadata.kernelspec = a.kernelspec
    if (a.language_info) s.metadata.language_info = a.language_info
    s.createdAt = env.ts
    ch.title = ch.metadata = true
  },

  notebookMetadataSet(s, a, env, ch) {
    if (a.value == null) delete s.metadata[a.key]
    else s.metadata[a.key] = a.value
    if (a.key === 'title' && typeof a.value === 'string') {
      s.title = a.value
      ch.title = true
    }
    ch.metadata = true
  },

  cellCreated(s, a, env, ch) {
    const doc = s.live ? seededDoc(a.source || '', a.cellId) : null
    const cell = makeCell(
      { id: a.cellId, cell_type: a.cellType, fractional_index: a.fractionalIndex, source: a.source || '', metadata: a.metadata,
        attachments: a.attachments, execution_count: a.executionCount },
      doc,
    )
    cell.createdBy = cell.editedBy = { actor: env.actor || null, seq: env.seq }
    s.cells.set(cell.id, cell)
    ch.added.add(cell.id)
    ch.order = true
  },

  cellSourceEdited(s, a, env, ch) {
    const cell = s.cells.get(a.cellId)
    if (!cell) return
    if (cell.doc) Y.applyUpdate(cell.doc, fromBase64(a.update), REMOTE)
    ch.cell(cell.id, 'source')
    touched(cell, env, ch)
  },

  cellTypeChanged(s, a, env, ch) {
    const cell = s.cells.get(a.cellId)
    if (!cell) return
    cell.cell_type = a.cellType
    if (!EXECUTABLE.has(a.cellType)) {
      clearOutputs(s, cell, ch)
      cell.execution_count = null
      cancelQueue(s, (q) => q.cell_id === cell.id, env.ts, ch)
    }
    ch.cell(cell.id, 'type')
    touched(cell, env, ch)
  },

  cellMoved(s, a, env, ch) {
    const cell = s.cells.get(a.cellId)
    if (!cell) return
    cell.fractional_index = a.fractionalIndex
    ch.order = true
    touched(cell, env, ch)
  },

  cellMetadataSet(s, a, env, ch) {
    const cell = s.cells.get(a.cellId)
    if (!cell) return
    if (a.value == null) delete cell.metadata[a.key]
    else cell.metadata[a.key] = a.value
    ch.cell(cell.id, 'meta')
    touched(cell, env, ch)
  },

  cellAttachmentsSet(s, a, env, ch) {
    const cell = s.cells.get(a.cellId)
    if (!cell) return
    cell.attachments = a.attachments
    ch.cell(cell.id, 'source') // markdown rendering uses attachments
    touched(cell, env, ch)
  },

  cellDeleted(s, a, env, ch) {
    const cell = s.cells.get(a.cellId)
    if (!cell) return
    clearOutputs(s, cell, ch)
    cancelQueue(s, (q) => q.cell_id === cell.id, env.ts, ch)
    s.cells.delete(cell.id)
    cell.doc?.destroy()
    ch.cells.delete(cell.id)
    ch.added.delete(cell.id)
    ch.removed.add(cell.id)
    ch.order = true
  },

  executionRequested(s, a, env, ch) {
    const assignTo = idleAssignableSession(s)
    const q = {
      queue_id: a.queueId, cell_id: a.cellId, batch_id: a.batchId ?? null,
      status: assignTo ? 'assigned' : 'pending', session_id: assignTo,
      cancel_requested: false, execution_count: null, duration_ms: null, error: null,
      requested_by: env.actor?.id, requested_seq: env.seq, requested_at: env.ts, started_at: null, completed_at: null,
    }
    s.queues.set(q.queue_id, q)
    const cell = s.cells.get(a.cellId)
    if (cell) {
      cell.execution = q
      ch.cell(cell.id, 'status')
    }
  },

  executionAssigned(s, a, env, ch) {
    const q = s.queues.get(a.queueId)
    if (!q) return
    q.status = 'assigned'
    q.session_id = a.sessionId
    ch.cell(q.cell_id, 'status')
  },

  executionStarted(s, a, env, ch) {
    const q = s.queues.get(a.queueId)
    if (!q) return
    q.status = 'running'
    q.source = a.source
    q.started_at = env.ts
    const cell = s.cells.get(q.cell_id)
    if (cell) {
      clearOutputs(s, cell, ch)
      cell.execution_count = null
    }
    ch.cell(q.cell_id, 'status')
  },

  executionCompleted(s, a, env, ch) {
    const q = s.queues.get(a.queueId)
    if (!q || TERMINAL.has(q.status)) return
    const wasRunning = q.status === 'running'
    q.status = a.status
    q.execution_count = a.executionCount ?? null
    q.duration_ms = a.durationMs ?? 0
    q.error = a.error ?? null
    q.completed_at = env.ts
    const cell = s.cells.get(q.cell_id)
    if (cell && a.executionCount != null) cell.execution_count = a.executionCount
    ch.cell(q.cell_id, 'status')
    dropInput(s, q.queue_id, ch)
    if (STOPS_BATCH.has(a.status) && q.batch_id != null && wasRunning) {  // a claim never started stops nothing
      cancelQueue(s, (o) => o.batch_id === q.batch_id && o.queue_id !== q.queue_id, env.ts, ch, 'cancel')
    }
  },

  executionCancelRequested(s, a, env, ch) {
    if (a.queueId == null) cancelQueue(s, () => true, env.ts, ch)
    else cancelQueue(s, (q) => q.queue_id === a.queueId, env.ts, ch)
  },

  executionRequeued(s, a, env, ch) {
    const q = s.queues.get(a.queueId)
    if (!q) return
    releaseClaim(q, env.ts, ch)
  },

  outputAdded(s, a, env, ch) {
    const cell = s.cells.get(a.cellId)
    if (!cell) return
    if (cell.clear_pending) clearOutputs(s, cell, ch)
    cell.outputs.push(outputContent(a))
    s.outputIndex.set(a.outputId, cell.id)
    ch.cell(cell.id, 'outputs')
  },

  streamTextChanged(s, a, env, ch) {
    const cell = s.cells.get(s.outputIndex.get(a.outputId))
    const out = cell?.outputs.find((o) => o.output_id === a.outputId)
    if (!out) return
    out.text = sliceCodePoints(out.text || '', a.offset) + a.text
    ch.cell(cell.id, 'outputs')
  },

  // A stream past the stream cap: the log keeps its live tail; the omitted text is an artifact once stored.
  streamTailSet(s, a, env, ch) {
    const cell = s.cells.get(s.outputIndex.get(a.outputId))
    const out = cell?.outputs.find((o) => o.output_id === a.outputId)
    if (!out) return
    out.text = a.text
    out.omitted = a.omitted
    out.omitted_bytes = a.omittedBytes
    if (a.data) out.data = a.data
    ch.cell(cell.id, 'outputs')
  },

  displayUpdated(s, a, env, ch) {
    for (const cell of s.cells.values()) {
      for (const o of cell.outputs) {
        if (o.display_id === a.displayId) {
          o.data = a.data
          o.metadata = a.metadata || {}
          ch.cell(cell.id, 'outputs')
        }
      }
    }
  },

  outputsCleared(s, a, env, ch) {
    const cell = s.cells.get(a.cellId)
    if (!cell) return
    if (a.wait) cell.clear_pending = true
    else clearOutputs(s, cell, ch)
    if (a.execution) { // "Clear outputs" as in JupyterLab: the count and a finished run's status go too
      cell.execution_count = null
      if (!cell.execution || TERMINAL.has(cell.execution.status)) cell.execution = null
      ch.cell(cell.id, 'status')
    }
  },

  runtimeSessionStarted(s, a, env, ch) {
    s.runtime = {
      session_id: a.sessionId, runtime_id: a.runtimeId, actor_id: env.actor?.id, kernel_name: a.kernelName,
      language: a.language, status: 'starting', detail: null, host: a.host, started_at: env.ts, active: true,
      assign_when_idle: Boolean(a.capabilities?.assign_when_idle),
    }
    ch.runtime = true
  },

  runtimeStatusChanged(s, a, env, ch) {
    if (!s.runtime || s.runtime.session_id !== a.sessionId) return
    s.runtime.status = a.status
    s.runtime.detail = a.detail ?? null
    ch.runtime = true
  },

  runtimeSessionEnded(s, a, env, ch) {
    if (s.runtime && s.runtime.session_id === a.sessionId) {
      s.runtime = { ...s.runtime, status: 'dead', active: false, ended_reason: a.reason }
      ch.runtime = true
    }
    for (const q of s.queues.values()) {
      if (q.session_id !== a.sessionId) continue
      if (q.status === 'running') {
        q.status = 'error'
        q.error = { ename: 'RuntimeLost', evalue: `runtime ${a.reason}: the runtime session ended while this cell ran`, traceback: [] }
        q.completed_at = env.ts
        ch.cell(q.cell_id, 'status')
        dropInput(s, q.queue_id, ch)
        if (q.batch_id != null) cancelQueue(s, (o) => o.batch_id === q.batch_id && o.queue_id !== q.queue_id, env.ts, ch, 'cancel')
      } else if (q.status === 'assigned') {
        releaseClaim(q, env.ts, ch)
      }
    }
  },

  inputRequested(s, a, env, ch) {
    s.inputs.set(a.queueId, { queue_id: a.queueId, prompt: a.prompt || '', password: !!a.password })
    ch.inputs = true
    const q = s.queues.get(a.queueId)
    if (q) ch.cell(q.cell_id, 'input')
  },

  inputReplied(s, a, env, ch) {
    dropInput(s, a.queueId, ch)
  },

  toolApprovalRequested(s, a, env, ch) {
    if (s.approvals.has(a.approvalId)) return
    s.approvals.set(a.approvalId, {
      approval_id: a.approvalId, tool: a.tool, arguments: a.arguments || {}, cell_id: a.cellId ?? null,
      status: 'pending', decision: null, requested_by: env.actor || null, requested_seq: env.seq,
      resolved_by: null, resolved_seq: null,
    })
    ch.approvals = true
  },

  toolApprovalResolved(s, a, env, ch) {
    let req = s.approvals.get(a.approvalId)
    // resolved before the page's list of pending requests arrived: remember it, so that list cannot revive it
    if (!req) s.approvals.set(a.approvalId, (req = { approval_id: a.approvalId, requested_by: null }))
    if (req.decision != null) return
    req.decision = a.decision
    req.resolved_by = env.actor || null
    req.resolved_seq = env.seq
    req.status = approvalStatus(a.decision, req.requested_by, req.resolved_by)
    ch.approvals = true
  },
}

/** Apply one stored event (an envelope with seq) to the state, noting what changed. */
export function applyEvent(state, env, changes) {
  const handler = HANDLERS[env.name]
  if (handler) handler(state, env.args || {}, env, changes)
  if (env.seq > state.headSeq) state.headSeq = env.seq
  state.updatedAt = env.ts
  if (changes.order) sortOrder(state)
}

/** Apply a batch; sorts once at the end. */
export function applyEvents(state, events, changes = new Changes()) {
  for (const env of events) {
    const handler = HANDLERS[env.name]
    if (handler) handler(state, env.args || {}, env, changes)
    if (env.seq > state.headSeq) state.headSeq = env.seq
    state.updatedAt = env.ts
  }
  if (changes.order) sortOrder(state)
  return changes
}
