// Agents' tool calls waiting for a person (docs/mcp.md, "Approvals"): the pending panel with
// Approve / Always / Deny, and the notebook's approval policy.
//
// Requests arrive as toolApprovalRequested events (the reducer keeps state.approvals); an answer is
// a toolApprovalResolved pushed over the sync connection as this page's person. The materializer
// decides: a second answer, or one from a viewer, comes back as a rejection notice. Everything an
// agent sent is shown as text (never as HTML).
import { api, notebookPath } from './api.js'
import { mergeApprovals, pendingApprovals } from './reducer.js'
import { actorLabel } from './audit.js'
import { el, notice } from './util.js'

export const POLICIES = [
  ['off', 'never ask'],
  ['execute', 'ask to run code'],
  ['edits', 'ask to edit or run'],
  ['all', 'ask for everything'],
]
const DEFAULT_POLICY = 'execute'
const HIDDEN_ARGUMENTS = new Set(['notebook_id', 'preview'])
const MAX_ARGUMENT_CHARS = 2000 // per argument shown in the list (the preview is shown whole, scrollable)

/** As runtimed.schema.approvals.policy: an unknown value counts as `all` (a typo must not open the door). */
export function policyOf(metadata) {
  const settings = metadata && typeof metadata.runtimed === 'object' && metadata.runtimed ? metadata.runtimed : {}
  const value = settings.approvals ?? DEFAULT_POLICY
  return POLICIES.some(([p]) => p === value) ? value : 'all'
}

function isDiff(text) {
  return /^--- .*\n\+\+\+ /.test(text)
}

/** A unified diff, line by line, with added / removed / hunk lines marked. */
function diffView(text) {
  const lines = text.split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  return el('pre.approval-preview.diff', { testid: 'approval-preview', 'data-kind': 'diff' },
    lines.map((line) => {
      let cls = 'ctx'
      if (line.startsWith('+++') || line.startsWith('---')) cls = 'file'
      else if (line.startsWith('@@')) cls = 'hunk'
      else if (line.startsWith('+')) cls = 'add'
      else if (line.startsWith('-')) cls = 'del'
      return el('span.diff-line.' + cls, { text: line + '\n' })
    }))
}

function previewView(text) {
  if (typeof text !== 'string' || !text) return null
  if (isDiff(text)) return diffView(text)
  return el('pre.approval-preview', { testid: 'approval-preview', 'data-kind': 'code', text })
}

function argumentText(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value)
  return text.length > MAX_ARGUMENT_CHARS ? `${text.slice(0, MAX_ARGUMENT_CHARS)}… (${text.length.toLocaleString()} characters)` : text
}

export class ApprovalsPanel {
  /** @param page the NotebookPage (state, push, views) */
  constructor(page) {
    this.page = page
    this.sent = new Set() // approval ids this page answered, waiting for the event to come back
    this.list = el('div.approval-list')
    this.node = el('section.approvals', { testid: 'approvals-panel', hidden: true, 'aria-live': 'polite' },
      el('div.approvals-head', null, el('strong', { text: 'Waiting for your approval' }),
        el('span.muted', { text: ' — an agent asks to act on this notebook' })),
      this.list)
    this.count = el('span.badge.approvals-count', { testid: 'approvals-count', hidden: true,
      title: 'Agents waiting for your approval', on: { click: () => this.node.scrollIntoView({ block: 'nearest' }) } })
    this.policy = el('select.approval-policy', {
      testid: 'approval-policy', title: 'When agents (MCP clients) need a person\'s approval on this notebook',
      on: { change: () => this.setPolicy(this.policy.value) },
    }, POLICIES.map(([value, label]) => el('option', { value, text: `Agents: ${label}` })))
  }

  /** The pending requests when the page opened (later ones come as events). */
  async load() {
    let body
    try {
      body = await api(`${notebookPath(this.page.notebookId)}/approvals`)
    } catch (err) {
      notice(`Could not list the pending approvals: ${err.message}`)
      return
    }
    const changes = mergeApprovals(this.page.state, body.approvals || [])
    if (changes.approvals) this.render()
  }

