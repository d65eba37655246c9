// Command mode, as in JupyterLab: Escape leaves the editor for the cell, and single keys act on the
// selected cells (A/B insert, D D delete, Z undo a deletion or move, C/X/V copy/cut/paste, M/Y/R type,
// Shift-M merge, J/K and the arrows move the selection, Enter edits, Shift-Enter/Ctrl-Enter/Alt-Enter
// run, Shift-click and Shift-J/K select a range, H or ? the list of keys).
//
// Every action is pushed as ordinary events through the page (NotebookPage.push), so command mode adds
// no new kind of change: the log decides, the reducer shows.
import './commands.css'
import { keyBetween } from './order.js'
import { createEvents, Placer, snapshotCell } from './undo.js'
import { el, newId, notice } from './util.js'

const CLIPBOARD_KEY = 'runtimed.clipboard'
const CHORD_MS = 800

/** The keyboard reference (the help dialog and docs/web.md show this table). */
export const SHORTCUTS = [
  ['Command mode', [
    ['Enter', 'edit the selected cell'],
    ['Shift-Enter', 'run, select the cell below'],
    ['Ctrl-Enter', 'run the selected cells'],
    ['Alt-Enter', 'run, insert a cell below'],
    ['J / ↓, K / ↑', 'select the cell below / above'],
    ['Shift-J / Shift-↓, Shift-K / Shift-↑', 'extend the selection'],
    ['Shift-click, Ctrl-click', 'select a range, add a cell to the selection'],
    ['Ctrl-A', 'select every cell'],
    ['A / B', 'insert a cell above / below'],
    ['D D', 'delete the selected cells'],
    ['Z', 'undo the last cell deletion, move or merge'],
    ['C / X', 'copy / cut the selected cells'],
    ['V / Shift-V', 'paste below / above'],
    ['Shift-M', 'merge the selected cells (or with the cell below)'],
    ['Ctrl-Shift-↑ / ↓', 'move the selected cells up / down'],
    ['M / Y / R', 'change to markdown / code / raw'],
    ['O / Shift-O', 'hide or show the outputs / scroll long outputs'],
    ['I I', 'interrupt the kernel'],
    ['0 0', 'restart the kernel (asks first)'],
    ['H or ?', 'this list'],
    ['Escape', 'select only the active cell'],
  ]],
  ['Edit mode', [
    ['Escape', 'leave the editor (command mode)'],
    ['Shift-Enter / Ctrl-Enter / Alt-Enter', 'run and advance / run / run and insert below'],
    ['↓ on the last line, ↑ on the first', 'go to the next / previous cell'],
    ['Tab, Ctrl-Space', 'complete (from the kernel)'],
    ['Shift-Tab', 'show the kernel’s help for the name at the cursor'],
    ['Ctrl-Z, Ctrl-Shift-Z', 'undo / redo your own typing in this cell'],
  ]],
]

function isMod(e) {
  return e.ctrlKey || e.metaKey
}

export class CommandMode {
  constructor(page) {
    this.page = page
    this.selected = new Set()
    this.anchor = null
    this._chord = null
    this._chordAt = 0
    this.help = null
    document.addEventListener('keydown', (e) => this._onKey(e))
    page.cellsBox.addEventListener('mousedown', (e) => this._onMouse(e))
  }

  /** Keys act in command mode: the focus is on a cell itself, or on nothing. */
  _commandTarget(e) {
    const t = e.target
    // Nothing focused (the page background was clicked): command mode once a cell has been selected.
    if (t === document.body || t === document.documentElement) return !!this.page.activeCellId
    return t instanceof Element && t.classList.contains('cell') && this.page.cellsBox.contains(t)
  }

