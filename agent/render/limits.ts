// The bounds on one template file's render (docs/templates.md, "Limits"):
// render.ts, template.ts and sandbox.ts take them from here.

/** The longest one template file may render; then Liquid stops it, or the render worker is terminated. */
export const TEMPLATE_TIME_LIMIT_MS = 5_000;
/** The render worker's V8 heap (old generation; the young one adds TEMPLATE_YOUNG_MB). */
export const TEMPLATE_HEAP_LIMIT_MB = 64;
export const TEMPLATE_YOUNG_MB = 8;
