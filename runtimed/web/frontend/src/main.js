// Entry point: the notebook list at `/`, a live notebook at `/?notebook=ID`.
import 'katex/dist/katex.css' // KaTeX's CSS and fonts are bundled: the page CSP allows only same-origin styles and fonts
import './style.css'
import './responsive.css'
import './theme.css'
import './json_tree.js'
import { listPage } from './list.js'
import { notebookPage } from './notebook.js'

const root = document.getElementById('app')
const notebookId = new URLSearchParams(location.search).get('notebook')
if (notebookId) notebookPage(root, notebookId)
else listPage(root)
