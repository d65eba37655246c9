// The notebook's Python dependencies (docs/environments.md): a toolbar button and a panel that lists
// them, adds and removes them (as this page's person, which approves the new list), approves a list
// someone else declared, and shows the environment's state (approved, built, the last build's step).
//
// The list itself is in the notebook's metadata (runtimed.dependencies, or nteract's runt.uv, a PEP 723
// block, a pyproject.toml): the daemon resolves which applies, so the panel asks it
// (GET …/environment) whenever the metadata, the approvals or the runtime change.
import { api, notebookPath } from './api.js'
import { el, notice } from './util.js'

/** PEP 503 normalized name of a requirement's package (enough to match "Six>=1" with "six"). */
export function packageName(requirement) {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(requirement || '')
  return m ? m[1].toLowerCase().replace(/[-_.]+/g, '-') : ''
}

export class DependencyPanel {
  /** @param page the NotebookPage (notebookId, actor, readOnly) */
  constructor(page) {
    this.page = page
    this.env = null
    this._loading = null
    this._again = false
    this.button = el('button.ghost', { type: 'button', testid: 'deps-toggle', title: 'Python dependencies of this notebook',
      text: 'Dependencies', on: { click: () => this.toggle() } })
    this.list = el('ul.deps-list', { testid: 'deps-list' })
    this.status = el('div.deps-status.muted', { testid: 'deps-status' })
    this.input = el('input.deps-input', { testid: 'deps-input', placeholder: 'e.g. pandas>=2', spellcheck: 'false',
      on: { keydown: (e) => e.key === 'Enter' && this.add(this.input.value) } })
    this.approveButton = el('button.primary', { type: 'button', testid: 'deps-approve', hidden: true, text: 'Approve and install',
      title: 'Let the daemon install exactly this list (someone else declared it)', on: { click: () => this.approve() } })
    this.node = el('section.deps-panel', { testid: 'deps-panel', hidden: true },
      el('div.deps-head', null, el('strong', { text: 'Dependencies' }),
        el('span.muted', { text: ' — installed with uv into this notebook\'s own environment' })),
      this.list,
      el('div.deps-add', null, this.input,
        el('button.ghost', { type: 'button', testid: 'deps-add', text: 'Add', on: { click: () => this.add(this.input.value) } })),
      this.status,
      this.approveButton)
  }

  toggle() {
    this.node.hidden = !this.node.hidden
    if (!this.node.hidden) this.refresh()
  }

  /** Something that may change the environment happened (metadata, approvals, runtime): ask again if shown. */
  changed() {
    if (!this.node.hidden || this.env) this.refresh()
  }

  async refresh() {
    if (this._loading) {
      this._again = true
      return this._loading
    }
    this._loading = (async () => {
      try {
        this.env = await api(`${notebookPath(this.page.notebookId)}/environment`)
      } catch (err) {
        this.status.textContent = `Could not read the environment: ${err.message}`
        return
      } finally {
        this._loading = null
      }
      this.render()
      if (this._again) {
        this._again = false
        this.refresh()
      }
    })()
    return this._loading
  }

  dependencies() {
    return this.env?.request?.dependencies || []
  }

  render() {
    const deps = this.dependencies()
    const source = this.env?.request?.source
    this.button.textContent = deps.length ? `Dependencies (${deps.length})` : 'Dependencies'
    this.list.replaceChildren(...deps.map((dep) => el('li.deps-item', { testid: 'deps-item', 'data-package': packageName(dep) },
      el('code', { text: dep }),
      this.page.readOnly || (source && source !== 'runtimed' && source !== 'runt.uv')
        ? null
        : el('button.ghost.deps-remove', { type: 'button', testid: 'deps-remove', title: `Remove ${dep}`, text: '×',
            on: { click: () => this.remove(dep) } }))))
    if (!deps.length) this.list.append(el('li.muted', { text: 'none: the kernel runs in the daemon\'s own environment' }))
    const parts = []
    if (deps.length) {
      parts.push(`from ${source}`)
      parts.push(this.env.trusted ? 'approved' : 'not approved yet')
      parts.push(this.env.built ? 'environment built' : 'not built yet')
    }
    const st = this.env?.status
    if (st?.state === 'building') parts.push(st.detail)
    else if (st?.state === 'failed') parts.push(`last build failed: ${st.detail}`)
    this.status.textContent = parts.join(' · ')
    this.status.dataset.state = st?.state || ''
    this.approveButton.hidden = !deps.length || this.env.trusted || this.page.readOnly
    this.node.dataset.trusted = String(Boolean(this.env?.trusted))
    this.node.dataset.built = String(Boolean(this.env?.built))
  }

  async _put(deps) {
    const settings = this.page.state.metadata?.runtimed
    const current = settings && typeof settings === 'object' ? settings : {}
    try {
      this.env = await api(`${notebookPath(this.page.notebookId)}/dependencies`, { method: 'PUT', body: {
        dependencies: deps, requires_python: current.requires_python ?? null, index_url: current.index_url ?? null,
        actor: this.page.actor } })
    } catch (err) {
      notice(err.message)
      return false
    }
    this.render()
    return true
  }

  async add(requirement) {
    const text = (requirement || '').trim()
    if (!text || this.page.readOnly) return
    const name = packageName(text)
    const deps = this.dependencies().filter((d) => packageName(d) !== name)
    if (await this._put([...deps, text])) this.input.value = ''
  }

  async remove(requirement) {
    if (this.page.readOnly) return
    const name = packageName(requirement)
    await this._put(this.dependencies().filter((d) => packageName(d) !== name))
  }

  async approve() {
    try {
      this.env = await api(`${notebookPath(this.page.notebookId)}/environment/approve`, { method: 'POST',
        body: { actor: this.page.actor } })
    } catch (err) {
      notice(err.message)
      return
    }
    this.render()
  }
}
