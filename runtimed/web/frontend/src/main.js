// Entry point: the notebook list at `/`, a live notebook at `/?notebook=ID`.
import './style.css'
import { listPage } from './list.js'
import { notebookPage } from './notebook.js'

const root = document.getElementById('app')
const notebookId = new URLSearchParams(location.search).get('notebook')
if (notebookId) notebookPage(root, notebookId)
else listPage(root)
