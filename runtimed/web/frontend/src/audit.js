// Who did what, in the page: agents' marks on the cells they created or changed last, and the
// actor of each step of the history view. Every event carries its actor; the log is the audit trail.
import { api, notebookPath } from './api.js'
import { el, relativeTime } from './util.js'

export const KIND_LABELS = { human: 'person', agent: 'agent', runtime: 'runtime', automation: 'automation', system: 'system' }
const HISTORY_STEPS = 12 // steps listed up to the one shown

// The actor of the event that created each cell and of its last change (cells.created_seq and
// updated_seq): the REST view the page loads has no authorship. Two lookups by seq per cell.
const AUTHORS_SQL = `
SELECT c.id, cr.actor, c.created_seq, ed.actor, c.updated_seq
FROM cells c LEFT JOIN events cr ON cr.seq = c.created_seq LEFT JOIN events ed ON ed.seq = c.updated_seq`

export function actorName(actor) {
  return (actor && (actor.name || actor.id)) || 'unknown'
}

/** "claude (agent)" */
export function actorLabel(actor) {
  return `${actorName(actor)} (${KIND_LABELS[actor?.kind] || actor?.kind || 'unknown'})`
}

/**
 * The agent mark of a cell, or null: the agent that changed it last, else the agent that created it.
 * @returns {{name: string, title: string}|null}
 */
export function agentMark(cell) {
  const created = cell.createdBy?.actor
  const edited = cell.editedBy?.actor
  if (edited?.kind === 'agent') {
    const by = created && created.id !== edited.id ? `; created by ${actorLabel(created)}` : ''
    return { name: actorName(edited), title: `Last changed by the agent ${actorName(edited)}${by}` }
  }
  if (created?.kind === 'agent') {
    const by = edited ? `; last changed by ${actorLabel(edited)}` : ''
    return { name: actorName(created), title: `Created by the agent ${actorName(created)}${by}` }
  }
  return null
}

function parseActor(text) {
  try {
    return text ? JSON.parse(text) : null
  } catch {
    return null
  }
}

/** Authorship rows for reducer.noteAuthors (empty when the server cannot say: the page then marks live edits only). */
export async function loadAuthors(notebookId) {
  const body = await api(`${notebookPath(notebookId)}/query`, { method: 'POST', body: { sql: AUTHORS_SQL, params: [] } })
  return (body.rows || []).map(([cellId, created, createdSeq, edited, editedSeq]) => ({
    cell_id: cellId, created_by: parseActor(created), created_seq: createdSeq,
    edited_by: parseActor(edited), edited_seq: editedSeq,
  }))
}

const DESCRIPTIONS = {
  notebookCreated: () => 'created the notebook',
  notebookMetadataSet: (a) => (a.key === 'title' ? 'renamed the notebook' : `set notebook metadata “${a.key}”`),
  cellCreated: (a) => `created a ${a.cellType} cell`,
  cellSourceEdited: () => 'edited a cell',
  cellTypeChanged: (a) => `made a cell ${a.cellType}`,
  cellMoved: () => 'moved a cell',
  cellDeleted: () => 'deleted a cell',
  cellMetadataSet: (a) => `set cell metadata “${a.key}”`,
  executionRequested: () => 'asked to run a cell',
  executionStarted: () => 'started running a cell',
  executionCompleted: (a) => `finished a run (${a.status})`,
  executionCancelRequested: () => 'cancelled a run',
  outputAdded: () => 'added an output',
  streamTextChanged: () => 'wrote output',
  streamTailSet: () => 'wrote output',
  outputsCleared: () => 'cleared outputs',
  runtimeSessionStarted: () => 'started the kernel',
  runtimeSessionEnded: (a) => `stopped the kernel (${a.reason})`,
  runtimeInterruptRequested: () => 'asked to interrupt the kernel',
  runtimeRestartRequested: () => 'asked to restart the kernel',
  toolApprovalRequested: (a) => `asked for approval to call ${a.tool}`,
  toolApprovalResolved: (a) => ({ approved: 'approved a tool call', approved_always: 'approved a tool for good', denied: 'denied a tool call' })[a.decision] || a.decision,
}

export function describeEvent(event) {
  const describe = DESCRIPTIONS[event.name]
  return describe ? describe(event.args || {}) : event.name
}

/** The steps up to `seq` (the last one is the step shown), each with who did it. */
export async function loadSteps(notebookId, seq) {
  const since = Math.max(0, seq - HISTORY_STEPS)
  const body = await api(`${notebookPath(notebookId)}/events?since=${since}&until=${seq}&limit=${HISTORY_STEPS}`)
  return body.events || []
}

/** The list of steps for the history banner; clicking a step shows the notebook after it. */
export function stepsView(events, seq, onPick) {
  return el('ol.history-steps', { testid: 'history-steps' },
    events.map((e) => {
      const kind = e.actor?.kind || 'unknown'
      return el('li.history-step' + (e.seq === seq ? '.current' : ''), {
        testid: 'history-step', 'data-seq': e.seq, 'data-actor-kind': kind, 'data-actor-name': actorName(e.actor),
        title: `${e.name} at ${e.ts}`, on: { click: () => onPick(e.seq) },
      },
      el('span.step-seq', { text: `#${e.seq}` }),
      el('span.actor-chip.kind-' + kind, { testid: 'step-actor', text: actorName(e.actor) }),
      el('span.step-kind.muted', { text: KIND_LABELS[kind] || kind }),
      el('span.step-what', { text: describeEvent(e) }),
      el('span.step-when.muted', { text: relativeTime(e.ts) }))
    }))
}
