/**
 * The code blocks of README.md (and its translations, README.*.md) and docs/**: every TypeScript
 * block (```ts, ```typescript) is either a complete program or a fragment whose first line is
 * `// fragment`. The complete ones are written to .snippets/ (gitignored; neither the project's
 * tsconfig nor biome reads it) and type-checked together in one tsc run, with tsconfig.base.json's
 * settings and `effect-batchflow` / `effect-batchflow/<Module>` resolved to src/ (only the subpaths
 * the package's exports map publishes). The other blocks (sh, text, sql, promql…) are not compiled,
 * but an untagged or JavaScript block that looks like TypeScript fails: tag it ts.
 *
 * Two settings differ from the project's: noUnusedLocals / noUnusedParameters are off, since a
 * snippet may define a layer for the reader to use; and each block is its own module.
 */
import { execFile } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { beforeAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const outDir = join(root, ".snippets")

interface Block {
  /** The Markdown file, relative to the repository. */
  readonly file: string
  /** 1-based, among the file's TypeScript blocks. */
  readonly index: number
  /** Line of the opening fence in the Markdown file (1-based). */
  readonly line: number
  readonly lang: string
  /** The block's text, its indentation (inside a list item) removed. */
  readonly code: string
}

const markdownFiles = (): ReadonlyArray<string> => {
  const found = readdirSync(root)
    .filter((name) => /^README.*\.md$/.test(name))
    .sort()
  const walk = (dir: string) => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true }).sort((a, b) =>
      a.name.localeCompare(b.name)
    )) {
      const path = `${dir}/${entry.name}`
      if (entry.isDirectory()) walk(path)
      else if (entry.name.endsWith(".md")) found.push(path)
    }
  }
  walk("docs")
  return found
}

const tsLangs = new Set(["ts", "typescript", "mts", "cts"])
const jsLangs = new Set(["", "js", "javascript", "mjs", "cjs", "jsx", "tsx"])
const looksLikeTs = /^\s*import\s[^\n]*\sfrom\s+["']|\byield\*\s|\bEffect\.(gen|runPromise|runMain)\b/m
const isFragment = (code: string) => /^\/\/ fragment\b/.test(code.split("\n", 1)[0]!.trim())

/** Every fenced block of a Markdown file, in order (ts blocks numbered from 1). */
const blocksOf = (file: string): ReadonlyArray<Block> => {
  const lines = readFileSync(join(root, file), "utf8").split("\n")
  const blocks: Array<Block> = []
  let tsIndex = 0
  for (let i = 0; i < lines.length; i++) {
    const open = /^(?<indent> *)(?<fence>`{3,}|~{3,})\s*(?<info>[^\s`]*)/.exec(lines[i]!)
    if (!open) continue
    const { indent, fence, info } = open.groups!
    const close = new RegExp(`^ *${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`)
    const body: Array<string> = []
    let j = i + 1
    for (; j < lines.length && !close.test(lines[j]!); j++)
      body.push(lines[j]!.replace(new RegExp(`^ {0,${indent.length}}`), ""))
    const lang = info.toLowerCase()
    blocks.push({
      file,
      index: tsLangs.has(lang) ? ++tsIndex : 0,
      line: i + 1,
      lang,
      code: `${body.join("\n")}\n`
    })
    i = j
  }
  return blocks
}

const files = markdownFiles()
const blocks = files.flatMap(blocksOf)
const tsBlocks = blocks.filter((block) => tsLangs.has(block.lang))
const complete = tsBlocks.filter((block) => !isFragment(block.code))
const snippetName = (block: Block) =>
  `${block.file.replace(/\.md$/, "").replaceAll("/", "-")}-${block.index}.ts`
const where = (block: Block) => `${block.file} ts block ${block.index} (line ${block.line})`

/** The package's public subpaths: src/<Module>.ts unless the exports map closes it. */
const publicModules = (): ReadonlyArray<string> => {
  const exportsMap = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).exports as Record<
    string,
    unknown
  >
  return readdirSync(join(root, "src"))
    .filter((name) => name.endsWith(".ts") && name !== "index.ts")
    .map((name) => name.slice(0, -3))
    .filter((name) => exportsMap[`./${name}`] !== null)
}

interface Diagnostic {
  readonly snippet: string | undefined
  readonly text: string
}

let diagnostics: ReadonlyArray<Diagnostic> = []
let tscOutput = ""

