// CodeMirror 6 editors bound to a cell's Y.Text with y-codemirror.next.
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap, completionStatus } from '@codemirror/autocomplete'
import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import { markdownLanguage } from '@codemirror/lang-markdown'
import { python } from '@codemirror/lang-python'
import { bracketMatching, defaultHighlightStyle, indentOnInput, indentUnit, LanguageSupport, syntaxHighlighting } from '@codemirror/language'
import { highlightSelectionMatches } from '@codemirror/search'
import { Compartment, EditorState, Prec } from '@codemirror/state'
import { drawSelection, EditorView, highlightActiveLine, highlightSpecialChars, keymap, placeholder } from '@codemirror/view'
import * as Y from 'yjs'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'

const theme = EditorView.theme({
  '&': { fontSize: '13.5px', backgroundColor: 'transparent' },
  '.cm-content': { fontFamily: 'var(--mono)', padding: '6px 0' },
  '.cm-line': { padding: '0 10px' },
  '&.cm-focused': { outline: 'none' },
  '.cm-activeLine': { backgroundColor: 'rgba(80,120,200,0.05)' },
  '.cm-scroller': { fontFamily: 'var(--mono)', lineHeight: '1.5' },
})

// Markdown without the embedded-HTML language keeps lang-html/-css/-javascript out of the bundle.
const markdownSupport = new LanguageSupport(markdownLanguage)

function languageFor(cellType) {
  if (cellType === 'markdown') return markdownSupport
  if (cellType === 'code') return python()
  return []
}

/** Whether the cursor is on the document's last (delta > 0) or first line, with nothing selected. */
function atEdge(view, delta) {
  const sel = view.state.selection.main
  if (!sel.empty || completionStatus(view.state)) return false
  const doc = view.state.doc
  const line = doc.lineAt(sel.head)
  if (delta > 0 ? line.number !== doc.lines : line.number !== 1) return false
  // A wrapped line: only its last (first) visual row is the edge.
  const here = view.coordsAtPos(sel.head)
  const edge = view.coordsAtPos(delta > 0 ? doc.length : 0)
  return !here || !edge || Math.abs(here.top - edge.top) < 2
}

const HISTORY_INPUT = new Set(['historyUndo', 'historyRedo'])

/**
 * Undo only ever undoes the focused editor's own changes (its Y.UndoManager, bound to Mod-z in the
 * editor). The browser's native undo stack spans every contenteditable on the page: a Ctrl-Z with no
 * editor focused (or Edit > Undo) would replay it into whichever editor typed last, and CodeMirror
 * would push that as an edit for every collaborator. Native undo and redo are refused for editors,
 * and undo keys outside editors and form fields do nothing.
 */
export function blockNativeUndo(doc = document) {
  doc.addEventListener('beforeinput', (e) => {
    if (HISTORY_INPUT.has(e.inputType) && e.target instanceof Element && e.target.closest('.cm-editor')) e.preventDefault()
  }, true)
  doc.addEventListener('keydown', (e) => {
    if (!(e.ctrlKey || e.metaKey) || e.altKey || !['z', 'y'].includes(e.key.toLowerCase())) return
    const t = e.target instanceof Element ? e.target : null
    if (!t || !t.closest('.cm-editor, input, textarea, [contenteditable=""], [contenteditable=true]')) e.preventDefault()
  })
}

/**
 * An editor for a cell. `keys` maps actions to handlers: run (Shift-Enter), runInPlace (Ctrl/Cmd-Enter),
 * escape, focus, blur. Returns {view, setLanguage(cellType), destroy()}.
 */
export function createEditor(parent, ytext, cellType, keys = {}) {
  const language = new Compartment()
  const undoManager = new Y.UndoManager(ytext)
  const runKeys = Prec.highest(
    keymap.of([
      { key: 'Shift-Enter', run: () => (keys.run?.(), true) },
      { key: 'Mod-Enter', run: () => (keys.runInPlace?.(), true) },
      { key: 'Alt-Enter', run: () => (keys.runInsert?.(), true) },
      { key: 'Escape', run: (v) => (completionStatus(v.state) ? false : (keys.escape?.(), true)) },
    ]),
  )
  // ArrowDown on the last line (ArrowUp on the first) goes to the next (previous) cell, as in JupyterLab.
  const edgeKeys = keymap.of([
    { key: 'ArrowDown', run: (v) => atEdge(v, +1) && !!keys.next?.() },
    { key: 'ArrowUp', run: (v) => atEdge(v, -1) && !!keys.previous?.() },
  ])
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        keys.extensions || [],
        runKeys,
        edgeKeys,
        EditorView.contentAttributes.of({ 'aria-label': keys.label?.() || 'Cell source', 'aria-multiline': 'true' }),
        keymap.of([...yUndoManagerKeymap, ...closeBracketsKeymap, ...completionKeymap, indentWithTab, ...defaultKeymap]),
        highlightSpecialChars(),
        drawSelection(),
        indentOnInput(),
        indentUnit.of('    '),
        bracketMatching(),
        closeBrackets(),
        keys.extensions ? [] : autocompletion({ activateOnTyping: false }),
        highlightActiveLine(),
        highlightSelectionMatches(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        EditorView.lineWrapping,
        placeholder(cellType === 'markdown' ? 'Markdown…' : 'Code…'),
        language.of(languageFor(cellType)),
        theme,
        yCollab(ytext, keys.awareness || null, { undoManager }),
        EditorView.domEventHandlers({
          focus: () => keys.focus?.(),
          blur: () => keys.blur?.(),
        }),
      ],
    }),
  })
  return {
    view,
    setLanguage(type) {
      view.dispatch({ effects: language.reconfigure(languageFor(type)) })
    },
    /** Focus; `where`: true or 'end' puts the cursor at the end, 'start' at the start. */
    focus(where = false) {
      view.focus()
      if (where === true || where === 'end') view.dispatch({ selection: { anchor: view.state.doc.length } })
      else if (where === 'start') view.dispatch({ selection: { anchor: 0 } })
    },
    destroy() {
      undoManager.destroy()
      view.destroy()
    },
  }
}