  _onKey(e) {
    const p = this.page
    if (p.readOnly || e.defaultPrevented || e.isComposing || !this._commandTarget(e)) return
    if (this.help?.open) return
    const active = p.activeCellId && p.state.cells.has(p.activeCellId) ? p.activeCellId : p.state.order[0]
    if (!active) {
      // An empty notebook: A/B add a cell, Z undoes the deletion that emptied it.
      if (e.key === 'a' || e.key === 'b') this._handled(e, () => p.addCell(null, 'end', 'code', { edit: false }))
      else if (e.key === 'z') this._handled(e, () => this.undo())
      return
    }
    const key = e.key
    const chord = (k, fn) => {
      if (this._chord === k && performance.now() - this._chordAt < CHORD_MS) {
        this._chord = null
        fn()
      } else {
        this._chord = k
        this._chordAt = performance.now()
      }
    }
    const shift = e.shiftKey
    const alt = e.altKey
    const mod = isMod(e)
    if (key === 'Enter') {
      if (shift && !mod && !alt) return this._handled(e, () => this.runSelected(true))
      if (mod && !shift && !alt) return this._handled(e, () => this.runSelected(false))
      if (alt && !mod && !shift) return this._handled(e, () => this.runSelected('insert'))
      if (!shift && !mod && !alt) return this._handled(e, () => p.views.get(active)?.edit())
      return
    }
    if (mod && shift && (key === 'ArrowUp' || key === 'ArrowDown')) {
      return this._handled(e, () => this.moveSelected(key === 'ArrowUp' ? -1 : 1))
    }
    if (mod && !shift && !alt && key.toLowerCase() === 'a') return this._handled(e, () => this.selectAll())
    if (mod || alt) return
    switch (key) {
      case 'ArrowDown':
      case 'j':
      case 'J':
        return this._handled(e, () => this.step(+1, shift))
      case 'ArrowUp':
      case 'k':
      case 'K':
        return this._handled(e, () => this.step(-1, shift))
      case 'a':
        return this._handled(e, () => p.addCell(active, 'above', 'code', { edit: false }))
      case 'b':
        return this._handled(e, () => p.addCell(active, 'below', 'code', { edit: false }))
      case 'd':
        return this._handled(e, () => chord('d', () => this.deleteSelected()))
      case 'i':
        return this._handled(e, () => chord('i', () => p.interrupt()))
      case '0':
        return this._handled(e, () => chord('0', () => p.restart()))
      case 'z':
        return this._handled(e, () => this.undo())
      case 'c':
        return this._handled(e, () => this.copy())
      case 'x':
        return this._handled(e, () => this.copy() && this.deleteSelected())
      case 'v':
      case 'V':
        return this._handled(e, () => this.paste(shift ? 'above' : 'below'))
      case 'm':
        return this._handled(e, () => this.setType('markdown'))
      case 'y':
        return this._handled(e, () => this.setType('code'))
      case 'r':
        return this._handled(e, () => this.setType('raw'))
      case 'M':
        return this._handled(e, () => this.merge())
      case 'o':
      case 'O':
        return this._handled(e, () => this.toggleOutputs(shift ? 'scrolled' : 'collapsed'))
      case 'h':
      case '?':
        return this._handled(e, () => this.showHelp())
      case 'Escape':
        return this._handled(e, () => this.select(active))
      default:
    }
  }

  undo() {
    if (!this.page.undo.undo()) notice('Nothing to undo (cell deletions and moves of this page)', 'info')
  }

  _handled(e, fn) {
    e.preventDefault()
    e.stopPropagation()
    if (e.key !== 'd' && e.key !== 'i' && e.key !== '0') this._chord = null
    fn()
  }

  _onMouse(e) {
    const node = e.target instanceof Element ? e.target.closest('.cell') : null
    if (!node || !this.page.cellsBox.contains(node) || e.button !== 0) return
    const id = node.dataset.cellId
    if (e.shiftKey && !e.target.closest('.cm-content')) {
      e.preventDefault()
      this.select(id, { extend: true })
      this.focusCell(id)
    } else if (isMod(e) && !e.target.closest('.cm-content')) {
      e.preventDefault()
      this.select(id, { toggle: true })
      this.focusCell(id)
    } else if (!this.selected.has(id) || this.selected.size > 1) this.select(id)
  }

  // -- selection --------------------------------------------------------------------------------------

  /** The selected cells in notebook order (at least the active one). */
  selection() {
    const order = this.page.state.order
    const ids = order.filter((id) => this.selected.has(id))
    if (ids.length) return ids
    const a = this.page.activeCellId
    return a && this.page.state.cells.has(a) ? [a] : []
  }

  select(id, { extend = false, toggle = false } = {}) {
    const order = this.page.state.order
    let next
    if (extend && this.anchor && order.includes(this.anchor)) {
      const [i, j] = [order.indexOf(this.anchor), order.indexOf(id)].sort((x, y) => x - y)
      next = new Set(order.slice(i, j + 1))
    } else if (toggle) {
      next = new Set(this.selection())
      if (next.has(id) && next.size > 1) next.delete(id)
      else next.add(id)
      this.anchor = id
    } else {
      next = new Set([id])
      this.anchor = id
    }
    this._render(next)
    this.page.setActive(id)
  }

