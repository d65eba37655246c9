// REST calls (same origin; the HttpOnly login cookie authenticates them).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

export async function api(path, { method = 'GET', body, raw = false, headers = {} } = {}) {
  // The page's policy is no-referrer, under which a browser sends `Origin: null` with a POST; a same-origin
  // request keeps its real Origin with 'same-origin', and the daemon requires that Origin for cookie sign-ins.
  const init = { method, credentials: 'same-origin', referrerPolicy: 'same-origin', headers: { ...headers } }
  if (body !== undefined) {
    if (raw) init.body = body
    else {
      init.body = JSON.stringify(body)
      init.headers['content-type'] = 'application/json'
    }
  }
  const r = await fetch(path, init)
  const text = await r.text()
  let data = null
  try {
    data = text ? JSON.parse(text) : null
  } catch {
    data = text
  }
  if (!r.ok) {
    const err = (data && data.error) || {}
    throw new ApiError(r.status, err.code || String(r.status), err.message || `${method} ${path} failed (${r.status})`)
  }
  return data
}

export const notebookPath = (id) => `/api/notebooks/${encodeURIComponent(id)}`
