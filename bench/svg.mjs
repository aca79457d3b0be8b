// A small SVG chart for the benchmark, drawn here (no external service): requests per 100 ms by outcome across one
// swap, one panel per strategy, stacked bars (answered, answered after a browser-style retry, failed).

const OUTCOMES = [
  { key: 'ok', label: 'answered', color: '#4c9a2a' },
  { key: 'retried', label: 'answered after a retry (a reset reused connection)', color: '#e0a100' },
  { key: 'failed', label: 'failed (refused, reset, 5xx, timeout)', color: '#d62728' }
]
const esc = s => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')

/**
 * panels: [{ title, bucketMs, buckets: [{ ok, retried, failed }], markers: [{ at (ms from the panel's start), label }] }]
 * Returns the SVG text.
 */
export function swapChart(panels, { width = 900, panelHeight = 150, title = '' } = {}) {
  const left = 56
  const right = 12
  const top = title ? 34 : 12
  const gap = 46
  const legend = 24
  const height = top + panels.length * (panelHeight + gap) + legend
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="#fff"/>`
  ]
  if (title) out.push(`<text x="${left}" y="20" font-size="14" font-weight="bold">${esc(title)}</text>`)
  const plotW = width - left - right
  const maxBuckets = Math.max(...panels.map(p => p.buckets.length), 1)
  const barW = plotW / maxBuckets
  panels.forEach((p, i) => {
    const y0 = top + i * (panelHeight + gap) + 16
    const h = panelHeight - 16
    const peak = Math.max(1, ...p.buckets.map(b => b.ok + b.retried + b.failed))
    const scale = h / peak
    out.push(`<text x="${left}" y="${y0 - 4}" font-weight="bold">${esc(p.title)}</text>`)
    out.push(`<line x1="${left}" y1="${y0 + h}" x2="${left + plotW}" y2="${y0 + h}" stroke="#888"/>`)
    out.push(`<line x1="${left}" y1="${y0}" x2="${left}" y2="${y0 + h}" stroke="#888"/>`)
    out.push(`<text x="${left - 4}" y="${y0 + 4}" text-anchor="end">${peak}</text>`)
    out.push(`<text x="${left - 4}" y="${y0 + h}" text-anchor="end">0</text>`)
    p.buckets.forEach((b, j) => {
      let y = y0 + h
      for (const o of OUTCOMES) {
        const v = b[o.key]
        if (!v) continue
        const bh = Math.max(v * scale, o.key === 'ok' ? 0 : 2) // a single failure stays visible
        y -= bh
        out.push(
          `<rect x="${(left + j * barW).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(barW - 0.5, 0.5).toFixed(1)}" height="${bh.toFixed(1)}" fill="${o.color}"/>`
        )
      }
    })
    const seconds = (maxBuckets * p.bucketMs) / 1000
    for (let s = 0; s <= seconds; s += seconds > 30 ? 5 : seconds > 12 ? 2 : 1) {
      const x = left + (s * 1000 * barW) / p.bucketMs
      out.push(`<line x1="${x.toFixed(1)}" y1="${y0 + h}" x2="${x.toFixed(1)}" y2="${y0 + h + 4}" stroke="#888"/>`)
      out.push(`<text x="${x.toFixed(1)}" y="${y0 + h + 15}" text-anchor="middle">${s} s</text>`)
    }
    // Labels one below the other, so markers close together stay readable.
    ;(p.markers ?? []).forEach((m, k) => {
      const x = left + (m.at * barW) / p.bucketMs
      out.push(`<line x1="${x.toFixed(1)}" y1="${y0}" x2="${x.toFixed(1)}" y2="${y0 + h}" stroke="#1f77b4" stroke-dasharray="4 3"/>`)
      out.push(`<text x="${(x + 3).toFixed(1)}" y="${y0 + 10 + 12 * k}" fill="#1f77b4">${esc(m.label)}</text>`)
    })
  })
  let x = left
  const ly = height - 10
  for (const o of OUTCOMES) {
    out.push(`<rect x="${x}" y="${ly - 9}" width="10" height="10" fill="${o.color}"/>`)
    out.push(`<text x="${x + 14}" y="${ly}">${esc(o.label)}</text>`)
    x += 24 + o.label.length * 6
  }
  out.push('</svg>')
  return `${out.join('\n')}\n`
}

/** Buckets results ({ t, kind, retried }) of [start, start + spanMs) into bucketMs slots. */
export function bucketize(results, start, spanMs, bucketMs = 100) {
  const buckets = Array.from({ length: Math.ceil(spanMs / bucketMs) }, () => ({ ok: 0, retried: 0, failed: 0 }))
  for (const r of results) {
    const i = Math.floor((r.t - start) / bucketMs)
    if (i < 0 || i >= buckets.length) continue
    if (r.kind !== 'ok') buckets[i].failed++
    else if (r.retried) buckets[i].retried++
    else buckets[i].ok++
  }
  return buckets
}