  selectAll() {
    const order = this.page.state.order
    if (!order.length) return
    this.anchor = order[0]
    this._render(new Set(order))
  }

  _render(next) {
    for (const id of this.selected) if (!next.has(id)) this._mark(id, false)
    for (const id of next) if (!this.selected.has(id)) this._mark(id, true)
    this.selected = next
    this.page.root.dataset.selected = String(next.size)
  }

  _mark(id, on) {
    const node = this.page.views.get(id)?.node
    if (!node) return
    node.classList.toggle('selected', on)
    node.setAttribute('aria-selected', on ? 'true' : 'false')
  }

  /** Forget cells that left the notebook (called after changes are applied). */
  prune() {
    const cells = this.page.state.cells
    if ([...this.selected].some((id) => !cells.has(id))) this._render(new Set([...this.selected].filter((id) => cells.has(id))))
  }

  step(delta, extend = false) {
    const order = this.page.state.order
    const i = order.indexOf(this.page.activeCellId)
    const j = Math.max(0, Math.min(order.length - 1, (i < 0 ? 0 : i) + delta))
    if (!order.length) return
    this.select(order[j], { extend })
    this.focusCell(order[j])
  }

  /** Command mode on a cell: the cell itself has the focus (not its editor). */
  focusCell(id) {
    const v = this.page.views.get(id)
    if (!v) return
    if (!this.selected.has(id)) this.select(id)
    this.page.setActive(id)
    v.node.focus({ preventScroll: true })
    v.node.scrollIntoView({ block: 'nearest' })
  }

  /** Escape in an editor: leave it for command mode on its cell. */
  enterCommand(id) {
    this.page.views.get(id)?.stopEditing()
    this.select(id)
    this.focusCell(id)
  }

  /** ArrowDown on an editor's last line (or ArrowUp on its first): edit the next (previous) cell. */
  editNeighbour(id, delta) {
    const order = this.page.state.order
    const next = order[order.indexOf(id) + delta]
    if (!next) return false
    const v = this.page.views.get(next)
    if (!v) return false
    this.page.views.get(id)?.stopEditing()
    this.select(next)
    v.node.scrollIntoView({ block: 'nearest' })
    if (v.isMarkdown) this.focusCell(next)
    else v.edit(delta < 0 ? 'end' : 'start')
    return true
  }

  // -- actions ----------------------------------------------------------------------------------------

  runSelected(advance) {
    const p = this.page
    const ids = this.selection()
    if (!ids.length) return
    for (const id of ids.slice(0, -1)) p.run(id, false)
    const last = ids[ids.length - 1]
    if (advance === 'insert') {
      p.run(last, false)
      p.addCell(last, 'below', 'code')
      return
    }
    p.run(last, false)
    if (!advance) return
    const order = p.state.order
    const next = order[order.indexOf(last) + 1]
    if (next) this.step(order.indexOf(next) - order.indexOf(p.activeCellId))
    else p.addCell(last, 'below', 'code')
  }

  deleteSelected() {
    const p = this.page
    const ids = this.selection()
    if (!ids.length) return
    const order = p.state.order
    const after = order.slice(order.indexOf(ids[ids.length - 1]) + 1).find((id) => !ids.includes(id))
    const before = order.slice(0, order.indexOf(ids[0])).reverse().find((id) => !ids.includes(id))
    p.undo.noteDelete(ids)
    p.push(ids.map((cellId) => ({ name: 'cellDeleted', args: { cellId } })))
    const next = after || before
    if (next) {
      this.select(next)
      this.focusCell(next)
    }
  }

  setType(cellType) {
    const p = this.page
    const events = this.selection()
      .filter((id) => p.state.cells.get(id)?.cell_type !== cellType)
      .map((cellId) => ({ name: 'cellTypeChanged', args: { cellId, cellType } }))
    if (events.length) p.push(events)
  }

  copy() {
    const p = this.page
    const ids = this.selection()
    if (!ids.length) return false
    const snaps = ids.map((id) => snapshotCell(p.state, id))
    this.clipboard = snaps
    try {
      localStorage.setItem(CLIPBOARD_KEY, JSON.stringify(snaps))
    } catch {} // too big for localStorage: this page still has it
    return true
  }