beforeAll(async () => {
  rmSync(outDir, { recursive: true, force: true })
  mkdirSync(outDir, { recursive: true })
  // A package of its own (ESM, no name): no self-reference to the repository's package, which would
  // resolve a subpath that src/ lacks to a stale dist/.
  writeFileSync(join(outDir, "package.json"), `${JSON.stringify({ private: true, type: "module" })}\n`)
  const paths: Record<string, Array<string>> = { "effect-batchflow": ["../src/index.ts"] }
  for (const name of publicModules()) paths[`effect-batchflow/${name}`] = [`../src/${name}.ts`]
  writeFileSync(
    join(outDir, "tsconfig.json"),
    JSON.stringify(
      {
        extends: "../tsconfig.base.json",
        compilerOptions: {
          noEmit: true,
          noUnusedLocals: false,
          noUnusedParameters: false,
          moduleDetection: "force",
          declaration: false,
          declarationMap: false,
          sourceMap: false,
          paths
        },
        include: ["*.ts"]
      },
      null,
      2
    )
  )
  for (const block of complete) writeFileSync(join(outDir, snippetName(block)), block.code)
  const tsc = join(root, "node_modules/typescript/bin/tsc")
  const result = await promisify(execFile)(
    process.execPath,
    [tsc, "-p", join(outDir, "tsconfig.json"), "--pretty", "false"],
    { cwd: root, maxBuffer: 64 * 1024 * 1024 }
  ).then(
    ({ stdout }) => stdout,
    (error: { stdout?: string; stderr?: string; message: string }) =>
      `${error.stdout ?? ""}${error.stderr ?? ""}` || error.message
  )
  tscOutput = result
  // "path(line,col): error TSxxxx: message", continuation lines indented.
  const parsed: Array<{ snippet: string | undefined; text: string }> = []
  for (const line of result.split("\n")) {
    if (line.trim() === "") continue
    const located = /^(?<path>.+?)\((?<row>\d+),(?<col>\d+)\): (?:error|warning) (?<message>TS\d+: .*)$/.exec(
      line
    )
    if (located) {
      const { path, row, col, message } = located.groups!
      const rel = relative(outDir, join(root, path))
      const snippet = rel.includes("/") || rel.startsWith("..") ? undefined : rel
      const block = complete.find((candidate) => snippetName(candidate) === snippet)
      const at = block
        ? `${block.file}:${block.line + Number(row)}:${col} (block line ${row})`
        : `${path}(${row},${col})`
      parsed.push({ snippet, text: `${at}: ${message}` })
    } else if (/^\s/.test(line) && parsed.length > 0) {
      const last = parsed[parsed.length - 1]!
      last.text += `\n${line}`
    } else parsed.push({ snippet: undefined, text: line })
  }
  diagnostics = parsed
}, 120_000)

describe("the code blocks of the README and the docs", () => {
  it("finds the README's and the guides' TypeScript blocks", () => {
    expect(files).toContain("README.md")
    expect(files.some((file) => file.startsWith("docs/guides/"))).toBe(true)
    expect(complete.length).toBeGreaterThan(0)
  })

  it("tsc reports nothing outside the snippets (configuration, src/)", () => {
    const outside = diagnostics.filter((diagnostic) => diagnostic.snippet === undefined)
    if (outside.length > 0)
      expect.fail(
        `${outside.map((diagnostic) => diagnostic.text).join("\n\n")}\n\ntsc's output:\n${tscOutput}`
      )
  })

  for (const file of files) {
    const ofFile = blocks.filter((block) => block.file === file)
    const ts = ofFile.filter((block) => tsLangs.has(block.lang))
    const title = `${file}: ${ts.length - ts.filter((block) => isFragment(block.code)).length} complete, ${ts.filter((block) => isFragment(block.code)).length} fragments`
    it(title, () => {
      const problems: Array<string> = []
      for (const block of ofFile) {
        if (jsLangs.has(block.lang) && looksLikeTs.test(block.code))
          problems.push(
            `${block.file} line ${block.line}: ${block.lang === "" ? "an untagged" : `a ${block.lang}`} block that looks like TypeScript: tag it ts`
          )
      }
      for (const block of ts) {
        if (isFragment(block.code)) continue
        const errors = diagnostics.filter((diagnostic) => diagnostic.snippet === snippetName(block))
        if (errors.length > 0)
          problems.push(
            [
              `${where(block)} does not compile (.snippets/${snippetName(block)}); make it a complete program, or mark it a fragment with a first line \`// fragment\`:`,
              ...errors.map((error) => `  ${error.text.replaceAll("\n", "\n  ")}`)
            ].join("\n")
          )
      }
      if (problems.length > 0) expect.fail(problems.join("\n\n"))
    })
  }
})
