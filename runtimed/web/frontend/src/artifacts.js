// Artifact references in outputs (runtimed/schema/artifact_refs.py): a large MIME value lives in the
// daemon's content-addressed store and the event holds {artifact: sha256, size, mime, encoding?, kind?,
// preview?}. The page reads GET /api/artifacts/{sha} same-origin, so the sign-in cookie authorizes it.
import { toBase64 } from './util.js'

export function isArtifact(value) {
  return !!value && typeof value === 'object' && typeof value.artifact === 'string' && /^[0-9a-f]{64}$/.test(value.artifact)
}

export function artifactUrl(ref) {
  return `/api/artifacts/${ref.artifact}`
}

/** An image whose artifact holds its decoded bytes, so <img src> can load it directly. */
export function isDirectImage(mime, ref) {
  return mime.startsWith('image/') && mime !== 'image/svg+xml' && ref.encoding === 'base64'
}

/** The MIME value the reference stands for, as the renderer takes inline values (from_bytes reversed). */
export async function fetchValue(mime, ref, isJsonMime) {
  const r = await fetch(artifactUrl(ref), { credentials: 'same-origin' })
  if (!r.ok) throw new Error(`artifact ${ref.artifact.slice(0, 12)}… could not be loaded (HTTP ${r.status})`)
  if (ref.encoding === 'base64') {
    return toBase64(new Uint8Array(await r.arrayBuffer()))
  }
  const text = await r.text()
  if (isJsonMime(mime) && ref.kind !== 'text') {
    try {
      return JSON.parse(text)
    } catch {
      return text
    }
  }
  return text
}
