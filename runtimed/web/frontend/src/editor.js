// CodeMirror 6 editors bound to a cell's Y.Text with y-codemirror.next.
import { autocompletion, closeBrackets, closeBracketsKeymap, completionKeymap } from '@codemirror/autocomplete'
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
      { key: 'Escape', run: () => (keys.escape?.(), true) },
    ]),
  )
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        runKeys,
        keymap.of([...yUndoManagerKeymap, ...closeBracketsKeymap, ...completionKeymap, indentWithTab, ...defaultKeymap]),
        highlightSpecialChars(),
        drawSelection(),
        indentOnInput(),
        indentUnit.of('    '),
        bracketMatching(),
        closeBrackets(),
        autocompletion({ activateOnTyping: false }),
        highlightActiveLine(),
        highlightSelectionMatches(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        EditorView.lineWrapping,
        placeholder(cellType === 'markdown' ? 'Markdown…' : 'Code…'),
        language.of(languageFor(cellType)),
        theme,
        yCollab(ytext, null, { undoManager }),
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
    focus(atEnd = false) {
      view.focus()
      if (atEnd) view.dispatch({ selection: { anchor: view.state.doc.length } })
    },
    destroy() {
      undoManager.destroy()
      view.destroy()
    },
  }
}
