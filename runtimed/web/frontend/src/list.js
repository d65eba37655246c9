// The notebook list page (`/`): title, last change, runtime status, peers; create, import, delete.
import { api, notebookPath } from './api.js'
import { keyBetween } from './order.js'
import { colorFor, el, newId, notice, relativeTime } from './util.js'

function runtimeBadge(rt) {
  if (!rt) return el('span.badge.runtime-none', { text: 'no runtime' })
  return el('span.badge.runtime-' + rt.status, { text: `${rt.kernel_name || 'kernel'} · ${rt.status}` })
}

function peerChips(peers) {
  const seen = new Map()
  for (const p of peers || []) if (p.actor && !seen.has(p.actor.id)) seen.set(p.actor.id, p)
  return el(
    'span.peers',
    null,
    [...seen.values()].map((p) =>
      el('span.peer-chip.kind-' + (p.actor.kind || 'human'), { testid: 'list-peer', title: `${p.actor.name || p.actor.id} (${p.actor.kind}, ${p.client || 'client'})`, style: `--c:${colorFor(p.actor.id)}` },
        (p.actor.name || p.actor.id).slice(0, 24)),
    ),
  )
}

export function listPage(root) {
  document.title = 'runtimed — notebooks'
  const tbody = el('tbody', { testid: 'notebook-rows' })
  const empty = el('p.empty', { testid: 'no-notebooks', text: 'No notebooks yet: create one or import an .ipynb file.' })
  const titleInput = el('input#new-title', { testid: 'new-title', placeholder: 'Title of a new notebook', maxlength: 1000 })
  const fileInput = el('input#import-file', { type: 'file', accept: '.ipynb,application/x-ipynb+json,application/json', testid: 'import-file', hidden: true })

  // Search (title or id) and sort, kept in the URL's query so a reload or a shared link keeps them.
  const params = new URLSearchParams(location.search)
  const search = el('input.list-search', { type: 'search', testid: 'list-search', placeholder: 'Search notebooks', 'aria-label': 'Search notebooks',
    value: params.get('q') || '', on: { input: () => render() } })
  const sort = el('select.list-sort', { testid: 'list-sort', 'aria-label': 'Sort notebooks', on: { change: () => render() } },
    [['recent', 'Last change'], ['title', 'Title'], ['cells', 'Most cells'], ['created', 'Newest']].map(([v, t]) => el('option', { value: v, text: t })))
  sort.value = params.get('sort') || 'recent'
  const noMatch = el('p.empty', { testid: 'no-match', hidden: true, text: 'No notebook matches the search.' })
  let items = []

  function render() {
    const q = search.value.trim().toLowerCase()
    const url = new URL(location.href)
    if (q) url.searchParams.set('q', search.value.trim())
    else url.searchParams.delete('q')
    if (sort.value !== 'recent') url.searchParams.set('sort', sort.value)
    else url.searchParams.delete('sort')
    if (url.href !== location.href) history.replaceState(null, '', url)
    const shown = items.filter((nb) => !q || `${nb.title || ''} ${nb.id}`.toLowerCase().includes(q))
    const by = {
      recent: (a, b) => String(b.updated_at || '').localeCompare(String(a.updated_at || '')),
      created: (a, b) => String(b.created_at || '').localeCompare(String(a.created_at || '')),
      title: (a, b) => (a.title || a.id).localeCompare(b.title || b.id, undefined, { sensitivity: 'base', numeric: true }),
      cells: (a, b) => (b.cells || 0) - (a.cells || 0),
    }[sort.value] || (() => 0)
    shown.sort(by)
    empty.hidden = items.length > 0
    noMatch.hidden = !items.length || shown.length > 0
    tbody.replaceChildren(
      ...shown.map((nb) =>
        el('tr.notebook-row', { testid: 'notebook-row', 'data-notebook-id': nb.id },
          el('td', null, el('a.notebook-link', { href: `/?notebook=${encodeURIComponent(nb.id)}`, testid: 'notebook-link' }, nb.title || nb.id),
            el('div.muted.small', { text: nb.id })),
          el('td', { title: nb.updated_at || '' }, relativeTime(nb.updated_at)),
          el('td', null, String(nb.cells ?? '')),
          el('td', null, runtimeBadge(nb.runtime)),
          el('td', null, peerChips(nb.peers)),
          el('td.actions', null,
            el('a.button.ghost', { href: `${notebookPath(nb.id)}/export`, download: `${nb.id}.ipynb`, text: 'Export', testid: 'export-link' }),
            el('button.ghost.danger', { testid: 'delete-notebook', text: 'Delete', on: { click: () => remove(nb) } })),
        ),
      ),
    )
  }

  async function refresh() {
    try {
      items = await api('/api/notebooks')
    } catch (err) {
      notice(err.message)
      return
    }
    render()
  }

  async function remove(nb) {
    if (!window.confirm(`Delete notebook “${nb.title || nb.id}” and its whole history? This cannot be undone.`)) return
    try {
      await api(notebookPath(nb.id), { method: 'DELETE' })
      notice(`Deleted ${nb.title || nb.id}`, 'info')
    } catch (err) {
      notice(err.message)
    }
    refresh()
  }

  async function create(e) {
    e?.preventDefault()
    try {
      const info = await api('/api/notebooks', { method: 'POST', body: { title: titleInput.value.trim() } })
      // As in JupyterLab, a new notebook starts with one empty code cell.
      await api(`${notebookPath(info.id)}/events`, { method: 'POST', body: { events: [
        { id: newId(), name: 'cellCreated', v: 1, args: { cellId: newId('cell-'), cellType: 'code', fractionalIndex: keyBetween(null, null) } }] } })
      location.href = `/?notebook=${encodeURIComponent(info.id)}`
    } catch (err) {
      notice(err.message)
    }
  }

  fileInput.addEventListener('change', async () => {
    const file = fileInput.files[0]
    if (!file) return
    const title = file.name.replace(/\.ipynb$/i, '')
    try {
      const info = await api(`/api/notebooks/import?title=${encodeURIComponent(title)}`, {
        method: 'POST', body: await file.arrayBuffer(), raw: true, headers: { 'content-type': 'application/x-ipynb+json' },
      })
      notice(`Imported ${file.name}`, 'info')
      location.href = `/?notebook=${encodeURIComponent(info.id)}`
    } catch (err) {
      notice(`Import failed: ${err.message}`)
    } finally {
      fileInput.value = ''
    }
  })

  root.replaceChildren(
    el('header.topbar', null,
      el('a.brand', { href: '/', text: 'runtimed' }),
      el('span.muted', { text: 'notebooks' })),
    el('main.list-page', null,
      el('form.create-row', { on: { submit: create } },
        titleInput,
        el('button.primary', { type: 'submit', testid: 'create-notebook', text: 'New notebook' }),
        el('button.ghost', { type: 'button', testid: 'import-button', text: 'Import .ipynb…', on: { click: () => fileInput.click() } }),
        fileInput),
      el('div.list-filters', null, search, el('label.muted', null, 'Sort ', sort)),
      el('table.notebooks', null,
        el('thead', null, el('tr', null, ['Notebook', 'Last change', 'Cells', 'Runtime', 'Here now', ''].map((h) => el('th', { text: h })))),
        tbody),
      empty,
      noMatch),
  )
  refresh()
  setInterval(refresh, 5000)
}
