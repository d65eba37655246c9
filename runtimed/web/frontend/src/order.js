// Cell order by fractional index strings (the same algorithm as runtimed.schema.ordering).
import { generateKeyBetween } from 'fractional-indexing'

/** A key strictly between two neighbours (null: open end); equal neighbours (a tie) get a key after `before`. */
export function keyBetween(before, after) {
  if (before != null && after != null && before >= after) after = null
  return generateKeyBetween(before ?? null, after ?? null)
}

/** Sort order of cells: fractional index, then id (ties from concurrent inserts are broken by id). */
export function compareCells(a, b) {
  if (a.fractional_index !== b.fractional_index) return a.fractional_index < b.fractional_index ? -1 : 1
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}
