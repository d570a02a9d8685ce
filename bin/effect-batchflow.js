#!/usr/bin/env node
// The `effect-batchflow` command. In a published package it runs the compiled entry (dist/bin.js).
// In a clone of the repository (tsconfig.json next to src/) it compiles the TypeScript entry
// (src/bin.ts) with esbuild, a dev dependency, into one temporary file and runs that, so
// `npx effect-batchflow` works without a build and never runs a stale dist/. Not through tsx: tsx
// compiles with esbuild's `keepNames`, which wraps every function the library creates in a call
// that names it, and that made the engine ~20 % slower than the code users run: the bench must
// measure what users get.
import { existsSync, unlinkSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const source = `${root}src/bin.ts`
const compiled = `${root}dist/bin.js`

const fromSource = async () => {
  const { build } = await import("esbuild")
  // Next to the clone's node_modules, so that the packages it imports resolve as from src/.
  const outfile = join(root, "node_modules", ".cache", `effect-batchflow-bin-${process.pid}.mjs`)
  await build({
    entryPoints: [source],
    outfile,
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    target: "node20",
    sourcemap: "inline",
    logLevel: "error"
  })
  process.on("exit", () => {
    try {
      unlinkSync(outfile)
    } catch {}
  })
  await import(pathToFileURL(outfile).href)
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