  render() {
    const pending = pendingApprovals(this.page.state)
    const shown = new Map([...this.list.children].map((n) => [n.dataset.approvalId, n]))
    const keep = new Set(pending.map((a) => a.approval_id))
    for (const [id, node] of shown) if (!keep.has(id)) node.remove()
    for (const id of [...this.sent]) if (!keep.has(id)) this.sent.delete(id)
    let ref = this.list.firstChild
    for (const a of pending) {
      const node = shown.get(a.approval_id) || this._item(a)
      if (node !== ref) this.list.insertBefore(node, ref)
      else ref = ref.nextSibling
    }
    this.node.hidden = pending.length === 0
    this.count.hidden = pending.length === 0
    this.count.textContent = `${pending.length} to approve`
    for (const v of this.page.views.values()) v.node.classList.remove('awaiting-approval')
    for (const a of pending) this.page.views.get(a.cell_id)?.node.classList.add('awaiting-approval')
    this.page.root.dataset.approvals = String(pending.length)
  }

  renderPolicy() {
    const value = policyOf(this.page.state.metadata)
    if (this.policy.value !== value) this.policy.value = value
  }

  _item(a) {
    const args = Object.entries(a.arguments || {}).filter(([k]) => !HIDDEN_ARGUMENTS.has(k))
    const who = a.requested_by || {}
    const index = a.cell_id ? this.page.state.order.indexOf(a.cell_id) : -1
    const answer = (decision, label, testid, cls, title) =>
      el('button' + cls, { type: 'button', testid, title, text: label, on: { click: () => this.resolve(a.approval_id, decision) } })
    return el('article.approval', { testid: 'approval', 'data-approval-id': a.approval_id, 'data-tool': a.tool },
      el('div.approval-title', null,
        el('span.agent-badge', { testid: 'approval-agent', title: actorLabel(who), text: who.name || who.id || 'an agent' }),
        el('span', { text: ' wants to call ' }),
        el('code.approval-tool', { testid: 'approval-tool', text: a.tool }),
        index >= 0
          ? el('a.approval-cell', { href: `#cell-${a.cell_id}`, text: `cell ${index + 1}`,
              on: { click: (e) => { e.preventDefault(); this.page.views.get(a.cell_id)?.node.scrollIntoView({ block: 'center' }) } } })
          : null),
      previewView(a.arguments?.preview),
      args.length
        ? el('dl.approval-args', { testid: 'approval-args' },
            args.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: argumentText(v) })]))
        : null,
      el('div.approval-actions', null,
        answer('approved', 'Approve', 'approve', '.primary', 'Let this call run once'),
        answer('approved_always', 'Always', 'approve-always', '',
          `Let ${who.name || 'this agent'} call ${a.tool} on this notebook from now on without asking`),
        answer('denied', 'Deny', 'deny', '.danger', 'Refuse: nothing runs and the agent is told so')))
  }

  /** Answer a request as this page's person; the item goes when the event comes back from the log. */
  resolve(approvalId, decision) {
    if (this.sent.has(approvalId) || this.page.readOnly) return
    this.sent.add(approvalId)
    for (const b of this.list.querySelectorAll(`[data-approval-id="${CSS.escape(approvalId)}"] button`)) b.disabled = true
    this.page.push([{ name: 'toolApprovalResolved', args: { approvalId, decision } }])
  }

  /** A rejected answer (someone answered first, or this person may not): let them try again. */
  rejected(approvalId) {
    this.sent.delete(approvalId)
    for (const b of this.list.querySelectorAll(`[data-approval-id="${CSS.escape(approvalId)}"] button`)) b.disabled = false
  }

  setPolicy(value) {
    const current = this.page.state.metadata.runtimed
    const settings = current && typeof current === 'object' ? current : {}
    if (policyOf(this.page.state.metadata) === value && settings.approvals === value) return
    this.page.push([{ name: 'notebookMetadataSet', args: { key: 'runtimed', value: { ...settings, approvals: value } } }])
  }
}