  _clipboard() {
    try {
      const stored = JSON.parse(localStorage.getItem(CLIPBOARD_KEY) || 'null')
      if (Array.isArray(stored)) return stored
    } catch {}
    return this.clipboard || null
  }

  /** Paste the copied cells (new ids, with their outputs) below or above the active cell. */
  paste(where) {
    const p = this.page
    const snaps = this._clipboard()
    if (!snaps?.length) return notice('Nothing to paste: copy cells with C or X first', 'info')
    const active = p.activeCellId
    const order = p.state.order
    const placer = new Placer(p.state)
    let prevId = where === 'above' ? order[order.indexOf(active) - 1] ?? null : active
    let nextId = where === 'above' ? active : null
    const events = []
    const ids = []
    for (const snap of snaps) {
      const id = newId('cell-')
      const key = placer.place(id, prevId ? { prevId } : { nextId })
      events.push(...createEvents(snap, key, id))
      ids.push(id)
      prevId = id
      nextId = null
    }
    p.pendingFocus = ids[0]
    p.pendingEdit = false
    p.push(events)
  }

  /** Join the selected cells (or the active one and the one below) into the first, as JupyterLab. */
  merge() {
    const p = this.page
    let ids = this.selection()
    if (ids.length === 1) {
      const order = p.state.order
      const below = order[order.indexOf(ids[0]) + 1]
      if (!below) return
      ids = [ids[0], below]
    }
    const [first, ...rest] = ids.map((id) => p.state.cells.get(id))
    if (!first?.text) return
    const appended = rest.map((c) => '\n\n' + c.text.toString()).join('')
    p.undo.noteMerge(first.id, appended, rest.map((c) => c.id))
    first.doc.transact(() => first.text.insert(first.text.length, appended))
    p.push(rest.map((c) => ({ name: 'cellDeleted', args: { cellId: c.id } })))
    this.select(first.id)
    this.focusCell(first.id)
  }

  moveSelected(delta) {
    const p = this.page
    const ids = this.selection()
    if (!ids.length) return
    const order = p.state.order
    const key = (k) => (k >= 0 && k < order.length ? p.state.cells.get(order[k]).fractional_index : null)
    const i = order.indexOf(ids[0])
    const j = order.indexOf(ids[ids.length - 1])
    if (j - i + 1 !== ids.length) return notice('Select adjacent cells to move them together', 'info')
    // Moving a block is moving the neighbour across it: one event, the same order.
    let cellId
    let fractionalIndex
    if (delta < 0 && i > 0) [cellId, fractionalIndex] = [order[i - 1], keyBetween(key(j), key(j + 1))]
    else if (delta > 0 && j < order.length - 1) [cellId, fractionalIndex] = [order[j + 1], keyBetween(key(i - 1), key(i))]
    else return
    p.undo.noteMove(cellId, p.state.cells.get(cellId).fractional_index)
    p.push([{ name: 'cellMoved', args: { cellId, fractionalIndex } }])
  }

  /** O / Shift-O: hide or show (scroll or unscroll) the outputs of the selected cells, all alike. */
  toggleOutputs(key) {
    const p = this.page
    const ids = this.selection().filter((id) => p.state.cells.get(id)?.outputs.length)
    if (!ids.length) return
    const first = p.views.get(ids[0]).outputChrome
    const on = key === 'collapsed' ? !first.collapsed : !first.scrolled
    p.push(ids.map((cellId) => ({ name: 'cellMetadataSet', args: { cellId, key, value: on ? true : null } })))
  }

  // -- help -------------------------------------------------------------------------------------------

  showHelp() {
    if (!this.help) {
      const sections = SHORTCUTS.map(([title, rows]) => el('section', null,
        el('h3', { text: title }),
        el('table', null, ...rows.map(([k, what]) => el('tr', null, el('th', { scope: 'row' }, el('kbd', { text: k })), el('td', { text: what }))))))
      this.help = el('dialog.shortcuts', { testid: 'shortcuts', 'aria-label': 'Keyboard shortcuts' },
        el('div.shortcuts-head', null, el('h2', { text: 'Keyboard shortcuts' }),
          el('button.icon', { type: 'button', 'aria-label': 'Close', text: '✕', on: { click: () => this.help.close() } })),
        ...sections)
      this.help.addEventListener('close', () => {
        const a = this.page.activeCellId
        if (a) this.focusCell(a)
      })
      document.body.append(this.help)
    }
    this.help.showModal()
  }
}
