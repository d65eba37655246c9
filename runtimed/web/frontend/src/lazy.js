// Work that waits until an element scrolls near the viewport (outputs' frames, artifact loads): a long
// notebook fetches and mounts only what someone looks at.

const MARGIN = '800px 0px'

const observer = new IntersectionObserver(
  (entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue
      observer.unobserve(entry.target)
      const run = entry.target._whenVisible
      entry.target._whenVisible = null
      run?.()
    }
  },
  { rootMargin: MARGIN },
)

/** Run `fn` once, the first time `node` comes within MARGIN of the viewport. */
export function whenVisible(node, fn) {
  node._whenVisible = fn
  observer.observe(node)
}
