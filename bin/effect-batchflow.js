#!/usr/bin/env node
// The `effect-batchflow` command. In a published package it runs the compiled entry (dist/bin.js).
// In a clone of the repository (tsconfig.json next to src/, tsx installed as a dev dependency) it
// runs the TypeScript entry (src/bin.ts) through tsx, so `npx effect-batchflow` works without a build
// and never runs a stale dist/.
import { existsSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const source = `${root}src/bin.ts`
const compiled = `${root}dist/bin.js`

const fromSource = async () => {
  const { register } = await import("tsx/esm/api")
  register()
  await import(pathToFileURL(source).href)
}

if (existsSync(`${root}tsconfig.json`) && existsSync(source)) {
  try {
    await fromSource()
  } catch (error) {
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || !existsSync(compiled)) throw error
    await import(pathToFileURL(compiled).href)
  }
} else {
  await import(pathToFileURL(compiled).href)
}
