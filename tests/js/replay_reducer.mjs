// Replay a recorded event log through the page's view reducer and print the views it builds.
//
// Used by tests/test_reducer_parity.py to compare the browser's reducer with the Python
// materializer (the authority). Reads one JSON request on stdin:
//   {"notebook_id": "...", "events": [...stored events...], "starts": [null | view, ...]}
// Each start is where a page begins: null for an empty page that applies the whole log, or the
// view it loaded, GET /api/notebooks/{id}?ystate=1 at some seq (then events up to that view's
// head_seq are skipped, as the page resumes after it). Writes {"runs": [{"<seq>": view, ...}, ...]}
// on stdout, one run per start with the view after each event it applied, each view cut to
// view_shape.json, the shape the test also cuts runtimed.schema.views.notebook_view to.
import { readFileSync } from 'node:fs'
import { applyEvents, cellSource, destroyState, stateFromView } from '../../runtimed/web/frontend/src/reducer.js'

const SHAPE = JSON.parse(readFileSync(new URL('./view_shape.json', import.meta.url), 'utf8'))

/** Only the named fields, in that order; absent ones are null (the projection's NULL). */
function pick(obj, fields) {
  const out = {}
  for (const f of fields) out[f] = obj[f] ?? null
  return out
}

/** The reducer's state as the notebook view the page would be served by REST. */
function viewOf(state) {
  const cells = state.order.map((id) => {
    const c = state.cells.get(id)
    const execution = c.execution ? pick({ ...c.execution, cancel_requested: !!c.execution.cancel_requested }, SHAPE.execution) : null
    return pick({ ...c, source: cellSource(c), execution }, SHAPE.cell)
  })
  const notebook = {
    id: state.id,
    title: state.title,
    head_seq: state.headSeq,
    created_at: state.createdAt,
    updated_at: state.updatedAt,
    metadata: state.metadata,
    cells,
    runtime: state.runtime && state.runtime.active ? pick(state.runtime, SHAPE.runtime) : null,
    inputs: [...state.inputs.values()].map((i) => pick({ ...i, password: !!i.password }, SHAPE.input)),
  }
  return pick(notebook, SHAPE.notebook)
}

/** The view after each event applied from `start` (null: an empty page). */
function replay(notebookId, events, start) {
  const state = stateFromView(start ?? { id: notebookId, cells: [] }, { live: true })
  const views = {}
  try {
    for (const event of events) {
      if (event.seq <= state.headSeq) continue
      applyEvents(state, [event])
      views[event.seq] = JSON.parse(JSON.stringify(viewOf(state)))
    }
  } finally {
    destroyState(state)
  }
  return views
}

async function readStdin() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  return Buffer.concat(chunks).toString('utf8')
}

const request = JSON.parse(await readStdin())
if (!Array.isArray(request.events) || typeof request.notebook_id !== 'string' || !Array.isArray(request.starts)) {
  process.stderr.write('replay_reducer: stdin must be {"notebook_id": str, "events": [...], "starts": [null | view, ...]}\n')
  process.exit(2)
}
process.stdout.write(JSON.stringify({ runs: request.starts.map((start) => replay(request.notebook_id, request.events, start)) }))
