// Collapse and scroll of a cell's outputs, as in JupyterLab (the bar left of the outputs, O and Shift-O in
// command mode). The state is the cell's nbformat metadata, `collapsed` and `scrolled` (booleans), set
// with cellMetadataSet: it is part of the notebook, seen by every collaborator and kept in the .ipynb.
import { el } from './util.js'

export class OutputChrome {
  constructor(view) {
    this.view = view
    this.bar = el('button.output-collapser', { type: 'button', testid: 'output-collapser', on: { click: () => this.toggle('collapsed') } })
    this.hiddenNote = el('button.outputs-hidden', { type: 'button', testid: 'outputs-hidden', hidden: true, on: { click: () => this.toggle('collapsed') } })
    this.scrollButton = el('button.icon.output-scroll', { type: 'button', testid: 'output-scroll', on: { click: () => this.toggle('scrolled') } })
    const outputs = view.outputs
    this.node = el('div.output-area', { testid: 'output-area' })
    outputs.replaceWith(this.node)
    this.node.append(this.bar, el('div.output-stack', null, this.hiddenNote, outputs), this.scrollButton)
    this.update()
  }

  get collapsed() {
    return this.view.cell.metadata?.collapsed === true || this.view.cell.metadata?.jupyter?.outputs_hidden === true
  }

  get scrolled() {
    return this.view.cell.metadata?.scrolled === true
  }

  update() {
    const n = this.view.cell.outputs.length
    const collapsed = this.collapsed
    const scrolled = this.scrolled
    this.node.hidden = n === 0
    this.view.outputs.hidden = collapsed || n === 0
    this.hiddenNote.hidden = !collapsed
    this.hiddenNote.textContent = `${n} output${n === 1 ? '' : 's'} hidden · show`
    this.bar.setAttribute('aria-expanded', String(!collapsed))
    this.bar.setAttribute('aria-label', collapsed ? 'Show the outputs' : 'Hide the outputs')
    this.bar.title = collapsed ? 'Show the outputs (O)' : 'Hide the outputs (O)'
    this.view.outputs.classList.toggle('scrolled', scrolled)
    this.scrollButton.hidden = collapsed
    this.scrollButton.textContent = scrolled ? '⤢' : '⇕'
    this.scrollButton.setAttribute('aria-pressed', String(scrolled))
    this.scrollButton.setAttribute('aria-label', scrolled ? 'Show the whole output' : 'Scroll long output')
    this.scrollButton.title = scrolled ? 'Show the whole output (Shift-O)' : 'Scroll long output (Shift-O)'
    this.node.dataset.collapsed = String(collapsed)
    this.node.dataset.scrolled = String(scrolled)
  }

  /** Flip `collapsed` or `scrolled` (an event: the log decides, the echo re-renders). */
  toggle(key) {
    const on = key === 'collapsed' ? !this.collapsed : !this.scrolled
    const events = [{ name: 'cellMetadataSet', args: { cellId: this.view.id, key, value: on ? true : null } }]
    if (key === 'collapsed' && !on && this.view.cell.metadata?.jupyter?.outputs_hidden) {
      const { outputs_hidden: _, ...rest } = this.view.cell.metadata.jupyter
      events.push({ name: 'cellMetadataSet', args: { cellId: this.view.id, key: 'jupyter', value: Object.keys(rest).length ? rest : null } })
    }
    this.view.page.push(events)
  }
}

/** A stream <pre> follows new lines when it was scrolled to its end (not when the user scrolled up). */
export function atEnd(node) {
  return node.scrollHeight - node.scrollTop - node.clientHeight < 4
}
